"""A fleet on a rate-limited store: no call waits on the shared ``provenance`` view, and the view converges.

The stores are the suite's real SeaweedFS (S3) and fake-gcs-server (GCS) behind
``tests/ratelimit.py``, which allows one write a second per object name, as
GCS does (429; 503 SlowDown for S3). Workers are real OS processes. Timings
live in ``benchmarks/fleet.py``; these tests count requests and compare views.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cloudvolume import CloudVolume
from fleetworker import run_fleet
from ratelimit import RateLimitProxy
from servers import reset_remote_pools
from volumes import assert_same, make_volume

import ptb
from ptb.records import Note, NoteType, RunRecord, new_id, utcnow
from ptb.store import cas, journal, lease, publish, updater, view, writer
from ptb.store.volume import Volume

HERE = Path(__file__).parent
SLOW_S3 = "labs3slow"


@pytest.fixture
def limited(request, cloud_home, tmp_path):
    """(cloudpath through the rate-limited proxy, the same volume reached directly, the proxy, worker env)."""
    kind = request.param
    name = f"fleet-{os.getpid()}-{time.monotonic_ns()}"
    server = request.getfixturevalue("s3_server" if kind == "s3" else "gcs_server")
    env = {**os.environ, "PTB_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONPATH": str(HERE.parent)}
    if kind == "s3":
        import cloudfiles.paths

        proxy = RateLimitProxy(server.endpoint, "s3").start()
        cloudfiles.paths.add_alias(SLOW_S3, f"s3://{proxy.endpoint}/")
        aliases = cloud_home / "aliases.json"
        known = json.loads(aliases.read_text()) if aliases.exists() else {}
        aliases.write_text(json.dumps({**known, SLOW_S3: {"host": f"s3://{proxy.endpoint}/"}}))
        slow, direct = f"{SLOW_S3}://{server.bucket}/{name}", f"{server.root}{name}"
    else:       # one emulator per process: this one's clients go through the proxy too
        proxy = RateLimitProxy(server.endpoint, "gcs").start()
        env["STORAGE_EMULATOR_HOST"] = proxy.endpoint
        slow = direct = f"{server.root}{name}"
        _through(proxy.endpoint)
    make_volume(direct)
    proxy.reset()                  # the volume's creation is not the test's
    try:
        yield slow, direct, proxy, env
    finally:
        updater.flush()
        if kind == "s3":
            cloudfiles.paths.remove_alias(SLOW_S3)
            aliases.write_text(json.dumps(known))
        else:
            _through(server.endpoint)
        proxy.stop()


def _through(endpoint: str) -> None:
    """Point this process's GCS clients (CloudFiles' and ptb's own) at ``endpoint``."""
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    reset_remote_pools()
    cas._forget_clients()


BOTH = [pytest.param("s3", marks=pytest.mark.s3), pytest.param("gs", marks=pytest.mark.gcs)]


def ptb_runs(prov: dict) -> int:
    return sum(e["ptb"]["runs"]["count"] for e in prov["processing"] if isinstance(e.get("ptb"), dict))


@pytest.mark.parametrize("limited", BOTH, indirect=True)
def test_sixteen_workers_on_a_rate_limited_store_lose_nothing_and_leave_the_view_exact(limited):
    slow, direct, proxy, env = limited
    workers, tasks = 16, 6
    fleet = run_fleet(slow, workers, tasks, env, sleep="0.05,0.15", timeout=300)
    assert fleet["problems"] == [] and fleet["failed"] == 0          # no task failed, no ViewWarning at exit
    calls = workers * tasks
    assert len(ptb.history(direct).runs) == calls
    # the last worker out settled the view: what any CloudVolume reader sees now, with no `ptb sync`
    prov = CloudVolume(direct).provenance
    assert ptb_runs(prov) == calls
    assert_same(Volume.resolve(slow).read_provenance(), ptb.sync(slow))
    # a call never waited on the crowd: after a first look, calls leave the view to one publisher at a time
    attempts = proxy.writes_to("/provenance") + proxy.by_object_count("limited", "/provenance")
    assert attempts < calls / 2, dict(proxy.counts)
    # hot objects at start-up: every worker wrote the same code-environment files; none failed for it
    assert proxy.writes_to("/ptb/view.lease") >= 1


@pytest.mark.parametrize("limited", BOTH, indirect=True)
def test_a_call_makes_one_view_write_and_a_rate_limit_leaves_its_run_to_the_publisher(limited):
    slow, direct, proxy, _ = limited
    vol = Volume.resolve(slow)
    first = journal.append(vol, [Note(utcnow(), NoteType.GENERIC, "first")])
    assert updater.update(vol, first)                      # a lone writer: current on return
    proxy.reset()
    proxy.refuse_next_write("/provenance")                 # as if another writer's landed a moment ago
    second = journal.append(vol, [Note(utcnow(), NoteType.GENERIC, "second")])
    assert not updater.update(vol, second)                 # refused by the store: left to the publisher
    assert proxy.by_object_count("limited", "/provenance") == 1 and proxy.writes_to("/provenance") == 0
    assert updater.flush(timeout=8.0)
    notes = [n["content"] for n in Volume.resolve(direct).read_provenance()["ptb"]["notes"]]
    assert notes == ["first", "second"]


@pytest.mark.parametrize("limited", BOTH, indirect=True)
def test_a_code_environment_file_that_exists_is_success_even_when_the_store_says_slow_down(limited):
    slow, direct, proxy, _ = limited
    vol = Volume.resolve(slow)
    key = "ptb/env/PythonGithub-hot-0123456789abcdef.json"
    assert writer.put_env_if_absent(vol, key, {"CodeEnv type": "PythonGithub", "name": "hot"})
    assert not writer.put_env_if_absent(vol, key, {"CodeEnv type": "PythonGithub", "name": "hot"})  # 429/503
    assert proxy.by_object_count("limited", key) == 1
    assert Volume.resolve(direct).get_json(key)["name"] == "hot"


def test_the_lease_is_taken_when_free_or_expired_refused_while_held_and_given_back(cloudpath):
    vol = Volume.resolve(cloudpath)
    mine = lease.take(vol)
    assert mine.ours and mine.until > time.time()
    assert lease.take(vol).ours                            # ours: renewed
    other = {"holder": "elsewhere:1:abcd", "until": time.time() + lease.TTL_SECONDS}
    vol.put_json(lease.LEASE, other)
    seen = lease.take(vol)
    assert not seen.ours and seen.until == pytest.approx(other["until"], abs=0.01)
    lease.give_back(vol)                                   # not ours: left alone
    assert vol.get_json(lease.LEASE) == other
    vol.put_json(lease.LEASE, {**other, "until": time.time() - 1})     # its holder died: expired
    assert lease.take(vol).ours
    vol.put_json(lease.LEASE, {**other, "until": time.time() + 3600})  # a clock an hour fast: as expired
    assert lease.take(vol).ours
    lease.give_back(vol)
    assert vol.get_json(lease.LEASE)["until"] == 0


def test_records_far_below_the_newest_ids_are_still_healed(tmp_path):
    """The old view counted anything below its 2,048 newest ids as settled; a watermark never does."""
    cloudpath = f"file://{tmp_path / 'v'}"
    make_volume(cloudpath)
    vol = Volume.resolve(cloudpath)
    ptb.logprocess(vol, ptb.Process("mesh", {"mip": 2}))
    key = ptb.Process("mesh", {"mip": 2}).key
    unpublished = []
    for _ in range(300):                                   # runs whose writers died before publishing
        run_id = new_id()
        unpublished += journal.append(vol, [RunRecord(run_id, "mesh", key, "succeeded", utcnow(), ended=utcnow(),
                                                      duration=1.0)])
    newer = [Note(utcnow(), NoteType.GENERIC, f"n{i}") for i in range(view.INCLUDED_KEPT + 100)]
    assert updater.update(vol, journal.append(vol, newer))     # the view's list of ids is full, and newer
    assert publish.heal(vol, 30.0, min_age=0.0) == len(unpublished)
    prov = vol.read_provenance()
    assert ptb_runs(prov) == 300
    assert_same(prov, ptb.sync(cloudpath))


QUEUE_TASKS = '''
import random
import time

from taskqueue import queueable

import ptb


@queueable
@ptb.provenance("dst", "threshold a chunk", per_run=["offset"])
def threshold(dst, offset, level=128):
    time.sleep(random.uniform(0.02, 0.08))
'''

DRIVER = '''
import random, sys, time
from cloudvolume import CloudVolume
cloudpath, stop = sys.argv[1], sys.argv[2]
i = 0
import os
while not os.path.exists(stop):
    vol = CloudVolume(cloudpath)                       # igneous' own provenance writes: read, append, commit
    vol.provenance.processing.append({"method": {"task": "DownsampleTask", "i": i}, "by": "igneous",
                                      "date": time.strftime("%Y-%m-%d %H:%M %Z")})
    vol.commit_provenance()
    i += 1
    time.sleep(random.uniform(0.05, 0.2))
print(i)
'''


def test_chunk_workers_on_a_file_queue_racing_an_igneous_style_writer_leave_every_entry_in_the_view(tmp_path):
    from taskqueue import TaskQueue

    cloudpath = f"file://{tmp_path / 'volume'}"
    make_volume(cloudpath)
    (tmp_path / "queuetasks.py").write_text(textwrap.dedent(QUEUE_TASKS))
    env = {**os.environ, "PTB_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONPATH": f"{HERE.parent}:{tmp_path}"}
    queue = f"fq://{tmp_path / 'queue'}"
    sys.path.insert(0, str(tmp_path))
    try:
        from functools import partial

        import queuetasks

        TaskQueue(queue).insert([partial(queuetasks.threshold, cloudpath, [i * 64, 0, 0]) for i in range(64)])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("queuetasks", None)
    stop, driver_done = tmp_path / "stop", tmp_path / "driver-done"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cloudpath, str(stop)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the workers run every task, then idle until the driver is done, as igneous' workers outlive its driver
    poll = ("import os, sys, queuetasks; from taskqueue import TaskQueue; q = TaskQueue(sys.argv[1]); "
            "q.poll(lease_seconds=60, max_backoff_window=1, stop_fn=lambda: os.path.exists(sys.argv[2]))")
    workers = [subprocess.Popen([sys.executable, "-c", poll, queue, str(driver_done)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 240
        while not TaskQueue(queue).is_empty() and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.touch()
        out, err = driver.communicate(timeout=60)
        assert driver.returncode == 0, err[-3000:]
    finally:
        driver_done.touch()
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
        assert "ViewWarning" not in err, err[-3000:]
    committed = int(out)
    # igneous' read-modify-write drops what ptb merged meanwhile; the workers' exit put it back, exactly
    prov = CloudVolume(cloudpath).provenance
    assert sorted(e["method"]["i"] for e in prov["processing"] if e.get("by") == "igneous") == list(range(committed))
    assert ptb_runs(prov) == 64 == len(ptb.history(cloudpath).runs)
    assert_same(Volume.resolve(cloudpath).read_provenance(), ptb.sync(cloudpath))


def test_a_writer_that_lost_to_a_crowd_once_is_current_on_return_again_when_the_crowd_is_gone(tmp_path, monkeypatch):
    from ptb.store import publisher

    cloudpath = f"file://{tmp_path / 'v'}"
    make_volume(cloudpath)
    vol = Volume.resolve(cloudpath)
    vol.put_json(lease.LEASE, {"holder": "elsewhere:1:abcd", "until": time.time() + lease.TTL_SECONDS})
    publisher.publisher().submit(vol, [], crowded=True)        # a call's write just lost to that crowd
    assert not updater.update(vol, journal.append(vol, [Note(utcnow(), NoteType.GENERIC, "in a crowd")]))
    monkeypatch.setattr(publisher, "CROWD_SECONDS", 0.0)
    assert not updater.update(vol, journal.append(vol, [Note(utcnow(), NoteType.GENERIC, "still")]))
    vol.put_json(lease.LEASE, {"holder": "elsewhere:1:abcd", "until": 0})     # it gave the lease back
    assert updater.update(vol, journal.append(vol, [Note(utcnow(), NoteType.GENERIC, "alone again")]))
    assert updater.flush()
    assert [n["content"] for n in vol.read_provenance()["ptb"]["notes"]] == ["in a crowd", "still", "alone again"]
