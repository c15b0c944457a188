"""``ptb watch`` and the rule for running vs never finished (issue 21).

The watcher follows a real volume's journal while records are written to it;
what each poll reads is counted (``Watcher.fetched`` and, below ptb,
``labvolumes.counting``), so "a poll reads only new objects" is a count.
"""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import labvolumes as lab
import pytest

import ptb
from ptb.lab.watch import Watcher
from ptb.read import liveness
from ptb.records import RunRecord
from ptb.store import updater

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.datetime.now(datetime.timezone.utc)


def runs(n, status="succeeded", start=0, **kw):
    return [lab.run(status, values={"chunk": start + i, "total": 20}, **kw) for i in range(n)]


# --------------------------------------------------------------------- liveness
def _run(host, pid, started):
    return RunRecord("r1", "step", "p1", "running", started, host=host, pid=pid)


def test_a_run_here_is_running_while_its_process_lives():
    assert liveness.run_liveness(_run(lab.HERE, os.getpid(), NOW)) == liveness.RUNNING
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert liveness.run_liveness(_run(lab.HERE, int(done.stdout), NOW)) == liveness.DIED
    # a pid now held by a process younger than the run is not its worker
    assert liveness.run_liveness(_run(lab.HERE, os.getpid(), datetime.datetime(1990, 1, 1,
                                                                               tzinfo=datetime.timezone.utc))) == "died"


def test_a_run_elsewhere_is_running_within_a_horizon_its_step_sets():
    young, old = NOW - datetime.timedelta(minutes=5), NOW - datetime.timedelta(hours=30)
    assert liveness.run_liveness(_run("node9", 7, young), NOW) == "running"
    assert liveness.run_liveness(_run("node9", 7, old), NOW) == "died"
    assert liveness.run_state_name(_run("node9", 7, old), NOW) == "never finished"
    # a step whose chunks take 2 s: a chunk started 15 minutes ago is not coming back
    fifteen = _run("node9", 7, NOW - datetime.timedelta(minutes=15))
    assert liveness.run_liveness(fifteen, NOW, typical=2.0) == "died"
    assert liveness.run_liveness(fifteen, NOW, typical=600.0) == "running"
    assert liveness.horizon(2.0) == datetime.timedelta(seconds=liveness.MIN_HORIZON_SECONDS)
    finished = RunRecord("r2", "step", "p1", "failed", old, NOW, host=lab.HERE, pid=os.getpid())
    assert liveness.run_state_name(finished, NOW) == "failed" and liveness.run_liveness(finished) == "finished"


def test_ptb_log_and_ptb_status_agree_on_a_dead_chunk_elsewhere(tmp_path):
    """The history works each run's liveness out with its step's durations, so every reader says the same."""
    from click.testing import CliRunner

    from ptb.cli import main

    root = f"file://{tmp_path / 'lab'}"
    vol = lab.make_volume(f"{root}/v")
    quarter = NOW - datetime.timedelta(minutes=15)
    lab.step(vol, "chunks", {"mip": 1}, [*runs(20), lab.run("running", values={"chunk": 99}, host="node9",
                                                              started=quarter)])
    (dead,) = [r for r in ptb.history(vol).runs if r.status == "running"]
    assert dead.live == "died"                        # 2 s chunks: 15 minutes on is not coming back
    log = CliRunner().invoke(main, ["log", vol]).stdout
    status = CliRunner().invoke(main, ["status", root, "--no-cache"]).stdout
    assert "1 never finished" in log and "1 never finished" in status and " running" not in status


# ---------------------------------------------------------------------- watcher
def test_each_poll_reads_only_the_new_journal_objects(cloudpath):
    lab.step(cloudpath, "downsample", {"mip": 1}, runs(6) + [lab.run("running", host=lab.HERE, pid=os.getpid(),
                                                                      values={"chunk": 6, "total": 20})])
    watcher = Watcher(cloudpath)
    assert watcher.poll() == [] and watcher.fetched == 13          # the history, once
    (key,) = watcher.watched                                        # the process with a run at work
    progress = watcher.processes[key]
    assert progress.counts(NOW)["done"] == 6 and progress.expected(None) == 20 and watcher.running() == 1
    lab.step(cloudpath, "downsample", {"mip": 1}, runs(2, start=7) + runs(1, "failed", start=9))
    with lab.counting() as seen:
        events = watcher.poll()
    assert watcher.fetched == 13 + 6 and len(seen.gets()) == 6, seen.gets()   # three runs, two objects each
    assert [(e.state, e.run.parameters["chunk"]) for e in events] == [("failed", 9)]
    assert progress.counts(NOW)["done"] == 8 and progress.counts(NOW)["failed"] == 1
    with lab.counting() as seen:
        assert watcher.poll() == []
    assert seen.gets() == []


def test_a_pack_between_polls_costs_no_read_and_a_packed_newcomer_is_read(tmp_path):
    path = lab.make_volume(f"file://{tmp_path / 'image'}")
    lab.step(path, "downsample", {"mip": 1}, runs(40))
    watcher = Watcher(path, process="")
    watcher.poll()
    updater.sync(path)                       # every record the watcher has, packed into a segment
    with lab.counting() as seen:
        watcher.poll()
    assert seen.gets() == [], seen.gets()
    lab.step(path, "downsample", {"mip": 1}, runs(2, "failed", start=40))
    updater.sync(path)                       # packed before the watcher saw them: read from the segment
    with lab.counting() as seen:
        events = watcher.poll()
    assert len([p for p in seen.gets() if "ptb/segments/" in p]) == 1
    assert sorted(e.run.parameters["chunk"] for e in events) == [40, 41]


def test_a_poll_costs_the_same_whatever_the_history(tmp_path):
    """A poll's reads are the new objects only: the same at 10 and at 400 earlier runs."""
    reads = []
    for earlier in (10, 400):
        path = lab.make_volume(f"file://{tmp_path / f'v{earlier}'}")
        lab.step(path, "downsample", {"mip": 1}, runs(earlier))
        updater.sync(path)
        lab.step(path, "downsample", {"mip": 1}, runs(5, start=earlier))   # what writers left in the journal
        watcher = Watcher(path, process="")
        watcher.poll()
        lab.step(path, "downsample", {"mip": 1}, runs(3, start=earlier + 5))
        with lab.counting() as seen:
            watcher.poll()
        reads.append(sorted(op for op, _ in seen.calls))
    assert reads[0] == reads[1] and reads[0].count("get") == 6


def test_a_re_run_of_a_step_counts_from_zero_and_a_retried_chunk_once(tmp_path):
    path = lab.make_volume(f"file://{tmp_path / 'image'}")
    days_ago = NOW - datetime.timedelta(days=3)
    step = lab.step(path, "downsample", {"mip": 1}, [lab.run(values={"chunk": i, "total": 4},
                                                             started=days_ago + datetime.timedelta(seconds=i))
                                                     for i in range(4)])
    lab.step(path, "downsample", {"mip": 1}, [
        lab.run("failed", values={"chunk": 0, "total": 4}), lab.run(values={"chunk": 0, "total": 4}),
        lab.run(values={"chunk": 1, "total": 4}),
        lab.run("running", host=lab.HERE, pid=os.getpid(), values={"chunk": 2, "total": 4})])
    watcher = Watcher(path)
    watcher.poll()
    assert watcher.watched == [step.key]
    counts = watcher.processes[step.key].counts(datetime.datetime.now(datetime.timezone.utc))
    assert (counts["done"], counts["succeeded"], counts["failed"], counts["running"]) == (2, 2, 1, 1)


def test_process_asked_for_must_exist_and_be_unique(tmp_path):
    path = lab.make_volume(f"file://{tmp_path / 'image'}")
    one = lab.step(path, "downsample", {"mip": 1}, runs(1))
    lab.step(path, "mesh", {"mip": 3}, runs(1))
    with pytest.raises(ptb.InvalidInputError, match="no process 'zzz'"):
        Watcher(path, process="zzz").poll()
    with pytest.raises(ptb.InvalidInputError, match="ambiguous"):
        Watcher(path, process="").poll()
    watcher = Watcher(path, process=one.key[:6])
    watcher.poll()
    assert watcher.watched == [one.key]


# ------------------------------------------------------------------------ ptb watch
def test_ptb_watch_follows_a_step_to_its_end(tmp_path):
    """A worker at work (this test process), runs arriving, one failing; watch stops once nothing runs."""
    path = lab.make_volume(f"file://{tmp_path / 'image'}")
    started = lab.step(path, "downsample", {"mip": 1}, runs(3) + [lab.run("running", host=lab.HERE, pid=os.getpid(),
                                                                              values={"chunk": 3, "total": 20})])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watch = subprocess.Popen([sys.executable, "-m", "ptb", "watch", path, "--interval", "0.2", "--idle", "1"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = watch.stderr.readline()                          # its first look: the run at work
        assert first.strip() == f"downsample ({started.key[:8]}): 3 of 20 done, 0 failed, 1 running"
        time.sleep(1.5)                                          # past --idle: it waits while a run is at work
        assert watch.poll() is None
        lab.step(path, "downsample", {"mip": 1}, runs(1, "failed", start=4, error="TimeoutError: read timed out"))
        run_id = ptb.history(path).runs[3].id
        from ptb.records import Note, NoteType, utcnow
        from ptb.store import journal
        from ptb.store.volume import Volume

        finished = ptb.history(path).runs[3]
        journal.append(Volume.resolve(path), [RunRecord(run_id, "downsample", started.key, "succeeded",
                                                        finished.started, utcnow(), 2.0, host=lab.HERE,
                                                        pid=os.getpid(), parameters=finished.parameters),
                                              Note(utcnow(), NoteType.RESULT, "done", run=run_id)])
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 1, (out, err)                      # a failed run remains
    assert out.strip().startswith(f"downsample ({started.key[:8]}): 4 of 20 done, 1 failed, 0 running"), out
    err = first + err
    assert "failed" in err and "TimeoutError: read timed out" in err and "(chunk=4, total=20)" in err


def test_ptb_watch_with_nothing_running_waits_then_says_so(tmp_path):
    path = lab.make_volume(f"file://{tmp_path / 'image'}")
    lab.step(path, "downsample", {"mip": 1}, runs(2))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ptb", "watch", path, "--interval", "0.1", "--idle", "0.5"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "nothing is running" in done.stderr and done.stdout.strip() == f"nothing ran on {path} while watched"


def test_ptb_watch_of_a_path_without_a_volume_says_so(tmp_path):
    from click.testing import CliRunner

    from ptb.cli import main

    result = CliRunner().invoke(main, ["watch", str(tmp_path / "typo")])
    assert result.exit_code == 1 and "no volume at file://" in result.output
