"""The instrumentation engine: @provenance on plain functions, documented blocks, failure policy.

Methods, class- and staticmethods are in test_instrument_methods.py; coroutines,
generators and async generators in test_instrument_async.py.
"""
from __future__ import annotations

import datetime
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from cloudvolume import CloudVolume

import ptb
import ptb.testing
from ptb.block import documented
from ptb.decorate import provenance
from ptb.errors import CorruptProvenanceError, InvalidInputError, ProvenanceError, VolumeUnavailableError
from ptb.records import NoteType, RunRecord
from ptb.run import RecordingWarning, current_run
from ptb.store import updater
from ptb.store.spool import SpoolWarning


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, monkeypatch):
    path = tmp_path / "spool"
    monkeypatch.setenv("PTB_SPOOL_DIR", str(path))
    return path


def make_volume(path: Path) -> CloudVolume:
    return CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path="file://" + str(path), resolution=(1, 1, 1))


@pytest.fixture
def vol(tmp_path):
    return make_volume(tmp_path / "v")


def notes_of(hist, run, kind):
    return [n.content for n in hist.notes_of(run.id) if n.note_type is kind]


def volume_text(path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------- plain functions
def test_success_records_process_run_notes_and_environment(vol):
    @provenance("dst", "threshold the image")
    def threshold(dst, level: float = 0.5, *more, **options):
        """Threshold ``dst``."""
        return level * 2

    assert threshold(vol.cloudpath, 0.25, 7, fast=True) == 0.5

    hist = ptb.history(vol)
    (proc,) = hist.processes
    assert proc.description == "threshold the image"
    assert proc.parameters == {"dst": vol.cloudpath, "level": 0.25, "more": [7], "options": {"fast": True}}
    (run,) = hist.runs
    assert run.status == "succeeded" and run.process == proc.key and run.parent is None
    assert run.duration is not None and run.duration >= 0 and run.ended >= run.started
    assert run.pid == os.getpid() and run.host and run.started.tzinfo is not None
    resources = run.resources
    assert set(resources) == {"cpu_time_s", "cpu_user_s", "cpu_system_s", "memory_bytes", "peak_memory_bytes"}
    assert resources["cpu_time_s"] == pytest.approx(resources["cpu_user_s"] + resources["cpu_system_s"])
    assert resources["peak_memory_bytes"] >= resources["memory_bytes"] > 0     # a peak is never below now
    assert notes_of(hist, run, NoteType.MOTIVATION) == ["run of 'threshold the image' (no motivation given)"]
    (result,) = notes_of(hist, run, NoteType.RESULT)
    assert result.startswith("succeeded in ")
    kinds = {hist.envs[f]["CodeEnv type"]: hist.envs[f] for f in proc.code_envfiles}
    assert "def threshold(dst" in kinds["Source"]["source"]
    assert kinds["PythonGithub"]["packages"] and kinds["PythonGithub"]["python"]


def test_signature_name_docstring_and_wrapped_survive():
    def original(src: str, dst: str, mip: int = 2) -> int:
        """Mesh it."""
        return mip

    decorated = provenance("dst", "mesh")(original)
    assert inspect.signature(decorated) == inspect.signature(original)
    assert decorated.__name__ == "original" and decorated.__doc__ == "Mesh it."
    assert decorated.__wrapped__ is original and decorated.__qualname__ == original.__qualname__
    assert not inspect.iscoroutinefunction(decorated) and not inspect.isgeneratorfunction(decorated)


def test_motivation_and_result_texts(vol):
    @provenance(vol, "count", motivation="for the paper", result=lambda n: f"found {n} cells")
    def count():
        return 12

    @provenance(vol, "fixed text", result="all good")
    def fixed():
        return None

    count()
    fixed()
    hist = ptb.history(vol)
    first, second = hist.runs
    assert notes_of(hist, first, NoteType.MOTIVATION) == ["for the paper"]
    assert notes_of(hist, first, NoteType.RESULT) == ["found 12 cells"]
    assert notes_of(hist, second, NoteType.RESULT) == ["all good"]


def test_result_callable_that_raises_warns_and_keeps_the_default(vol):
    @provenance(vol, "step", result=lambda value: value["missing"])
    def step():
        return {}

    with pytest.warns(RecordingWarning, match="result callable"):
        assert step() == {}
    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "succeeded"
    assert notes_of(hist, run, NoteType.RESULT)[0].startswith("succeeded in")


def test_failure_is_recorded_and_the_same_exception_propagates(vol):
    raised = ValueError("threshold must be below 1, got 3")

    @provenance(vol, "threshold")
    def threshold(level):
        raise raised

    with pytest.raises(ValueError) as info:
        threshold(3)
    assert info.value is raised
    assert any(frame.name == "threshold" for frame in info.traceback)

    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "failed" and run.duration is not None
    assert run.error["type"] == "ValueError" and run.error["message"] == "threshold must be below 1, got 3"
    assert "raise raised" in run.error["traceback"] and "ValueError" in run.error["traceback"]
    (result,) = notes_of(hist, run, NoteType.RESULT)
    assert result.startswith("failed after") and result.endswith("ValueError: threshold must be below 1, got 3")
    assert len(hist.processes) == 1


def test_traceback_is_bounded(vol):
    def ping(n):
        if n == 0:
            raise RuntimeError("x" * 50_000)
        return pong(n - 1)

    def pong(n):                # alternating frames: Python does not fold them into "repeated N times"
        return ping(n - 1)

    @provenance(vol, "deep")
    def deep(n):
        return ping(n)

    with pytest.raises(RuntimeError):
        deep(200)
    (run,) = ptb.history(vol).runs
    traceback = run.error["traceback"]
    assert len(traceback) <= 16 * 1024 and len(run.error["message"]) <= 4096
    assert traceback.startswith("Traceback") and "frames omitted" in traceback
    assert "in deep" in traceback and "in ping" in traceback and traceback.rstrip().endswith("chars]")
    assert "xxx ... [truncated" in traceback and run.error["message"].endswith("chars]")
    assert "RuntimeError: xxx" in traceback


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_keyboard_interrupt_and_system_exit_are_interruptions(vol, exc):
    @provenance(vol, "long job")
    def job():
        raise exc

    with pytest.raises(type(exc)) as info:
        job()
    assert info.value is exc
    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "interrupted" and run.error["type"] == type(exc).__name__
    assert notes_of(hist, run, NoteType.RESULT)[0].startswith("interrupted after")


# ----------------------------------------------------------------- where to log
def test_volume_forms(tmp_path):
    a, b, c = (make_volume(tmp_path / name) for name in "abc")
    memory = ptb.testing.volume("mem")

    @provenance([a, b.cloudpath], "to two volumes")
    def both():
        return 1

    @provenance("targets", "to a list held by a parameter")
    def listed(targets, n=1):
        return n

    @provenance("dst", "to a CloudVolume held by a parameter")
    def by_object(dst):
        return 2

    both()
    listed([c, memory.cloudpath])
    by_object(memory)
    for volume, expected in ((a, ["to two volumes"]), (b, ["to two volumes"]),
                             (c, ["to a list held by a parameter"]),
                             (memory, ["to a list held by a parameter", "to a CloudVolume held by a parameter"])):
        assert [r.description for r in ptb.history(volume).runs] == expected
    (proc,) = [p for p in ptb.history(memory).processes if p.description.startswith("to a CloudVolume")]
    assert proc.parameters == {"dst": {"cloudpath": memory.cloudpath, "mip": 0}}


def test_a_name_that_is_not_a_parameter_fails_at_decoration():
    with pytest.raises(InvalidInputError, match="has no parameter 'dest'"):
        @provenance("dest", "typo")
        def step(dst):
            pass


def test_a_name_may_come_through_var_keyword(vol):
    @provenance("dst", "through kwargs")
    def step(**kwargs):
        return sorted(kwargs)

    assert step(dst=vol.cloudpath, mip=1) == ["dst", "mip"]
    assert ptb.history(vol).processes[0].parameters == {"kwargs": {"dst": vol.cloudpath, "mip": 1}}
    with pytest.raises(InvalidInputError, match="parameter 'dst'"):
        step(dst=3)


def test_bad_volume_values_fail_before_the_code_runs(vol):
    ran = []

    @provenance("dst", "step")
    def step(dst=None):
        ran.append(dst)

    with pytest.raises(InvalidInputError, match="'dst' is None"):
        step()
    with pytest.raises(InvalidInputError, match="parameter 'dst'"):
        step(42)
    with pytest.raises(InvalidInputError):
        provenance(vol, "")
    with pytest.raises(InvalidInputError):
        provenance(vol, "x", motivation=3)
    assert ran == []


def test_unreachable_or_corrupt_volume_fails_before_the_code_runs(tmp_path, vol):
    ran = []
    (tmp_path / "plain-file").write_text("x")

    @provenance("dst", "step")
    def step(dst):
        ran.append(dst)

    with pytest.raises(VolumeUnavailableError, match="plain-file"):
        step("file://" + str(tmp_path / "plain-file" / "vol"))
    (tmp_path / "v" / "provenance").write_text("{not json")
    with pytest.raises(CorruptProvenanceError, match="ptb sync"):
        step(vol.cloudpath)
    assert ran == []
    assert (tmp_path / "v" / "provenance").read_text() == "{not json"


def test_a_volume_that_cannot_be_written_fails_before_the_code_runs(vol, tmp_path):
    ran = []

    @provenance(vol, "step")
    def step():
        ran.append(True)

    step()                                   # the journal directory exists now
    updater.flush()                             # its view merge is done before the journal breaks
    break_journal(tmp_path / "v")
    with pytest.raises(VolumeUnavailableError, match="cannot write"):
        step()
    assert ran == [True]


def test_a_bad_call_raises_the_functions_own_type_error(vol):
    @provenance("dst", "step")
    def step(dst, level):
        return level

    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        step(vol.cloudpath, 1, nope=2)


# ----------------------------------------------------------------- processes and parameters
def test_one_process_per_description_and_parameters(vol, tmp_path):
    @provenance(vol, "downsample")
    def downsample(mip):
        return mip

    downsample(1)
    downsample(1)
    downsample(2)
    hist = ptb.history(vol)
    assert len(hist.runs) == 3 and len(hist.processes) == 2
    one = next(p for p in hist.processes if p.parameters == {"mip": 1})
    assert len(hist.runs_of(one.key)) == 2
    journal = [p.read_text() for p in (tmp_path / "v" / "ptb" / "journal").iterdir()]
    assert sum('"kind":"process"' in text for text in journal) == 2


def test_per_run_values_make_one_process_of_many_runs_in_two_objects_per_call(vol, tmp_path):
    @provenance(vol, "downsample", per_run=["bbox"])
    def downsample(bbox, mip=1, password="hunter2-secret"):
        if bbox == (2, 2):
            raise ValueError(f"chunk {bbox} failed")
        return mip

    journal = tmp_path / "v" / "ptb" / "journal"
    downsample((0, 0))                              # the first call also journals the process
    before = len(list(journal.iterdir()))
    for bbox in [(1, 1), (2, 2), (3, 3)]:
        try:
            downsample(bbox, password=f"secret-for-{bbox[0]}")
        except ValueError:
            pass
    assert len(list(journal.iterdir())) - before == 2 * 3     # entry and exit, each one object
    hist = ptb.history(vol)
    (process,) = hist.processes
    assert process.parameters == {"mip": 1, "password": "<redacted>"}
    runs = sorted(hist.runs, key=lambda r: r.started)
    assert [r.parameters["bbox"] for r in runs] == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert [r.status for r in runs] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert not any(f"secret-for-{i}" in volume_text(tmp_path / "v") for i in (1, 2, 3))
    seen = CloudVolume("file://" + str(tmp_path / "v")).provenance.processing    # what the field's tools see
    (entry,) = [e for e in seen if e.get("task") == "downsample"]
    assert entry["ptb"]["runs"]["count"] == 4 and entry["ptb"]["runs"]["failed"] == 1


def test_documented_per_run_and_a_bad_per_run_value(vol):
    for z in (0, 64):
        with documented(vol, "proofread a slab", parameters={"mip": 1, "z": z}, per_run="z"):
            pass
    hist = ptb.history(vol)
    (process,) = hist.processes
    assert process.parameters == {"mip": 1} and sorted(r.parameters["z"] for r in hist.runs) == [0, 64]
    with pytest.raises(InvalidInputError, match="per_run"):
        provenance(vol, "step", per_run=[3])


def test_a_killed_per_run_call_is_seen_started_with_its_chunk(vol, tmp_path):
    """The entry object alone (the worker died before the exit) names the run and its chunk."""
    code = (f"import os, ptb\n"
            f"@ptb.provenance({('file://' + str(tmp_path / 'v'))!r}, 'mesh', per_run='bbox')\n"
            f"def mesh(bbox):\n    os._exit(9)\n"
            f"mesh([64, 128])\n")
    done = subprocess.run([os.environ.get("PYTHON", "python"), "-c", code], env={**os.environ},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    (run,) = ptb.history(vol).runs
    assert run.status == "running" and run.parameters == {"bbox": [64, 128]}


def test_awkward_parameters_never_break_the_call_nor_reach_the_volume_in_full(vol, tmp_path):
    # secrets are built at run time, so that no source or git diff recorded with the run holds them
    password, token, lab, key = (s + "-secret" for s in ("hunter2", "tok3n", "lab-code", "k3y"))

    @provenance(vol, "awkward", redact=["lab_code"], exclude=["scratch"])
    def awkward(array, big, path, labels, when, volume, password, url, lab_code, scratch, api_key=None):
        return "ok"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = awkward(np.arange(6, dtype=np.int16).reshape(2, 3), np.zeros((600, 600)),
                        Path("/data/seg"), {"b", "a"},
                        datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc), vol,
                        password, f"https://alice:{token}@example.org/data?x=1", lab, object(), api_key=key)
    assert value == "ok"
    (proc,) = ptb.history(vol).processes
    params = proc.parameters
    assert params["array"] == [[0, 1, 2], [3, 4, 5]]        # small numeric arrays are values (issue 20)
    assert params["big"]["shape"] == [600, 600] and "sha256" not in params["big"]
    assert params["path"] == "/data/seg" and params["labels"] == ["a", "b"]
    assert params["when"] == "2024-05-01T12:00:00+00:00"
    assert params["volume"] == {"cloudpath": vol.cloudpath, "mip": 0}
    assert params["password"] == params["api_key"] == params["lab_code"] == "<redacted>"
    assert params["url"] == "https://example.org/data?x=1" and "scratch" not in params
    stored = volume_text(tmp_path / "v")
    for secret in (password, token, lab, key):
        assert secret not in stored


def test_explicit_parameters_are_merged(vol):
    import argparse

    @provenance(vol, "with config", parameters=argparse.Namespace(model="unet", seed=3))
    def step(mip):
        return mip

    step(2)
    assert ptb.history(vol).processes[0].parameters == {"mip": 2, "model": "unet", "seed": 3}
    with pytest.raises(InvalidInputError):
        provenance(vol, "bad", parameters=42)


# ----------------------------------------------------------------- nesting, threads
def test_nested_runs_link_to_their_parent(vol):
    @provenance(vol, "inner")
    def inner(x):
        return x + 1

    @provenance(vol, "outer")
    def outer(x):
        with documented(vol, "block in outer") as block:
            inner(x)
        return inner(x), block.id

    _, block_id = outer(1)
    inner(5)
    runs = {(r.description, r.parent): r for r in ptb.history(vol).runs}
    outer_run = runs[("outer", None)]
    assert runs[("block in outer", outer_run.id)].id == block_id
    assert ("inner", block_id) in runs and ("inner", outer_run.id) in runs and ("inner", None) in runs
    assert current_run() is None


def test_threads_keep_their_own_current_run(vol):
    barrier = threading.Barrier(2)

    @provenance(vol, "inner")
    def inner(tag):
        barrier.wait(timeout=10)        # both outer runs are current at the same moment
        return tag

    @provenance(vol, "outer")
    def outer(tag):
        return current_run().id, inner(tag)

    results = {}
    threads = [threading.Thread(target=lambda t=t: results.setdefault(t, outer(t))) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hist = ptb.history(vol)
    inner_parents = sorted(r.parent for r in hist.runs if r.description == "inner")
    assert inner_parents == sorted(run_id for run_id, _ in results.values())
    assert all(r.parent is None for r in hist.runs if r.description == "outer")


# ----------------------------------------------------------------- documented blocks
def test_documented_block_with_notes_result_and_caller_parameters(vol):
    mip, threshold = 2, np.float32(0.5)  # noqa: F841 (recorded by name)
    with documented(vol, "manual fix of merge errors", parameters=["mip", "threshold"],
                    motivation="merge errors in slab 3") as run:
        assert current_run() is run
        run.note("bizarre output in slice 37")
        run.parameters["slab"] = 3
        run.result("found 12 more synapses")
    assert run.status == "succeeded" and current_run() is None

    hist = ptb.history(vol)
    (record,) = hist.runs
    # known at entry, the step; added while working, this run's own (issue 9: no second process)
    assert hist.process(record.process).parameters == {"mip": 2, "threshold": 0.5}
    assert record.parameters == {"slab": 3} and len(hist.processes) == 1
    assert notes_of(hist, record, NoteType.MOTIVATION) == ["merge errors in slab 3"]
    assert notes_of(hist, record, NoteType.GENERIC) == ["bizarre output in slice 37"]
    assert notes_of(hist, record, NoteType.RESULT) == ["found 12 more synapses"]


def test_documented_takes_names_from_globals_and_a_string(vol):
    with pytest.warns(ptb.capture.params.ParameterWarning, match="'np'"):
        with documented(vol, "block", parameters="np") as run:
            pass
    (proc,) = ptb.history(vol).processes
    assert proc.parameters["np"]["type"] == "builtins.module" and run.status == "succeeded"
    with pytest.raises(InvalidInputError, match="'nowhere'"):
        documented(vol, "block", parameters=["nowhere"])


def test_documented_failure_reraises_and_is_recorded(vol):
    error = KeyError("slab 9")
    with pytest.raises(KeyError) as info:
        with documented(vol, "fix slab 9") as run:
            run.result("partial: slabs 1-8 done")
            raise error
    assert info.value is error and run.status == "failed"
    hist = ptb.history(vol)
    (record,) = hist.runs
    results = notes_of(hist, record, NoteType.RESULT)
    assert results[0] == "partial: slabs 1-8 done" and results[1].endswith("KeyError: 'slab 9'")


def test_a_run_is_entered_once(vol):
    run = documented(vol, "once")
    with run:
        pass
    with pytest.raises(ProvenanceError, match="already entered"):
        with run:
            pass
    with pytest.raises(ProvenanceError, match="enter the run"):
        documented(vol, "not entered").note("x")


def test_notes_from_inside_a_decorated_function(vol):
    @provenance(vol, "step")
    def step():
        current_run().note("halfway", NoteType.GENERIC)

    step()
    hist = ptb.history(vol)
    assert notes_of(hist, hist.runs[0], NoteType.GENERIC) == ["halfway"]


def test_the_view_shows_processes_and_notes(vol):
    @provenance(vol, "visible")
    def step(mip):
        return mip

    step(3)
    fresh = CloudVolume(vol.cloudpath)          # no flush: the view is current when the call returns
    (entry,) = [e for e in fresh.provenance.processing if e.get("task") == "visible"]
    assert entry["parameters"] == {"mip": 3} and entry["ptb"]["runs"]["succeeded"] == 1
    assert len(fresh.provenance["ptb"]["notes"]) == 2
    assert any(e.get("task") == "visible" for e in vol.provenance.processing)   # the object given is kept current


# ----------------------------------------------------------------- code environment
def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_an_edit_between_two_calls_records_two_different_diffs(tmp_path, vol):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "remote", "add", "origin", "https://bob:s3cr3t-token@github.com/lab/pipeline.git")
    module = repo / "steps_under_git.py"
    module.write_text("import ptb\n\n\n@ptb.decorate.provenance('dst', 'segment')\n"
                      "def segment(dst, threshold=0.3):\n    return threshold\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    spec = importlib.util.spec_from_file_location("steps_under_git", module)
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)

    module.write_text(module.read_text() + "\n# threshold tuned on slab 3\n")
    steps.segment(vol.cloudpath)
    module.write_text(module.read_text() + "# and again, with a much longer comment on slab 4\n")
    steps.segment(vol.cloudpath)

    hist = ptb.history(vol)
    env_dir = Path(vol.cloudpath[len("file://"):]) / "ptb" / "env"
    gits = [f for f in env_dir.iterdir() if f.name.startswith("PythonGithub-pipeline-")]
    import json

    diffs = sorted((json.loads(f.read_text())["diff"] for f in gits), key=len)
    assert len(diffs) == 2 and "+# threshold tuned on slab 3" in diffs[0] and "slab 4" in diffs[1]
    (proc,) = hist.processes
    first_env = hist.envs[next(f for f in proc.code_envfiles if "PythonGithub" in f)]
    assert first_env["name"] == "https://github.com/lab/pipeline.git" and first_env["dirty"] is True
    assert "s3cr3t" not in volume_text(env_dir)
    if "code_envfiles" in RunRecord.__dataclass_fields__:          # each run names its own environment
        envs = [tuple(f for f in run.code_envfiles if "PythonGithub" in f) for run in hist.runs]
        assert len(set(envs)) == 2


# ----------------------------------------------------------------- spool and flush
def break_journal(path: Path) -> Path:
    """Make journal writes fail (we run as root, so chmod would not): a plain file where the directory is."""
    journal = path / "ptb" / "journal"
    shutil.move(str(journal), str(path / "journal-aside"))
    journal.write_text("not a directory")
    return journal


def restore_journal(path: Path) -> None:
    journal = path / "ptb" / "journal"
    journal.unlink()
    shutil.move(str(path / "journal-aside"), str(journal))


def test_a_volume_that_becomes_unwritable_spools_and_flush_uploads(vol, tmp_path, spool_dir):
    root = tmp_path / "v"

    @provenance(vol, "works, then the volume goes away")
    def works():
        break_journal(root)
        current_run().note("written while broken")
        return "value"

    @provenance(vol, "fails, then the volume goes away")
    def fails():
        break_journal(root)
        raise LookupError("the user's own error")

    with pytest.warns(SpoolWarning, match="ptb flush"):
        assert works() == "value"
    restore_journal(root)
    with pytest.warns(SpoolWarning):
        with pytest.raises(LookupError, match="the user's own error"):
            fails()
    restore_journal(root)
    assert any(spool_dir.rglob("*.json"))
    assert {r.status for r in ptb.history(vol).runs} == {"running"}     # only the starts reached the volume

    uploaded, remaining = ptb.flush()
    assert uploaded == 5 and remaining == 0      # 2 ends, 2 results, 1 note
    hist = ptb.history(vol)
    assert sorted(r.status for r in hist.runs) == ["failed", "succeeded"]
    assert sum(n.note_type is NoteType.RESULT for n in hist.notes) == 2
    assert "written while broken" in [n.content for n in hist.notes]


def test_warnings_turned_into_errors_never_replace_the_result(vol, tmp_path):
    @provenance(vol, "strict interpreter")
    def step():
        break_journal(tmp_path / "v")
        return 5

    with warnings.catch_warnings():
        warnings.simplefilter("error")          # as `python -W error` would
        assert step() == 5
    restore_journal(tmp_path / "v")
    assert ptb.flush() == (2, 0)
    assert ptb.history(vol).runs[0].status == "succeeded"


# ----------------------------------------------------------------- the view
def test_every_call_with_new_parameters_is_in_the_view_when_it_returns(vol):
    @provenance(vol, "distributed task")
    def task(i):
        return i

    for i in range(5):              # a new process each call, as workers with different parameters have
        assert task(i) == i
        tasks = [e for e in CloudVolume(vol.cloudpath).provenance.processing if e.get("task") == "distributed task"]
        assert sorted(e["parameters"]["i"] for e in tasks) == list(range(i + 1))
    assert len(ptb.history(vol).processes) == 5


# ----------------------------------------------------------------- bounded notes
def test_a_long_result_text_is_cut_and_the_run_still_ends(vol):
    @provenance(vol, "summarise", result=lambda value: f"found {value}")
    def summarise():
        return list(range(300_000))             # its str() is about 2 MB

    assert len(summarise()) == 300_000
    with pytest.warns(RecordingWarning, match="characters"):
        with documented(vol, "block") as run:
            run.result("log:\n" + "line\n" * 300_000)

    hist = ptb.history(vol)
    assert [r.status for r in hist.runs] == ["succeeded", "succeeded"]
    for run in hist.runs:
        (text,) = notes_of(hist, run, NoteType.RESULT)
        assert len(text) <= ptb.run.MAX_NOTE and text.endswith("chars]") and "... [truncated " in text
    assert notes_of(hist, hist.runs[0], NoteType.RESULT)[0].startswith("found [0, 1, 2")


def test_a_long_note_or_motivation_is_cut_with_a_warning_not_raised(vol):
    @provenance(vol, "chatty", motivation="why " * 10_000)
    def chatty():
        current_run().note("x" * 2_000_000)
        return "done"

    with pytest.warns(RecordingWarning) as caught:
        assert chatty() == "done"
    messages = " ".join(str(m.message) for m in caught)
    assert "the note of" in messages and "the motivation of" in messages
    hist = ptb.history(vol)
    (run,) = hist.runs
    (note,) = notes_of(hist, run, NoteType.GENERIC)
    (motivation,) = notes_of(hist, run, NoteType.MOTIVATION)
    assert run.status == "succeeded" and note.startswith("xxx") and note.endswith("chars]")
    assert len(note) <= ptb.run.MAX_NOTE and len(motivation) <= ptb.run.MAX_NOTE


def test_a_result_note_that_cannot_be_written_never_loses_the_end_of_the_run(vol, monkeypatch):
    from ptb.store import journal

    append = journal.append

    def refuse_results(volume, records, **kwargs):
        if any(getattr(r, "note_type", None) is NoteType.RESULT for r in records):
            raise InvalidInputError("note refused")
        return append(volume, records, **kwargs)

    monkeypatch.setattr(journal, "append", refuse_results)

    @provenance(vol, "step", result="fine")
    def step():
        return 1

    with pytest.warns(RecordingWarning, match="note refused"):
        assert step() == 1
    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "succeeded" and notes_of(hist, run, NoteType.RESULT) == []


# ----------------------------------------------------------------- secrets in texts
SECRETS = set()


def secret(label):
    """A secret value; the whole value never appears in this file (whose git diff is recorded)."""
    value = f"S3CR3T{label}X"
    SECRETS.add(value)
    return value


def assert_no_secret_under(path):
    text = volume_text(path)
    assert [s for s in SECRETS if s in text] == []


def test_secrets_in_exceptions_tracebacks_and_result_notes_never_reach_the_volume(vol, tmp_path):
    @provenance(vol, "call the api", redact=["ticket"])
    def call_api(how):
        if how == "bearer":
            raise PermissionError(f"401 for request with Authorization: Bearer {secret('BEARER')}")
        if how == "password":
            raise ValueError(f"could not log in with password={secret('PASSWORD')}")
        if how == "redacted name":
            raise RuntimeError(f"refused: ticket={secret('TICKET')} has expired")
        return secret("RESULT")

    @provenance(vol, "log in", result=lambda value: f"logged in with password={value}")
    def log_in():
        return secret("CALLABLE")

    for how in ("bearer", "password", "redacted name"):
        with pytest.raises(Exception, match="S3CR3T"):     # the user's exception is untouched
            call_api(how)
    log_in()
    with documented(vol, "block") as run:
        run.result(f"used Authorization: Bearer {secret('RUNRESULT')}")

    updater.flush()
    hist = ptb.history(vol)
    assert [r.status for r in hist.runs] == ["failed", "failed", "failed", "succeeded", "succeeded"]
    assert all("<redacted>" in r.error["message"] and "<redacted>" in r.error["traceback"] for r in hist.runs[:3])
    results = [n.content for n in hist.notes if n.note_type is NoteType.RESULT]
    assert "logged in with password=<redacted>" in results and "used Authorization: Bearer <redacted>" in results
    assert_no_secret_under(tmp_path / "v")


def test_the_source_of_a_documented_cell_is_scrubbed(vol, tmp_path):
    import linecache

    filename = "<ipython-input-7-secret>"
    source = (f"api_token = {secret('CELLTOKEN')!r}\nticket = {secret('CELLTICKET')!r}\n"
              "with ptb.documented(vol, 'cell', redact=['ticket']) as run:\n    pass\n")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        exec(compile(source, filename, "exec"), {"ptb": ptb, "vol": vol})
    finally:
        linecache.cache.pop(filename, None)
    updater.flush()
    hist = ptb.history(vol)
    (cell,) = [e for e in hist.envs.values() if e["CodeEnv type"] == "Source"]
    assert cell["source"].startswith("api_token = '<redacted>'\nticket = '<redacted>'\n")
    assert_no_secret_under(tmp_path / "v")


def test_result_notes_say_durations_as_ptb_log_does(vol):
    """One formatter: never "failed after 0.00679 ms" in a note next to "<0.1 ms" in the log."""
    from ptb.read.fmt import fmt_duration

    @provenance(vol, "fails at once")
    def fails() -> None:
        raise ValueError("no")

    @provenance(vol, "succeeds at once")
    def succeeds() -> None:
        pass

    with pytest.raises(ValueError):
        fails()
    succeeds()
    hist = ptb.history(vol)
    for run in hist.runs:
        text = notes_of(hist, run, NoteType.RESULT)[0]
        took = fmt_duration(run.duration)
        assert text.startswith((f"failed after {took}:", f"succeeded in {took}")), (text, run.duration)


# ----------------------------------------------------------------- issue 20: argv, local paths
SCRIPT = '''
import sys
import ptb

@ptb.provenance(sys.argv[1], "step of a script")
def step(mip):
    return mip

step(2)
'''


def test_a_run_records_the_scripts_argv_scrubbed(vol, tmp_path):
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    secret = "hunter2-" + "s" * 10
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), vol.cloudpath, "--password", secret, "--mip", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = ptb.history(vol).runs
    assert run.argv == (str(script), vol.cloudpath, "--password", "<redacted>", "--mip", "2")
    assert secret not in volume_text(tmp_path / "v")
    assert RunRecord.from_json(run.to_json()).argv == run.argv


def test_local_paths_are_volumes_for_the_decorator_and_the_block(vol, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    @provenance("./v", "relative path")
    def relative():
        return 1

    @provenance("dst", "from a parameter")
    def from_parameter(dst):
        return dst

    relative()
    from_parameter(str(tmp_path / "v"))
    with documented(str(tmp_path / "v"), "absolute path"):
        pass
    assert [r.description for r in ptb.history(vol).runs] == ["relative path", "from a parameter", "absolute path"]
    with pytest.raises(InvalidInputError, match="has no parameter 'v'"):
        provenance("v", "a bare word is a parameter's name")(lambda dst: dst)


def test_chunk_runs_write_the_view_once_in_a_while_when_asked(vol, tmp_path, monkeypatch):
    import json

    def in_view():
        prov = json.loads((tmp_path / "v" / "provenance").read_text())
        return sum(e["ptb"]["runs"]["count"] for e in prov["processing"] if "ptb" in e)

    @provenance(vol, "chunk", per_run="i")
    def chunk(i):
        return i

    @provenance(vol, "a whole step")
    def step():
        return 0

    chunk(0)
    assert in_view() == 1                  # the default: every run's end is in the view on return
    monkeypatch.setenv("PTB_VIEW_EVERY", "3600")
    chunk(1)
    chunk(2)
    assert in_view() == 2                  # the first after a pause writes it, the next is left to the thread
    assert len(ptb.history(vol).runs) == 3     # the journal never lags
    step()
    assert in_view() == 4                  # a run without per_run values writes it (with what was left)
    chunk(3)
    updater.flush()
    assert in_view() == 5
