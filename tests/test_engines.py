"""Every documented call is recorded under the engines pipelines run on (issue 10).

Real engines in real OS processes: multiprocessing and concurrent.futures pools
(fork, spawn, forkserver), a Dask ``LocalCluster`` of worker processes,
joblib's loky workers, Ray where it is installed, and python-task-queue, both
on one machine (``LocalTaskQueue``) and as a file queue (``fq://``) served by
``poll()`` workers, one of which is SIGKILLed mid-task. The engines run the
recipes of ``examples/scale`` (docs/engines.rst shows them), as
scripts whose functions live in ``__main__``, the case where cloudpickle sends
a function by value. Each engine runs once per module (``engine``); the tests
read what it left. The view tests are at the end, kept apart: they assert the
contract of the synchronous view publish, not the journal.
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

import ptb

REPO = Path(__file__).resolve().parents[1]
SCALE = REPO / "examples" / "scale"
SLICES = 8                      # the recipes document one run per z slice, z in range(8)
FOREGROUND = 18                 # voxels > 0 in each slice of the test volume
COUNT = "count foreground voxels in a slice"
CHECK = "check that a slice is not empty"


# ------------------------------------------------------------------ running engines
def make_volume(path: Path) -> str:
    """A real 16x16x8 image volume on file:// with FOREGROUND voxels set in every slice."""
    import numpy as np
    from cloudvolume import CloudVolume

    data = np.zeros((16, 16, SLICES), dtype=np.uint8)
    data[2:5, 3:9, :] = 7
    cloudpath = f"file://{path}"
    CloudVolume.from_numpy(data, vol_path=cloudpath, resolution=(4, 4, 40), layer_type="image", progress=False)
    return cloudpath


def engine_env(scratch: Path) -> Dict[str, str]:
    """The environment of every process the tests start: our ptb, and all scratch space under ``scratch``.

    Nothing lands in ``~`` or ``/tmp``: the home directory, temporary files
    (multiprocessing, loky, Ray), Dask's config and worker directories,
    joblib's memmaps, CloudFiles' and CloudVolume's config directories and
    ptb's spool.
    """
    for name in ("home", "tmp", "dask", "cloud", "spool"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HOME": str(scratch / "home"),       # Ray keeps a token in ~/.ray
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "TMPDIR": str(scratch / "tmp"), "JOBLIB_TEMP_FOLDER": str(scratch / "tmp"),
            "RAY_TMPDIR": str(scratch / "tmp"),
            "DASK_CONFIG": str(scratch / "dask"), "DASK_TEMPORARY_DIRECTORY": str(scratch / "dask"),
            "CLOUD_FILES_DIR": str(scratch / "cloud"), "CLOUD_VOLUME_DIR": str(scratch / "cloud"),
            "PTB_SPOOL_DIR": str(scratch / "spool"), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def start(args: List[str], env: Dict[str, str], cwd: Path, **kwargs: Any) -> subprocess.Popen:
    """A Python process in a session of its own, so that it and everything it starts can be ended by its id."""
    return subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


def end_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal the process group ``proc`` leads (the engine's leftover workers too) and wait until it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()         # reap the leader: a zombie would still count as a member of the group
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(0.2)
        sig = signal.SIGKILL if time.monotonic() > deadline - 5 else sig
    raise AssertionError(f"processes of group {proc.pid} outlived SIGTERM and SIGKILL")


def finish(proc: subprocess.Popen, timeout: float = 120, stdin: Optional[str] = None) -> str:
    """Wait (bounded) for ``proc`` to exit 0, then end what it left running; returns its stdout."""
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        end_group(proc, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {timeout} s:\n{out}\n{err}") from None
    end_group(proc)
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{out}\n{err}"
    return out


class Ran:
    """What one engine run left: the volume, what it printed, and pids.

    ``callers`` handed the calls to the engine and must have documented none;
    ``workers``, when the test started them itself, must have documented all.
    """

    def __init__(self, cloudpath: str, callers: List[int], out: str = "", workers: Optional[List[int]] = None,
                 killed: Optional[int] = None) -> None:
        self.cloudpath, self.callers, self.out, self.workers, self.killed = cloudpath, callers, out, workers, killed


NOTEBOOK = """
import linecache, sys
path, cell = sys.argv.pop(1), sys.argv.pop(1)
source = open(path).read()
linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
exec(compile(source, cell, "exec"), sys.modules["__main__"].__dict__)
"""     # runs a script as IPython runs a cell: in __main__, which has no file, from a "file" only linecache knows


def run_recipe(base: Path, script: str, *args: str, notebook: bool = False) -> Ran:
    """Run ``examples/scale/<script>`` on a fresh volume, as a script or (``notebook``) as a notebook cell."""
    cloudpath = make_volume(base / "volume")
    env = engine_env(base)
    if notebook:    # no worker can import __main__ again, nor read the cell's source: the sender must send both
        cell = str(base / "ipykernel" / "cell-1.py")
        proc = start(["-c", NOTEBOOK, str(SCALE / script), cell, cloudpath, *args], env, base)
    else:
        proc = start([str(SCALE / script), cloudpath, *args], env, base)
    return Ran(cloudpath, [proc.pid], finish(proc))


KILL_TASKS = '''
import os
import time

from taskqueue import queueable

import ptb


@queueable
@ptb.provenance("dst", "square a number")
def square(dst, i):
    return i * i


@ptb.provenance("dst", "cube a number")
@queueable
def cube(dst, i):
    return i ** 3


@queueable
@ptb.provenance("dst", "a task that hangs the first time it runs")
def hang_once(dst, marker):
    if os.path.exists(marker):
        return "second attempt"
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)      # inside the run: its start is journalled by now
    time.sleep(120)
'''
WORKER = ("import sys; sys.path.insert(0, sys.argv[2]); import {module}; from taskqueue import TaskQueue; "
          "TaskQueue(sys.argv[1]).poll(lease_seconds={lease})")
LEASE = 6       # seconds: the killed worker's task is leased again after this


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_killed_queue(base: Path) -> Ran:
    """Three ``poll()`` workers on an fq:// queue; the one running ``hang_once`` is SIGKILLed mid-task.

    The others finish every task, the hung one included once its lease runs
    out, and are then terminated (SIGTERM), as a cluster manager ends workers.
    """
    from taskqueue import TaskQueue

    cloudpath = make_volume(base / "volume")
    env = engine_env(base)
    module = "killtasks"
    (base / f"{module}.py").write_text(textwrap.dedent(KILL_TASKS))
    queue, marker = f"fq://{base / 'queue'}", str(base / "hung")
    enqueue = ("import sys; sys.path.insert(0, sys.argv[2]); from functools import partial; "
               f"import {module} as t; from taskqueue import TaskQueue; TaskQueue(sys.argv[1]).insert("
               "[partial(t.square, sys.argv[3], i) for i in range(6)] + "
               "[partial(t.cube, sys.argv[3], i) for i in range(6)] + "
               "[partial(t.hang_once, sys.argv[3], sys.argv[4])])")
    enqueuer = start(["-c", enqueue, queue, str(base), cloudpath, marker], env, base)
    finish(enqueuer, timeout=60)
    workers = [start(["-c", WORKER.format(module=module, lease=LEASE), queue, str(base)], env, base)
               for _ in range(3)]
    try:
        killed = int(wait_for(lambda: os.path.exists(marker) and Path(marker).read_text(), 60, "hang_once to start"))
        assert killed in [w.pid for w in workers]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: TaskQueue(queue).is_empty(), 90, "the queue to empty")
    finally:
        for worker in workers:
            end_group(worker)
        for worker in workers:
            worker.communicate(timeout=30)
    return Ran(cloudpath, [enqueuer.pid], workers=[w.pid for w in workers], killed=killed)


def run_queue_recipe(base: Path) -> Ran:
    """The task-queue recipe: ``enqueue.py``, then three ``worker.py`` processes on an fq:// queue."""
    cloudpath = make_volume(base / "volume")
    env = engine_env(base)
    queue = f"fq://{base / 'queue'}"
    enqueuer = start([str(SCALE / "enqueue.py"), queue, cloudpath], env, base)
    finish(enqueuer, timeout=60)
    workers = [start([str(SCALE / "worker.py"), queue], env, base) for _ in range(3)]
    for worker in workers:
        finish(worker, timeout=120)     # each stops once the queue is empty
    return Ran(cloudpath, [enqueuer.pid], workers=[w.pid for w in workers])


ENGINES: Dict[str, Callable[[Path], Ran]] = {
    "pool-fork": lambda base: run_recipe(base, "pool.py", "fork"),
    "pool-spawn": lambda base: run_recipe(base, "pool.py", "spawn"),
    "pool-forkserver": lambda base: run_recipe(base, "pool.py", "forkserver"),
    "dask-script": lambda base: run_recipe(base, "dask_cluster.py"),
    "dask-notebook": lambda base: run_recipe(base, "dask_cluster.py", notebook=True),
    "joblib-script": lambda base: run_recipe(base, "joblib_parallel.py"),
    "joblib-notebook": lambda base: run_recipe(base, "joblib_parallel.py", notebook=True),
    "ray": lambda base: run_recipe(base, "ray_tasks.py"),
    "taskqueue-local": lambda base: run_recipe(base, "local_queue.py"),
    "taskqueue-fq": run_queue_recipe,
    "taskqueue-killed": run_killed_queue,
}
NEEDS = {"dask": "distributed", "joblib": "joblib", "ray": "ray", "taskqueue": "taskqueue"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Ran]:
    """``engine(name)``: run that engine once for this module (skipped if it is not installed) and say what it left."""
    done: Dict[str, Ran] = {}

    def get(name: str) -> Ran:
        pytest.importorskip(NEEDS.get(name.split("-")[0], "multiprocessing"))
        if name not in done:
            done[name] = ENGINES[name](tmp_path_factory.mktemp(name.replace("-", "")))
        return done[name]

    return get


def runs_by_z(hist: ptb.History, description: str) -> Dict[int, List[Any]]:
    by_z: Dict[int, List[Any]] = collections.defaultdict(list)
    for run in hist.runs:
        if run.description == description:
            by_z[hist.process(run.process).parameters["z"]].append(run)
    return dict(by_z)


def assert_every_call_recorded(ran: Ran, expected: Dict[str, range]) -> ptb.History:
    """Exactly one succeeded run per call, in worker processes (not the ones the test started), with its source."""
    hist = ptb.history(ran.cloudpath)
    assert sorted({r.description for r in hist.runs}) == sorted(expected)
    for description, zs in expected.items():
        by_z = runs_by_z(hist, description)
        assert sorted(by_z) == list(zs), description
        assert all(len(runs) == 1 and runs[0].status == "succeeded" for runs in by_z.values()), by_z
    assert len(hist.runs) == sum(map(len, expected.values()))
    pids = {r.pid for r in hist.runs}
    assert not pids & set(ran.callers)          # documented where they ran, in the engine's workers
    assert ran.workers is None or pids <= set(ran.workers)
    results = [n for n in hist.notes if n.note_type is ptb.NoteType.RESULT]
    assert sorted(n.run for n in results) == sorted(r.id for r in hist.runs)
    assert all(any("/PythonGithub-" in f for f in p.code_envfiles) for p in hist.processes)
    return hist


def sources(hist: ptb.History) -> List[str]:
    return [hist.envs[f]["source"] for p in hist.processes for f in p.code_envfiles if "/Source-" in f]


# ------------------------------------------------------------------ every call is recorded
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_and_concurrent_futures_pools_record_every_call(engine, method):
    ran = engine(f"pool-{method}")
    assert ran.out.split() == [str(4 * FOREGROUND)] * 2
    hist = assert_every_call_recorded(ran, {COUNT: range(SLICES)})
    assert len(sources(hist)) == SLICES and all("def count(dst: str, z: int)" in s for s in sources(hist))


@pytest.mark.parametrize("kind", ["script", "notebook"])
def test_dask_workers_record_every_call_of_a_function_defined_in_main(engine, kind):
    """cloudpickle sends a ``__main__`` function by value: the workers get it decorated, not bare."""
    ran = engine(f"dask-{kind}")
    assert ran.out.split() == [str(SLICES * FOREGROUND)]
    hist = assert_every_call_recorded(ran, {COUNT: range(SLICES)})
    assert len(sources(hist)) == SLICES     # sent with the function: a notebook's workers cannot read the cell
    assert all(s.startswith('@ptb.provenance("dst", "count foreground voxels') for s in sources(hist))


@pytest.mark.parametrize("kind", ["script", "notebook"])
def test_joblib_loky_workers_record_every_call_of_a_function_defined_in_main(engine, kind):
    """joblib pickles with its own copy of cloudpickle (joblib.externals.cloudpickle)."""
    ran = engine(f"joblib-{kind}")
    assert ran.out.split() == [str(SLICES * FOREGROUND)]
    hist = assert_every_call_recorded(ran, {COUNT: range(SLICES)})
    assert len(sources(hist)) == SLICES


def test_ray_tasks_record_every_call(engine):
    """Optional: skipped unless Ray is installed (it pickles with ray.cloudpickle)."""
    ran = engine("ray")
    assert ran.out.split() == [str(SLICES * FOREGROUND)]
    assert_every_call_recorded(ran, {COUNT: range(SLICES)})


def test_local_task_queue_records_both_decorator_orders(engine):
    assert_every_call_recorded(engine("taskqueue-local"), {COUNT: range(4), CHECK: range(4, 8)})


def test_file_queue_workers_record_every_task_in_both_decorator_orders(engine):
    """The recipe: enqueue.py puts 8 tasks on fq://, three worker.py processes poll() until it is empty."""
    ran = engine("taskqueue-fq")
    hist = assert_every_call_recorded(ran, {COUNT: range(4), CHECK: range(4, 8)})
    assert len(sources(hist)) == SLICES


def test_a_worker_killed_mid_task_leaves_a_run_that_never_finished(engine):
    ran = engine("taskqueue-killed")
    hist = ptb.history(ran.cloudpath)
    never = [r for r in hist.runs if r.status != "succeeded"]
    assert len(never) == 1, [(r.description, r.status) for r in never]
    (killed,) = never
    assert (killed.description, killed.status, killed.pid, killed.ended) == (
        "a task that hangs the first time it runs", "running", ran.killed, None)
    assert {n.note_type for n in hist.notes_of(killed.id)} == {ptb.NoteType.MOTIVATION}
    assert hist.process(killed.process) is not None
    again = [r for r in hist.runs if r.description == killed.description and r is not killed]
    assert [r.status for r in again] == ["succeeded"] and again[0].pid != ran.killed   # leased again after LEASE s
    for description in ("square a number", "cube a number"):    # every other task landed, in both orders
        done = {hist.process(r.process).parameters["i"] for r in hist.runs if r.description == description}
        assert done == set(range(6)), description
    assert {r.pid for r in hist.runs} <= set(ran.workers)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = subprocess.run([sys.executable, "-m", "ptb", "log", ran.cloudpath], capture_output=True, text=True,
                         timeout=60, env=env)
    assert log.returncode == 0, log.stderr
    (line,) = [line for line in log.stdout.splitlines()
               if line.split()[1:2] == ["run"] and killed.id.startswith(line.split()[2])]
    assert "never finished (worker died?)" in line and f"(pid {ran.killed})" in line
    failures = subprocess.run([sys.executable, "-m", "ptb", "log", "--failures", "--json", ran.cloudpath],
                              capture_output=True, text=True, timeout=60, env=env)
    assert failures.returncode == 0, failures.stderr
    assert never[0].id in failures.stdout


# ------------------------------------------------------------------ the documented recipes are these files
def test_every_recipe_of_the_engines_chapter_is_an_example_file_these_tests_run():
    """docs/engines.rst shows each file of examples/scale as it is (literalinclude), and a test runs each."""
    chapter = (REPO / "docs" / "engines.rst").read_text()
    shown = re.findall(r"^\.\. literalinclude:: \.\./(examples/scale/\S+\.py)$", chapter, re.MULTILINE)
    assert sorted(shown) == sorted(f"examples/scale/{p.name}" for p in SCALE.glob("*.py"))
    here = Path(__file__).read_text()
    run = {p.name for p in SCALE.glob("*.py") if f'"{p.name}"' in here}
    run |= {p.name for p in SCALE.glob("*.py") for r in run
            if re.search(rf"^import {p.stem}\b", (SCALE / r).read_text(), re.MULTILINE)}     # tasks.py
    assert run == {p.name for p in SCALE.glob("*.py")}, "a recipe is run by no test"


# ------------------------------------------------------------------ the view (needs the synchronous view publish)
# These assert the view contract of DESIGN §4 ("current on return", "converges") against the view that
# publishes at each run end: one `processing` entry per process whose entry["ptb"]["runs"] is a digest
# {"count", "succeeded", "failed", "interrupted", "running": [ids], "first", "last", "last_failure"}.
# Nothing here calls `ptb sync` or flushes: every writer was another process, now exited or terminated.
VIEW_ENGINES = list(ENGINES)


def _mentions(value: Any, run: Any) -> bool:
    """``first``/``last`` name a run by its id or its start time, as a value or inside an object."""
    text = json.dumps(value, default=str)
    return run.id in text or run.started.isoformat() in text


@pytest.mark.parametrize("name", VIEW_ENGINES)
def test_the_view_holds_every_process_and_run_without_sync(engine, name):
    from cloudvolume import CloudVolume

    ran = engine(name)
    hist = ptb.history(ran.cloudpath)
    prov = CloudVolume(ran.cloudpath, progress=False).provenance      # fresh: read from the volume now
    prov.validate()
    entries = [e for e in prov.processing if isinstance(e, dict) and isinstance(e.get("ptb"), dict)]
    assert len(entries) == len(hist.processes)
    for proc in hist.processes:
        (entry,) = [e for e in entries if (e["task"], e["parameters"]) == (proc.description, proc.parameters)]
        runs = sorted(hist.runs_of(proc.key), key=lambda r: (r.started, r.id))
        digest = entry["ptb"]["runs"]
        by_status = collections.Counter(r.status for r in runs)
        # every call that returned is there; a run killed mid-task is published by the next writer
        # that heals (its start is over 10 s old) or by `ptb sync`, since only a run's end writes the view
        never_finished = {r.id for r in runs if r.status == "running"}
        assert set(digest["running"]) <= never_finished, (proc.description, digest)
        assert digest["count"] == len(runs) - len(never_finished) + len(digest["running"]), (proc.description, digest)
        for status in ("succeeded", "failed", "interrupted"):
            assert digest[status] == by_status[status], (proc.description, status, digest)
        shown = [r for r in runs if r.finished or r.id in digest["running"]]
        assert _mentions(digest["first"], shown[0]) and _mentions(digest["last"], shown[-1])
        assert "last_failure" in digest and not digest["last_failure"]     # none of these runs failed
    from ptb.store import publish
    from ptb.store.volume import Volume

    publish.heal(Volume.resolve(ran.cloudpath), 30.0, min_age=0.0)       # what a later writer's healing adds
    assert Volume.resolve(ran.cloudpath).read_provenance() == ptb.sync(ran.cloudpath)
