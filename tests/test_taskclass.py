"""@ptb.provenance on a task class (issue 20): each execute() a run, with the constructor's arguments.

python-task-queue's ``RegisteredTask`` (serialised by its constructor
arguments: ``payload()`` and ``totask`` must still round-trip), a plain class
with ``execute``, a dataclass; every call form of ``execute``; building an
object records nothing; ``per_run``; pickling by reference and by value
(cloudpickle); decorating again. igneous' own classes are in test_igneous.py.
"""
from __future__ import annotations

import asyncio
import dataclasses
import pickle
import warnings

import cloudpickle
import numpy as np
import pytest
from cloudvolume import CloudVolume
from taskqueue import LocalTaskQueue, RegisteredTask, TaskQueue
from taskqueue.registered_task import REGISTRY, totask

import ptb
from ptb.errors import InvalidInputError

VOLUME: dict = {}


@pytest.fixture(autouse=True)
def vol(tmp_path):
    cv = CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path=f"file://{tmp_path / 'v'}",
                                resolution=(1, 1, 1))
    VOLUME["path"] = cv.cloudpath
    return cv.cloudpath


@ptb.provenance("path", "segment a chunk", per_run="offset")
class Segment(RegisteredTask):
    """A python-task-queue task at module level, as labs write them."""

    def __init__(self, path, offset, threshold=0.5, method="watershed"):
        super().__init__(path, offset, threshold, method)

    def execute(self, scale=1):
        return [scale * x for x in self.offset]


@ptb.provenance("path", "count voxels", per_run=["z"])
@dataclasses.dataclass
class Count:
    path: str
    z: int
    mip: int = 0

    def execute(self):
        return self.z


class Plain:
    def __init__(self, path, level, *, scratch=None):
        self.path, self.level, self._scratch = path, level, scratch

    def execute(self):
        if self.level < 0:
            raise ValueError("negative level")
        return self.level


def runs(path=None):
    return ptb.history(path or VOLUME["path"]).runs


def test_building_records_nothing_and_each_execute_is_a_run(vol):
    task = Segment(vol, np.array([64, 0, 0]), threshold=0.7)
    assert runs() == []
    assert task.execute() == [64, 0, 0] and task.execute(scale=2) == [128, 0, 0]
    h = ptb.history(vol)
    process = h.processes[0]
    assert process.description == "segment a chunk"
    assert process.parameters == {"path": vol, "threshold": 0.7, "method": "watershed", "scale": 1}
    assert [r.parameters for r in h.runs] == [{"offset": [64, 0, 0]}, {"offset": [64, 0, 0]}]
    assert len({r.process for r in h.runs}) == 2          # execute's own argument is part of the step


def test_a_registered_task_still_round_trips_through_payload_and_queues(vol, tmp_path):
    task = Segment(vol, (0, 64, 0))
    payload = task.payload()
    assert payload == {"path": vol, "offset": (0, 64, 0), "threshold": 0.5, "method": "watershed",
                       "class": "Segment"}         # python-task-queue's own payload, untouched
    assert REGISTRY["Segment"] is Segment and isinstance(task, RegisteredTask)
    again = totask(dict(payload))               # totask takes "class" out of what it is given
    assert isinstance(again, Segment) and again.payload() == payload
    again.execute()
    LocalTaskQueue(parallel=1, progress=False).insert_all([Segment(vol, [0, 64, 0])])
    queue = TaskQueue(f"fq://{tmp_path / 'q'}", progress=False)
    queue.insert([Segment(vol, np.array([0, 64, 0]))])
    assert queue.poll(lease_seconds=30, stop_fn=lambda executed: executed >= 1) == 1
    h = ptb.history(vol)
    assert len(h.processes) == 1 and len(h.runs) == 3       # one step, whichever way it travelled
    assert {tuple(r.parameters["offset"]) for r in h.runs} == {(0, 64, 0)}


def test_pickled_objects_and_every_call_form_are_documented(vol):
    task = pickle.loads(pickle.dumps(Segment(vol, [1, 2, 3])))
    task.execute()
    Segment.execute(task, 3)                     # through the class: wrapt passes the instance in args
    bound = task.execute
    bound(scale=4)
    pickle.loads(pickle.dumps(bound))()          # a bound method pickles by reference too
    assert [r.status for r in runs()] == ["succeeded"] * 4
    assert [p.parameters.get("scale") for p in ptb.history(vol).processes] == [1, 3, 4]


def test_a_dataclass_and_a_plain_class(vol):
    Count(vol, 3).execute()
    (run,) = runs()
    assert run.parameters == {"z": 3}
    assert ptb.history(vol).processes[0].parameters == {"path": vol, "mip": 0}
    documented = ptb.provenance("path", "plain step")(Plain)
    assert documented is Plain                  # in place: the class itself
    assert Plain(vol, 2, scratch="x").execute() == 2
    with pytest.raises(ValueError, match="negative level"):
        Plain(vol, -1).execute()
    plain = [p for p in ptb.history(vol).processes if p.description == "plain step"]
    assert sorted(p.parameters["level"] for p in plain) == [-1, 2]
    assert all(set(p.parameters) == {"path", "level", "scratch"} for p in plain)   # scratch: its default, None
    failed = [r for r in runs() if r.status == "failed"]
    assert len(failed) == 1 and failed[0].error["type"] == "ValueError"


def test_decorating_again_replaces_and_a_subclass_gets_its_own(vol, tmp_path):
    other = CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path=f"file://{tmp_path / 'w'}",
                                   resolution=(1, 1, 1)).cloudpath

    class Step(RegisteredTask):
        def __init__(self, path, n):
            super().__init__(path, n)

        def execute(self):
            return self.n

    ptb.provenance("path", "first")(Step)
    ptb.provenance("path", "second")(Step)        # a notebook cell run again: not documented twice
    Step(vol, 1).execute()
    assert [r.description for r in runs()] == ["second"]

    @ptb.provenance(other, "sub")
    class Sub(Step):
        def __init__(self, path, n, extra=2):
            super().__init__(path, n)
            self.extra = extra

    Sub(vol, 5).execute()
    assert [r.description for r in runs(other)] == ["sub"]
    assert ptb.history(other).processes[0].parameters == {"path": vol, "n": 5, "extra": 2}   # defaults applied
    assert [r.description for r in runs()] == ["second"]


def test_classes_that_cannot_be_documented_say_why(vol):
    class NoExecute:
        def __init__(self, path):
            self.path = path

    with pytest.raises(InvalidInputError, match="has none"):
        ptb.provenance("path", "x")(NoExecute)

    class Static:
        @staticmethod
        def execute():
            return 1

    with pytest.raises(InvalidInputError, match="plain method"):
        ptb.provenance(vol, "x")(Static)

    class Task:
        def __init__(self, src):
            self.src = src

        def execute(self):
            return 1

    with pytest.raises(InvalidInputError, match="constructor has no parameter 'dst'"):
        ptb.provenance("dst", "x")(Task)


def test_an_async_execute_ends_after_the_await(vol):
    @ptb.provenance("path", "async task")
    class Later:
        def __init__(self, path):
            self.path = path

        async def execute(self):
            await asyncio.sleep(0.01)
            return "done"

    assert asyncio.run(Later(vol).execute()) == "done"
    (run,) = runs()
    assert run.status == "succeeded" and run.duration >= 0.01


def test_a_task_class_sent_by_value_is_documented_where_it_lands(vol):
    def make():
        @ptb.provenance("path", "sent by value")
        class Local:
            def __init__(self, path, k):
                self.path, self.k = path, k

            def execute(self):
                return self.k * 2

        return Local

    data = cloudpickle.dumps(make()(vol, 21))        # a local class: cloudpickle sends it by value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cloudpickle.loads(data).execute() == 42
    (run,) = runs()
    assert run.description == "sent by value" and ptb.history(vol).processes[0].parameters == {"path": vol, "k": 21}
