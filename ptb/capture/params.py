"""The parameters: what a call was given, made JSON-safe and free of secrets.

Recording must never fail the user's call, so conversion degrades instead of
raising: an unknown object becomes its type and a short repr, a value too big
to store becomes a summary with a hash. Secrets never reach the volume: values
under secret-looking names are replaced by ``REDACTED`` (at any depth, in
mappings, namedtuples and lists of ``(name, value)`` pairs), and every string
stored, reprs included, is scrubbed of the secrets it holds (``ptb.capture.redact``).
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import hashlib
import itertools
import json
import math
import os
import re
import sys
import types
from collections import deque
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, Optional

from ..errors import warn
from .binding import bind_call, config_items, parameters_from
from .binding import module as _module
from .binding import type_name as _type_name
from .redact import REDACTED, SECRET_WORDS, is_secret_name, scrub_text, scrubbed, strip_url_credentials
from .secretvalues import _secret_name, is_secret_flag, secret_values

__all__ = [
    "REDACTED", "SECRET_WORDS", "ParameterWarning", "is_secret_name", "strip_url_credentials",
    "scrub_text", "to_jsonable", "parameters_from", "prepare_parameters", "bind_call",
]

MAX_BYTES = 64 * 1024
MAX_TOTAL_BYTES = 512 * 1024    # all of one record's parameters: half the journal's record bound
MAX_DEPTH = 20
CYCLE = "<cycle>"
TOO_DEEP = "<too deep>"
_HASH_ARRAY_BYTES = 1 << 20   # numpy arrays up to 1 MiB get a content hash
LIST_ARRAY_ITEMS = 1024       # numeric numpy arrays up to this many items are stored as lists (values, not hashes)
_LIST_KINDS = "biufU"         # bool, int, uint, float, str: what a JSON queue sends as lists of the same values
_MAX_ITEMS = 1_000_000        # beyond this, containers are summarised without being walked

_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")


class ParameterWarning(UserWarning):
    """A parameter value was recorded as a summary or a repr instead of its value."""


def _encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _summary(value: Any, size: int, unit: str = "bytes", digest: Optional[str] = None) -> dict:
    return {"type": _type_name(value), "summary": f"too large: {size} {unit}", "sha256": digest}


class _Converter:
    """One conversion: its limits, its redaction rule and what had to degrade."""

    def __init__(self, max_bytes: int, secret: Optional[Callable[[str], bool]] = None,
                 extra: tuple = (), values: tuple = ()):
        self.max_bytes = max_bytes
        self.secret = secret
        self.extra = extra       # more secret names, for the text scrubber
        self.values = values     # secret values known to the run, scrubbed wherever they reappear
        self.degraded: list[str] = []
        self._path: set[int] = set()

    def top(self, value: Any) -> Any:
        out = self.convert(value, 0)
        if _small(out, self.max_bytes):
            return out
        try:
            data = _encode(out)
        except Exception:
            self.degraded.append("not JSON-safe")
            return self.fallback(value)
        if len(data) > self.max_bytes:
            self.degraded.append("too large")
            return _summary(value, len(data), digest=hashlib.sha256(data).hexdigest())
        return out

    def fallback(self, value: Any) -> dict:
        self.degraded.append("repr")
        try:
            text = self.text(scrubbed(_ADDRESS.sub("", repr(value)[:1000]), self.extra, self.values)[:200])
        except Exception:
            text = "<unrepresentable>"
        return {"type": _type_name(value), "repr": text}

    def text(self, value: str) -> Any:
        value = str.__str__(value)
        if len(value) > self.max_bytes:
            data = value.encode("utf-8", "backslashreplace")
            self.degraded.append("too large")
            return _summary(value, len(data), digest=hashlib.sha256(data).hexdigest())
        return scrubbed(value, self.extra, self.values)

    @property
    def limit(self) -> int:
        """The most items of one container that are converted."""
        return min(_MAX_ITEMS, self.max_bytes // 2)

    def bounded(self, items: Iterable[Any]) -> Optional[list]:
        """The first items of an iterable, or None (degraded) past ``limit``: ``len()`` may lie, and
        ``__iter__`` may never end."""
        taken = list(itertools.islice(iter(items), self.limit + 1))
        if len(taken) > self.limit:
            self.degraded.append("too large")
            return None
        return taken

    def mapping(self, items: Iterable[tuple[Any, Any]], depth: int) -> Any:
        pairs = self.bounded(items)
        if pairs is None:
            return {"type": "mapping", "summary": f"too large: {self.limit} items or more", "sha256": None}
        out: Dict[str, Any] = {}
        for key, val in pairs:
            key = key if isinstance(key, str) else self.key(key)
            key = self.text(key) if isinstance(key, str) and len(key) <= self.max_bytes else "<key>"
            if self.secret is not None and self.secret(key):
                out[key] = REDACTED
            else:
                out[key] = self.convert(val, depth + 1)
        return out

    def key(self, key: Any) -> str:
        if isinstance(key, enum.Enum):
            return str(key.name)
        try:
            return str(key)
        except Exception:
            return _type_name(key)

    def convert(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self.degraded.append("too deep")
            return TOO_DEEP
        try:
            return self._convert(value, depth)
        except Exception:
            return self.fallback(value)

    def _convert(self, v: Any, depth: int) -> Any:
        t = type(v)
        if v is None or t is bool:
            return v
        if t is int:
            if v.bit_length() < 10_000:
                return v
            self.degraded.append("too large")
            return _summary(v, v.bit_length(), "bits")
        if t is str:
            return self.text(v)
        if t is float:
            return v if math.isfinite(v) else str(v)
        if isinstance(v, enum.Enum):
            return self.enum(v, depth)
        np = _module("numpy")
        if np is not None and isinstance(v, np.ndarray):
            return self.ndarray(v, depth)
        if np is not None and isinstance(v, np.generic):
            item = v.item()
            return self.fallback(v) if isinstance(item, np.generic) else self.convert(item, depth)
        if isinstance(v, int):
            return self._convert(int(v), depth)
        if isinstance(v, float):
            return self._convert(float(v), depth)
        if isinstance(v, (bytes, bytearray, memoryview)):
            data = bytes(v)
            return {"type": "bytes", "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
            return v.isoformat()
        if isinstance(v, datetime.timedelta):
            return v.total_seconds()
        if isinstance(v, os.PathLike):
            path = os.fspath(v)
            return self.text(path) if isinstance(path, str) else self.convert(path, depth)
        up = _module("urllib.parse")
        if up is not None and isinstance(v, (up.ParseResult, up.SplitResult, up.DefragResult)):
            return self.text(v.geturl())
        for mod, cls in (("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID")):
            if _module(mod) is not None and isinstance(v, getattr(_module(mod), cls)):
                return str(v)
        if isinstance(v, str):
            return self.text(v)
        if t.__module__.startswith("cloudvolume") and hasattr(v, "cloudpath") and hasattr(v, "mip"):
            return {"cloudpath": self.text(str(v.cloudpath)), "mip": self.convert(v.mip, depth)}
        if t.__module__.startswith("cloudvolume") and t.__name__ == "Bbox" and hasattr(v, "minpt"):
            return self.bbox(v, depth)
        if id(v) in self._path:
            self.degraded.append("cycle")
            return CYCLE
        self._path.add(id(v))
        try:
            return self.container(v, depth)
        finally:
            self._path.discard(id(v))

    def container(self, v: Any, depth: int) -> Any:
        sized = isinstance(v, (list, tuple, deque, set, frozenset, dict, Mapping))
        if sized and len(v) > self.limit:
            self.degraded.append("too large")
            return _summary(v, len(v), "items")
        if isinstance(v, tuple) and hasattr(v, "_asdict") and hasattr(type(v), "_fields"):
            return self.mapping(v._asdict().items(), depth)     # a namedtuple: keep its field names
        if isinstance(v, (list, tuple, deque)):
            return self.sequence(v, depth)
        if isinstance(v, (set, frozenset)):
            members = self.bounded(v)
            if members is None:
                return _summary(v, self.limit, "items or more")
            try:
                items = sorted(members)
            except Exception:
                items = sorted(members, key=lambda x: (_type_name(x), self.fallback_repr(x)))
            return [self.convert(x, depth + 1) for x in items]
        cp = _module("configparser")
        if cp is not None and isinstance(v, (cp.RawConfigParser, cp.SectionProxy)):
            return self.mapping(config_items(v), depth)
        if isinstance(v, Mapping):
            return self.mapping(v.items(), depth)
        ap = _module("argparse")
        if isinstance(v, types.SimpleNamespace) or (ap is not None and isinstance(v, ap.Namespace)):
            return self.mapping(vars(v).items(), depth)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return self.mapping(((f.name, getattr(v, f.name)) for f in dataclasses.fields(v)), depth)
        return self.fallback(v)

    def sequence(self, v: Any, depth: int) -> Any:
        """A list; an item that is a ``(name, value)`` pair with a secret name keeps only the name, and
        the item after a secret flag (``["mysql", "--password", "..."]``) is redacted."""
        items = self.bounded(v)
        if items is None:
            return _summary(v, self.limit, "items or more")
        out: list = []
        for i, x in enumerate(items):
            if self.secret_pair(x):
                out.append([self.text(x[0]), REDACTED])
            elif self.secret is not None and i and is_secret_flag(items[i - 1], self.extra):
                out.append(REDACTED)
            else:
                out.append(self.convert(x, depth + 1))
        return out

    def secret_pair(self, x: Any) -> bool:
        return (self.secret is not None and type(x) in (tuple, list) and len(x) == 2
                and isinstance(x[0], str) and self.secret(x[0]))

    @staticmethod
    def fallback_repr(value: Any) -> str:
        try:
            return repr(value)
        except Exception:
            return ""

    def enum(self, v: enum.Enum, depth: int) -> Any:
        """An enum that is also a number or a string (``IntEnum``, ``StrEnum``) is that value, as JSON sends
        it (``DownsampleMethods.AUTO`` is 6 through a queue); any other enum is its name."""
        if isinstance(v, (int, float, str)):
            return self.convert(int(v) if isinstance(v, int) else float(v) if isinstance(v, float) else
                                str.__str__(v), depth)
        return v.name if v.name is not None else str(v)

    def bbox(self, v: Any, depth: int) -> dict:
        """A CloudVolume ``Bbox``: its corners, as lists (``unit`` only when it is not voxels)."""
        out = {"minpt": self.convert(v.minpt, depth + 1), "maxpt": self.convert(v.maxpt, depth + 1)}
        unit = getattr(v, "unit", "vx")
        return out if unit in (None, "vx") else {**out, "unit": self.convert(unit, depth + 1)}

    def ndarray(self, a: Any, depth: int) -> Any:
        """A small numeric array (igneous' ``Vec``, an affine) is its values as (nested) lists, so it is
        the same parameter whether it came as an array or as lists through a JSON queue (a 0-d one is its
        number); anything larger or of another kind is a summary: shape, dtype and a hash when small."""
        if a.dtype.kind in _LIST_KINDS and a.size <= LIST_ARRAY_ITEMS:
            return self.convert(a.tolist(), depth)
        out = {"type": "ndarray", "shape": [int(n) for n in a.shape], "dtype": str(a.dtype)}
        if a.nbytes <= _HASH_ARRAY_BYTES and not a.dtype.hasobject:
            data = _module("numpy").ascontiguousarray(a).tobytes()
            out["sha256"] = hashlib.sha256(data).hexdigest()
        return out


def to_jsonable(value: Any, *, max_bytes: int = MAX_BYTES) -> Any:
    """A JSON-safe form of ``value`` that can be stored and hashed; never raises.

    Strings are scrubbed of secrets (``scrub_text``: URL credentials,
    ``password=..``, tokens), namedtuples become dicts, other containers lists
    and dicts with str keys, known types their natural text or number, numpy arrays and bytes a
    summary with a hash, anything else ``{"type", "repr"}``. Anything whose
    JSON encoding exceeds ``max_bytes`` becomes ``{"type", "summary", "sha256"}``.
    """
    return _jsonable(value, max_bytes=max_bytes)[0]


def _jsonable(value: Any, *, max_bytes: int, secret: Optional[Callable[[str], bool]] = None,
              extra: tuple = (), values: tuple = ()) -> tuple[Any, list[str]]:
    conv = _Converter(max_bytes, secret, extra, values)
    try:
        return conv.top(value), conv.degraded
    except Exception:
        return {"type": _type_name(value), "repr": "<unrepresentable>"}, ["repr"]


def prepare_parameters(params: Any, *, redact: Iterable[str] = (), exclude: Iterable[str] = (),
                       max_bytes: int = MAX_BYTES, max_total: int = MAX_TOTAL_BYTES,
                       known: Iterable[str] = ()) -> Dict[str, Any]:
    """The parameters as they are stored: JSON-safe, secrets redacted, excluded names gone.

    Values under secret-looking names (``is_secret_name``, plus ``redact``) are
    replaced by ``REDACTED`` at any depth, as is the item after a secret flag
    in a list (``["mysql", "--password", "..."]``), and strings are scrubbed
    (``scrubbed``: ``redact`` names too, and the secret values themselves
    wherever they reappear, with the ``known`` ones: a run's others). Each value is bounded by ``max_bytes`` and all of
    them by ``max_total``: past it, the largest are summarised until they fit,
    so no argument can make the record too large to store. Never raises for a
    value; a value that had to be summarised or repr'd gives a
    ``ParameterWarning``. Only an unsupported container type raises
    (``InvalidInputError``).
    """
    raw = parameters_from(params)
    extra = tuple(redact)
    dropped = set(exclude)
    values = tuple(dict.fromkeys([*secret_values(raw, extra), *known]))

    def secret(name: str) -> bool:
        try:
            return _secret_name(name, extra)        # cached: the same names come back on every call
        except TypeError:
            return is_secret_name(name, extra)

    out: Dict[str, Any] = {}
    degraded_by: Dict[str, list] = {}
    for name, value in raw.items():
        if name in dropped:
            continue
        key = scrubbed(name) if _small(name, max_bytes) else to_jsonable(name, max_bytes=max_bytes)
        key = key if isinstance(key, str) else str(name)[:200]
        if secret(key):
            out[key] = REDACTED
            continue
        out[key], degraded_by[key] = _jsonable(value, max_bytes=max_bytes, secret=secret, extra=extra,
                                               values=values)
    _fit(out, degraded_by, max_total)
    for key, degraded in degraded_by.items():
        if degraded:
            _warn(f"ptb: parameter {key!r} is not recorded as given "
                  f"({', '.join(sorted(set(degraded)))}); pass exclude=[{key!r}] to leave it out")
    return out


def process_argv(redact: Iterable[str] = (), known: Iterable[str] = ()) -> Optional[tuple]:
    """This OS process's ``sys.argv`` as a run records it: scrubbed like a parameter (a ``--password``
    flag's value redacted); None when there is none. Made once per argv and redaction."""
    argv = getattr(sys, "argv", None)
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    return _scrubbed_argv(tuple(argv), tuple(redact), tuple(known))


@functools.lru_cache(maxsize=64)
def _scrubbed_argv(argv: tuple, redact: tuple, known: tuple) -> Optional[tuple]:
    value = prepare_parameters({"argv": list(argv)}, redact=redact, known=known)["argv"]
    return tuple(value) if isinstance(value, list) else None     # a huge argv is a summary: not kept


def _small(value: Any, max_bytes: int) -> bool:
    """A scalar or short string, whose JSON surely fits ``max_bytes``: no need to encode it to know."""
    kind = type(value)
    if value is None or kind in (bool, float) or (kind is int and -(1 << 63) <= value < (1 << 63)):
        return max_bytes >= 32      # at most 24 characters
    return kind is str and len(value) * 6 + 2 <= max_bytes


def _fit(out: Dict[str, Any], degraded_by: Dict[str, list], max_total: int) -> None:
    """Summarise the largest values of ``out`` until all of them encode to at most ``max_total`` bytes."""
    if sum(32 if _small(v, 32) else len(v) * 6 + 2 if type(v) is str else max_total + 1
           for v in out.values()) <= max_total:
        return          # scalars and short strings: no need to encode them to know they fit
    sizes = {key: len(_encode(value)) for key, value in out.items()}
    total = sum(sizes.values())
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        if total <= max_total:
            return
        data = _encode(out[key])
        out[key] = {"type": "parameter", "summary": f"too large together with the others: {len(data)} bytes",
                    "sha256": hashlib.sha256(data).hexdigest()}
        total += len(_encode(out[key])) - sizes[key]
        degraded_by.setdefault(key, []).append("too large with the others")


def _warn(message: str) -> None:
    warn(message, ParameterWarning, stacklevel=3)
