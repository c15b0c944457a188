"""A ``History`` as a timeline: one row per process, run, note and foreign entry.

Pure functions over a ``History`` (no storage access), shared by the command
line and ``ptb.export``: what ``ptb log`` prints and what the HTML page shows
come from the same rows. Every view has a JSON form with stable keys, for scripts.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import InvalidInputError
from ..visible import visible
from .fmt import (
    NEVER_FINISHED,
    TYPES,
    compact,
    error_text,
    fmt_time,
    origin_of,
    params_summary,
    parse_time,
    run_duration,
    state_text,
    who,
)
from .history import History

_KIND_ORDER = {"process": 0, "run": 1, "note": 2, "foreign": 3}
_SHORT = 8


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a volume's timeline: a process, a run, a note or a foreign entry."""

    kind: str
    id: str
    time: Optional[datetime.datetime]
    text: str
    origin: str = "ptb"
    status: Optional[str] = None
    duration: Optional[float] = None
    user: Optional[str] = None
    host: Optional[str] = None
    pid: Optional[int] = None
    note_type: Optional[str] = None
    run: Optional[str] = None
    parent: Optional[str] = None
    process: Optional[str] = None
    error: Optional[str] = None
    parameters: Optional[Dict[str, Any]] = None
    code_envfiles: Optional[List[str]] = None
    entry: Optional[Dict[str, Any]] = None

    @property
    def label(self) -> str:
        return (self.note_type or "note").lower() if self.kind in ("note", "notes") else self.kind

    @property
    def failed(self) -> bool:
        return self.kind == "run" and self.status in ("failed", "interrupted", "running")

    def to_json(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["time"] = None if self.time is None else self.time.isoformat()
        return data


def _foreign_row(index: int, entry: Dict[str, Any]) -> Row:
    method = entry.get("method")
    if isinstance(method, dict):
        rest = {k: v for k, v in method.items() if k != "task"}
        text = f"{method.get('task', 'method')} ({params_summary(rest, 60)})" if rest else str(method.get("task"))
    elif method is not None:
        text = compact(method, 80)
    else:
        text = compact({k: v for k, v in entry.items() if k not in ("by", "date")}, 80)
    by = entry.get("by")
    return Row("foreign", f"foreign-{index}", parse_time(entry.get("date")), text, origin="foreign",
               user=by if isinstance(by, str) else None, entry=entry)


def timeline(history: History) -> List[Row]:
    """Every process, run, note and foreign entry of a volume, oldest first.

    Entries without a date (0.1.x processes, hand-written entries) come first,
    in the order they were written: they predate what ptb recorded.
    """
    rows: List[Row] = []
    for p in history.processes:
        rows.append(Row("process", p.key, p.timestamp, p.description, origin=origin_of(p),
                        parameters=p.parameters, code_envfiles=list(p.code_envfiles)))
    for r in history.runs:
        rows.append(Row("run", r.id, r.started, r.description, status=r.status, duration=run_duration(r),
                        user=r.user, host=r.host, pid=r.pid, parent=r.parent, process=r.process,
                        error=error_text(r.error), parameters=r.parameters))
    for n in history.notes:
        rows.append(Row("note", n.id, n.timestamp, n.content, origin=origin_of(n), note_type=n.note_type.name,
                        run=n.run))
    for index, entry in enumerate(history.foreign):
        rows.append(_foreign_row(index, entry))
    order = {id(row): i for i, row in enumerate(rows)}
    epoch = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return sorted(rows, key=lambda r: (r.time is not None, r.time or epoch, _KIND_ORDER[r.kind], order[id(r)]))


def select(rows: Sequence[Row], *, failures: bool = False, since: Optional[datetime.datetime] = None,
           types: Iterable[str] = (), limit: Optional[int] = None) -> List[Row]:
    """The rows ``ptb log`` shows for its filters; ``limit`` keeps the newest."""
    wanted = {t.lower() for t in types}
    unknown = wanted - set(TYPES)
    if unknown:
        raise InvalidInputError(f"unknown type {sorted(unknown)}: choose among {', '.join(TYPES)}")
    bad_runs = {r.id for r in rows if r.failed}
    out = []
    for row in rows:
        if failures and not (row.failed or (row.kind == "note" and row.run in bad_runs)):
            continue
        if since is not None and (row.time is None or row.time < since):
            continue
        if wanted and row.kind not in wanted and row.label not in wanted:
            continue
        out.append(row)
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


def short_length(ids: Iterable[str], among: Iterable[str] = (), minimum: int = _SHORT) -> int:
    """The shortest prefix length (at least ``minimum``) that tells ``ids`` apart from each other and ``among``."""
    mine = set(ids)
    every = sorted(mine | set(among))
    length = minimum
    for a, b in zip(every, every[1:]):
        if a in mine or b in mine:
            common = len(a) if b.startswith(a) else next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            length = max(length, common + 1)
    return length


def id_lengths(history: History) -> Tuple[int, int]:
    """How many characters of process keys and of run ids tell each apart (from everything else too)."""
    keys, runs = [p.key for p in history.processes], [r.id for r in history.runs]
    return short_length(keys, runs), short_length(runs, keys)


def summary_line(history: History) -> str:
    runs = history.runs
    counts: Dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = [f"{counts[s]:,} {NEVER_FINISHED.split(' (')[0] if s == 'running' else s}"
             for s in ("failed", "interrupted", "running") if counts.get(s)]
    run_text = f"{len(runs):,} run{'s' * (len(runs) != 1)}" + (f" ({', '.join(parts)})" if parts else "")
    return (f"{len(history.processes):,} process{'es' * (len(history.processes) != 1)}, {run_text}, "
            f"{len(history.notes):,} note{'s' * (len(history.notes) != 1)}, "
            f"{len(history.foreign)} foreign entr{'ies' if len(history.foreign) != 1 else 'y'}")


Style = Callable[[str, str], str]


def _plain(text: str, _tag: str) -> str:
    return text


def short_id(row: Row, lengths: Tuple[int, int]) -> str:
    """The id a user can type back into ``ptb show``: a unique prefix (none for notes and foreign entries)."""
    if row.kind in ("process", "runs"):
        return row.id[: lengths[0]]
    return row.id[: lengths[1]] if row.kind == "run" else ""


def render_row(row: Row, lengths: Tuple[int, int], style: Style = _plain) -> str:
    """One timeline line: time, what, short id, then the text (continuation lines indented)."""
    rlen, width = lengths[1], max(lengths)
    state = ""
    if row.kind == "process":
        text = row.text + (f" ({params_summary(row.parameters or {})})" if row.parameters else "")
    elif row.kind == "run":
        state = style(visible(state_text(row.status, row.duration)), row.status or "") + ", "
        text = f"{who(row) or 'unknown'}: {row.text}"
        if row.parameters:         # this run's own values (the chunk), whole enough to re-run it
            text += f" ({params_summary(row.parameters, 160, 80)})"
        if row.parent:
            text += f" (inside run {row.parent[:rlen]})"
        if row.error:
            text += f"\n{row.error}"
    elif row.kind == "note":
        text = row.text + (f" (run {row.run[:rlen]})" if row.run else "")
    elif row.kind in ("runs", "notes"):     # a grouped process (ptb.read.runsummary.grouped)
        text = row.text
    else:
        text = row.text + (f" by {row.user}" if row.user else "")
    if row.origin != "ptb":
        text += f"  [{row.origin}]"
    when = fmt_time(row.time) if row.time else "(undated)"
    label = visible(f"{row.label:<10}")
    lead = f"{when:<20}  {style(label, row.label)}  {visible(short_id(row, lengths)):<{width}}  {state}"
    lines = visible(text).splitlines() or [""]      # what the volume holds, made visible; then ptb's own colours
    pad = " " * (20 + 2 + 10 + 2 + width + 2)
    return "\n".join([lead + lines[0]] + [pad + line for line in lines[1:]])


def render_log(history: History, rows: Sequence[Row], style: Style = _plain) -> str:
    """``ptb log``'s text: a header (volume, sources, owners, counts), then one line per row."""
    lengths = id_lengths(history)
    head = [history.cloudpath]
    if history.sources:
        head.append(f"  sources: {', '.join(map(str, history.sources))}")
    if history.owners:
        head.append(f"  owners:  {', '.join(map(str, history.owners))}")
    head.append(f"  {summary_line(history)}")
    head.extend(f"  problem: {p}" for p in history.problems)
    body = [render_row(row, lengths, style) for row in rows] or ["(nothing to show)"]
    return "\n".join([visible(line) for line in head] + [""] + body)


def log_json(history: History, rows: Sequence[Row]) -> Dict[str, Any]:
    return {"volume": history.cloudpath, "sources": history.sources, "owners": history.owners,
            "problems": list(history.problems), "rows": [row.to_json() for row in rows]}
