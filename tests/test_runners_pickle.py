"""Decorated functions sent by value keep their decoration; task-queue's registry holds the decorated ones.

cloudpickle (Dask, joblib/loky, Ray) sends functions of ``__main__``, closures
and modules registered "by value" as code. These tests pickle with the real
cloudpickle copies engines use and unpickle in this process or another one;
``tests/test_engines.py`` runs the engines themselves.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import pickle
import subprocess
import sys
import textwrap
import types
from functools import partial
from pathlib import Path

import pytest
import volumes

import ptb
from ptb.wrapper import Wrapper

REPO = Path(__file__).resolve().parents[1]
MODULE = '''
import ptb

VOLUME = {volume!r}


@ptb.provenance("dst", "tile", result=lambda value: f"tile {{value}}")
def tile(dst, i: int) -> int:
    return i * 2


@ptb.provenance(VOLUME, "agen")
async def atile(i):
    return i


class Worker:
    def __init__(self, base):
        self.base = base

    @ptb.provenance(VOLUME, "add")
    def add(self, x):
        return self.base + x

    @staticmethod
    @ptb.provenance(VOLUME, "negate")
    def negate(x):
        return -x
'''
PICKLERS = ["cloudpickle", "distributed.protocol.pickle"]     # the second is what Dask sends tasks with


@pytest.fixture
def bymod(tmp_path, monkeypatch):
    """A pipeline module on sys.path, decorating with a file:// volume."""
    volumes.make_volume(f"file://{tmp_path / 'v'}")    # a volume: ptb would warn of a bare path
    name = f"ptb_byvalue_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(volume=f"file://{tmp_path / 'v'}")))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    ptb.store.updater.flush()
    sys.modules.pop(name, None)


@pytest.fixture(params=PICKLERS)
def by_value(request, bymod):
    """A pickler (``dumps``/``loads``) with cloudpickle told to send ``bymod`` by value, as it sends ``__main__``."""
    pickler = pytest.importorskip(request.param)
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(bymod)
    yield pickler
    cloudpickle.unregister_pickle_by_value(bymod)


def descriptions(volume):
    return sorted(r.description for r in ptb.history(volume).runs)


def test_a_function_sent_by_value_is_decorated_again_where_it_is_loaded(bymod, by_value):
    data = by_value.dumps(bymod.tile)
    again = by_value.loads(data)
    assert isinstance(again, Wrapper) and again is not bymod.tile
    assert again.__wrapped__ is not bymod.tile.__wrapped__          # it came as code, not by name
    assert again(bymod.VOLUME, 4) == 8
    hist = ptb.history(bymod.VOLUME)
    (run,) = hist.runs
    assert (run.description, run.status, hist.process(run.process).parameters) == (
        "tile", "succeeded", {"dst": bymod.VOLUME, "i": 4})
    assert [n.content for n in hist.notes_of(run.id) if n.note_type is ptb.NoteType.RESULT] == ["tile 8"]


def test_methods_and_coroutines_sent_by_value_stay_documented(bymod, by_value):
    worker = bymod.Worker(10)
    assert by_value.loads(by_value.dumps(worker.add))(5) == 15
    assert by_value.loads(by_value.dumps(bymod.Worker.negate))(3) == -3
    assert by_value.loads(by_value.dumps(worker.negate))(4) == -4
    coro = by_value.loads(by_value.dumps(bymod.atile))
    assert inspect.iscoroutinefunction(coro) and asyncio.run(coro(7)) == 7
    assert descriptions(bymod.VOLUME) == ["add", "agen", "negate", "negate"]


def test_the_wrapper_still_looks_like_a_function_to_everyone_but_cloudpickle(bymod):
    assert isinstance(bymod.tile, types.FunctionType) and inspect.isfunction(bymod.tile)
    assert inspect.iscoroutinefunction(bymod.atile)
    assert bymod.tile.__class__ is types.FunctionType
    assert list(inspect.signature(bymod.tile).parameters) == ["dst", "i"]
    assert pickle.loads(pickle.dumps(bymod.tile)) is bymod.tile          # pickle: by reference, as before


@pytest.mark.parametrize("pickler", PICKLERS)
def test_cloudpickle_sends_an_importable_function_by_reference(bymod, pickler):
    cloudpickle = pytest.importorskip(pickler)
    assert cloudpickle.loads(cloudpickle.dumps(bymod.tile)) is bymod.tile
    worker = bymod.Worker(1)
    assert cloudpickle.loads(cloudpickle.dumps(worker.add))(1) == 2


SENDER = '''
import sys

import cloudpickle

import ptb


@ptb.provenance("dst", "sent by value")
def step(dst, i):
    return i + 1


sys.stdout.buffer.write(cloudpickle.dumps(step))
'''
RECEIVER = ("import sys, cloudpickle; f = cloudpickle.loads(sys.stdin.buffer.read()); "
            "print(f(sys.argv[1], 41), type(f).__name__)")


def test_the_receiver_records_the_source_the_sender_had(tmp_path):
    """cloudpickle sends code without its file: the sender sends the source, for a receiver without the file."""
    pytest.importorskip("cloudpickle")
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PTB_SPOOL_DIR": str(tmp_path / "spool")}
    sent = subprocess.run([sys.executable, str(script)], capture_output=True, env=env, timeout=60, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr.decode()
    script.unlink()                                  # as on another machine: the file is not there
    volume = f"file://{tmp_path / 'v'}"
    volumes.make_volume(f"file://{tmp_path / 'v'}")    # a volume: ptb would warn of a bare path
    got = subprocess.run([sys.executable, "-c", RECEIVER, volume], input=sent.stdout, capture_output=True, env=env,
                         timeout=60, cwd=tmp_path)
    assert got.returncode == 0, got.stderr.decode()
    assert got.stdout.decode().split() == ["42", "Wrapper"]
    hist = ptb.history(volume)
    (run,) = hist.runs
    (source,) = [hist.envs[f] for f in hist.process(run.process).code_envfiles if "/Source-" in f]
    assert source["source"] == '@ptb.provenance("dst", "sent by value")\ndef step(dst, i):\n    return i + 1\n'
    assert source["file"] == str(script) and source["name"] == "__main__.step"


# ------------------------------------------------------------------ python-task-queue
TASKS = '''
from taskqueue import queueable

import ptb


@queueable
@ptb.provenance("dst", "documented, then registered")
def first(dst, i):
    return i


@ptb.provenance("dst", "registered, then documented")
@queueable
def second(dst, i):
    return i
'''


def test_task_queue_runs_the_decorated_function_in_either_decorator_order(tmp_path, monkeypatch):
    pytest.importorskip("taskqueue")
    from taskqueue.queueablefns import REGISTRY
    from taskqueue.queueables import totask

    name = f"ptb_tasks_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        tasks = importlib.import_module(name)
        assert REGISTRY[(name, "first")] is tasks.first and REGISTRY[(name, "second")] is tasks.second
        volume = f"file://{tmp_path / 'v'}"
        volumes.make_volume(f"file://{tmp_path / 'v'}")    # a volume: ptb would warn of a bare path
        for fn in (tasks.first, tasks.second):          # what a worker does with a task taken from a queue
            payload = totask(partial(fn, volume, 3)).payload()
            totask({"payload": payload, "id": 1}).execute()
        assert descriptions(volume) == ["documented, then registered", "registered, then documented"]
    finally:
        sys.modules.pop(name, None)
        for key in [k for k in REGISTRY if k[0] == name]:
            del REGISTRY[key]


# ------------------------------------------------------------------ decorator order
def test_ptb_over_an_engine_task_object_is_refused_with_the_order_to_use(tmp_path):
    """Under @ptb.provenance, @dask.delayed would make the documented call build the task, not run it."""
    dask = pytest.importorskip("dask")
    volume = f"file://{tmp_path / 'v'}"

    with pytest.raises(ptb.InvalidInputError, match=r"above @dask\.delayed on step.*Put @dask\.delayed above "
                                                    r"@ptb\.provenance"):
        @ptb.provenance(volume, "step")
        @dask.delayed
        def step(i):
            return i

    @dask.delayed
    @ptb.provenance(volume, "step")
    def ordered(i):
        return i + 1

    volumes.make_volume(f"file://{tmp_path / 'v'}")    # a volume: ptb would warn of a bare path
    assert ordered(1).compute(scheduler="sync") == 2
    assert descriptions(volume) == ["step"]


def test_ptb_over_ray_remote_is_refused(tmp_path):
    ray = pytest.importorskip("ray")
    with pytest.raises(ptb.InvalidInputError, match=r"Put @ray\.remote above @ptb\.provenance"):
        @ptb.provenance(f"file://{tmp_path}", "step")
        @ray.remote
        def step(i):
            return i
