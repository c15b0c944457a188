"""The ``provenance`` file as text: written the way CloudVolume writes it, read the way it reads it."""
from __future__ import annotations

import itertools
import json
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

from ..errors import CorruptProvenanceError

PROVENANCE = "provenance"
TORN_READ_SECONDS = 1.0
TORN_READS = 20
T = TypeVar("T")
PRETTY_DEPTH = 3


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

    CloudVolume accepts JSON5, so do we (strict JSON first: json5 is slow).
    Bytes that are not UTF-8 are corrupt too (CloudVolume cannot read them).
    """
    text: Optional[str]
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        text = None
    parsed: Any = None
    if text is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            try:
                import json5

                parsed = json5.loads(text)
            except Exception:
                parsed = None
    if not isinstance(parsed, dict):
        shown = text[:120] if text is not None else "(bytes that are not UTF-8)"
        raise CorruptProvenanceError(
            f"{cloudpath}/provenance is not a JSON object, so ptb will not touch it. "
            f"Its journal (ptb/journal/) is intact. Repair the file by hand (or move it "
            f"aside) and run `ptb sync {cloudpath}` to rebuild it. It starts: {shown!r}"
        )
    return parsed


def read_parsed(read: Callable[[], Tuple[Optional[bytes], T]], cloudpath: str) -> Tuple[Optional[Dict[str, Any]], T]:
    """``read()`` parsed as a provenance file; one that does not parse is read again for about a second.

    A writer without atomic puts (CloudFiles on ``file://``, so CloudVolume)
    can be caught mid-write: that is torn, not corrupt. On a busy machine the
    reader itself may be slow, so it also reads at least ``TORN_READS`` times.
    """
    deadline = time.monotonic() + TORN_READ_SECONDS
    for attempt in itertools.count():
        data, token = read()
        if data is None:
            return None, token
        try:
            return parse_provenance(data, cloudpath), token
        except CorruptProvenanceError:
            if time.monotonic() > deadline and attempt >= TORN_READS:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")  # pragma: no cover
