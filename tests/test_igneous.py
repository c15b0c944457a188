"""The field's own tools, for real (issue 20): igneous' values, its task classes and its command line.

igneous' task creators bind chunk coordinates as ``Vec`` (numpy arrays) and
``method`` as an ``IntEnum``; through a file queue (``fq://``) the same task
arrives as JSON lists and numbers. Either way it is one process. igneous'
``RegisteredTask`` classes are documented on ``execute()``, with their
constructor's arguments. ``ptb run`` documents ``igneous image downsample``
and the ``igneous execute`` workers. Every test that decorates one of
igneous' objects restores it (``monkeypatch``): nothing leaks into other tests.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ptb
from ptb.capture.params import prepare_parameters, to_jsonable
from ptb.read.fmt import parse_stamp
from ptb.read.history import history

igneous = pytest.importorskip("igneous")

import igneous.task_creation as tc  # noqa: E402
from cloudvolume import CloudVolume  # noqa: E402
from cloudvolume.lib import Bbox, Vec  # noqa: E402
from igneous.tasks import DownsampleTask, LuminanceLevelsTask  # noqa: E402
from igneous.types import DownsampleMethods  # noqa: E402
from taskqueue import LocalTaskQueue, TaskQueue  # noqa: E402
from taskqueue.queueablefns import REGISTRY  # noqa: E402
from taskqueue.registered_task import totask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOWNSAMPLE = "downsample mip 0 to 1"


def make_image(path: Path, shape=(128, 128, 64), chunk=(32, 32, 64)) -> str:
    """A real image volume; with 32x32x64 chunks igneous makes 64x64x64 downsampling tasks."""
    cloudpath = f"file://{path}"
    data = np.random.default_rng(20).integers(0, 255, shape, dtype=np.uint8)
    CloudVolume.from_numpy(data, vol_path=cloudpath, resolution=(4, 4, 40), chunk_size=chunk, layer_type="image",
                           progress=False)
    return cloudpath


def downsample_tasks(cloudpath: str) -> list:
    return list(tc.create_downsampling_tasks(cloudpath, mip=0, num_mips=1, memory_target=262144))


@pytest.fixture
def documented_downsample(monkeypatch):
    """igneous' DownsampleTask documented, as python-task-queue will run it; the registry restored after."""
    key = (DownsampleTask.__module__, DownsampleTask.__name__)
    monkeypatch.setitem(REGISTRY, key, REGISTRY[key])
    return ptb.provenance("layer_path", DOWNSAMPLE, per_run="shape offset")(DownsampleTask)


@pytest.fixture
def documented_levels(monkeypatch):
    """igneous' LuminanceLevelsTask class documented in place; its execute restored after."""
    monkeypatch.setattr(LuminanceLevelsTask, "execute", LuminanceLevelsTask.__dict__["execute"])
    return ptb.provenance("src_path", "luminance levels", per_run="offset")(LuminanceLevelsTask)


# ------------------------------------------------------------------ values
def test_igneous_values_are_stored_as_values(tmp_path, capsys):
    cloudpath = make_image(tmp_path / "img")
    (task, *_) = downsample_tasks(cloudpath)
    kwargs = task.keywords
    assert isinstance(kwargs["offset"], Vec) and kwargs["method"] is DownsampleMethods.AUTO
    stored = prepare_parameters(kwargs)
    assert stored["shape"] == [64, 64, 64] and stored["offset"] == [0, 0, 0]
    assert stored["method"] == 6 and type(stored["method"]) is int
    assert to_jsonable(Bbox((0, 0, 0), (64, 64, 32))) == {"minpt": [0, 0, 0], "maxpt": [64, 64, 32]}
    assert to_jsonable(Bbox((0.5, 0, 0), (1, 2, 3), dtype=np.float32)) == {"minpt": [0.5, 0.0, 0.0],
                                                                             "maxpt": [1.0, 2.0, 3.0]}
    assert to_jsonable(Vec(1.5, 2, 3)) == [1.5, 2.0, 3.0] and to_jsonable(np.int64(7)) == 7


def test_a_chunk_is_one_process_in_process_and_through_a_json_queue(tmp_path, documented_downsample, capsys):
    cloudpath = make_image(tmp_path / "img")
    local = LocalTaskQueue(parallel=1, progress=False)          # in-process: the task's own Vec and IntEnum
    local.insert(downsample_tasks(cloudpath))
    local.execute(progress=False)
    queue = TaskQueue(f"fq://{tmp_path / 'queue'}", progress=False)    # as JSON: lists and 6
    queue.insert(downsample_tasks(cloudpath))
    assert queue.poll(lease_seconds=60, stop_fn=lambda executed: executed >= 4) == 4

    h = history(cloudpath)
    (process,) = h.processes
    assert process.parameters["method"] == 6 and process.parameters["layer_path"] == cloudpath
    assert "shape" not in process.parameters and "offset" not in process.parameters
    runs = h.runs_of(process.key)
    assert len(runs) == 8 and {r.status for r in runs} == {"succeeded"}
    offsets = sorted(tuple(r.parameters["offset"]) for r in runs)
    assert offsets == sorted(2 * [(0, 0, 0), (64, 0, 0), (0, 64, 0), (64, 64, 0)])     # values, ready to re-run
    assert {tuple(r.parameters["shape"]) for r in runs} == {(64, 64, 64)}
    assert CloudVolume(cloudpath, mip=1).shape[:3] == (64, 64, 64)                     # the work was done


def test_a_driver_run_lists_its_child_runs(tmp_path, documented_downsample, capsys):
    from click.testing import CliRunner

    from ptb.cli import main

    cloudpath = make_image(tmp_path / "img")

    @ptb.provenance(cloudpath, "downsample driver")
    def driver():
        local = LocalTaskQueue(parallel=1, progress=False)
        local.insert(downsample_tasks(cloudpath))
        local.execute(progress=False)

    driver()
    h = history(cloudpath)
    (parent,) = [r for r in h.runs if r.description == "downsample driver"]
    assert sorted(r.parent for r in h.runs if r.description == DOWNSAMPLE) == [parent.id] * 4
    out = CliRunner().invoke(main, ["show", cloudpath, parent.id], catch_exceptions=False).stdout
    assert "child runs:  4" in out and out.count("succeeded in ") >= 4 and "offset=[64, 64, 0]" in out
    data = json.loads(CliRunner().invoke(main, ["show", cloudpath, parent.id, "--json"]).stdout)
    assert len(data["children"]) == 4


# ------------------------------------------------------------------ task classes
def test_a_registered_task_class_documents_execute_with_its_constructor_arguments(tmp_path, documented_levels,
                                                                                   capsys):
    cloudpath = make_image(tmp_path / "img", shape=(64, 64, 4), chunk=(64, 64, 4))
    tasks = list(tc.create_luminance_levels_tasks(cloudpath, coverage_factor=1.0))
    assert tasks and isinstance(tasks[0], LuminanceLevelsTask)
    assert not history(cloudpath).runs                    # building the objects records nothing

    tasks[0].execute()                                    # in-process
    totask(tasks[1].payload()).execute()                  # rebuilt from its JSON payload, as a queue does
    pickle.loads(pickle.dumps(tasks[2])).execute()        # pickled, as a process pool does
    queue = TaskQueue(f"fq://{tmp_path / 'queue'}", progress=False)
    queue.insert(tasks[3:4])
    assert queue.poll(lease_seconds=60, stop_fn=lambda executed: executed >= 1) == 1

    h = history(cloudpath)
    (process,) = [p for p in h.processes if p.description == "luminance levels"]
    assert process.parameters == {"src_path": cloudpath, "levels_path": None, "shape": [64, 64, 1],
                                  "coverage_factor": 1.0, "mip": 0}
    runs = h.runs_of(process.key)
    assert sorted(r.parameters["offset"] for r in runs) == [[0, 0, z] for z in range(4)]
    assert {r.status for r in runs} == {"succeeded"}
    envs = {h.envs[f]["CodeEnv type"]: h.envs[f] for f in runs[0].code_envfiles}
    assert "class LuminanceLevelsTask(RegisteredTask)" in envs["Source"]["source"]
    assert tasks[0].payload()["class"] == "LuminanceLevelsTask"            # still python-task-queue's task


# ------------------------------------------------------------------ the command line
def ptb_run(cwd: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptb", "run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_igneous_command_line_steps_are_documented(tmp_path):
    cloudpath = make_image(tmp_path / "img")
    queue = f"fq://{tmp_path / 'queue'}"
    env = {**os.environ, "TZ": "EST5EDT", "PTB_SPOOL_DIR": str(tmp_path / "spool"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = ptb_run(tmp_path, cloudpath, "plan the downsampling", "-m", "mip 1 for proofreading", "--",
                   "igneous", "image", "downsample", cloudpath, "--mip", "0", "--num-mips", "1", "--queue", queue,
                   env=env)
    assert done.returncode == 0, done.stderr
    workers = [subprocess.Popen([sys.executable, "-m", "ptb", "run", cloudpath, "downsample workers",
                                 "--per-run", f"worker={i}", "--", "igneous", "execute", "-x", queue],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
    assert CloudVolume(cloudpath, mip=1).shape[:3] == (64, 64, 64)

    h = history(cloudpath)
    plan = next(p for p in h.processes if p.description == "plan the downsampling")
    assert plan.parameters["command"][:3] == ["igneous", "image", "downsample"]
    (work,) = [p for p in h.processes if p.description == "downsample workers"]
    assert work.parameters == {"command": ["igneous", "execute", "-x", queue]}
    runs = h.runs_of(work.key)
    assert sorted(r.parameters["worker"] for r in runs) == [0, 1] and {r.status for r in runs} == {"succeeded"}
    command = next(h.envs[f] for f in runs[0].code_envfiles if h.envs[f]["CodeEnv type"] == "Command")
    assert command["argv0"] == "igneous" and command["distribution"].replace("_", "-") == "igneous-pipeline"
    assert command["version"] == importlib.metadata.version("igneous-pipeline")

    (entry,) = [e for e in h.foreign if isinstance(e.get("method"), dict)
                and e["method"].get("task") == "DownsampleTask"]            # igneous' own entry, kept
    assert entry["date"].endswith((" EST", " EDT"))                         # written in New York time
    when, resolution = parse_stamp(entry["date"])
    (planned,) = h.runs_of(plan.key)
    assert resolution == 60 and planned.started.replace(second=0, microsecond=0) <= when <= planned.ended
    from ptb.read import timeline

    order = [row.id for row in timeline.timeline(h)]
    index = next(i for i, r in enumerate(timeline.timeline(h)) if r.entry is entry)
    assert order.index(planned.id) < index                 # after the run that wrote it, not before


def test_the_readme_task_class_block_prints_what_it_says(tmp_path):
    """test_docs runs every README block; this one must also print the value its comment shows."""
    text = (REPO / "README.rst").read_text()
    section = text[text.index("A task class\n~~~~"):]
    block = section[section.index(".. code-block:: python\n\n") + 24:section.index("\nDecorate where")]
    code = "\n".join(line[4:] for line in block.splitlines())
    shown = code[code.rindex("# ") + 2:].strip()
    assert shown == "{'offset': [0, 0, 0]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == shown
