"""Damaged storage: badly typed journal records, an unreadable segment, a ``provenance`` file that
is not UTF-8, a volume that cannot be written. One bad object never stops reading, nothing ptb
could not read is deleted, and ``ptb sync`` fails with one ``ptb: error:`` line.

The damage is real: objects written by hand under a real ``file://`` volume, a read-only bind
mount and a full tmpfs.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator

import pytest
from cloudfiles import CloudFiles
from volumes import make_volume

import ptb
from ptb.errors import CorruptProvenanceError
from ptb.store.journal import JOURNAL, SEGMENTS, RecordWarning
from ptb.store.updater import ViewWarning

try:
    from ptb import documented
except ImportError:     # until ptb/__init__.py exports it
    from ptb.block import documented


def ptb_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptb.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def _volume(tmp_path: Path, name: str = "volume") -> str:
    cloudpath = f"file://{tmp_path / name}"
    make_volume(cloudpath)
    return cloudpath


def _bad_run(rid: str, **changes) -> dict:
    run = {"kind": "run", "v": 1, "rid": rid, "id": f"run-{rid}", "task": "step", "process": "p",
           "status": "succeeded", "started": "2024-05-01T12:00:00+00:00", "ended": None, "duration": 1.0,
           "resources": {}, "error": None, "code_envfiles": [], "parameters": {}}
    run.update(changes)
    return run


BAD = {     # rid -> a journal object ptb cannot use
    "0000000000000001badresourc": _bad_run("0000000000000001badresourc", resources="ab"),
    "0000000000000002badstarted": _bad_run("0000000000000002badstarted", started=None),
    "0000000000000003badcontent": {"kind": "note", "v": 1, "rid": "0000000000000003badcontent",
                                   "id": "0000000000000003badcontent", "timestamp": "2024-05-01T12:00:00+00:00",
                                   "type": "GENERIC", "content": 5, "run": None},
    "0000000000000004badprocess": {"kind": "process", "v": 1, "rid": "0000000000000004badprocess",
                                   "id": "0000000000000004badprocess", "task": "t", "parameters": "nope",
                                   "code_envfiles": []},
}
FUTURE = "0000000000000005newformat1"


def _write_bad_records(cloudpath: str) -> None:
    cf = CloudFiles(cloudpath)
    for rid, obj in BAD.items():
        cf.put_json(f"{JOURNAL}{rid}.json", obj)
    cf.put_json(f"{JOURNAL}{FUTURE}.json", {"kind": "note", "v": 99, "rid": FUTURE, "id": FUTURE,
                                            "content": {"rich": "text"}, "type": "GENERIC"})


def test_badly_typed_records_are_skipped_with_a_warning_naming_them(tmp_path):
    cloudpath = _volume(tmp_path)
    notes = [ptb.addgeneric(cloudpath, f"note {i}") for i in range(10)]
    with documented(cloudpath, "a good step") as run:
        pass
    _write_bad_records(cloudpath)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = ptb.history(cloudpath)
    assert [n.id for n in history.notes] == [n.id for n in notes] + [n.id for n in history.notes_of(run.id)]
    assert [r.id for r in history.runs] == [run.id]
    said = " ".join(str(w.message) for w in caught if issubclass(w.category, RecordWarning))
    for rid in BAD:
        assert rid in said
    assert FUTURE in said and "newer ptb" in said and "upgrade" in said

    log = ptb_cli("log", cloudpath, cwd=tmp_path)
    assert log.returncode == 0 and "Traceback" not in log.stderr, log.stderr
    assert all(f"note {i}" in log.stdout for i in range(10))
    shown = ptb_cli("show", cloudpath, run.id, cwd=tmp_path)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr

    synced = ptb_cli("sync", cloudpath, cwd=tmp_path)
    assert synced.returncode == 0 and "Traceback" not in synced.stderr, synced.stderr
    left = set(CloudFiles(cloudpath).list(prefix=JOURNAL))
    assert left == {f"{JOURNAL}{rid}.json" for rid in [*BAD, FUTURE]}, "what ptb cannot parse stays in the journal"
    segments = b"".join(CloudFiles(cloudpath).get(k) for k in CloudFiles(cloudpath).list(prefix=SEGMENTS))
    assert not any(rid.encode() in segments for rid in [*BAD, FUTURE])
    again = ptb_cli("log", cloudpath, cwd=tmp_path)      # the crash does not outlive the sync
    assert again.returncode == 0 and all(f"note {i}" in again.stdout for i in range(10)), again.stderr


def test_an_unreadable_segment_is_never_deleted(tmp_path):
    cloudpath = _volume(tmp_path)
    cf = CloudFiles(cloudpath)
    for i in range(9):
        ptb.addgeneric(cloudpath, f"note {i}")
        ptb.sync(cloudpath)
    segments = sorted(cf.list(prefix=SEGMENTS))
    assert len(segments) >= 2
    damaged = segments[-1]
    truncated = cf.get(damaged)[:40]
    cf.put(damaged, truncated, compress=None)
    ptb.addgeneric(cloudpath, "after the damage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):     # enough syncs to merge the segments more than once
            ptb.addgeneric(cloudpath, "one more")
            ptb.sync(cloudpath)
    assert cf.get(damaged) == truncated, "the damaged segment must stay as it was"
    assert any(damaged in str(w.message) for w in caught), [str(w.message) for w in caught]
    with pytest.warns(UserWarning, match="not a readable segment"):     # said on every read, never deleted
        history = ptb.history(cloudpath)
    assert "after the damage" in [n.content for n in history.notes]
    assert len([n for n in history.notes if n.content.startswith("note ")]) >= 8


NOT_UTF8 = b'{"description": "caf\xe9 \xff", "sources": [], "owners": [], "processing": []}'


def test_a_provenance_file_that_is_not_utf8_is_corrupt_and_never_rewritten(tmp_path):
    cloudpath = _volume(tmp_path)
    cf = CloudFiles(cloudpath)
    ptb.addgeneric(cloudpath, "before")
    cf.put("provenance", NOT_UTF8, compress=None)
    with pytest.raises(CorruptProvenanceError, match="not UTF-8"), documented(cloudpath, "step"):
        pass
    with pytest.warns(ViewWarning):
        ptb.addgeneric(cloudpath, "while corrupt")
        ptb.store.updater.flush()
    with pytest.raises(CorruptProvenanceError):
        ptb.sync(cloudpath)
    synced = ptb_cli("sync", cloudpath, cwd=tmp_path)
    assert synced.returncode == 1 and "ptb: error:" in synced.stderr and "Traceback" not in synced.stderr
    assert cf.get("provenance") == NOT_UTF8


def test_a_corrupt_provenance_file_of_the_size_ptb_last_wrote_is_still_caught(tmp_path):
    """The entry check parses the file again only when it changed: a same-size hand edit is a change too."""
    cloudpath = _volume(tmp_path)
    cf = CloudFiles(cloudpath)
    ptb.addgeneric(cloudpath, "written by ptb, caf\u00e9")
    with documented(cloudpath, "a first step"):
        pass
    good = cf.get("provenance")
    bad = good.replace("\u00e9".encode(), b"\xe9\xff")
    assert len(bad) == len(good) and bad != good
    cf.put("provenance", bad, compress=None)
    body = []
    with pytest.raises(CorruptProvenanceError, match="not UTF-8"):
        with documented(cloudpath, "a second step"):
            body.append("ran")
    assert body == [] and cf.get("provenance") == bad


@contextlib.contextmanager
def _mounted(tmp_path: Path, *options: str) -> Iterator[Path]:
    target = tmp_path / "mounted"
    target.mkdir()
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def _assert_one_error_line(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ptb: error:")]
    assert len(errors) == 1, result.stderr


def test_sync_on_a_read_only_volume_is_one_error_line(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    with _mounted(tmp_path, "--bind", str(source)) as target:
        cloudpath = f"file://{target}"
        make_volume(cloudpath)
        ptb.addgeneric(cloudpath, "a note to pack")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True)
        _assert_one_error_line(ptb_cli("sync", cloudpath, cwd=tmp_path))


def test_sync_on_a_full_disk_is_one_error_line(tmp_path):
    with _mounted(tmp_path, "-t", "tmpfs", "-o", "size=1m", "tmpfs") as target:
        cloudpath = f"file://{target / 'volume'}"
        make_volume(cloudpath)
        for i in range(5):
            ptb.addgeneric(cloudpath, f"note {i}")
        ptb.store.updater.flush()
        with contextlib.suppress(OSError), open(target / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
        _assert_one_error_line(ptb_cli("sync", cloudpath, cwd=tmp_path))
