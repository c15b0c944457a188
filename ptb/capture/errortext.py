"""Texts a run stores about itself: bounded, and scrubbed of secrets before they are cut.

An exception becomes its type, message and a bounded traceback (its first
line and last frames); notes are bounded to ``MAX_NOTE`` characters. Every
text is scrubbed (``redact.scrub_text``) before it is cut, so no secret is
stored cut in half.
"""
from __future__ import annotations

import traceback
from typing import Any, Dict, Iterable

from .redact import scrub_text

__all__ = ["MAX_TRACEBACK", "MAX_MESSAGE", "MAX_NOTE", "type_name", "bounded", "clean", "error_of"]

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


def clean(text: str, redact: Iterable[str] = (), limit: int = MAX_NOTE) -> str:
    """Secrets scrubbed, then bounded: scrubbed before it is cut, so no secret is stored cut in half."""
    head = text[:4 * limit]
    return bounded(scrub_text(head, redact), limit, len(text) - len(head))


def error_of(exc: BaseException, redact: Iterable[str] = ()) -> Dict[str, Any]:
    """Type, message and traceback (its first line and last frames, bounded), secrets scrubbed."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    try:
        return {"type": type_name(exc), "message": clean(message, redact, MAX_MESSAGE),
                "traceback": _traceback(exc, redact)}
    except Exception as err:        # never store an unscrubbed text, never lose the run's end
        return {"type": type_name(exc), "message": f"<not recorded: {err!r}>"[:MAX_MESSAGE], "traceback": ""}


def _traceback(exc: BaseException, redact: Iterable[str]) -> str:
    chunks = [clean(c, redact, 2048).rstrip("\n") + "\n"
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
