"""Faults: a writer killed mid-run, a server gone between entry and exit, a corrupt
``provenance`` file, a read-only volume, a record far over the size bounds.

The policy under test (DESIGN.md section 4): before the user's code runs, a volume that
cannot be used is a clear ptb error and the code does not run; after it ran, a storage
failure never replaces its result or exception: the records are spooled with a warning and
``ptb flush`` uploads them later. An unparseable ``provenance`` file is never overwritten.
Servers are real (SeaweedFS, fake-gcs-server), killed processes are real OS processes, and
the read-only volumes are refused by the storage itself (an S3 key pair that may only read;
a read-only bind mount), not by anything in ptb.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Iterator

import pytest
from cloudfiles import CloudFiles
from cloudvolume import CloudVolume
from volumes import make_volume

import ptb
from ptb.errors import CorruptProvenanceError, InvalidInputError, ProvenanceError, VolumeUnavailableError
from ptb.store.journal import JOURNAL, MAX_RECORD_BYTES
from ptb.store.spool import SpoolWarning, pending
from ptb.store.updater import ViewWarning

try:
    from ptb import documented, provenance
except ImportError:     # until ptb/__init__.py exports them
    from ptb.block import documented
    from ptb.decorate import provenance

WORKERS = Path(__file__).with_name("workers.py")
CORRUPT = b'{"processing": [{"task": "half-written by a tool that crashed'


def ptb_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptb.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def spooled(spool_dir: Path) -> list[Path]:
    return [p for p in spool_dir.rglob("*") if p.is_file() and p.name != "volume.json"] if spool_dir.exists() else []


def volume_on(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "file":
        return f"file://{tmp_path / 'volume'}"
    server = request.getfixturevalue("s3_server" if kind == "s3" else "gcs_server")
    return server.root + f"vol-{uuid.uuid4().hex}"


def settle_views() -> None:
    """Write pending (debounced) view updates now, so no background write races the test."""
    ptb.store.updater.flush()


# ---------------------------------------------------------------------------------------- SIGKILL
@pytest.mark.parametrize("kind", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_writer_killed_mid_run_shows_as_started_and_never_finished(kind, request, tmp_path):
    cloudpath = volume_on(kind, request, tmp_path)
    make_volume(cloudpath)
    worker = subprocess.Popen([sys.executable, str(WORKERS), "hang", cloudpath], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = worker.stdout.readline().strip()
        assert line == "inside", worker.stderr.read() if worker.poll() is not None else line
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL

    history = ptb.history(cloudpath)
    (run,) = history.runs
    assert run.status == "running" and run.ended is None and run.duration is None
    assert run.pid == worker.pid and run.description == "a step that hangs"
    assert [(n.note_type, n.content) for n in history.notes_of(run.id)] == [(ptb.NoteType.MOTIVATION, "to be killed")]
    assert [p.key for p in history.processes] == [run.process]
    CloudVolume(cloudpath).provenance.validate()        # whatever the worker left in the view is valid

    log = ptb_cli("log", cloudpath, cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    assert "a step that hangs" in log.stdout and "never finished" in log.stdout
    failures = ptb_cli("log", "--failures", cloudpath, cwd=tmp_path)
    assert failures.returncode == 0 and "never finished" in failures.stdout and "a step that hangs" in failures.stdout

    synced = ptb.sync(cloudpath)
    (entry,) = [e for e in synced["processing"] if "ptb" in e]
    assert entry["ptb"]["runs"]["running"] == [run.id] and entry["ptb"]["runs"]["count"] == 1


# ---------------------------------------------------------------------- server gone mid-run
@pytest.mark.parametrize("kind", [pytest.param("s3", marks=pytest.mark.s3), pytest.param("gs", marks=pytest.mark.gcs)])
def test_server_stopped_between_entry_and_exit_spools_and_flush_loses_nothing(kind, request, tmp_path, spool_dir,
                                                                               fast_retries):
    server = request.getfixturevalue("s3_server" if kind == "s3" else "gcs_server")
    cloudpath = volume_on(kind, request, tmp_path)
    make_volume(cloudpath)
    ran = []
    try:
        with pytest.warns(SpoolWarning) as caught:
            with documented(cloudpath, "step during an outage", parameters={"mip": 2},
                            motivation="the server will go away") as run:
                settle_views()
                server.stop()
                run.note("noted while the server was down")
                run.result("done despite the outage")
                ran.append(42)
    finally:
        with warnings.catch_warnings():       # pending view updates may fail while it is down: that is fine
            warnings.simplefilter("ignore")
            settle_views()
        if not server.running:
            server.start(server.rundir)
    assert ran == [42] and run.status == "succeeded"
    assert any(str(spool_dir) in str(w.message) and "ptb flush" in str(w.message) for w in caught)
    assert spooled(spool_dir), "the note and the run's end must be kept locally"
    before = ptb.history(cloudpath)
    assert [r.status for r in before.runs] == ["running"]         # only the entry reached the server

    kept = sum(count for _, count in pending())     # records: the run's end and its result share one object
    flushed = ptb_cli("flush", "--json", cwd=tmp_path)
    assert flushed.returncode == 0, flushed.stderr
    assert json.loads(flushed.stdout) == {"uploaded": kept, "remaining": 0, "spool": str(spool_dir)}
    assert not spooled(spool_dir)

    history = ptb.history(cloudpath)
    (final,) = history.runs
    assert final.id == run.id and final.status == "succeeded" and final.ended is not None
    assert [(n.note_type.name, n.content) for n in history.notes_of(run.id)] == [
        ("MOTIVATION", "the server will go away"),
        ("GENERIC", "noted while the server was down"),
        ("RESULT", "done despite the outage"),
    ]
    view = CloudVolume(cloudpath).provenance
    view.validate()
    (entry,) = [e for e in view["processing"] if "ptb" in e]
    runs = entry["ptb"]["runs"]
    assert (runs["count"], runs["succeeded"], runs["running"], runs["last"]["id"]) == (1, 1, [], run.id)
    assert {n["content"] for n in view["ptb"]["notes"]} == {n.content for n in history.notes}


# ------------------------------------------------------------------- corrupt provenance file
def test_a_corrupt_provenance_file_is_a_clear_error_and_never_overwritten(cloudpath, make_volume, tmp_path):
    make_volume(cloudpath)
    cf = CloudFiles(cloudpath)
    cf.put("provenance", CORRUPT, compress=None)
    body = []

    with pytest.raises(CorruptProvenanceError, match="provenance is not a JSON object") as err:
        with documented(cloudpath, "step on a corrupt volume"):
            body.append("ran")
    assert cloudpath.split("://")[1] in str(err.value) and "ptb sync" in str(err.value)

    @provenance(cloudpath, "decorated step")
    def step(x: int) -> int:
        body.append("ran")
        return x

    with pytest.raises(CorruptProvenanceError):
        step(1)
    assert body == [], "no user code runs on a volume whose provenance cannot be read"

    with pytest.warns(ViewWarning, match="ptb sync"):
        note = ptb.addgeneric(cloudpath, "noted while the view is corrupt")   # the journal takes it
        settle_views()
    with pytest.raises(CorruptProvenanceError):
        ptb.sync(cloudpath)
    assert cf.get("provenance") == CORRUPT, "the corrupt file must never be overwritten"
    assert not [k for k in cf.list() if os.path.basename(k).startswith(".provenance")], "no temp files left"

    with pytest.warns(UserWarning, match="not a JSON object"):
        history = ptb.history(cloudpath)
    assert history.problems and [n.id for n in history.notes] == [note.id]
    with pytest.warns(UserWarning, match="not a JSON object"):
        assert ptb.parsenotes(cloudpath)[0].content == "noted while the view is corrupt"

    if not cloudpath.startswith("mem://"):        # the command line sees the same, in its own process
        log = ptb_cli("log", cloudpath, cwd=tmp_path)
        assert "noted while the view is corrupt" in log.stdout, log.stderr
        assert "not a JSON object" in log.stderr
        sync = ptb_cli("sync", cloudpath, cwd=tmp_path)
        assert sync.returncode == 1 and "ptb: error:" in sync.stderr and "not a JSON object" in sync.stderr
        assert "Traceback" not in sync.stderr
    assert cf.get("provenance") == CORRUPT

    cf.delete("provenance") if not cloudpath.startswith("gs://") else cf.put("provenance", b"{}", compress=None)
    rebuilt = ptb.sync(cloudpath)                 # the repair the error message asks for
    assert [n["content"] for n in rebuilt["ptb"]["notes"]] == ["noted while the view is corrupt"]
    CloudVolume(cloudpath).provenance.validate()


# ------------------------------------------------------------------------- read-only volume
@pytest.mark.s3
def test_a_read_only_s3_volume_fails_before_the_run_and_spools_notes(s3_server, s3_readonly, tmp_path, spool_dir,
                                                                     fast_retries):
    name = f"vol-{uuid.uuid4().hex}"
    writable, readonly = s3_server.root + name, s3_readonly + name
    make_volume(writable)
    assert CloudVolume(readonly).info == CloudVolume(writable).info     # it reads fine
    body = []

    with pytest.raises(VolumeUnavailableError, match=name) as err:
        with documented(readonly, "step on a read-only volume"):
            body.append("ran")
    assert isinstance(err.value, ProvenanceError) and "AccessDenied" in str(err.value)

    @provenance("dst", "decorated step")
    def step(dst: str) -> str:
        body.append("ran")
        return dst

    with pytest.raises(VolumeUnavailableError):
        step(readonly)
    assert body == []
    assert not list(CloudFiles(writable).list(JOURNAL)), "nothing was written"

    with pytest.warns(SpoolWarning, match="ptb flush"):
        note = ptb.addgeneric(readonly, "noted without write access")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ViewWarning)
        settle_views()
    assert note.content == "noted without write access" and len(spooled(spool_dir)) == 1
    still = ptb_cli("flush", "--json", cwd=tmp_path)
    assert still.returncode == 1 and json.loads(still.stdout)["remaining"] == 1     # kept for later, not lost
    assert len(spooled(spool_dir)) == 1
    assert ptb.history(writable).notes == []


@contextlib.contextmanager
def bind_mount(source: Path, target: Path) -> Iterator[None]:
    """``target`` shows ``source``; skips the test where mounting is not allowed."""
    target.mkdir()
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True)


def remount(target: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,bind,{mode}", str(target)], check=True, capture_output=True)


def test_a_read_only_file_volume_fails_before_the_run_and_spools_after_it(tmp_path, spool_dir):
    source, target = tmp_path / "data", tmp_path / "mounted"
    source.mkdir()
    cloudpath = f"file://{target}"
    with bind_mount(source, target):
        make_volume(cloudpath)
        remount(target, "ro")
        with pytest.raises(OSError):
            (target / "probe").write_text("x")            # the storage refuses, not ptb
        body = []
        with pytest.raises(VolumeUnavailableError, match="Read-only file system"):
            with documented(cloudpath, "step on a read-only volume"):
                body.append("ran")
        assert body == [] and not (source / "ptb" / "journal").exists()

        # Writable at entry, read-only by the exit: the result stands, the records are spooled.
        remount(target, "rw")
        with pytest.warns(SpoolWarning, match="ptb flush"):
            with documented(cloudpath, "step whose volume turns read-only", motivation="why") as run:
                remount(target, "ro")
                value = "the user's result"
            note = ptb.addgeneric(cloudpath, "noted after the run")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ViewWarning)
            settle_views()
        assert value == "the user's result" and run.status == "succeeded"
        assert [r.status for r in ptb.history(cloudpath).runs] == ["running"]
        assert ptb_cli("flush", cwd=tmp_path).returncode == 1             # still read-only: kept

        remount(target, "rw")
        flushed = ptb_cli("flush", cwd=tmp_path)
        assert flushed.returncode == 0, flushed.stderr
        assert not spooled(spool_dir)
        history = ptb.history(cloudpath)
        assert [(r.id, r.status) for r in history.runs] == [(run.id, "succeeded")]
        assert [n.note_type.name for n in history.notes_of(run.id)] == ["MOTIVATION", "RESULT"]
        assert note.id in {n.id for n in history.notes} and len(history.notes) == 3
        CloudVolume(cloudpath).provenance.validate()


# ------------------------------------------------------------------------------ size bounds
def test_a_note_far_over_the_size_bound_is_refused_before_anything_is_written(tmp_path, spool_dir):
    cloudpath = f"file://{tmp_path / 'volume'}"
    make_volume(cloudpath)
    before = CloudFiles(cloudpath).get("provenance")
    with pytest.raises(InvalidInputError, match=f"over the {MAX_RECORD_BYTES}-byte bound") as err:
        ptb.addgeneric(cloudpath, "x" * (8 * MAX_RECORD_BYTES))
    assert isinstance(err.value, ValueError)
    settle_views()
    assert ptb.history(cloudpath).notes == [] and not spooled(spool_dir)
    assert CloudFiles(cloudpath).get("provenance") == before


def test_huge_parameters_and_errors_are_bounded_and_the_run_recorded(tmp_path):
    cloudpath = f"file://{tmp_path / 'volume'}"
    make_volume(cloudpath)
    huge = "y" * (8 * MAX_RECORD_BYTES)
    with pytest.warns(UserWarning, match="too large"):
        with documented(cloudpath, "step with a huge parameter", parameters={"blob": huge, "mip": 1}):
            pass
    boom = ValueError(huge)
    with pytest.raises(ValueError) as raised:
        with documented(cloudpath, "step failing with a huge message"):
            raise boom
    assert raised.value is boom                                             # the user's exception, unchanged

    history = ptb.history(cloudpath)
    runs = {r.description: r for r in history.runs}
    assert runs["step with a huge parameter"].status == "succeeded"
    assert runs["step failing with a huge message"].status == "failed"
    error = runs["step failing with a huge message"].error
    assert error["type"].endswith("ValueError") and len(json.dumps(error)) < MAX_RECORD_BYTES // 8
    (process,) = [p for p in history.processes if p.description == "step with a huge parameter"]
    assert process.parameters["mip"] == 1 and "too large" in json.dumps(process.parameters["blob"])
    sizes = [p.stat().st_size for p in (tmp_path / "volume" / "ptb" / "journal").glob("*.json")]
    assert sizes and max(sizes) < MAX_RECORD_BYTES
    CloudVolume(cloudpath).provenance.validate()


def test_a_result_far_over_the_size_bound_still_ends_the_run(tmp_path):
    cloudpath = f"file://{tmp_path / 'volume'}"
    make_volume(cloudpath)
    huge = "z" * (8 * MAX_RECORD_BYTES)

    @provenance(cloudpath, "step with a huge result", result=lambda value: value)
    def step() -> str:
        return huge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert step() is huge                                               # the user's value, unchanged
    with pytest.warns(UserWarning, match="large outputs belong in the volume"):
        with documented(cloudpath, "block with a huge result note") as run:
            run.result(huge)
    history = ptb.history(cloudpath)
    assert sorted(r.status for r in history.runs) == ["succeeded", "succeeded"]
    for run in history.runs:
        (result,) = [n for n in history.notes_of(run.id) if n.note_type is ptb.NoteType.RESULT]
        assert result.content.startswith("zzz") and len(result.content.encode()) < MAX_RECORD_BYTES
