"""How a ``@provenance``-decorated callable runs as one documented run.

``decorator`` takes the volumes from the call's parameters, binds the call
(``ptb.capture.params.bind_call``) and makes a fresh ``Run`` per call. A plain
function runs inside the run. A coroutine function's run ends after the
``await``, not when the coroutine object is returned (STYLE 12).
Generators and async generators are driven step by step (PEP 380 by hand), so
the run ends when they are exhausted, fail or are closed, and it is the
current run only while their own body runs, not while they are suspended.

``RUNNERS`` maps a kind to its driver, ``driver(run, returned_object)``; the
decorator runs plain functions itself, inside ``with run:``. The kind is that
of the callable actually called, never of what it wraps: a synchronous
``functools.wraps`` wrapper around an ``async def`` is synchronous, and a
``@contextlib.contextmanager`` function returns a context manager, not a
generator.

The wrapper objects pickle by reference, as plain functions and methods do,
so a decorated module-level function can be sent to a process pool. Engines
that pickle with cloudpickle (Dask, joblib/loky, Ray) send functions defined
in ``__main__`` (scripts, notebooks) or in closures *by value*: the decorated
function is then sent with its decoration and decorated again where it is
loaded (``_redecorate``). A function registered with python-task-queue's
``@queueable`` before it is decorated is registered again as the decorated one,
so both decorator orders document every task.

In coroutines and async generators, the run's start (environment capture, a
few small storage writes) runs synchronously in the event loop when the
coroutine is first awaited: it is cheap once the environment is cached, but
it does block the loop for that time.
"""
from __future__ import annotations

import inspect
import linecache
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import wrapt

from .errors import InvalidInputError, NotPicklableError
from .run import Run, _targets, _warn
from .store.volume import Volume

__all__ = ["RUNNERS", "Wrapper", "call_kind", "decorator"]


def decorator(targets: Sequence[Any], new_run: Callable[..., Run], *, parameters: Any = None,
              secrets: Any = None, remake: Optional[Callable[[], Callable]] = None) -> Callable[[Callable], Callable]:
    """The decorator ``ptb.provenance`` returns (its arguments already checked).

    ``targets`` are volumes, cloudpaths or names of the function's parameters;
    ``new_run(volumes, raw_parameters, source_file, func)`` makes the run of one call.
    ``remake()``, picklable, makes this decorator again: it is what a function
    sent by value carries, to be decorated again where it is loaded.
    """
    from .capture.params import bind_call, parameters_from

    is_name = [isinstance(t, str) and "://" not in t for t in targets]
    names = [t for t, name in zip(targets, is_name) if name]
    fixed = [Volume.resolve(t, secrets) for t, name in zip(targets, is_name) if not name]

    def decorate(func: Callable) -> Callable:
        _refuse_lazy(func)
        target = _unwrap(func)      # for the signature and the source; the kind is func's own
        if not callable(target):
            raise InvalidInputError(f"@ptb.provenance decorates functions, not {type(func).__name__}")
        qualname = getattr(target, "__qualname__", target)
        sig_params = inspect.signature(target).parameters
        varkw = next((p.name for p in sig_params.values() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        unknown = [n for n in names if n not in sig_params and varkw is None]
        if unknown:
            raise InvalidInputError(
                f"{qualname} has no parameter {unknown[0]!r} to take the volume from; "
                f"its parameters are {', '.join(sig_params) or 'none'} (a cloudpath must contain '://')")
        source_file = inspect.getsourcefile(target) if getattr(target, "__code__", None) is not None else None
        kind = call_kind(func)

        def make_run(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Optional[Run]:
            bound = bind_call(wrapped, instance, args, kwargs)
            vols = list(fixed)
            for name in names:
                holder = bound if name in bound else bound.get(varkw or "", {})
                if name not in holder:
                    return None         # the call does not bind: let the function raise its own TypeError
                vols += _resolve_value(holder[name], name, secrets)
            return new_run(vols, {**bound, **parameters_from(parameters)}, source_file, target)

        @wrapt.decorator(proxy=Wrapper)
        def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
            run = make_run(wrapped, instance, args, kwargs)
            if run is None:
                value = wrapped(*args, **kwargs)
                _warn(f"{qualname} was not documented: its volume parameter is missing from the call")
                return value
            if kind == "sync":
                with run:
                    value = wrapped(*args, **kwargs)
                    run._returned(value)
                return value
            return RUNNERS[kind](run, wrapped(*args, **kwargs))

        decorated = wrapper(func)
        decorated._self_remake = remake  # type: ignore[attr-defined]
        _register_with_taskqueue(func, decorated)
        return decorated

    return decorate


_LAZY = {("ray.remote_function", "RemoteFunction"): "@ray.remote",
         ("dask.delayed", "DelayedLeaf"): "@dask.delayed", ("dask.delayed", "Delayed"): "@dask.delayed"}


def _refuse_lazy(func: Any) -> None:
    """Refuse to decorate an engine's task object: calling it only builds the task, which runs undocumented."""
    engine = _LAZY.get((type(func).__module__, type(func).__name__))
    if engine is not None:
        name = getattr(func, "__name__", None) or getattr(func, "_function_name", None) or repr(func)
        raise InvalidInputError(
            f"@ptb.provenance is above {engine} on {name}: calling the result would only build a task, and the "
            f"task itself would run undocumented. Put {engine} above @ptb.provenance (it decorates the function "
            f"the engine runs)")


def _register_with_taskqueue(func: Any, decorated: Any) -> None:
    """Make python-task-queue run the decorated function when ``@queueable`` registered the bare one.

    ``@queueable`` keys its public ``REGISTRY`` by ``(__module__, __name__)``,
    and a task names its function by that key, so under ``@ptb.provenance``
    over ``@queueable`` workers would look up the undecorated function.
    """
    registry = getattr(sys.modules.get("taskqueue.queueablefns"), "REGISTRY", None)
    if not isinstance(registry, dict):
        return
    key = (getattr(func, "__module__", None), getattr(func, "__name__", None))
    if registry.get(key) is func:
        registry[key] = decorated


def _unwrap(func: Any) -> Any:
    target = getattr(func, "__func__", func)
    try:
        return inspect.unwrap(target)
    except ValueError:
        return target


def _resolve_value(value: Any, name: str, secrets: Any) -> List[Volume]:
    if value is None:
        raise InvalidInputError(f"parameter {name!r} is None: ptb needs a CloudVolume or a cloudpath there to log to")
    try:
        return [Volume.resolve(v, secrets) for v in _targets(value)]
    except InvalidInputError as exc:
        raise InvalidInputError(f"parameter {name!r}: {exc}") from None


def call_kind(func: Any) -> str:
    """``sync``, ``coro``, ``gen`` or ``agen``: how a call of ``func`` itself returns.

    ``inspect.is*function`` look at the function's own code (and through
    partials), never through ``__wrapped__``, so no unwrapping here.
    """
    target = getattr(func, "__func__", func)        # classmethod / staticmethod objects
    if inspect.isasyncgenfunction(target):
        return "agen"
    if inspect.isgeneratorfunction(target):
        return "gen"
    return "coro" if inspect.iscoroutinefunction(target) else "sync"


_asked = threading.local()      # the wrapper a cloudpickle pickler is reducing now, and that pickler's module


def _cloudpickler_asking() -> Optional[str]:
    """The module of the cloudpickle pickler asking ``isinstance(wrapper, FunctionType)``, if that is who asks.

    Frame 0 is this function, 1 the ``__class__`` getter, 2 its caller. Any
    copy counts: ``cloudpickle``, ``joblib.externals.cloudpickle``, ``ray.cloudpickle``.
    """
    frame = sys._getframe(2)
    if frame.f_code.co_name != "reducer_override":
        return None
    module = frame.f_globals.get("__name__")
    return module if isinstance(module, str) and "cloudpickle" in module.split(".") else None


def _proxy_class(self: Any) -> Any:
    """``__class__``: the wrapped function's, as wrapt answers, except to cloudpickle's reducer.

    cloudpickle's ``reducer_override`` takes anything that passes
    ``isinstance(obj, FunctionType)`` (a wrapt proxy does) for a function and,
    when it pickles it by value, rebuilds it from ``__code__``: the wrapped
    function, without its decoration (cloudpickle issue 464). Told the proxy's
    own class, it leaves the object to ``__reduce_ex__``, which keeps the
    decoration. Everything else (``inspect``, ``asyncio``) still sees a function.
    """
    module = _cloudpickler_asking()
    if module is None:
        return self.__wrapped__.__class__
    _asked.value = (id(self), module)
    return type(self)


def _set_proxy_class(self: Any, value: Any) -> None:
    self.__wrapped__.__class__ = value


def _cloudpickle_reducing(obj: Any) -> Optional[str]:
    """The module of the cloudpickle pickler reducing ``obj`` right now (told by ``_proxy_class``), else None."""
    asked: Optional[Tuple[int, str]] = getattr(_asked, "value", None)
    _asked.value = None
    return asked[1] if asked is not None and asked[0] == id(obj) else None


def _importable(obj: Any, pickler_module: str) -> bool:
    """Whether cloudpickle would pickle ``obj`` by reference: found under its name, in a module not sent by value."""
    module_name, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    module = sys.modules.get(module_name) if isinstance(module_name, str) and module_name != "__main__" else None
    if module is None or not isinstance(qualname, str):
        return False
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        return False
    registry = getattr(sys.modules.get(pickler_module), "list_registry_pickle_by_value", lambda: ())()
    return not any(module_name == name or str(module_name).startswith(name + ".") for name in registry)


Origin = Tuple[str, int, Tuple[str, ...]]       # a function's file, first line, and source lines
_origins: Dict[Any, Optional[Origin]] = {}      # by code object: a function sent by value is often sent again


def _origin(func: Any) -> Optional[Origin]:
    """The function's file and source lines here, for the process it is sent to by value.

    cloudpickle sends code without its file name (``<dynamic-code>``), so the
    receiving process could record neither the function's source nor the git
    checkout holding it; it gets them from the sender, who has what runs.
    """
    target = _unwrap(func)
    code = getattr(target, "__code__", None)
    if code is None:
        return None
    if code not in _origins:
        try:
            lines, first = inspect.getsourcelines(target)
            origin: Optional[Origin] = (code.co_filename, first, tuple(lines))
        except (OSError, TypeError):        # typed at a REPL or from stdin: there is no source to send
            origin = None
        if len(_origins) > 256:
            _origins.clear()
        _origins[code] = origin
    return _origins[code]


def _restore_origin(func: Any, origin: Origin) -> None:
    """Give a function that came by value its file name again, and its source where that file is absent."""
    filename, first, lines = origin
    target = _unwrap(func)
    code = getattr(target, "__code__", None)
    if code is None or code.co_filename == filename:
        return
    try:
        target.__code__ = code.replace(co_filename=filename)
    except (AttributeError, TypeError, ValueError):
        return
    if filename not in linecache.cache and not os.path.exists(filename):    # a notebook cell, another machine
        padded = ["\n"] * (first - 1) + list(lines)
        linecache.cache[filename] = (sum(map(len, padded)), None, padded, filename)


def _redecorate(remake: Callable[[], Callable], func: Any, origin: Optional[Origin] = None) -> Any:
    """Unpickle a decorated function sent by value: decorate the function again with the same arguments."""
    if origin is not None:
        _restore_origin(func, origin)
    return remake()(func)


class _BoundWrapper(wrapt.BoundFunctionWrapper):
    """A decorated method bound to an instance or class; pickles as ``getattr(holder, name)``."""

    __class__ = property(_proxy_class, _set_proxy_class)    # type: ignore[assignment]

    def __reduce_ex__(self, protocol: Any) -> Any:
        _cloudpickle_reducing(self)
        holder = self._self_instance if self._self_instance is not None else self._self_owner
        return getattr, (holder, self.__wrapped__.__name__)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class Wrapper(wrapt.FunctionWrapper):
    """The decorated function: a wrapt proxy that pickles by its qualified name, as functions do.

    Unpickling imports the module and looks the name up again, which gives the
    decorated function there; like a plain function, one that is not
    reachable at module level under its ``__qualname__`` cannot be pickled
    with ``pickle``. cloudpickle pickles such functions (and those of
    ``__main__``) by value: then the wrapped function is sent by value with the
    decorator's arguments, and decorated again when it is loaded.
    """

    __bound_function_wrapper__ = _BoundWrapper
    __class__ = property(_proxy_class, _set_proxy_class)    # type: ignore[assignment]

    def __reduce_ex__(self, protocol: Any) -> Any:
        pickler = _cloudpickle_reducing(self)
        if pickler is not None and not _importable(self, pickler):
            remake = getattr(self, "_self_remake", None)
            if remake is None:
                raise NotPicklableError(f"cannot send {self!r} by value: it was decorated without the arguments "
                                        f"to decorate it again; define it at module level in an importable module")
            return _redecorate, (remake, self.__wrapped__, _origin(self.__wrapped__))
        name = getattr(self.__wrapped__, "__qualname__", None)
        if not isinstance(name, str):
            raise NotPicklableError(f"cannot pickle {self!r}: it wraps {type(self.__wrapped__).__name__}, "
                                    f"which has no __qualname__ to import it by")
        return name

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:          # functions are immutable for copy: copying gives the same object
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


def _start_or_close(run: Any, close: Callable[[], Any]) -> None:
    try:
        run._start()
    except BaseException:
        close()         # the user's code never ran; no "never awaited" warning either
        raise


def _step(run: Any, call: Callable[[Any], Any], arg: Any) -> Any:
    token = run._activate()       # current only while the wrapped body runs, not while it is suspended
    try:
        return call(arg)
    finally:
        run._deactivate(token)


async def _astep(run: Any, call: Callable[[Any], Any], arg: Any) -> Any:
    token = run._activate()
    try:
        return await call(arg)
    finally:
        run._deactivate(token)


async def _coroutine(run: Any, coro: Any) -> Any:
    """Await ``coro`` as the run; the start runs in the event loop, synchronously (see the module doc)."""
    _start_or_close(run, coro.close)
    try:
        value = await _astep(run, lambda _: coro, None)
    except BaseException as exc:
        run._finish(exc)
        raise
    run._returned(value)
    run._finish()
    return value


def _generator(run: Any, gen: Any) -> Any:
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
                run._ended_early = f"closed by the caller after {count} item(s)"
                _step(run, lambda _: gen.close(), None)
                raise
            except BaseException as exc:
                call, arg = gen.throw, exc
    except BaseException as exc:
        run._finish(None if isinstance(exc, GeneratorExit) else exc)
        raise
    run._ended_early = f"{count} item(s)"
    run._returned(returned)
    run._finish()
    return returned


async def _async_generator(run: Any, agen: Any) -> Any:
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
                run._ended_early = f"closed by the caller after {count} item(s)"
                await _astep(run, lambda _: agen.aclose(), None)
                raise
            except BaseException as exc:
                call, arg = agen.athrow, exc
    except BaseException as exc:
        run._finish(None if isinstance(exc, GeneratorExit) else exc)
        raise
    run._ended_early = f"{count} item(s)"
    run._finish()


RUNNERS = {"coro": _coroutine, "gen": _generator, "agen": _async_generator}
