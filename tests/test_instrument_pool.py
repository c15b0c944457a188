"""Decorated functions and methods pickle by reference, so they run in process pools (DESIGN §1)."""
from __future__ import annotations

import concurrent.futures
import copy
import importlib
import multiprocessing
import os
import pickle
import sys
import textwrap

import pytest
import volumes

import ptb

MODULE = '''
import os

import ptb

VOLUME = {volume!r}


@ptb.provenance(VOLUME, "tile", result=lambda value: f"tile {{value[0]}}")
def tile(i):
    return i * 2, os.getpid()


class Worker:
    def __init__(self, base):
        self.base = base

    @ptb.provenance(VOLUME, "add")
    def add(self, x):
        return self.base + x

    @classmethod
    @ptb.provenance(VOLUME, "double")
    def double(cls, x):
        return 2 * x

    @staticmethod
    @ptb.provenance(VOLUME, "negate")
    def negate(x):
        return -x
'''


@pytest.fixture
def poolmod(tmp_path, monkeypatch):
    """A module on sys.path (as a user's pipeline module is), decorating with a file:// volume."""
    monkeypatch.setenv("PTB_SPOOL_DIR", str(tmp_path / "spool"))
    volumes.make_volume(f"file://{tmp_path / 'v'}")    # a volume: ptb would warn of a bare path
    name = f"ptb_pool_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(volume=f"file://{tmp_path / 'v'}")))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    ptb.store.updater.flush()
    sys.modules.pop(name, None)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_decorated_function_runs_in_a_process_pool(poolmod, start):
    context = multiprocessing.get_context(start)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        results = list(pool.map(poolmod.tile, range(8)))
    assert [value for value, _ in results] == [i * 2 for i in range(8)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids

    hist = ptb.history(poolmod.VOLUME)          # the journal: complete even if the view lags
    assert len(hist.runs) == 8 and all(r.status == "succeeded" for r in hist.runs)
    assert {r.pid for r in hist.runs} == pids
    assert sorted(hist.process(r.process).parameters["i"] for r in hist.runs) == list(range(8))
    results_noted = sorted(n.content for n in hist.notes if n.note_type is ptb.NoteType.RESULT)
    assert results_noted == sorted(f"tile {i * 2}" for i in range(8))


def test_methods_pickle_as_plain_methods_do(poolmod):
    worker = poolmod.Worker(10)
    for call, args, expected in [(poolmod.tile, (1,), 2), (worker.add, (5,), 15),
                                 (poolmod.Worker.double, (4,), 8), (worker.double, (4,), 8),
                                 (poolmod.Worker.negate, (3,), -3), (worker.negate, (3,), -3)]:
        again = pickle.loads(pickle.dumps(call))
        result = again(*args)
        assert (result[0] if isinstance(result, tuple) else result) == expected
        assert copy.copy(call) is call and copy.deepcopy(call) is call
    assert pickle.loads(pickle.dumps(poolmod.tile)) is poolmod.tile
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        assert pool.submit(worker.add, 1).result() == 11
    assert sorted(r.description for r in ptb.history(poolmod.VOLUME).runs) == [
        "add", "add", "double", "double", "negate", "negate", "tile"]


def test_a_function_not_at_module_level_fails_to_pickle_as_a_plain_one_does(poolmod):
    @ptb.provenance(poolmod.VOLUME, "local")
    def local():
        return 1

    def plain():
        return 1

    for func in (plain, local):
        with pytest.raises((pickle.PicklingError, AttributeError)):
            pickle.dumps(func)
