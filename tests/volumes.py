"""Volumes as other tools leave them, written the way those tools write them.

``make_legacy_volume`` reproduces provenance-toolbox 0.1.x's on-disk result
(notes packed into ``description``, processes in ``processing``, code
environment files at the volume root, pretty JSON); ``add_foreign_entries``
adds what igneous and people write by hand.
"""
from __future__ import annotations

import json

LEGACY_NOTES = [
    ("2022-07-01 12:00:00.123456", "MOTIVATION", "segment pinky for the proofreading round"),
    ("2022-07-02 08:30:00.000001", "GENERIC", "threshold; chosen by eye"),
    ("2022-07-03 17:45:10.500000", "RESULT", "merge errors in slab 3"),
]
LEGACY_ENV_FILE = "pipeline_0123456789abcdef0123456789abcdef01234567"
LEGACY_DOCKER_FILE = "lab_segmenter_sha256abcdef"
LEGACY_PROCESS = {
    "task": "watershed segmentation",
    "parameters": {"threshold": 0.3, "mip": 1},
    "code_envfiles": [LEGACY_ENV_FILE, LEGACY_DOCKER_FILE],
}


def _pretty(obj):
    return json.dumps(obj, sort_keys=True, indent=2, separators=(",", ": "))


def make_volume(cloudpath: str):
    from cloudvolume import CloudVolume

    info = CloudVolume.create_new_info(1, "image", "uint8", "raw", [4, 4, 40], [0, 0, 0], [64, 64, 16])
    vol = CloudVolume(cloudpath, info=info)
    vol.commit_info()
    vol.commit_provenance()
    return vol


def make_legacy_volume(cloudpath: str):
    """A volume exactly as provenance-toolbox 0.1.5 left it."""
    from cloudfiles import CloudFiles

    vol = make_volume(cloudpath)
    vol.provenance.description = " \n ".join(";".join(n) for n in LEGACY_NOTES)
    vol.provenance.processing.append(dict(LEGACY_PROCESS))
    vol.commit_provenance()
    cf = CloudFiles(cloudpath)
    cf.put(LEGACY_ENV_FILE, _pretty({
        "name": "https://github.com/lab/pipeline.git",
        "CodeEnv type": "PythonGithub",
        "commit hash": "0123456789abcdef0123456789abcdef01234567",
        "diff": "",
        "packages": [["numpy", "1.22.0"], ["cloud-volume", "8.5.0"]],
    }), cache_control="no-cache", content_type="application/json")
    cf.put(LEGACY_DOCKER_FILE, _pretty({
        "CodeEnv type": "Docker", "image name": "lab/segmenter", "tag": "v3", "image ID": "sha256:abcdef",
    }), cache_control="no-cache", content_type="application/json")
    return vol


IGNEOUS_ENTRY = {
    "method": {"task": "DownsampleTask", "mip": 0, "num_mips": 2},
    "by": "alice@lab.org",
    "date": "2022-08-01 10:00 UTC",
}


def add_foreign_entries(cloudpath: str):
    """Sources, owners, an igneous entry and a hand-written one."""
    from cloudvolume import CloudVolume

    vol = CloudVolume(cloudpath)
    vol.provenance.sources = ["gs://lab/pinky/image"]
    vol.provenance.owners = ["alice@lab.org"]
    vol.provenance.processing.append(dict(IGNEOUS_ENTRY))
    vol.provenance.processing.append({"note": "hand-fixed slab 3", "by": "bob"})
    vol.provenance["lab_field"] = {"kept": True}
    vol.commit_provenance()
    return vol


def assert_same(view_now: dict, synced: dict) -> None:
    """The view equals what ``ptb sync`` writes; if not, say where (a unified diff of their JSON)."""
    if json.loads(json.dumps(view_now)) != json.loads(json.dumps(synced)):
        import difflib

        import pytest

        lines = [json.dumps(v, indent=1, sort_keys=True).splitlines() for v in (view_now, synced)]
        diff = "\n".join(difflib.unified_diff(*lines, "view", "ptb sync", lineterm="", n=2))
        pytest.fail(f"the view differs from what `ptb sync` writes:\n{diff[:6000]}")
