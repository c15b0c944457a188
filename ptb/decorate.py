"""The ``@provenance`` decorator: every call of the decorated function documented as a run.

``decorator`` takes the volumes from the call's parameters, binds the call
(``ptb.capture.params.bind_call``) and makes a fresh ``Run`` per call. The
kind of call (``call_kind``) picks its driver (``runners``): the kind is that
of the callable actually called, never of what it wraps: a synchronous
``functools.wraps`` wrapper around an ``async def`` is synchronous, and a
``@contextlib.contextmanager`` function returns a context manager, not a
generator. The decorated function is a ``wrapper.Wrapper``. A function
registered with python-task-queue's ``@queueable`` before it is decorated is
registered again as the decorated one, so both decorator orders document every task.
"""
from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import wrapt

from .arguments import check_texts, names, targets
from .capture.source import unwrap
from .errors import InvalidInputError
from .run import Run, recording_warning
from .runners import RUNNERS
from .store.volume import Volume
from .wrapper import Wrapper

__all__ = ["provenance", "decorator", "call_kind"]


def provenance(volume: Any, description: str, *, motivation: Optional[str] = None,
               result: Union[str, Callable[[Any], Any], None] = None, parameters: Any = None,
               exclude: Sequence[str] = (), redact: Sequence[str] = (), secrets: Any = None,
               per_run: Union[str, Sequence[str]] = ()) -> Callable:
    """Document every call of the decorated function as a run on ``volume``.

    Args:
        volume: A CloudVolume, a cloudpath, a list of them, or the name of one
            of the function's parameters that holds one (or a list).
        description: What the function does; with the parameters, it names the process.
        motivation: Why (the motivation note); a default names the description.
        result: The result note's text, or a callable applied to the return value.
        parameters: Extra values recorded with the call's own (dict, namespace, ConfigParser, dataclass).
        exclude: Parameter names left out.
        redact: More parameter names whose values are secret (secret-looking names always are).
        secrets: CloudFiles secrets for cloudpaths.
        per_run: Parameter names whose values belong to each run (the chunk a
            task works on: ``bbox``, ``offset``), not to the process: every
            chunk of a step is then one process with many runs.

    Works on functions, methods, class- and staticmethods, coroutine functions
    (the run ends after the ``await``), generators and async generators (the
    run ends when they are exhausted or closed); see ``ptb.runners``. For
    async code, the run's start (environment capture, a few small writes)
    runs synchronously in the event loop on first await. The decorated
    function pickles by reference, as a plain function does, so it can be
    sent to process pools; cloudpickle (Dask, joblib, Ray) sends one it
    cannot import by value, with its decoration. Every text the run stores
    (exception message and traceback, notes, description) is scrubbed of
    secrets (the ``redact`` names too, and the values of the call's secret
    parameters wherever they reappear) before it is stored, and notes are
    bounded to ``MAX_NOTE`` characters.
    """
    from .capture.params import parameters_from

    found = targets(volume)
    parameters_from(parameters)           # an unusable container fails now, not at the first call
    check_texts(description, motivation, result)
    per_run = names(per_run, "per_run")

    def new_run(vols: List[Volume], raw: Dict[str, Any], source_file: Optional[str], func: Callable) -> Run:
        return Run(vols, description, raw, motivation=motivation, result=result, redact=redact, exclude=exclude,
                   source_file=source_file, func=func, per_run=per_run)

    remake = functools.partial(provenance, volume, description, motivation=motivation, result=result,
                               parameters=parameters, exclude=exclude, redact=redact, secrets=secrets,
                               per_run=per_run)
    return decorator(found, new_run, parameters=parameters, secrets=secrets, remake=remake)


def decorator(found: Sequence[Any], new_run: Callable[..., Run], *, parameters: Any = None,
              secrets: Any = None, remake: Optional[Callable[[], Callable]] = None) -> Callable[[Callable], Callable]:
    """The decorator ``ptb.provenance`` returns (its arguments already checked).

    ``found`` are volumes, cloudpaths or names of the function's parameters;
    ``new_run(volumes, raw_parameters, source_file, func)`` makes the run of one call.
    ``remake()``, picklable, makes this decorator again: it is what a function
    sent by value carries, to be decorated again where it is loaded.
    """
    from .capture.params import bind_call, parameters_from

    is_name = [isinstance(t, str) and "://" not in t for t in found]
    names = [t for t, name in zip(found, is_name) if name]
    fixed = [Volume.resolve(t, secrets) for t, name in zip(found, is_name) if not name]

    def decorate(func: Callable) -> Callable:
        _refuse_lazy(func)
        target = unwrap(func, partials=False)      # for the signature and the source; the kind is func's own
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

        def make_run(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Union[Run, str]:
            """The call's run, or why there is none (the call does not bind, or has no volume)."""
            try:
                bound = bind_call(wrapped, instance, args, kwargs)
            except Exception as exc:
                recording_warning(f"ptb could not bind the parameters of {qualname} ({exc!r}): a ptb bug, "
                                  f"please report it; the call is recorded without its parameters")
                bound = {}
            if bound is None:
                return "the call does not match its signature"
            vols = list(fixed)
            for name in names:
                holder = bound if name in bound else bound.get(varkw or "", {})
                if name not in holder:
                    return "its volume parameter is missing from the call"
                vols += _resolve_value(holder[name], name, secrets)
            return new_run(vols, {**bound, **parameters_from(parameters)}, source_file, target)

        @wrapt.decorator(proxy=Wrapper)
        def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
            run = make_run(wrapped, instance, args, kwargs)
            if isinstance(run, str):     # the function raises its own TypeError, as it would undecorated
                value = wrapped(*args, **kwargs)
                recording_warning(f"{qualname} was not documented: {run}")
                return value
            if kind == "sync":
                with run:
                    value = wrapped(*args, **kwargs)
                    run.returned(value)
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



def _resolve_value(value: Any, name: str, secrets: Any) -> List[Volume]:
    if value is None:
        raise InvalidInputError(f"parameter {name!r} is None: ptb needs a CloudVolume or a cloudpath there to log to")
    try:
        return [Volume.resolve(v, secrets) for v in targets(value)]
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
