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
from typing import Any, Iterator, Optional, Union

MAX_INFLATED = 64 * 1024 * 1024    # bytes a compressed object may inflate to (ptb itself never compresses)
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
    """``data`` decompressed from ``encoding`` (as CloudFiles names them), or ``Refused`` past ``limit`` bytes.

    Inflated a chunk at a time, so a bomb costs ``limit`` bytes of memory
    and the time to inflate them, whatever it would inflate to.
    """
    encoding = (encoding or "").lower()
    if not encoding:
        return data
    out = bytearray()
    try:
        for chunk in _inflater(encoding, data):
            out += chunk
            if len(out) > limit:
                return Refused(f"it is {len(data):,} bytes compressed ({encoding}) and inflates past the "
                               f"{limit:,}-byte bound (a decompression bomb?)")
    except KeyError:
        return Refused(f"it is compressed as {encoding!r}, which ptb does not read")
    except Exception as exc:     # a corrupt stream: each library raises its own error
        return Refused(f"it does not decompress as {encoding} ({type(exc).__name__}: {exc})")
    return bytes(out)


_CHUNK = 1 << 20


def _inflater(encoding: str, data: bytes) -> Iterator[bytes]:
    """The inflated bytes of ``data``, at most ``_CHUNK`` at a time; ``KeyError`` for an unknown encoding."""
    kind = {"gzip": "zlib", "gz": "zlib", "deflate": "zlib", "br": "br", "zstd": "zstd", "xz": "lzma",
            "lzma": "lzma", "bz2": "bz2", "bzip2": "bz2"}[encoding]
    if kind == "zlib":          # gzip (several members too, as ``gzip.decompress`` reads them) or zlib
        while data:
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)     # 32: the header says gzip or zlib
            while not inflater.eof:
                yield inflater.decompress(data, _CHUNK)
                data = inflater.unconsumed_tail
                if not data and not inflater.eof:
                    raise zlib.error("truncated stream")
            data = inflater.unused_data.lstrip(b"\0")
    elif kind == "br":
        yield from _brotli(data)
    elif kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
        yield from iter(lambda: reader.read(_CHUNK), b"")
    else:
        stream: Any = lzma.LZMADecompressor() if kind == "lzma" else bz2.BZ2Decompressor()
        while not stream.eof:
            chunk = stream.decompress(data, _CHUNK)
            data = b""
            if not chunk and stream.needs_input:
                raise EOFError("truncated stream")
            yield chunk


def _brotli(data: bytes) -> Iterator[bytes]:
    import brotli

    inflater = brotli.Decompressor()
    try:
        inflater.process(b"", output_buffer_limit=_CHUNK)
    except TypeError:          # brotli < 1.2 has no output limit: feed it a little input at a time
        for start in range(0, len(data), 64):
            yield inflater.process(data[start:start + 64])
        return
    while not inflater.is_finished():
        chunk = inflater.process(data, output_buffer_limit=_CHUNK)
        data = b""
        if not chunk and inflater.can_accept_more_data():
            raise brotli.error("truncated stream")
        yield chunk


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
