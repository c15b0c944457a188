"""file:// volumes on awkward filesystems: a full disk, no hard links.

A full disk is made real with ``RLIMIT_FSIZE`` in a child process (writes past
the limit fail with EFBIG, as they would with ENOSPC): whatever ptb was
writing, no temporary file is left in the volume or the spool.
"""
from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from volumes import make_volume

import ptb
from ptb.store.volume import Volume

LIMIT = 6000    # bytes: more than the volume's info, less than what the child writes


def _full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # EFBIG instead of a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _temp_files(*roots: Path) -> list:
    return [os.path.join(d, f) for root in roots for d, _, files in os.walk(root) for f in files if ".tmp-" in f]


def test_a_full_disk_leaves_no_temporary_file(tmp_path: Path):
    vol, spool = tmp_path / "vol", tmp_path / "spool"
    make_volume(f"file://{vol}")
    for i in range(3):
        ptb.addgeneric(f"file://{vol}", f"note {i} " + "x" * 2500)   # a history whose view outgrows the limit
    script = textwrap.dedent(f"""
        import ptb
        from ptb.store.volume import Volume
        v = Volume.resolve("file://{vol}")
        for put in (v.put_json, v.put_json_if_absent):
            try:
                put("big.json", "x" * {4 * LIMIT})
            except OSError as exc:
                print("refused:", exc.errno)
        try:
            ptb.addgeneric("file://{vol}", "y" * {2 * LIMIT})
        except Exception as exc:
            print("note:", type(exc).__name__)
    """)
    env = {**os.environ, "PTB_SPOOL_DIR": str(spool)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          preexec_fn=_full_disk, env=env)
    assert done.stdout.count(f"refused: {errno.EFBIG}") == 2, done.stdout + done.stderr
    synced = subprocess.run([sys.executable, "-m", "ptb.cli", "sync", f"file://{vol}"], capture_output=True,
                            text=True, timeout=120, preexec_fn=_full_disk, env=env)
    assert synced.returncode != 0, synced.stdout     # the rebuilt view does not fit
    assert _temp_files(vol, spool) == []
    assert not (vol / "big.json").exists()


def test_create_only_writes_work_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    vol = Volume.resolve(f"file://{tmp_path / 'vol'}")

    def no_links(src, dst, *args, **kwargs):     # what NFS/FUSE mounts without hard links answer
        raise PermissionError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(os, "link", no_links)
    assert vol.put_json_if_absent("ptb/env/a.json", {"a": 1}) is True
    assert vol.put_json_if_absent("ptb/env/a.json", {"a": 2}) is False
    assert vol.get_json("ptb/env/a.json") == {"a": 1}
    assert _temp_files(tmp_path) == []

    @ptb.provenance(vol.cloudpath, "a step on a mount without hard links")
    def step(x: int) -> int:
        return x + 1

    with pytest.warns(ptb.RecordingWarning, match="no info file"):      # a bare directory, not a volume
        assert step(1) == 2
    assert [r.status for r in ptb.history(vol.cloudpath).runs] == ["succeeded"]
