"""Running or never finished? One rule from the record alone (``ptb.read.liveness``), used by every reader.

On the host that ran it, a run whose last record says ``running`` is running
while its process lives (a real worker process here, then SIGKILLed); on
another host, while it started less than ``PTB_ALIVE_HOURS`` ago. ``ptb log``
(with ``--failures``), ``ptb show``, the summaries and the HTML page agree.
"""
from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptb.cli import main
from ptb.read import fmt, liveness, timeline
from ptb.read.history import History, history
from ptb.read.runsummary import summarise
from ptb.records import RunRecord, new_id, utcnow

REPO = Path(__file__).resolve().parents[1]
HERE = liveness.this_host()


def record(host, pid, started, status="running"):
    return RunRecord(new_id(), "segment", "k", status, started, user="alice", host=host, pid=pid)


def test_the_rule():
    now = utcnow()
    assert liveness.run_liveness(record(HERE, os.getpid(), now)) == "running"         # this very process
    assert liveness.run_liveness(record(HERE, os.getpid(), now, "failed")) == "finished"
    later = now + datetime.timedelta(days=1)       # any time after this process started
    assert liveness.run_liveness(record(HERE, os.getppid(), later)) == "running"
    old = now - datetime.timedelta(days=400)
    assert liveness.run_liveness(record(HERE, os.getpid(), old)) == "died"     # the pid was reused since
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert liveness.run_liveness(record(HERE, dead.pid, now)) == "died"
    assert liveness.run_liveness(record("another-host", 12, now - datetime.timedelta(hours=23))) == "running"
    assert liveness.run_liveness(record("another-host", 12, now - datetime.timedelta(hours=25))) == "died"
    assert liveness.run_liveness(record(None, None, now)) == "running"
    assert liveness.liveness("running", "another-host", 12, None) == "died"


def test_the_age_bound_is_configurable(monkeypatch):
    started = utcnow() - datetime.timedelta(hours=2)
    monkeypatch.setenv("PTB_ALIVE_HOURS", "1")
    assert liveness.run_liveness(record("another-host", 12, started)) == "died"
    monkeypatch.setenv("PTB_ALIVE_HOURS", "3")
    assert liveness.run_liveness(record("another-host", 12, started)) == "running"
    monkeypatch.setenv("PTB_ALIVE_HOURS", "not a number")
    assert liveness.run_liveness(record("another-host", 12, started)) == "running"   # the default, 24 h


WORKER = textwrap.dedent("""
    import sys, time
    from ptb.block import documented
    with documented(sys.argv[1], "segment slab 3", parameters={"slab": 3}):
        print("started", flush=True)
        time.sleep(600)
""")


def test_a_live_worker_is_running_and_a_killed_one_never_finished(tmp_path):
    import volumes

    path = f"file://{tmp_path / 'v'}"
    volumes.make_volume(path)
    env = {**os.environ, "PTB_SPOOL_DIR": str(tmp_path / "spool"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, path], stdout=subprocess.PIPE, text=True, env=env,
                              start_new_session=True)
    try:
        assert worker.stdout.readline().strip() == "started"
        (run,) = history(path).runs
        assert run.status == "running" and run.pid == worker.pid
        log = CliRunner().invoke(main, ["log", path], catch_exceptions=False).stdout
        assert f"running, {fmt.who(run)}: segment slab 3" in log and "1 running" in log
        assert fmt.NEVER_FINISHED not in log
        failures = CliRunner().invoke(main, ["log", path, "--failures"], catch_exceptions=False).stdout
        assert "segment slab 3" not in failures
        shown = CliRunner().invoke(main, ["show", path, run.id], catch_exceptions=False).stdout
        assert "  status:      running\n" in shown
        assert summarise(run.process, "segment", [run]).counts_text() == "1 running"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    log = CliRunner().invoke(main, ["log", path, "--failures"], catch_exceptions=False).stdout
    assert f"{fmt.NEVER_FINISHED}, " in log and "segment slab 3" in log and "1 never finished" in log
    summary = summarise(run.process, "segment", history(path).runs)
    assert summary.counts_text() == "1 never finished" and [r.id for r in summary.problems] == [run.id]


def test_the_summary_and_page_say_running_and_never_finished_apart(tmp_path):
    now = utcnow()
    runs = [record("another-host", 1, now - datetime.timedelta(minutes=5)),
            record("another-host", 2, now - datetime.timedelta(days=3)),
            record("another-host", 3, now - datetime.timedelta(minutes=9), "succeeded")]
    summary = summarise("k", "segment", runs)
    assert summary.counts_text() == "1 succeeded, 1 running, 1 never finished"
    assert summary.alive == 1 and [r.pid for r in summary.problems] == [2]
    assert summary.to_json()["by_status"] == {"succeeded": 1, "running": 2}           # what the records say
    h = History("file:///v", [], runs, [], [], {}, {})
    assert "(1 never finished, 1 running)" in timeline.summary_line(h)
    states = {row.pid: fmt.state_text(row.status, row.duration, row.live)
              for row in timeline.timeline(h) if row.kind == "run"}
    assert states == {1: "running", 2: fmt.NEVER_FINISHED, 3: "succeeded"}
    assert [row.pid for row in timeline.select(timeline.timeline(h), failures=True)] == [2]


@pytest.mark.parametrize("status", ["succeeded", "failed", "interrupted"])
def test_a_final_status_is_never_running(status):
    assert liveness.run_liveness(record(HERE, os.getpid(), utcnow(), status)) == "finished"
