"""Drivers: how a coroutine, generator or async generator call runs as one documented run.

``RUNNERS`` maps a call kind (``decorate.call_kind``) to its driver,
``driver(run, returned_object)``; the decorator runs plain functions itself,
inside ``with run:``. A coroutine function's run ends after the ``await``,
not when the coroutine object is returned (STYLE 12). Generators and async
generators are driven step by step (PEP 380 by hand), so the run ends when
they are exhausted, fail or are closed, and it is the current run only while
their own body runs, not while they are suspended. Drivers use ``Run``'s
public protocol only (``start``, ``activate``/``deactivate``, ``returned``,
``finish``, ``ending``).

In coroutines and async generators, the run's start (environment capture, a
few small storage writes) runs synchronously in the event loop when the
coroutine is first awaited: it is cheap once the environment is cached, but
it does block the loop for that time.
"""
from __future__ import annotations

from typing import Any, Callable

from .read import fmt
from .run import Run

__all__ = ["RUNNERS"]


def _start_or_close(run: Run, close: Callable[[], Any]) -> None:
    try:
        run.start()
    except BaseException:
        close()         # the user's code never ran; no "never awaited" warning either
        raise


def _step(run: Run, call: Callable[[Any], Any], arg: Any) -> Any:
    token = run.activate()       # current only while the wrapped body runs, not while it is suspended
    try:
        return call(arg)
    finally:
        run.deactivate(token)


async def _astep(run: Run, call: Callable[[Any], Any], arg: Any) -> Any:
    token = run.activate()
    try:
        return await call(arg)
    finally:
        run.deactivate(token)


async def _coroutine(run: Run, coro: Any) -> Any:
    """Await ``coro`` as the run; the start runs in the event loop, synchronously (see the module doc)."""
    _start_or_close(run, coro.close)
    try:
        value = await _astep(run, lambda _: coro, None)
    except BaseException as exc:
        run.finish(exc)
        raise
    run.returned(value)
    run.finish()
    return value


def _generator(run: Run, gen: Any) -> Any:
    """Drive ``gen``; the run ends when it is exhausted, fails or is closed."""
    _start_or_close(run, gen.close)
    count, call, arg = 0, gen.send, None
    try:
        while True:
            try:
                item = _step(run, call, arg)
            except StopIteration as stop:
                returned = stop.value
                break
            count += 1
            try:
                call, arg = gen.send, (yield item)
            except GeneratorExit:
                run.ending = f"closed by the caller after {fmt.count(count, 'item')}"
                _step(run, lambda _: gen.close(), None)
                raise
            except BaseException as exc:
                call, arg = gen.throw, exc
    except BaseException as exc:
        run.finish(None if isinstance(exc, GeneratorExit) else exc)
        raise
    run.ending = fmt.count(count, "item")
    run.returned(returned)
    run.finish()
    return returned


async def _async_generator(run: Run, agen: Any) -> Any:
    """The same for async generators: ``asend``/``athrow``/``aclose``."""
    _start_or_close(run, lambda: None)      # an async generator never started needs no closing
    count, call, arg = 0, agen.asend, None
    try:
        while True:
            try:
                item = await _astep(run, call, arg)
            except StopAsyncIteration:
                break
            count += 1
            try:
                call, arg = agen.asend, (yield item)
            except GeneratorExit:
                run.ending = f"closed by the caller after {fmt.count(count, 'item')}"
                await _astep(run, lambda _: agen.aclose(), None)
                raise
            except BaseException as exc:
                call, arg = agen.athrow, exc
    except BaseException as exc:
        run.finish(None if isinstance(exc, GeneratorExit) else exc)
        raise
    run.ending = fmt.count(count, "item")
    run.finish()


RUNNERS = {"coro": _coroutine, "gen": _generator, "agen": _async_generator}
