"""The ``provenance`` file as text: written the way CloudVolume writes it, read the way it reads it."""
from __future__ import annotations

import itertools
import json
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

from ..errors import CorruptProvenanceError
from .bounded import MAX_DEPTH, Refused, too_deep

PROVENANCE = "provenance"
TORN_READ_SECONDS = 1.0
TORN_READS = 20
T = TypeVar("T")
PRETTY_DEPTH = 3
JSON5_MAX_BYTES = 64 * 1024     # characters: json5 takes about a second for this much


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(", ", ": "), ensure_ascii=False).encode  # made once: a
# json.dumps call with arguments makes a new encoder each time, and a view is some 80 of them


def dumps(obj: Any, depth: int = PRETTY_DEPTH, margin: str = "") -> str:
    """Pretty JSON, as CloudVolume writes ``provenance``, to ``depth`` levels; deeper values on one line.

    ``json.dumps(indent=...)`` runs the pure-Python encoder, which made it
    most of a documented call's cost; one line per process entry and per note
    reads as well, and the C encoder writes those.
    """
    if depth <= 0 or not isinstance(obj, (dict, list)) or not obj:
        return _ENCODE(obj)
    inner = margin + "  "
    if isinstance(obj, dict):
        items = [f"{inner}{_ENCODE(str(k))}: {dumps(obj[k], depth - 1, inner)}" for k in sorted(obj, key=str)]
        return "{\n" + ",\n".join(items) + f"\n{margin}}}"
    return "[\n" + ",\n".join(f"{inner}{dumps(v, depth - 1, inner)}" for v in obj) + f"\n{margin}]"


def parse_provenance(data: Union[bytes, str], cloudpath: str) -> Dict[str, Any]:
    """The ``provenance`` file as a dict, or ``CorruptProvenanceError``.

    CloudVolume accepts JSON5, so do we (strict JSON first: json5 is slow, so
    only files up to ``JSON5_MAX_BYTES`` are given to it: a large file that is
    not JSON takes a second to refuse, not minutes). Bytes that are not UTF-8
    are corrupt too (CloudVolume cannot read them), and so is nesting deeper
    than ``bounded.MAX_DEPTH`` (a ``RecursionError`` in every reader).
    """
    if isinstance(data, Refused):
        raise CorruptProvenanceError(f"{cloudpath}/provenance is not read: {data.why}. ptb will neither read nor "
                                     f"write it; its journal (ptb/journal/) is intact. Replace it with a plain file "
                                     f"(or move it aside) and run `ptb sync {cloudpath}` to rebuild it.")
    text: Optional[str]
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        text = None
    parsed: Any = None
    why = ""
    if text is not None:
        try:
            parsed = json.loads(text)
        except RecursionError:
            why = f"it is nested deeper than {MAX_DEPTH} levels. "
        except ValueError:
            parsed, why = _json5(text)
        if isinstance(parsed, (dict, list)) and too_deep(parsed):
            parsed, why = None, f"it is nested deeper than {MAX_DEPTH} levels. "
    if not isinstance(parsed, dict):
        shown = text[:120] if text is not None else "(bytes that are not UTF-8)"
        raise CorruptProvenanceError(
            f"{cloudpath}/provenance is not a JSON object, so ptb will not touch it: {why}"
            f"Its journal (ptb/journal/) is intact. Repair the file by hand (or move it "
            f"aside) and run `ptb sync {cloudpath}` to rebuild it. It starts: {shown!r}"
        )
    return parsed


def _json5(text: str) -> Tuple[Any, str]:
    """``text`` read as JSON5, when it is small enough for the slow parser; (None, why) otherwise."""
    if len(text) > JSON5_MAX_BYTES:
        return None, (f"it is not strict JSON, and at {len(text):,} characters too large for the JSON5 "
                      f"fallback ({JSON5_MAX_BYTES:,}). ")
    try:
        import json5

        return json5.loads(text), ""
    except Exception:      # json5 raises ValueError, and RecursionError on deep nesting
        return None, ""


def read_parsed(read: Callable[[], Tuple[Optional[bytes], T]], cloudpath: str) -> Tuple[Optional[Dict[str, Any]], T]:
    """``read()`` parsed as a provenance file; one that does not parse is read again for about a second.

    A writer without atomic puts (CloudFiles on ``file://``, so CloudVolume)
    can be caught mid-write: that is torn, not corrupt. On a busy machine the
    reader itself may be slow, so it also reads at least ``TORN_READS`` times.
    Bytes already found invalid are not parsed again, so a large invalid
    file costs one parse, not one per read. An object ptb refuses (a link, a
    bomb) is not torn: it raises at once.
    """
    deadline = time.monotonic() + TORN_READ_SECONDS
    failed: Optional[bytes] = None
    error: Optional[CorruptProvenanceError] = None
    for attempt in itertools.count():
        data, token = read()
        if data is None:
            return None, token
        if isinstance(data, Refused):
            parse_provenance(data, cloudpath)
        if error is None or data != failed:
            try:
                return parse_provenance(data, cloudpath), token
            except CorruptProvenanceError as exc:
                failed, error = data, exc
        if time.monotonic() > deadline and attempt >= TORN_READS:
            raise error
        time.sleep(0.05)
    raise AssertionError("unreachable")  # pragma: no cover
