"""A ``History`` as a timeline: one row per process, run, note and foreign entry.

Pure functions over a ``History`` (no storage access), shared by the command
line and ``ptb.export``: what ``ptb log`` prints and what the HTML page shows
come from the same rows. Every view has a JSON form with stable keys, for scripts.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from ..errors import InvalidInputError
from ..visible import visible
from .envspread import commit_label, spread, spread_lines
from .fmt import (
    NEVER_FINISHED,
    TYPES,
    compact,
    error_text,
    fmt_time,
    lines_of,
    origin_of,
    params_summary,
    parse_stamp,
    run_duration,
    state_text,
    who,
)
from .history import History

_KIND_ORDER = {"process": 0, "run": 1, "note": 2, "foreign": 3}
KEY_WIDTH = 8
"""Characters of a process key shown (a hash: 8 tell thousands apart)."""
RUN_WIDTH = 12
"""Characters of a run id shown: its first 16 are nanoseconds, so 12 tell apart runs started 65 µs apart."""


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
    code: Optional[str] = None              # a run's commit, when its process's runs span several
    spread: Optional[List[str]] = None      # a process's: how its runs' code varied (commits, packages, images)
    liveness: str = ""                      # a run's, as its history worked it out (``RecordedRun.live``)
    resolution: float = 0.0
    """Seconds after ``time`` the row may stand for: 60 for a foreign date to the minute (``fmt.parse_stamp``)."""

    @property
    def latest(self) -> Optional[datetime.datetime]:
        """The last moment ``time`` may stand for: where the row sorts, and what ``--since`` compares."""
        if self.time is None or not self.resolution:
            return self.time
        return self.time + datetime.timedelta(seconds=self.resolution) - datetime.timedelta(microseconds=1)

    @property
    def label(self) -> str:
        return (self.note_type or "note").lower() if self.kind in ("note", "notes") else self.kind

    @property
    def live(self) -> str:
        """A run's ``liveness``: ``finished``, ``running`` (its worker can still be alive) or ``died``."""
        if self.liveness:
            return self.liveness
        from .liveness import liveness

        return liveness(self.status, self.host, self.pid, self.time)

    @property
    def failed(self) -> bool:
        """A failed, interrupted or never-finished run (not one still running)."""
        return self.kind == "run" and (self.status in ("failed", "interrupted")
                                       or (self.status == "running" and self.live == "died"))

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
    when, resolution = parse_stamp(entry.get("date"))
    return Row("foreign", f"foreign-{index}", when, text, origin="foreign",
               user=by if isinstance(by, str) else None, entry=entry, resolution=resolution)


def foreign_rows(history: History) -> List[Row]:
    """Other tools' entries (igneous' ``processing`` entries), named ``foreign-N`` as ``ptb show`` takes them."""
    return [_foreign_row(index, entry) for index, entry in enumerate(history.foreign)]


def timeline(history: History) -> List[Row]:
    """Every process, run, note and foreign entry of a volume, oldest first.

    Entries without a date (0.1.x processes, hand-written entries) come first,
    in the order they were written: they predate what ptb recorded. A process
    is dated by its first run's start when that is earlier than the moment it
    was logged (a run logs its process just after it starts), so no run comes
    before its process. A date to the minute (igneous') sorts at the end of its
    minute, after the runs that started in it: one of them may have written it.
    """
    rows: List[Row] = []
    runs_of: Dict[str, List[Any]] = {}
    for r in history.runs:          # oldest first: a process's first run is runs_of[key][0]
        runs_of.setdefault(r.process, []).append(r)
    spreads = {key: spread(runs) for key, runs in runs_of.items()}
    for p in history.processes:
        first = runs_of[p.key][0].started if p.key in runs_of else None
        when = p.timestamp if first is None or p.timestamp is None else min(p.timestamp, first)
        rows.append(Row("process", p.key, when, p.description, origin=origin_of(p),
                        parameters=p.parameters, code_envfiles=list(p.code_envfiles),
                        spread=spread_lines(spreads.get(p.key) or {}) or None))
    for r in history.runs:
        varied = len(spreads[r.process]["commits"]) > 1
        rows.append(Row("run", r.id, r.started, r.description, status=r.status, duration=run_duration(r),
                        user=r.user, host=r.host, pid=r.pid, parent=r.parent, process=r.process,
                        error=error_text(r.error), parameters=r.parameters,
                        code=commit_label(r.envs) if varied else None, liveness=r.live))
    for n in history.notes:
        rows.append(Row("note", n.id, n.timestamp, n.content, origin=origin_of(n), note_type=n.note_type.name,
                        run=n.run))
    rows += foreign_rows(history)
    order = {id(row): i for i, row in enumerate(rows)}
    epoch = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return sorted(rows, key=lambda r: (r.time is not None, r.latest or epoch, _KIND_ORDER[r.kind], order[id(r)]))


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
        if since is not None and (row.latest is None or row.latest < since):
            continue
        if wanted and row.kind not in wanted and row.label not in wanted:
            continue
        out.append(row)
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


@dataclasses.dataclass(frozen=True)
class ShortIds:
    """How ``ptb log`` shortens ids: process keys to ``KEY_WIDTH`` characters, run ids to ``RUN_WIDTH``.

    One width for every volume, however long its history; only an id whose
    first characters another id shares (two runs started within the same 65 µs,
    on different machines) is shown longer, as long as it takes to tell it
    apart, so every id printed can be given back to ``ptb show``.
    """

    longer: Dict[str, int] = dataclasses.field(default_factory=dict)

    def __call__(self, ident: str, kind: str = "run") -> str:
        width = KEY_WIDTH if kind in ("process", "runs") else RUN_WIDTH
        return ident[: max(width, self.longer.get(ident, 0))]


def id_lengths(history: History) -> ShortIds:
    """How to shorten the process keys and run ids of ``history``, each told apart from all the others."""
    width = {p.key: KEY_WIDTH for p in history.processes}
    width.update((r.id, RUN_WIDTH) for r in history.runs)
    every = sorted(width)
    longer: Dict[str, int] = {}
    for a, b in zip(every, every[1:]):
        common = len(os.path.commonprefix([a, b]))
        for ident in (a, b):
            if common >= width[ident]:
                longer[ident] = max(longer.get(ident, 0), common + 1)
    return ShortIds(longer)


def summary_line(history: History) -> str:
    from .liveness import run_liveness

    runs = history.runs
    counts: Dict[str, int] = {}
    for r in runs:
        state = r.status if r.status != "running" else "running" if run_liveness(r) == "running" else "died"
        counts[state] = counts.get(state, 0) + 1
    parts = [f"{counts[s]:,} {NEVER_FINISHED.split(' (')[0] if s == 'died' else s}"
             for s in ("failed", "interrupted", "died", "running") if counts.get(s)]
    run_text = f"{len(runs):,} run{'s' * (len(runs) != 1)}" + (f" ({', '.join(parts)})" if parts else "")
    return (f"{len(history.processes):,} process{'es' * (len(history.processes) != 1)}, {run_text}, "
            f"{len(history.notes):,} note{'s' * (len(history.notes) != 1)}, "
            f"{len(history.foreign)} foreign entr{'ies' if len(history.foreign) != 1 else 'y'}")


Style = Callable[[str, str], str]


def _plain(text: str, _tag: str) -> str:
    return text


def short_id(row: Row, lengths: ShortIds) -> str:
    """The id a user can type back into ``ptb show``: a unique prefix (none for notes and foreign entries)."""
    if row.kind == "foreign":
        return row.id
    return lengths(row.id, row.kind) if row.kind in ("process", "runs", "run") else ""


def render_row(row: Row, lengths: ShortIds, style: Style = _plain) -> str:
    """One timeline line: time, what, short id, then the text (continuation lines indented, blank ones left out).

    What the volume holds is made visible (``ptb.visible``) before ptb's own colours are added.
    """
    width = RUN_WIDTH
    state = ""
    if row.kind == "process":
        text = row.text + (f" ({params_summary(row.parameters or {})})" if row.parameters else "")
        text += "".join(f"\n{line}" for line in row.spread or ())
    elif row.kind == "run":
        state = style(visible(state_text(row.status, row.duration, row.live)), row.status or "") + ", "
        text = f"{who(row) or 'unknown'}: {row.text}"
        if row.parameters:         # this run's own values (the chunk), whole enough to re-run it
            text += f" ({params_summary(row.parameters, 160, 80)})"
        if row.code:
            text += f" at {row.code}"
        if row.parent:
            text += f" (inside run {lengths(row.parent)})"
        if row.error:
            text += f"\n{row.error}"
    elif row.kind == "note":
        text = row.text + (f" (run {lengths(row.run)})" if row.run else "")
    elif row.kind == "runs":                # a grouped process (ptb.read.runsummary.grouped)
        text = row.text
    elif row.kind == "notes":               # ... and the notes of its runs, counted
        text = f"{row.text}; --runs lists them"
    else:
        text = row.text + (f" by {row.user}" if row.user else "")
    if row.origin != "ptb":
        text += f"  [{row.origin}]"
    when = fmt_time(row.time) if row.time else "(undated)"
    if row.time and row.resolution >= 60:      # a date to the minute: do not print seconds it never had
        when = when[:-4] + "Z"
    label = visible(f"{row.label:<10}")
    lead = f"{when:<20}  {style(label, row.label)}  {visible(short_id(row, lengths)):<{width}}  {state}"
    lines = lines_of(visible(text))
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
