"""Reading a volume's objects as untrusted input: bounded decompression and nesting.

Whoever can write to a volume can leave a 2 KB brotli object that inflates to
gigabytes, or JSON nested a hundred thousand levels deep (a ``RecursionError``
in every reader). ptb never writes compressed objects, so a compressed one
came from another tool: it is inflated here with a bound on its output, and
whatever ptb parses goes through ``loads``, which refuses nesting past
``MAX_DEPTH``. A refusal is data (``Refused``, ``Unreadable``), never a crash:
the caller warns, naming the object, and reads on.
"""
from __future__ import annotations

import bz2
import io
import json
import lzma
import zlib
from typing import Any, Optional, Union

MAX_INFLATED = 128 * 1024 * 1024   # bytes a compressed object may inflate to (ptb itself never compresses)
MAX_DEPTH = 100                     # JSON nesting ptb reads; ptb writes at most about 25 (params.MAX_DEPTH + 5)


class RefusedWarning(UserWarning):
    """Something of a volume that ptb would not read (a link, a bomb, nesting too deep) was skipped."""


class Refused(bytes):
    """An object ptb would not read (inflates past its bound, a link out of the volume): empty bytes saying why.

    Empty bytes, so a caller that does not look for it sees an object that
    does not parse, never the content.
    """

    why: str

    def __new__(cls, why: str) -> Refused:
        made = super().__new__(cls, b"")
        made.why = why
        return made


class Unreadable(ValueError):
    """An object that is not JSON ptb can read (refused, nested too deep, not JSON); the message says which."""


class TooDeep(Unreadable):
    """JSON nested deeper than ``MAX_DEPTH``."""


def inflate(data: bytes, encoding: Optional[str], limit: int = MAX_INFLATED) -> bytes:
    """``data`` decompressed from ``encoding`` (as CloudFiles names them), or ``Refused`` past ``limit`` bytes."""
    encoding = (encoding or "").lower()
    if not encoding:
        return data
    try:
        if encoding in ("gzip", "gz", "deflate"):
            out = _zlib(data, limit)
        elif encoding == "br":
            out = _brotli(data, limit)
        elif encoding == "zstd":
            import zstandard

            out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read(limit + 1)
        elif encoding in ("xz", "lzma"):
            out = lzma.LZMADecompressor().decompress(data, max_length=limit + 1)
        elif encoding in ("bz2", "bzip2"):
            out = bz2.BZ2Decompressor().decompress(data, max_length=limit + 1)
        else:
            return Refused(f"it is compressed as {encoding!r}, which ptb does not read")
    except Exception as exc:     # a corrupt stream: each library raises its own error
        return Refused(f"it does not decompress as {encoding} ({type(exc).__name__}: {exc})")
    if len(out) > limit:
        return Refused(f"it is {len(data):,} bytes compressed ({encoding}) and inflates past the "
                       f"{limit:,}-byte bound (a decompression bomb?)")
    return out


def _zlib(data: bytes, limit: int) -> bytes:
    """gzip (several members too, as ``gzip.decompress`` reads them) or zlib, at most ``limit + 1`` bytes."""
    out = bytearray()
    while data and len(out) <= limit:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)     # 32: the header says gzip or zlib
        out += inflater.decompress(data, limit + 1 - len(out))
        if not inflater.eof:
            if len(out) > limit:
                break
            raise zlib.error("truncated stream")
        data = inflater.unused_data.lstrip(b"\0")
    return bytes(out)


def _brotli(data: bytes, limit: int) -> bytes:
    import brotli

    inflater = brotli.Decompressor()
    try:
        out = inflater.process(data, output_buffer_limit=limit + 1)
    except TypeError:          # brotli < 1.2 has no output limit: feed it a little at a time
        out = b""
        for start in range(0, len(data), 64):
            out += inflater.process(data[start:start + 64])
            if len(out) > limit:
                break
    return out


def loads(data: Union[bytes, str]) -> Any:
    """``json.loads``, refusing objects ptb would not read: ``Refused`` ones, and nesting past ``MAX_DEPTH``."""
    if isinstance(data, Refused):
        raise Unreadable(data.why)
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(f"it is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise Unreadable(f"it is not JSON ({exc})") from None
    if _openers(data) > MAX_DEPTH and too_deep(value):
        raise TooDeep(f"it is nested deeper than {MAX_DEPTH} levels")
    return value


def _openers(data: Union[bytes, str]) -> int:
    """How many ``[`` and ``{`` ``data`` holds: nesting can be no deeper (the common, cheap case)."""
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and dicts deeper than ``limit``; walked without recursion."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
