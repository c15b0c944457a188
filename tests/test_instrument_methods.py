"""@provenance on every binding kind, called every way (STYLE 11): ``self``/``cls`` never recorded."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from cloudvolume import CloudVolume

import ptb
from ptb.decorate import provenance

VOLUMES: dict = {}


@pytest.fixture(autouse=True)
def volume(tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_SPOOL_DIR", str(tmp_path / "spool"))
    vol = CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path="file://" + str(tmp_path / "v"),
                                 resolution=(1, 1, 1))
    VOLUMES["path"] = vol.cloudpath
    return vol


def target(*_args, **_kwargs):
    return VOLUMES["path"]


class Segmenter:
    """Each method logs to the volume named by its ``dst`` parameter."""

    scale = 10

    def __init__(self, offset):
        self.offset = offset

    @provenance("dst", "method")
    def method(self, dst, x, y=1):
        """A method."""
        return self.offset + x + y

    @provenance("dst", "classmethod")
    @classmethod
    def klass(cls, dst, x, y=1):
        return cls.scale * x + y

    @provenance("dst", "staticmethod")
    @staticmethod
    def static(dst, x, y=1):
        return x + y

    @classmethod
    @provenance("dst", "classmethod, decorated inside")
    def klass_inner(cls, dst, x, y=1):
        return cls.scale * x + y

    @staticmethod
    @provenance("dst", "staticmethod, decorated inside")
    def static_inner(dst, x, y=1):
        return x + y


class Child(Segmenter):
    scale = 100


def recorded(vol):
    hist = ptb.history(vol)
    return [(run.description, hist.process(run.process).parameters, run.status) for run in hist.runs]


def expected(description, dst, x=7, y=1):
    return (description, {"dst": dst, "x": x, "y": y}, "succeeded")


def test_method_through_an_instance_and_through_the_class(volume):
    obj = Segmenter(100)
    path = volume.cloudpath
    assert obj.method(path, 7) == 108
    assert Segmenter.method(obj, path, 7) == 108           # wrapt passes self in args, wrapped a partial
    assert Segmenter.method(obj, dst=path, x=7) == 108
    assert recorded(volume) == [expected("method", path)] * 3


@pytest.mark.parametrize("name", ["klass", "klass_inner"])
def test_classmethod_through_the_class_an_instance_and_a_subclass(volume, name):
    path = volume.cloudpath
    description = "classmethod" if name == "klass" else "classmethod, decorated inside"
    assert getattr(Segmenter, name)(path, 7) == 71
    assert getattr(Segmenter(0), name)(path, 7) == 71
    assert getattr(Child, name)(path, 7) == 701
    assert getattr(Child(0), name)(path, x=7) == 701
    assert recorded(volume) == [expected(description, path)] * 4


@pytest.mark.parametrize("name", ["static", "static_inner"])
def test_staticmethod_through_the_class_and_an_instance(volume, name):
    path = volume.cloudpath
    description = "staticmethod" if name == "static" else "staticmethod, decorated inside"
    assert getattr(Segmenter, name)(path, 7) == 8
    assert getattr(Segmenter(0), name)(path, 7, y=2) == 9
    assert getattr(Child, name)(dst=path, x=7) == 8
    assert recorded(volume) == [expected(description, path), expected(description, path, y=2),
                                expected(description, path)]


def test_introspection_of_every_kind():
    obj = Segmenter(0)
    assert str(inspect.signature(obj.method)) == "(dst, x, y=1)"
    assert str(inspect.signature(Segmenter.method)) == "(self, dst, x, y=1)"
    assert str(inspect.signature(Segmenter.klass)) == "(dst, x, y=1)"
    assert str(inspect.signature(Segmenter.static)) == "(dst, x, y=1)"
    assert Segmenter.method.__doc__ == "A method." and Segmenter.method.__name__ == "method"
    assert Segmenter.method.__qualname__ == "Segmenter.method"
    assert inspect.unwrap(Segmenter.method).__qualname__ == "Segmenter.method"
    assert isinstance(Segmenter.__dict__["klass_inner"], classmethod)


def test_a_fixed_volume_on_a_method_records_only_the_arguments(volume):
    class Job:
        @provenance(target(), "job")
        def run(self, n):
            return n * 2

    assert Job().run(4) == 8
    assert Job.run(Job(), n=4) == 8
    assert recorded(volume) == [("job", {"n": 4}, "succeeded")] * 2


def test_a_failing_method_records_its_own_exception(volume):
    class Broken:
        @provenance("dst", "broken")
        def run(self, dst):
            raise ZeroDivisionError("no voxels")

    with pytest.raises(ZeroDivisionError, match="no voxels"):
        Broken().run(volume.cloudpath)
    (run,) = ptb.history(volume).runs
    assert run.status == "failed" and run.error["type"] == "ZeroDivisionError"


# ----------------------------------------------------------------- "self" names the volume (issue 20)
class Layer:
    """An object that is a volume for ptb: it has a cloudpath."""

    def __init__(self, cloudpath):
        self.cloudpath = cloudpath

    @provenance("self", "relabel the layer")
    def relabel(self, table):
        if not table:
            raise ValueError("empty table")
        return len(table)


class NotAVolume:
    @provenance("self", "not documented")
    def work(self, fail=False):
        if fail:
            raise RuntimeError("failed anyway")
        return "done"


def test_self_names_the_instance_as_the_volume(volume):
    layer = Layer(volume.cloudpath)
    assert layer.relabel({1: 2}) == 1
    with pytest.raises(ValueError, match="empty table"):
        layer.relabel({})
    runs = ptb.history(volume).runs
    assert [r.status for r in runs] == ["succeeded", "failed"]
    assert ptb.history(volume).processes[0].parameters == {"table": {"1": 2}}     # self is not a parameter


def test_self_that_is_not_a_volume_is_the_same_error_whether_the_call_would_succeed_or_fail():
    from ptb.errors import InvalidInputError

    for call in (lambda: NotAVolume().work(), lambda: NotAVolume().work(fail=True)):
        with pytest.raises(InvalidInputError, match="parameter 'self': cannot log provenance to a NotAVolume"):
            call()                 # before the method runs: nothing ran undocumented
