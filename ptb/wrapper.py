"""The decorated function: a wrapt proxy that pickles as a function does.

The wrapper objects pickle by reference, as plain functions and methods do,
so a decorated module-level function can be sent to a process pool. Engines
that pickle with cloudpickle (Dask, joblib/loky, Ray) send functions defined
in ``__main__`` (scripts, notebooks) or in closures *by value*: the decorated
function is then sent with its decoration and decorated again where it is
loaded (``_redecorate``).
"""
from __future__ import annotations

import inspect
import linecache
import os
import sys
import threading
from typing import Any, Callable, Dict, Optional, Tuple

import wrapt

from .capture.source import unwrap
from .errors import NotPicklableError

__all__ = ["Wrapper"]

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
    target = unwrap(func)
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
    target = unwrap(func)
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


class _LikeAFunction:
    """What both wrappers share: ``__class__`` as ``_proxy_class`` answers, and copies that are the original
    (functions are immutable for copy). No slots of its own: ``__dict__`` stays the proxy's, which is the
    wrapped function's (``functools.wraps`` reads it)."""

    __slots__ = ()
    __class__ = property(_proxy_class, _set_proxy_class)    # type: ignore[assignment]

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Each wrapper says how it pickles (by reference, or by value under cloudpickle); both override this."""
        raise NotImplementedError(f"{type(self).__name__} must say how it pickles")

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class _BoundWrapper(_LikeAFunction, wrapt.BoundFunctionWrapper):
    """A decorated method bound to an instance or class; pickles as ``getattr(holder, name)``."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        _cloudpickle_reducing(self)
        holder = self._self_instance if self._self_instance is not None else self._self_owner
        return getattr, (holder, self.__wrapped__.__name__)


class Wrapper(_LikeAFunction, wrapt.FunctionWrapper):
    """The decorated function: a wrapt proxy that pickles by its qualified name, as functions do.

    Unpickling imports the module and looks the name up again, which gives the
    decorated function there; like a plain function, one that is not
    reachable at module level under its ``__qualname__`` cannot be pickled
    with ``pickle``. cloudpickle pickles such functions (and those of
    ``__main__``) by value: then the wrapped function is sent by value with the
    decorator's arguments, and decorated again when it is loaded.
    """

    __bound_function_wrapper__ = _BoundWrapper
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
