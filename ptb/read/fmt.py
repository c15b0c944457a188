"""Values of a ``History`` as people read them: times, durations, states, parameters, origins.

Pure functions, shared by the timeline (``timeline``), the ``show`` view
(``show``), ``diff``, the HTML page and the command line.
"""
from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, List, Optional, Union

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


def fmt_bytes(size: Any) -> str:
    """Human sizes in binary units: ``512 B``, ``4.2 KiB``, ``111 MiB``, ``2 GiB``."""
    if not isinstance(size, (int, float)) or isinstance(size, bool) or size < 0:
        return compact(size, 40)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1023.5 or unit == "TiB":
            text = f"{size:.0f}" if unit == "B" or size >= 9.95 else f"{size:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


_RESOURCES = (("cpu_time_s", "CPU {}", fmt_duration), ("cpu_user_s", "user {}", fmt_duration),
              ("cpu_system_s", "system {}", fmt_duration), ("memory_bytes", "memory {}", fmt_bytes),
              ("peak_memory_bytes", "peak {}", fmt_bytes))


def fmt_resources(resources: Dict[str, Any]) -> str:
    """A run's resources for people: ``CPU 1.9 s (user 1.8 s, system 0.1 s), memory 103 MiB, peak 110 MiB``.

    Values that are not numbers, and keys ptb does not know, are shown as they are.
    """
    def number(key: str) -> bool:
        value = resources.get(key)
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    known = {key: label.format(unit(resources[key])) for key, label, unit in _RESOURCES if number(key)}
    parts = []
    if "cpu_time_s" in known:
        split = [known.pop(k) for k in ("cpu_user_s", "cpu_system_s") if k in known]
        parts.append(known.pop("cpu_time_s") + (f" ({', '.join(split)})" if split else ""))
    parts += known.values()
    shown = {key for key, _, _ in _RESOURCES if number(key)}
    parts += [f"{k}={compact(v, 40)}" for k, v in resources.items() if k not in shown]
    return ", ".join(parts)


def count(n: int, word: str, many: Optional[str] = None) -> str:
    """``1 run``, ``2,000 runs``; ``many`` for irregular plurals (``count(2, "process", "processes")``)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def lines_of(text: str) -> List[str]:
    """A text's lines without the blank ones, for a timeline row or an indented note (at least one line)."""
    return [line for line in str(text).splitlines() if line.strip()] or [""]


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
