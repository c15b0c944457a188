"""Where parameter values come from: a call bound to its signature, or a container a user gave.

``bind_call`` binds a call (every form wrapt passes) to the function's own
signature; ``parameters_from`` reads the name -> value pairs of a dict,
namespace, ConfigParser or dataclass. Neither converts a value: that is
``ptb.capture.params``' job.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import types
from collections.abc import Mapping
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import InvalidInputError

__all__ = ["bind_call", "task_call", "constructor_arguments", "parameters_from", "config_items", "module",
           "type_name"]


def type_name(value: Any) -> str:
    """``module.Qualname`` of ``value``'s type; never raises."""
    try:
        t = type(value)
        return f"{t.__module__}.{t.__qualname__}"
    except Exception:
        return "<unknown type>"


def module(name: str) -> Any:
    """A module only if it is already imported: a value of its types cannot exist otherwise."""
    return sys.modules.get(name)


def config_items(config: Any) -> list[tuple[str, Any]]:
    """The real values of a ConfigParser (or one section), interpolated where possible."""
    cp = module("configparser")
    if isinstance(config, cp.SectionProxy):
        return [(k, config_value(config.parser, config.name, k)) for k in config]
    items = []
    defaults = config.defaults()
    if defaults:
        items.append((config.default_section, dict(defaults)))
    for section in config.sections():
        values = {k: config_value(config, section, k) for k in config.options(section)}
        items.append((section, values))
    return items


def config_value(config: Any, section: str, key: str) -> Any:
    try:
        return config.get(section, key)
    except Exception:     # broken interpolation: the raw text is the real value
        return config.get(section, key, raw=True)


def parameters_from(obj: Any) -> Dict[str, Any]:
    """The name -> value pairs held by a parameters container given by a user.

    Accepts None, a mapping, ``types.SimpleNamespace``, ``argparse.Namespace``,
    a ``ConfigParser`` (each section a dict of its real values) or a dataclass
    instance; anything else is an ``InvalidInputError``.
    """
    if obj is None:
        return {}
    cp, ap = module("configparser"), module("argparse")
    if cp is not None and isinstance(obj, cp.RawConfigParser):
        return {str(k): v for k, v in config_items(obj)}
    if isinstance(obj, Mapping):
        return {k if isinstance(k, str) else str(k): v for k, v in obj.items()}
    if isinstance(obj, types.SimpleNamespace) or (ap is not None and isinstance(obj, ap.Namespace)):
        return dict(vars(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise InvalidInputError(
        f"parameters of type {type_name(obj)} are not supported; give a dict (or other "
        "mapping), types.SimpleNamespace, argparse.Namespace, configparser.ConfigParser, "
        "a dataclass instance, or None")



_SELF_NAMES = ("self", "cls", "mcs", "mcls", "metacls", "klass")


def _signature(target: Callable) -> inspect.Signature:
    """``inspect.signature``, once per function (a chunk loop calls one function thousands of times)."""
    try:
        return _cached_signature(target)
    except TypeError:       # unhashable callables
        return inspect.signature(target)


@functools.lru_cache(maxsize=1024)
def _cached_signature(target: Callable) -> inspect.Signature:
    return inspect.signature(target)


def bind_call(func: Callable, instance: Any, args: tuple, kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The parameters of one call, by name, with defaults applied and no ``self``/``cls``.

    Takes the ``(wrapped, instance, args, kwargs)`` a ``wrapt.decorator`` gets,
    for every call form: function, method, classmethod, staticmethod, and a
    method called through its class (``K.m(obj, 7)``, where wrapt passes a
    partial). Binds against the unwrapped function's own signature; ``*args``
    is kept as a list and ``**kwargs`` as a dict under their names. None when
    the call does not bind: that is the caller's error, and calling the
    function raises it as it would undecorated. Anything else raised here is
    a ptb bug, and is not hidden.
    """
    target = inspect.unwrap(getattr(func, "__func__", func))
    sig = _signature(target)
    params = list(sig.parameters.values())
    first = params[0] if params else None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    prepend = (
        instance is not None and first is not None and first.kind in positional
        and (first.name in _SELF_NAMES or getattr(func, "__self__", None) is instance
             or type(func).__name__ == "PartialCallableObjectProxy"))
    try:
        bound = sig.bind(*((instance,) + tuple(args) if prepend else args), **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    out = dict(bound.arguments)
    if first is not None and (prepend or (first.kind in positional and first.name in ("self", "cls"))):
        out.pop(first.name, None)
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL and p.name in out:
            out[p.name] = list(out[p.name])
        elif p.kind is inspect.Parameter.VAR_KEYWORD and p.name in out:
            out[p.name] = dict(out[p.name])
    return out


@functools.lru_cache(maxsize=256)
def _constructor(cls: type) -> Tuple[Tuple[str, ...], Dict[str, Any]]:
    """The names of ``cls``'s constructor parameters (no ``self``, no ``*args``/``**kwargs``) and their defaults."""
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    except (TypeError, ValueError):
        return (), {}
    named = [p for p in params if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    return (tuple(p.name for p in named),
            {p.name: p.default for p in named if p.default is not inspect.Parameter.empty})


def constructor_arguments(task: Any) -> Dict[str, Any]:
    """A task object's constructor arguments, read from the object as python-task-queue sends them.

    A ``RegisteredTask`` keeps its arguments' names in ``_args``, and its
    ``payload()`` sends the object's attributes of those names: so do we,
    which makes a task built here and the same task rebuilt from a queue's
    JSON give the same parameters. Any other class: the attributes named like
    its constructor's parameters (a dataclass's fields, ``self.mip = mip``).
    Parameters not given are their defaults, so both ways of building a task
    name the same step.
    """
    names, defaults = _constructor(type(task))  # type: ignore[arg-type]    # classes are hashable
    state = getattr(task, "__dict__", None)
    state = state if isinstance(state, dict) else {}
    given = state.get("_args")
    out: Dict[str, Any] = {}
    if isinstance(given, Mapping) and hasattr(type(task), "_arg_names"):      # python-task-queue's RegisteredTask
        for name in given:
            out[str(name)] = state.get(name, given[name])
    else:
        for name in names:
            if name in state:
                out[name] = state[name]
            elif not name.startswith("_"):
                value = getattr(task, name, _MISSING)       # slots, properties; never a method
                if value is not _MISSING and not inspect.ismethod(value):
                    out[name] = value
    for name, default in defaults.items():
        out.setdefault(name, default)
    return out


_MISSING = object()


def task_call(func: Callable, instance: Any, args: tuple, kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The parameters of one ``execute()`` of a task object: its constructor's arguments, then
    ``execute``'s own (none, usually); None when the call does not bind."""
    own = bind_call(func, instance, args, kwargs)
    if own is None:
        return None
    return {**(constructor_arguments(instance) if instance is not None else {}), **own}
