"""Values of a ``History`` as people read them: times, durations, states, parameters, origins.

Pure functions, shared by the timeline (``timeline``), the ``show`` view
(``show``), ``diff``, the HTML page and the command line.
"""
from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import InvalidInputError
from ..records import Note, ProcessRecord, RunRecord, to_utc
from ..visible import visible

NEVER_FINISHED = "never finished (worker died?)"
RUNNING = "running"
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


#: Zone abbreviations (and Windows' zone names) that igneous' ``strftime('%Z')``, CloudVolume or a person
#: writes, as hours east of UTC. Ambiguous ones are a choice: IST is India (not Israel, +2, nor Ireland's
#: summer, +1), CST is US Central (not China, +8), BST British Summer Time (not Bangladesh, +6), AST
#: Atlantic (not Arabia, +3). Anything not listed here nor written as an offset is not read (undated).
ZONES: Dict[str, float] = {
    "UTC": 0, "UT": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "IST": 5.5,
    "CET": 1, "CEST": 2, "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
    "AKST": -9, "AKDT": -8, "HST": -10, "AST": -4, "ADT": -3, "NST": -3.5, "NDT": -2.5,
    "PKT": 5, "ICT": 7, "WIB": 7, "SGT": 8, "HKT": 8, "AWST": 8, "JST": 9, "KST": 9,
    "ACST": 9.5, "ACDT": 10.5, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
    "COORDINATED UNIVERSAL TIME": 0, "GMT STANDARD TIME": 0, "GMT DAYLIGHT TIME": 1,
    "W. EUROPE STANDARD TIME": 1, "W. EUROPE DAYLIGHT TIME": 2, "ROMANCE STANDARD TIME": 1,
    "ROMANCE DAYLIGHT TIME": 2, "CENTRAL EUROPE STANDARD TIME": 1, "CENTRAL EUROPE DAYLIGHT TIME": 2,
    "CENTRAL EUROPEAN STANDARD TIME": 1, "CENTRAL EUROPEAN SUMMER TIME": 2,
    "EASTERN STANDARD TIME": -5, "EASTERN DAYLIGHT TIME": -4, "CENTRAL STANDARD TIME": -6,
    "CENTRAL DAYLIGHT TIME": -5, "MOUNTAIN STANDARD TIME": -7, "MOUNTAIN DAYLIGHT TIME": -6,
    "PACIFIC STANDARD TIME": -8, "PACIFIC DAYLIGHT TIME": -7, "INDIA STANDARD TIME": 5.5,
    "TOKYO STANDARD TIME": 9, "CHINA STANDARD TIME": 8, "KOREA STANDARD TIME": 9,
}
_STAMP = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})(?:T|\s{1,4})"
                    r"(?P<time>\d{1,2}:\d{2}(?P<seconds>:\d{2}(?P<fraction>\.\d{1,9})?)?)"
                    r"\s*(?P<zone>[A-Za-z .+:\-0-9]{0,48})")
_OFFSET = re.compile(r"(?:(?:UTC|GMT|UT)\s*)?(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?")


def _zone(text: str) -> Union[datetime.tzinfo, None, bool]:
    """The zone a date names: a tzinfo; None when it names none (local time); False when it is unknown."""
    text = " ".join(text.split()).upper()
    if not text:
        return None
    if text in ZONES:
        return datetime.timezone(datetime.timedelta(hours=ZONES[text]))
    match = _OFFSET.fullmatch(text)
    if match and int(match["hours"]) <= 14 and int(match["minutes"] or 0) < 60:
        offset = datetime.timedelta(hours=int(match["hours"]), minutes=int(match["minutes"] or 0))
        return datetime.timezone(-offset if match["sign"] == "-" else offset)
    return False


def parse_stamp(value: Any) -> Tuple[Optional[datetime.datetime], float]:
    """A foreign entry's date and its resolution in seconds: ``(None, 0)`` when it cannot be read.

    Reads ISO 8601 and what igneous writes (``strftime('%Y-%m-%d %H:%M %Z')``:
    ``2026-12-05 07:42 EST``), with any zone of ``ZONES`` or a numeric offset
    (``+0100``, ``-05:00``, ``UTC+5:30``). A date without a zone is local time,
    as ``datetime.now()`` wrote it. The resolution is 60 for a date to the
    minute, 1 to the second, 0 finer: such a date stands for any moment up to
    that much later, and the timeline sorts it at the last of them.
    """
    if isinstance(value, datetime.datetime):
        return to_utc(value), 0.0
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        return None, 0.0
    text = value.strip()
    match = _STAMP.fullmatch(text)
    if match is None:
        try:
            return to_utc(text), 0.0
        except InvalidInputError:
            return None, 0.0
    zone = _zone(match["zone"])
    if zone is False or zone is True:
        return None, 0.0
    try:
        year, month, day = map(int, match["date"].split("-"))
        hour, minute = map(int, match["time"].split(":")[:2])
        second = int(match["seconds"][1:3]) if match["seconds"] else 0
        micro = int((match["fraction"][1:] + "00000")[:6]) if match["fraction"] else 0
        naive = datetime.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None, 0.0
    stamp = naive.replace(tzinfo=zone) if zone is not None else naive
    resolution = 0.0 if match["fraction"] else 1.0 if match["seconds"] else 60.0
    return to_utc(stamp), resolution


def parse_time(value: Any) -> Optional[datetime.datetime]:
    """A timestamp from a foreign entry (``2022-08-01 10:00 UTC``, ``2026-12-05 07:42 EST``, ISO, ...);
    None if unreadable. See ``parse_stamp``, which also says the date's resolution."""
    return parse_stamp(value)[0]


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
        stamp = parse_stamp(text)[0]         # "2026-12-05 07:42 EST", as igneous writes dates
        if stamp is None:
            raise InvalidInputError(f"{text!r} is neither a duration (30min, 2h, 3d, 1w) nor a date "
                                    f"(ISO 8601, or 2026-12-05 07:42 EST)") from None
        return stamp
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


def percentile(values: Sequence[float], fraction: float) -> Optional[float]:
    """The nearest-rank percentile of ``values`` (``0.5`` the median); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def run_duration(run: RunRecord) -> Optional[float]:
    if run.duration is not None:
        return run.duration
    if run.ended is not None and run.started is not None:
        return (run.ended - run.started).total_seconds()
    return None


def state_text(status: Optional[str], duration: Optional[float], live: Optional[str] = None) -> str:
    """``succeeded in 1.2 s``, ``failed after 3 min``, ``running`` or ``never finished (worker died?)``.

    ``live`` is the run's ``liveness`` (``ptb.read.liveness``): a run whose
    last record says ``running`` is ``running`` only while its worker can
    still be alive.
    """
    if status == "running":
        return RUNNING if live == "running" else NEVER_FINISHED
    if duration is None:
        return status or ""
    return f"{status} {'in' if status == 'succeeded' else 'after'} {fmt_duration(duration)}"


def run_state(run: RunRecord) -> str:
    from .liveness import run_liveness

    return state_text(run.status, run_duration(run), run_liveness(run))


def error_text(error: Optional[Dict[str, Any]]) -> Optional[str]:
    if not error:
        return None
    return f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")


def origin_of(record: Union[ProcessRecord, Note]) -> str:
    return "0.1.x" if record.id.startswith("legacy-") else "ptb"


def one_line(text: Any, limit: int = 300) -> str:
    """One line of text read from a volume, for a terminal or a file people read: control characters
    spelled out (``ptb.visible``), line breaks and tabs too (``\\n``), so none can act; bounded to
    ``limit`` characters (0: not cut)."""
    text = visible(str(text)).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"
