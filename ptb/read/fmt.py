"""Values of a ``History`` as people read them: times, durations, states, parameters, origins.

Pure functions, shared by the timeline (``timeline``), the ``show`` view
(``show``), ``diff``, the HTML page and the command line.
"""
from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, Optional, Union

from ..errors import InvalidInputError
from ..records import Note, ProcessRecord, RunRecord, to_utc

NEVER_FINISHED = "never finished (worker died?)"
KINDS = ("process", "run", "note", "foreign")
TYPES = KINDS + ("motivation", "result", "generic")


# ------------------------------------------------------------------ formatting
def fmt_time(value: Optional[datetime.datetime]) -> str:
    """UTC ISO 8601 to the second (``2024-05-01T12:00:00Z``); ``-`` when unknown."""
    if value is None:
        return "-"
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_duration(seconds: Optional[float]) -> str:
    """Human durations: ``0.2 ms``, ``350 ms``, ``1.2 s``, ``12 s``, ``3 min``, ``1.5 h``, ``2 d``."""
    if seconds is None:
        return "-"
    if 0 < seconds < 0.00005:
        return "<0.1 ms"
    for unit, size, limit in (("ms", 0.001, 1000), ("s", 1, 60), ("min", 60, 60), ("h", 3600, 24), ("d", 86400, None)):
        value = seconds / size
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if limit is None or float(text) < limit:      # rounded up to the next unit: say it in that one
            return f"{text.removesuffix('.0')} {unit}"
    raise AssertionError("unreachable")


def parse_time(value: Any) -> Optional[datetime.datetime]:
    """A timestamp from a foreign entry (``2022-08-01 10:00 UTC``, ISO, ...); None if unreadable."""
    if isinstance(value, datetime.datetime):
        return to_utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = re.sub(r"\s*(UTC|GMT)$", "+00:00", value.strip())
    try:
        return to_utc(text)
    except InvalidInputError:
        return None


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: Optional[datetime.datetime] = None) -> datetime.datetime:
    """``--since``: a duration back from now (``90s``, ``30min``, ``2h``, ``3d``, ``1w``) or an ISO date.

    An ISO date without a timezone is UTC, like every time ptb prints.
    """
    match = _RELATIVE.match(text.strip().lower())
    if match:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return now - datetime.timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"{text!r} is neither a duration (30min, 2h, 3d, 1w) nor an ISO date") from None
    return value.replace(tzinfo=value.tzinfo or datetime.timezone.utc).astimezone(datetime.timezone.utc)


def compact(value: Any, limit: int = 80) -> str:
    """A one-line JSON-ish rendering, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def params_summary(parameters: Dict[str, Any], limit: int = 80, each: int = 30) -> str:
    inner = ", ".join(f"{k}={compact(v, each)}" for k, v in parameters.items())
    return compact(inner, limit)


def who(run: Any) -> str:
    """``alice@host (pid 123)``, as much of it as is known, of a ``RunRecord`` or a timeline ``Row``."""
    user, host = run.user or "", run.host or ""
    text = f"{user}@{host}" if user and host else user or host
    if run.pid is not None:
        text = f"{text} (pid {run.pid})" if text else f"pid {run.pid}"
    return text


def run_duration(run: RunRecord) -> Optional[float]:
    if run.duration is not None:
        return run.duration
    if run.ended is not None and run.started is not None:
        return (run.ended - run.started).total_seconds()
    return None


def state_text(status: Optional[str], duration: Optional[float]) -> str:
    """``succeeded in 1.2 s``, ``failed after 3 min``, or ``never finished (worker died?)``."""
    if status == "running":
        return NEVER_FINISHED
    if duration is None:
        return status or ""
    return f"{status} {'in' if status == 'succeeded' else 'after'} {fmt_duration(duration)}"


def run_state(run: RunRecord) -> str:
    return state_text(run.status, run_duration(run))


def error_text(error: Optional[Dict[str, Any]]) -> Optional[str]:
    if not error:
        return None
    return f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")


def origin_of(record: Union[ProcessRecord, Note]) -> str:
    return "0.1.x" if record.id.startswith("legacy-") else "ptb"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def visible(text: Any, limit: int = 300) -> str:
    """One line of text read from a volume, for a terminal or a file people read: control characters
    (newlines too) escaped (``\\n``, ``\\x1b``), so none can act; bounded to ``limit`` characters."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"
