"""Many writers at scale: 16 OS processes x 50 records on one volume, on file://, S3 and GCS.

Every worker (``workers.py run``) is one documented run that makes 50 notes, while a watcher
process reads the ``provenance`` view as fast as it can. Nothing may be lost (``ptb.history``
holds every record), the view must be valid JSON at every read and, once the writers have
exited, exactly what ``ptb sync`` writes, and the shared ``provenance`` object is written once
per run (its end), not once per note. Those writes are counted from the outside, with nothing of ptb wrapped:
with inotify on the directory holding the file (the ``file://`` volume itself; the GCS
emulator's on-disk copy) and from the object versions of a versioned bucket on S3.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Optional

import pytest
from cloudvolume import CloudVolume
from volumes import assert_same, make_volume

import ptb
from ptb.store.view import NOTES_KEPT, SECTION, is_ptb_entry

WORKERS = Path(__file__).with_name("workers.py")
WRITERS = 16
RECORDS = 50
# A run writes the view at most once, when it ends (its notes go with it), and not at all when
# another writer already merged its records; a write that loses a compare-and-swap race is
# refused by the store and retried, so it makes no version. Healing (every 30 s, for records
# a writer did not publish) may add a few writes, never one per note.
VERSIONED_BUCKET = "ptb-scale"


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _volume(kind: str, request: pytest.FixtureRequest, tmp_path: Path):
    """(cloudpath, local directory to count view writes in, or a function that counts them)."""
    name = f"vol-{uuid.uuid4().hex}"
    if kind == "file":
        path = tmp_path / "volume"
        return f"file://{path}", path, None
    if kind == "gs":
        server = request.getfixturevalue("gcs_server")
        return server.root + name, Path(server.rundir) / "data" / server.bucket / name, None
    server = request.getfixturevalue("s3_server")
    client = server.client()
    server.make_bucket(VERSIONED_BUCKET)
    client.put_bucket_versioning(Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = f"{name}/provenance"

    def versions() -> int:
        count, kwargs = 0, {}
        while True:
            page = client.list_object_versions(Bucket=VERSIONED_BUCKET, Prefix=key, **kwargs)
            count += sum(1 for v in page.get("Versions", []) if v["Key"] == key)
            if not page.get("IsTruncated"):
                return count
            kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}

    return f"labs3://{VERSIONED_BUCKET}/{name}", None, versions


@pytest.mark.parametrize("kind", ["file", pytest.param("s3", marks=pytest.mark.s3),
                                  pytest.param("gs", marks=pytest.mark.gcs)])
def test_sixteen_writers_lose_nothing_and_write_the_view_per_run(kind, request, tmp_path, spool_dir,
                                                                  record_property):
    cloudpath, count_dir, versions = _volume(kind, request, tmp_path)
    count_versions: Optional[Callable[[], int]] = versions
    make_volume(cloudpath)            # info and CloudVolume's default provenance file
    before = count_versions() if count_versions else 0

    stop = tmp_path / "stop"
    watcher = start("watchview", cloudpath, str(stop), *([str(count_dir)] if count_dir else []), cwd=tmp_path)
    assert watcher.stdout.readline().strip() == "ready", watcher.stderr.read()
    try:
        writers = [start("run", cloudpath, str(RECORDS), f"w{w}", cwd=tmp_path) for w in range(WRITERS)]
        for writer in writers:
            out, err = writer.communicate(timeout=600)
            assert writer.returncode == 0, err
            done = json.loads(out.splitlines()[-1])
            assert done["status"] == "succeeded"
            assert "SpoolWarning" not in err and "ViewWarning" not in err, err
    finally:
        stop.touch()
        seen = json.loads(watcher.communicate(timeout=120)[0].splitlines()[-1])
    assert watcher.returncode == 0
    assert seen["reads"] > 10 and seen["invalid"] == 0, seen
    assert not spool_dir.exists() or not any(spool_dir.iterdir()), "nothing may be spooled"

    # Every record is in the history, which reads the journal.
    history = ptb.history(cloudpath)
    wanted = {f"w{w}-{i}" for w in range(WRITERS) for i in range(RECORDS)}
    assert wanted <= {n.content for n in history.notes}
    assert len(history.notes) == WRITERS * (RECORDS + 2)          # + a motivation and a result each
    assert len(history.runs) == WRITERS and {r.status for r in history.runs} == {"succeeded"}
    assert len(history.processes) == WRITERS
    for run in history.runs:
        assert len(history.notes_of(run.id)) == RECORDS + 2

    # The view is valid, written once per run, and already exactly what `ptb sync` writes.
    view = CloudVolume(cloudpath).provenance
    view.validate()
    if count_versions:
        writes = count_versions() - before
    else:
        assert not seen["overflow"]
        writes = seen["writes"]
    record_property("provenance_writes", writes)
    print(f"\n{kind}: {writes} writes of provenance for {WRITERS} runs "
          f"({len(history.notes)} notes, {len(history.runs)} runs, {len(history.processes)} processes)")
    # at least one; fewer than one per run when a writer finds its records already merged by another
    assert 1 <= writes <= 2 * WRITERS, writes
    stored = json.loads(ptb.store.volume.Volume.resolve(cloudpath).get_text("provenance"))

    synced = ptb.sync(cloudpath)
    assert_same(stored, synced)             # converged when the writers exited
    CloudVolume(cloudpath).provenance.validate()
    section = synced[SECTION]
    newest = sorted(history.notes, key=lambda n: (n.timestamp, n.id))[-NOTES_KEPT:]
    assert [n["id"] for n in section["notes"]] == [n.id for n in newest]
    ours = [e for e in synced["processing"] if is_ptb_entry(e)]
    assert {e[SECTION]["key"] for e in ours} == {p.key for p in history.processes}
    assert [(e[SECTION]["runs"]["count"], e[SECTION]["runs"]["succeeded"]) for e in ours] == [(1, 1)] * WRITERS
    assert ptb.history(cloudpath).notes == history.notes            # packing lost nothing either
