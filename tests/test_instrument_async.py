"""Coroutine functions, generators and async generators, and runs across asyncio tasks (STYLE 12)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect

import numpy as np
import pytest
from cloudvolume import CloudVolume

import ptb
from ptb.block import documented
from ptb.decorate import provenance
from ptb.records import NoteType
from ptb.run import current_run


@pytest.fixture
def vol(tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_SPOOL_DIR", str(tmp_path / "spool"))
    return CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path="file://" + str(tmp_path / "v"),
                                  resolution=(1, 1, 1))


def result_of(vol, run):
    return [n.content for n in ptb.history(vol).notes_of(run.id) if n.note_type is NoteType.RESULT]


# ------------------------------------------------------------------ the kind is the called function's own
def run_sync(func):
    """A common helper: an async implementation exposed synchronously (functools.wraps sets __wrapped__)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return asyncio.run(func(*args, **kwargs))
    return wrapper


def test_a_sync_wrapper_of_a_coroutine_function_returns_its_value(vol):
    async def fetch(n):
        await asyncio.sleep(0)
        return n * 2

    documented_fetch = provenance(vol, "fetch", result=lambda v: f"fetched {v}")(run_sync(fetch))
    assert not inspect.iscoroutinefunction(documented_fetch)
    assert documented_fetch(21) == 42
    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "succeeded" and result_of(vol, run) == ["fetched 42"]
    assert hist.process(run.process).parameters == {"n": 21}       # bound against the unwrapped signature


def test_a_decorated_contextmanager_is_still_a_context_manager(vol):
    @provenance(vol, "open")
    @contextlib.contextmanager
    def opened(name):
        yield name.upper()

    @provenance(vol, "open async")
    @contextlib.asynccontextmanager
    async def aopened(name):
        yield name.lower()

    async def use_async():
        async with aopened("B") as value:
            return value

    with opened("a") as value:
        assert value == "A"
    assert asyncio.run(use_async()) == "b"
    runs = ptb.history(vol).runs
    assert [r.description for r in runs] == ["open", "open async"]
    assert all(r.status == "succeeded" for r in runs)


def test_a_coroutine_function_wrapped_with_wraps_is_still_a_coroutine_function(vol):
    def traced(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            return await func(*args, **kwargs)
        return wrapper

    @provenance(vol, "fetch")
    @traced
    async def fetch(n):
        await asyncio.sleep(0.02)
        return n

    assert inspect.iscoroutinefunction(fetch) and asyncio.run(fetch(3)) == 3
    (run,) = ptb.history(vol).runs
    assert run.status == "succeeded" and run.duration >= 0.02       # ended after the await


# ------------------------------------------------------------------ coroutine functions
def test_a_coroutine_run_ends_after_the_await(vol):
    seen = {}

    @provenance(vol, "fetch", result=lambda n: f"fetched {n}")
    async def fetch(n):
        seen["during"] = [r.status for r in ptb.history(vol).runs]
        await asyncio.sleep(0.05)
        return n

    assert inspect.iscoroutinefunction(fetch) and asyncio.iscoroutinefunction(fetch)
    coroutine = fetch(3)
    assert ptb.history(vol).runs == []          # nothing runs until it is awaited
    assert asyncio.run(coroutine) == 3
    (run,) = ptb.history(vol).runs
    assert seen["during"] == ["running"] and run.status == "succeeded" and run.duration >= 0.05
    assert result_of(vol, run) == ["fetched 3"]


def test_a_failing_coroutine_reraises_its_exception(vol):
    error = ConnectionError("server down")

    @provenance(vol, "fetch")
    async def fetch():
        await asyncio.sleep(0)
        raise error

    with pytest.raises(ConnectionError) as info:
        asyncio.run(fetch())
    assert info.value is error
    assert ptb.history(vol).runs[0].status == "failed"


def test_a_cancelled_coroutine_is_interrupted(vol):
    @provenance(vol, "slow")
    async def slow():
        await asyncio.sleep(10)

    async def main():
        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (run,) = ptb.history(vol).runs
    assert run.status == "interrupted" and run.error["type"] == "asyncio.exceptions.CancelledError"


def test_concurrent_tasks_link_to_their_own_parent(vol):
    @provenance(vol, "inner")
    async def inner(tag):
        await asyncio.sleep(0.01)
        return current_run().parent

    @provenance(vol, "outer")
    async def outer(tag):
        await asyncio.sleep(0.01)
        child_task = asyncio.create_task(inner(tag))    # a task copies the context: same parent
        return current_run().id, await inner(tag), await child_task

    async def main():
        return await asyncio.gather(outer("a"), outer("b"), outer("c"))

    for outer_id, parent, task_parent in asyncio.run(main()):
        assert parent == task_parent == outer_id
    hist = ptb.history(vol)
    assert sorted(r.description for r in hist.runs) == ["inner"] * 6 + ["outer"] * 3
    assert all(r.parent is None for r in hist.runs if r.description == "outer")


def test_documented_blocks_inside_coroutines(vol):
    async def work(tag):
        with documented(vol, f"block {tag}") as run:
            await asyncio.sleep(0.01)
            assert current_run() is run
        return run.id

    async def main():
        with documented(vol, "main") as top:
            ids = await asyncio.gather(work("a"), work("b"))
        return top.id, ids

    top, ids = asyncio.run(main())
    parents = {r.id: r.parent for r in ptb.history(vol).runs}
    assert [parents[i] for i in ids] == [top, top] and parents[top] is None


# ------------------------------------------------------------------ generators
def test_an_exhausted_generator_ends_its_run(vol):
    @provenance(vol, "chunks", result=lambda total: f"returned {total}")
    def chunks(n):
        total = 0
        for i in range(n):
            total += i
            yield i
        return total

    assert inspect.isgeneratorfunction(chunks)
    gen = chunks(3)
    assert ptb.history(vol).runs == []
    assert next(gen) == 0
    assert [r.status for r in ptb.history(vol).runs] == ["running"]
    assert list(gen) == [1, 2]
    (run,) = ptb.history(vol).runs
    assert run.status == "succeeded" and ptb.history(vol).process(run.process).parameters == {"n": 3}
    assert result_of(vol, run) == ["returned 3"]


def test_a_generator_closed_early_succeeds_and_says_so(vol):
    closed = []

    @provenance(vol, "chunks")
    def chunks():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    for item in chunks():
        if item == 1:
            break
    (run,) = ptb.history(vol).runs
    assert closed == [True] and run.status == "succeeded"
    assert "closed by the caller after 2 items" in result_of(vol, run)[0]


def test_a_failing_generator_reraises_and_send_and_throw_pass_through(vol):
    @provenance(vol, "echo")
    def echo():
        received = None
        while True:
            try:
                received = yield received
            except KeyError:
                received = "caught"
            if received == "stop":
                raise ValueError("told to stop")

    gen = echo()
    assert next(gen) is None
    assert gen.send("hello") == "hello"
    assert gen.throw(KeyError("k")) == "caught"
    with pytest.raises(ValueError, match="told to stop"):
        gen.send("stop")
    (run,) = ptb.history(vol).runs
    assert run.status == "failed" and run.error["message"] == "told to stop"


def test_the_generators_run_is_current_only_while_its_body_runs(vol):
    @provenance(vol, "inner")
    def inner():
        return current_run().parent

    @provenance(vol, "items")
    def items():
        yield inner()
        yield inner()

    consumer_sees = []
    parents = []
    for parent in items():
        parents.append(parent)
        consumer_sees.append(current_run())
    gen_run = next(r for r in ptb.history(vol).runs if r.description == "items")
    assert parents == [gen_run.id, gen_run.id] and consumer_sees == [None, None]


def test_the_generator_does_not_start_when_the_volume_is_corrupt(vol, tmp_path):
    started = []

    @provenance(vol, "items")
    def items():
        started.append(True)
        yield 1

    (tmp_path / "v" / "provenance").write_text("][")
    with pytest.raises(ptb.CorruptProvenanceError):
        next(items())
    assert started == []


# ------------------------------------------------------------------ async generators
def test_async_generators_exhausted_closed_and_failing(vol):
    @provenance(vol, "stream")
    async def stream(n, fail=False):
        for i in range(n):
            await asyncio.sleep(0)
            yield i
        if fail:
            raise RuntimeError("stream broke")

    assert inspect.isasyncgenfunction(stream)

    async def main():
        got = [i async for i in stream(3)]
        early = stream(10)
        async for i in early:
            if i == 1:
                break
        await early.aclose()
        with pytest.raises(RuntimeError, match="stream broke"):
            async for _ in stream(2, fail=True):
                pass
        return got

    assert asyncio.run(main()) == [0, 1, 2]
    runs = ptb.history(vol).runs
    assert [r.status for r in runs] == ["succeeded", "succeeded", "failed"]
    assert result_of(vol, runs[0])[0].endswith("(3 items)")
    assert "closed by the caller after 2 items" in result_of(vol, runs[1])[0]


def test_an_async_generator_body_sees_its_run(vol):
    @provenance(vol, "stream")
    async def stream():
        yield current_run().description
        await asyncio.sleep(0)
        yield current_run().description

    async def main():
        out = []
        async for item in stream():
            out.append((item, current_run()))
        return out

    assert asyncio.run(main()) == [("stream", None), ("stream", None)]
