"""Texts ptb stores: one scrubbing rule (``scrubbed``), bounded after it for a run's own texts.

Every text on its way into a volume (exception messages and tracebacks,
result, motivation and generic notes, ``run.note``, descriptions, cell
sources) goes through ``scrubbed``: lone surrogates (a non-UTF-8 file name
from ``os.listdir``) are escaped, so the text can be stored, and secrets are
scrubbed (``redact.scrub_text``: secret-looking assignments, URL credentials,
token shapes, and the run's known secret values). An exception becomes its
type, message and a bounded traceback (its first line and last frames);
notes are bounded to ``MAX_NOTE`` characters, after scrubbing, so no secret
is stored cut in half.
"""
from __future__ import annotations

import traceback
from typing import Any, Dict, Iterable

from .redact import scrubbed

__all__ = ["MAX_TRACEBACK", "MAX_MESSAGE", "MAX_NOTE", "type_name", "bounded", "scrubbed", "clean", "error_of"]

MAX_TRACEBACK = 16 * 1024
MAX_MESSAGE = 4096
MAX_NOTE = 16 * 1024        # characters of a note the run writes (result, motivation, run.note)


def type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``module.Qualname`` for the rest."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def bounded(text: str, limit: int, omitted: int = 0) -> str:
    """``text`` cut to at most ``limit`` characters, saying how many were cut."""
    if len(text) <= limit and not omitted:
        return text
    keep = max(limit - 40, 0)
    return text[:keep] + f" ... [truncated {len(text) - keep + omitted} chars]"


def clean(text: str, redact: Iterable[str] = (), limit: int = MAX_NOTE, values: Iterable[str] = ()) -> str:
    """``scrubbed``, then bounded: scrubbed before it is cut, so no secret is stored cut in half."""
    head = text[:4 * limit]
    return bounded(scrubbed(head, redact, values), limit, len(text) - len(head))


def error_of(exc: BaseException, redact: Iterable[str] = (), values: Iterable[str] = ()) -> Dict[str, Any]:
    """Type, message and traceback (its first line and last frames, bounded), secrets scrubbed.

    An exception that carries ``ptb_detail`` (a text: a failed command's last
    lines of stderr, see ``ptb.command``) has that text stored in place of its
    traceback, which would only show ptb's own frames.
    """
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    try:
        detail = getattr(exc, "ptb_detail", None)
        trace = (clean(detail, redact, MAX_TRACEBACK, tuple(values)) if isinstance(detail, str)
                 else _traceback(exc, redact, values))
        return {"type": scrubbed(type_name(exc)), "message": clean(message, redact, MAX_MESSAGE, values),
                "traceback": trace}
    except Exception as err:        # never store an unscrubbed text, never lose the run's end
        return {"type": scrubbed(type_name(exc)), "message": clean(f"<not recorded: {err!r}>", (), MAX_MESSAGE),
                "traceback": ""}


def _traceback(exc: BaseException, redact: Iterable[str], values: Iterable[str]) -> str:
    values = tuple(values)
    chunks = [clean(c, redact, 2048, values).rstrip("\n") + "\n"
              for c in traceback.format_exception(type(exc), exc, exc.__traceback__)]
    text = "".join(chunks)
    if len(text) > MAX_TRACEBACK:     # keep where it started (first frames) and where it failed (last ones)
        head, tail = chunks[:4], []
        budget = MAX_TRACEBACK - 100 - sum(map(len, head))
        for chunk in reversed(chunks[4:]):
            if len(chunk) > budget:
                break
            tail.append(chunk)
            budget -= len(chunk)
        omitted = f"  ... [{len(chunks) - len(head) - len(tail)} frames omitted] ...\n"
        text = "".join(head) + omitted + "".join(reversed(tail))
    return text
