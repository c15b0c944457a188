"""The provenance file as a view: current on return, never losing others' entries, small, exact."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from cloudvolume import CloudVolume
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from volumes import IGNEOUS_ENTRY, add_foreign_entries, assert_same, make_volume

import ptb
from ptb.records import Note, NoteType, RunRecord, new_id, utcnow
from ptb.store import cas, journal, publish, updater, view
from ptb.store.volume import PROVENANCE, Volume

WORKERS = Path(__file__).with_name("workers.py")


def worker(*args: str, timeout: float = 240) -> str:
    done = subprocess.run([sys.executable, str(WORKERS), *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def seen_from_another_process(cloudpath: str) -> dict:
    return json.loads(worker("view", cloudpath).strip().splitlines()[-1])


def ptb_entries(prov: dict) -> list:
    return [e for e in prov["processing"] if view.is_ptb_entry(e)]


def shared_location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A volume location that other OS processes can reach too (so not mem://)."""
    if kind == "file":
        return f"file://{tmp_path / 'v'}"
    server = request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[kind])
    return server.root + f"shared-{uuid.uuid4().hex}"


SHARED = ["file", pytest.param("s3", marks=pytest.mark.s3), pytest.param("gs", marks=pytest.mark.gcs)]


def view_bytes(cloudpath: str) -> bytes:
    return cas.versioned(Volume.resolve(cloudpath), PROVENANCE).read()[0]


def test_view_stays_valid_for_cloudvolume_and_keeps_foreign_content(cloudpath):
    make_volume(cloudpath)
    add_foreign_entries(cloudpath)
    ptb.addmotivation(cloudpath, "why")
    ptb.logprocess(cloudpath, ptb.Process("mesh", {"mip": 2}))
    prov = CloudVolume(cloudpath).provenance       # no flush: current when the calls returned
    prov.validate()
    assert prov["sources"] == ["gs://lab/pinky/image"] and prov["owners"] == ["alice@lab.org"]
    assert IGNEOUS_ENTRY in prov["processing"] and prov["lab_field"] == {"kept": True}
    assert [n["content"] for n in prov["ptb"]["notes"]] == ["why"]
    assert [e["task"] for e in ptb_entries(prov)] == ["mesh"]
    assert f"ptb log {Volume.resolve(cloudpath).cloudpath}" in prov["ptb"]["history"]


def test_a_cloudvolume_object_reflects_a_write_at_once(cloudpath):
    vol = make_volume(cloudpath)
    note = ptb.addresult(vol, "found 12 synapses")
    assert vol.provenance["ptb"]["notes"][-1]["id"] == note.id
    ptb.logprocess(vol, ptb.Process("mesh", {"mip": 2}))
    assert vol.provenance["processing"][-1]["task"] == "mesh"
    vol.provenance.validate()


@pytest.mark.parametrize("kind", SHARED)
def test_a_reader_in_another_process_sees_every_call_the_moment_it_returns(kind, request, tmp_path):
    cloudpath = shared_location(kind, request, tmp_path)
    make_volume(cloudpath)

    @ptb.provenance("dst", "segment", motivation="round 3")
    def segment(dst, threshold=0.3):
        if threshold > 1:
            raise ValueError("threshold above 1")
        return threshold

    segment(cloudpath)
    seen = seen_from_another_process(cloudpath)
    assert [r["succeeded"] for r in seen["processes"].values()] == [1]
    with pytest.raises(ValueError):
        segment(cloudpath, threshold=2)
    with ptb.documented(cloudpath, "manual fix", parameters={"slab": 3}):
        pass
    seen = seen_from_another_process(cloudpath)
    runs = {name.split(" {")[0] + (" failed" if r["failed"] else ""): r for name, r in seen["processes"].items()}
    assert set(runs) == {"segment", "segment failed", "manual fix"}
    assert runs["segment failed"]["last_failure"]["error"] == "ValueError: threshold above 1"
    assert all(r["count"] == 1 and r["running"] == [] for r in runs.values())
    assert seen["notes"] == 6      # a motivation and a result per run


def test_a_writer_whose_records_are_there_writes_nothing(cloudpath):
    vol = Volume.resolve(cloudpath)
    note = Note(utcnow(), NoteType.GENERIC, "once")
    entries = journal.append(vol, [note])
    assert updater.update(vol, entries)
    before = cas.versioned(vol, PROVENANCE).read()
    assert updater.update(vol, entries)
    assert cas.versioned(vol, PROVENANCE).read() == before       # same bytes, same version: no write


def test_a_stale_writer_drops_ptb_and_the_next_write_restores_it_exactly(cloudpath):
    make_volume(cloudpath)
    stale = CloudVolume(cloudpath)  # read before ptb writes, committed after: igneous does this
    for i in range(5):
        ptb.addgeneric(cloudpath, f"note {i}")
    stale.provenance.sources = ["gs://lab/raw"]
    stale.commit_provenance()
    assert "ptb" not in Volume.resolve(cloudpath).read_provenance()
    assert len(ptb.history(cloudpath).notes) == 5  # the journal never lags
    ptb.addgeneric(cloudpath, "note 5")
    prov = Volume.resolve(cloudpath).read_provenance()
    assert [n["content"] for n in prov["ptb"]["notes"]] == [f"note {i}" for i in range(6)]
    assert prov["sources"] == ["gs://lab/raw"]
    assert ptb.sync(cloudpath) == prov == Volume.resolve(cloudpath).read_provenance()
    assert ptb.sync(cloudpath) == prov  # idempotent


def _run(status, process="k", started=None):
    run_id = new_id()
    start = RunRecord(run_id, "mesh", process, "running", started or utcnow())
    if status == "running":
        return [start]
    error = {"type": "ValueError", "message": "bad", "traceback": "x" * 5000} if status == "failed" else None
    return [start, RunRecord(run_id, "mesh", process, status, start.started, ended=utcnow(), duration=1.0,
                             error=error)]


def test_the_view_holds_a_digest_of_runs_not_the_runs(cloudpath):
    vol = Volume.resolve(cloudpath)
    ptb.logprocess(vol, ptb.Process("mesh", {"mip": 2}))
    key = ptb.Process("mesh", {"mip": 2}).key
    records = [r for status in ["succeeded"] * 3 + ["failed", "interrupted", "running"] for r in _run(status, key)]
    entries = journal.append(vol, records)
    updater.update(vol, entries[:4])
    updater.update(vol, entries)        # overlapping batches: every run still counted once
    updater.update(vol, entries[:2])    # a late start never hides the end
    (entry,) = ptb_entries(vol.read_provenance())
    runs = entry["ptb"]["runs"]
    assert {k: runs[k] for k in ("count", "succeeded", "failed", "interrupted")} == {
        "count": 6, "succeeded": 3, "failed": 1, "interrupted": 1}
    assert runs["running"] == [records[-1].id]
    assert runs["last_failure"]["error"] == "ValueError: bad"
    assert runs["first"]["id"] == records[0].id and runs["last"]["id"] == records[-1].id
    assert "traceback" not in json.dumps(vol.read_provenance())
    assert ptb.sync(vol) == vol.read_provenance()


def test_the_view_stays_small_however_many_notes(tmp_path, monkeypatch):
    monkeypatch.setattr(view, "LATE_SECONDS", 0.0)     # thousands of ids a second: trimmed at once, not 10 s later
    cloudpath = f"file://{tmp_path / 'v'}"
    make_volume(cloudpath)
    vol = Volume.resolve(cloudpath)
    sizes = []
    for batch in range(3):
        notes = [Note(utcnow(), NoteType.GENERIC, f"note {batch}-{i} " + "x" * 100) for i in range(view.INCLUDED_KEPT)]
        assert updater.update(vol, journal.append(vol, notes))
        assert updater.flush()                  # a sweep keeps the view's list of merged ids to its bound
        sizes.append(len(view_bytes(cloudpath)))
    ptb.addgeneric(cloudpath, "the last one")
    assert sizes[1] == sizes[2] and len(view_bytes(cloudpath)) < 128 * 1024
    prov = vol.read_provenance()
    assert len(prov["ptb"]["notes"]) == view.NOTES_KEPT and prov["ptb"]["notes"][-1]["content"] == "the last one"
    assert len(ptb.history(cloudpath).notes) == 3 * view.INCLUDED_KEPT + 1      # the journal keeps every one


RUNS = st.lists(st.sampled_from(["succeeded", "failed", "interrupted", "running"]), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(statuses=RUNS, data=st.data())
def test_any_order_and_any_batching_of_merges_gives_the_rebuilt_view(statuses, data):
    """Writers, healers and packers merge overlapping batches in any order: each run counts once."""
    entries = []
    for status in statuses:
        for record in _run(status, process="k"):
            entries.append((new_id(), record))
    entries.append((new_id(), Note(utcnow(), NoteType.GENERIC, "n")))
    batches = data.draw(st.lists(st.lists(st.sampled_from(entries), max_size=len(entries)), max_size=6))
    prov: dict = {}
    for batch in [*batches, entries]:            # the last one: everything, as a healer would bring it
        view.merge_into(prov, batch, "file:///v")
    assert prov == view.rebuilt({}, entries, "file:///v")


def test_a_corrupt_provenance_file_is_never_overwritten(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.cf.put("provenance", b"{not json")
    with pytest.warns(updater.ViewWarning, match="not a JSON object"):
        ptb.addgeneric(vol, "kept in the journal")
    assert vol.get_text("provenance") == "{not json"
    with pytest.warns(UserWarning, match="not a JSON object"):
        found = ptb.history(vol)
    assert [n.content for n in found.notes] == ["kept in the journal"] and found.problems
    with pytest.raises(ptb.CorruptProvenanceError):
        ptb.sync(vol)
    assert vol.get_text("provenance") == "{not json"


def test_a_file_that_is_not_utf8_is_corrupt_and_never_overwritten(tmp_path):
    cloudpath = f"file://{tmp_path / 'v'}"
    make_volume(cloudpath)
    raw = b'{"description": "caf\xe9 \xff", "sources": [], "owners": [], "processing": []}'
    (tmp_path / "v" / "provenance").write_bytes(raw)
    with pytest.raises(ptb.CorruptProvenanceError, match="not UTF-8"):
        with ptb.documented(cloudpath, "a block"):
            pass
    with pytest.raises(ptb.CorruptProvenanceError):
        ptb.sync(cloudpath)
    assert (tmp_path / "v" / "provenance").read_bytes() == raw


def test_a_torn_file_is_read_again_and_the_call_goes_on(cloudpath):
    vol = make_volume(cloudpath)
    good = Volume.resolve(cloudpath).get_bytes(PROVENANCE)
    Volume.resolve(cloudpath).cf.put(PROVENANCE, good[: len(good) // 2])   # caught mid-write by a non-atomic put
    mend = threading.Timer(0.3, lambda: Volume.resolve(cloudpath).cf.put(PROVENANCE, good))
    mend.start()
    try:
        with ptb.documented(vol, "a block", parameters={"x": 1}):
            pass
    finally:
        mend.join()
    assert [e["ptb"]["runs"]["succeeded"] for e in ptb_entries(Volume.resolve(cloudpath).read_provenance())] == [1]


def test_records_no_writer_published_are_healed(cloudpath, monkeypatch):
    vol = Volume.resolve(cloudpath)
    ptb.addgeneric(vol, "a first note")
    lost = journal.append(vol, [Note(utcnow(), NoteType.GENERIC, f"lost {i}") for i in range(3)]
                          + _run("succeeded"))                  # journalled; their writer died before publishing
    assert publish.heal(vol, 5.0) == 0                           # too young: their writer may still publish them
    monkeypatch.setattr(publish, "HEAL_MIN_AGE", 0.0)
    assert publish.heal(vol, 5.0) == len(lost)
    assert publish.heal(vol, 5.0) == 0
    prov = vol.read_provenance()
    assert [n["content"] for n in prov["ptb"]["notes"]] == ["a first note", "lost 0", "lost 1", "lost 2"]
    assert ptb.sync(vol) == prov


def _pool_task(cloudpath: str, i: int) -> int:
    @ptb.provenance("dst", "tile")
    def tile(dst: str, chunk: int) -> int:
        return chunk
    return tile(cloudpath, i % 3)


@pytest.mark.parametrize("kind", SHARED)
def test_pool_workers_terminated_after_their_last_task_leave_the_view_exact(kind, request, tmp_path):
    cloudpath = shared_location(kind, request, tmp_path)
    make_volume(cloudpath)
    pool = multiprocessing.get_context("fork").Pool(4)
    try:
        assert sorted(pool.starmap(_pool_task, [(cloudpath, i) for i in range(24)])) == sorted(
            i % 3 for i in range(24))
    finally:
        pool.terminate()                # SIGTERM: no atexit, no finalizers, no background thread left
        pool.join()
    seen = seen_from_another_process(cloudpath)
    assert sorted(r["succeeded"] for r in seen["processes"].values()) == [8, 8, 8]
    prov = Volume.resolve(cloudpath).read_provenance()
    assert_same(prov, ptb.sync(cloudpath))       # converged: what `ptb sync` writes, without it


@pytest.mark.parametrize("kind", SHARED)
def test_a_cloudvolume_writer_racing_ptb_writers_loses_nothing_to_ptb(kind, request, tmp_path, monkeypatch):
    cloudpath = shared_location(kind, request, tmp_path)
    make_volume(cloudpath)
    env = dict(os.environ, PTB_SPOOL_DIR=str(tmp_path / "spool"))
    procs = [subprocess.Popen([sys.executable, str(WORKERS), "cvwriter", cloudpath, "50", "igneous"], env=env,
                              stderr=subprocess.PIPE, text=True)]
    procs += [subprocess.Popen([sys.executable, str(WORKERS), "calls", cloudpath, "25", f"w{i}"], env=env,
                               stderr=subprocess.PIPE, text=True) for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        assert "CorruptProvenanceError" not in err
    prov = Volume.resolve(cloudpath).read_provenance()
    kept = [e["method"]["i"] for e in prov["processing"] if e.get("by") == "igneous"]
    assert sorted(kept) == list(range(50))           # ptb never wrote over a version it had not merged
    history = ptb.history(cloudpath)
    assert len(history.runs) == 100 and {r.status for r in history.runs} == {"succeeded", "failed"}
    # CloudVolume's own read-modify-write can drop what ptb merged meanwhile (it writes back the version
    # it read). The journal has it all, and healing (which writers do every 30 s) puts it back, exactly.
    monkeypatch.setattr(publish, "HEAL_MIN_AGE", 0.0)
    publish.heal(Volume.resolve(cloudpath), 30.0)
    prov = Volume.resolve(cloudpath).read_provenance()
    assert sorted(e["method"]["i"] for e in prov["processing"] if e.get("by") == "igneous") == list(range(50))
    assert sum(e["ptb"]["runs"]["count"] for e in ptb_entries(prov)) == 100
    assert_same(prov, ptb.sync(cloudpath))


def test_forked_multiprocessing_children_update_the_view_before_exiting(tmp_path):
    cloudpath = "file://" + str(tmp_path / "vol")
    make_volume(cloudpath)
    child = multiprocessing.get_context("fork").Process(target=ptb.addgeneric, args=(cloudpath, "from a child"))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    notes = Volume.resolve(cloudpath).read_provenance()["ptb"]["notes"]
    assert [n["content"] for n in notes] == ["from a child"]


def test_hand_written_processing_that_is_not_a_list_is_kept_whole(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.put_json("provenance", {"description": "", "sources": [], "owners": [], "processing": {"igneous": {"mip": 1}}})
    ptb.addgeneric(vol, "n")
    assert ptb.sync(vol)["processing"] == [{"igneous": {"mip": 1}}]


def test_sync_refuses_a_path_where_nothing_is_recorded(cloudpath):
    with pytest.raises(ptb.VolumeUnavailableError, match="nothing is recorded at .*is the path right"):
        ptb.sync(cloudpath)
    assert Volume.resolve(cloudpath).read_provenance() is None


def test_a_view_that_cannot_be_merged_never_holds_the_exit(tmp_path):
    """BatchProcessor's rules: ``flush() -> bool`` says False when it could not finish within its
    timeout, and the process exits within the bounded shutdown, with its records in the journal."""
    import fcntl
    import textwrap

    cloudpath = f"file://{tmp_path / 'v'}"
    make_volume(cloudpath)
    lock = tmp_path / "v" / "ptb" / "view.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    script = textwrap.dedent(f"""
        import time, ptb
        from ptb.store import updater
        ptb.addgeneric({cloudpath!r}, "while another writer holds the view")
        started = time.monotonic()
        print(updater.flush(timeout=1.0), round(time.monotonic() - started))
    """)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)          # another writer holds the view, and never lets go
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PTB_SPOOL_DIR=str(tmp_path / "spool")))
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    flushed, waited = done.stdout.split()
    assert flushed == "False" and int(waited) <= 2
    assert took < updater.WAIT_SECONDS + updater.SETTLE_SECONDS + 15, took
    assert [n.content for n in ptb.history(cloudpath).notes] == ["while another writer holds the view"]
