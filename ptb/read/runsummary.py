"""A process's runs summed up, for steps that run once per chunk (thousands of runs).

Pure functions over run records: counts by status and by host, the time span,
duration statistics, and the runs that need attention (failed, interrupted,
never finished) with their per-run values, so a user can re-run exactly those
chunks. ``ptb log``, ``ptb show``, the HTML page and the DOT graph all
summarise through here.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from ..records import RunRecord
from .fmt import (
    compact,
    count,
    error_text,
    fmt_duration,
    fmt_time,
    params_summary,
    percentile,
    run_duration,
    run_state,
    who,
)
from .liveness import run_liveness
from .timeline import Row

GROUP_AT = 10
"""A process with at least this many runs is shown as one summary, not run by run."""
PROBLEMS = ("failed", "interrupted", "running")
_ORDER = ("succeeded", "failed", "interrupted", "running")


def status_name(status: Optional[str]) -> str:
    """``never finished`` for a run whose last record is ``running``; the status otherwise."""
    return "never finished" if status == "running" else str(status)


def is_problem(run: RunRecord) -> bool:
    """Failed, interrupted, or never finished: ``running`` while its worker cannot be alive (``liveness``)."""
    return run.status in PROBLEMS and (run.status != "running" or run_liveness(run) == "died")


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What the runs of one process came to."""

    process: str
    description: str
    total: int
    by_status: Dict[str, int]
    by_host: Dict[str, int]
    first: Optional[datetime.datetime]
    last: Optional[datetime.datetime]
    median: Optional[float]
    p95: Optional[float]
    longest: Optional[float]
    problems: List[RunRecord]
    alive: int = 0
    """Of the runs whose last record says ``running``, those whose worker can still be alive."""

    @property
    def grouped(self) -> bool:
        """Many runs: shown as this summary and the problem runs, not one line per run."""
        return self.total >= GROUP_AT

    def counts_text(self) -> str:
        """``1,998 succeeded, 2 failed`` (or ``no runs recorded``)."""
        if not self.total:
            return "no runs recorded"
        parts = []
        for status, n in self.by_status.items():
            if status == "running" and self.alive:
                parts.append(f"{self.alive:,} running")
                n -= self.alive
            if n:
                parts.append(f"{n:,} {status_name(status)}")
        return ", ".join(parts)

    def span_text(self) -> str:
        """``12:00–12:40`` on one day, full UTC times across days; ``""`` when undated."""
        if self.first is None:
            return ""
        first, last = (t.astimezone(datetime.timezone.utc) for t in (self.first, self.last or self.first))
        if first.date() == last.date():
            return f"{first:%H:%M}–{last:%H:%M}"
        return f"{first:%Y-%m-%dT%H:%MZ}–{last:%Y-%m-%dT%H:%MZ}"

    def line(self, of: Optional[int] = None) -> str:
        """``downsample: 2,000 runs — 1,998 succeeded, 2 failed — 12:00–12:40 on 4 hosts``.

        ``of`` is the process's number of runs when these are only some of them.
        """
        runs = count(self.total, "run") if of in (None, self.total) else f"{self.total:,} of {count(of or 0, 'run')}"
        parts = [f"{self.description}: {runs}", self.counts_text()]
        where = self.span_text()
        if self.by_host:
            where = f"{where} on {count(len(self.by_host), 'host')}".strip()
        return " — ".join(parts + ([where] if where else []))

    def durations_text(self) -> str:
        if self.median is None:
            return "-"
        return f"median {fmt_duration(self.median)}, p95 {fmt_duration(self.p95)}, max {fmt_duration(self.longest)}"

    def to_json(self) -> Dict[str, Any]:
        return {"process": self.process, "description": self.description, "runs": self.total,
                "by_status": dict(self.by_status), "by_host": dict(self.by_host),
                "first": None if self.first is None else self.first.isoformat(),
                "last": None if self.last is None else self.last.isoformat(),
                "duration": {"median": self.median, "p95": self.p95, "max": self.longest},
                "problems": [r.id for r in self.problems], "alive": self.alive}


def summarise(process: str, description: str, runs: Iterable[RunRecord]) -> RunSummary:
    """The summary of ``runs`` (those of one process), problems oldest first."""
    runs = sorted(runs, key=lambda r: (r.started, r.id))
    statuses: Dict[str, int] = {}
    hosts: Dict[str, int] = {}
    for run in runs:
        statuses[run.status] = statuses.get(run.status, 0) + 1
        if run.host:
            hosts[run.host] = hosts.get(run.host, 0) + 1
    by_status = {s: statuses[s] for s in _ORDER if s in statuses}
    by_status.update({s: n for s, n in statuses.items() if s not in by_status})
    problems = [r for r in runs if is_problem(r)]
    ends = [r.ended or r.started for r in runs]
    durations = [d for d in map(run_duration, runs) if d is not None]
    return RunSummary(process, description, len(runs), by_status,
                      dict(sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))),
                      runs[0].started if runs else None, max(ends) if ends else None,
                      percentile(durations, 0.5), percentile(durations, 0.95), max(durations, default=None),
                      problems, statuses.get("running", 0) - sum(r.status == "running" for r in problems))


def by_process(history: Any) -> Dict[str, RunSummary]:
    """A summary for every process of a ``History``, by key (processes without runs included)."""
    runs: Dict[str, List[RunRecord]] = {}
    for run in history.runs:
        runs.setdefault(run.process, []).append(run)
    names = {p.key: p.description for p in history.processes}
    keys = list(names) + [k for k in runs if k not in names]
    return {k: summarise(k, names.get(k) or runs[k][0].description, runs.get(k, ())) for k in keys}


# -------------------------------------------------------------- ptb log, grouped
class _Block:
    """The selected rows of one grouped process: its runs, the problem ones, their notes."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.head: List[Row] = []
        self.runs: List[Row] = []
        self.detail: List[Row] = []
        self.hidden: List[Row] = []

    def add(self, row: Row, problems: Set[str]) -> None:
        if row.kind == "process":
            self.head.append(row)
        if row.kind == "run":
            self.runs.append(row)
        if (row.id if row.kind == "run" else row.run) in problems:
            self.detail.append(row)
        elif row.kind == "note":
            self.hidden.append(row)

    def rows(self, summary: RunSummary, runs: Dict[str, RunRecord]) -> List[Row]:
        out = list(self.head)
        if self.runs:
            mine = summarise(self.key, summary.description, (runs[r.id] for r in self.runs))
            out.append(Row("runs", self.key, self.runs[0].time, mine.line(of=summary.total), process=self.key,
                           status="failed" if mine.problems else "succeeded"))
        out += self.detail
        kinds: Dict[str, List[Row]] = {}
        for note in self.hidden:
            kinds.setdefault(note.note_type or "GENERIC", []).append(note)
        for kind, notes in kinds.items():
            text, times = collections.Counter(n.text for n in notes).most_common(1)[0]
            same = f": {compact(text, 60)} (×{times:,})" if times * 2 > len(notes) else ""   # the usual one
            out.append(Row("notes", f"{self.key}-{kind.lower()}", notes[0].time,
                           f"{count(len(notes), kind.lower() + ' note')} of these runs not shown{same}",
                           note_type=kind, process=self.key))
        return out


def grouped(history: Any, rows: Sequence[Row], group_at: int = GROUP_AT) -> List[Row]:
    """``ptb log``'s rows with each process of ``group_at`` runs or more summed up in one ``runs`` row.

    Its failed, interrupted and never-finished runs follow it one by one with
    their notes; the notes of its other runs are counted, by type, in ``notes``
    rows. Everything else is left as it is. ``rows`` is what the filters
    selected, so the summary counts the selected runs (``2 of 2,000 runs``).
    """
    summaries = by_process(history)
    big = {k for k, s in summaries.items() if s.total >= group_at}
    if not big:
        return list(rows)
    runs = {r.id: r for r in history.runs if r.process in big}
    problems = {r.id for k in big for r in summaries[k].problems}
    blocks: Dict[str, _Block] = {}
    out: List[Union[Row, _Block]] = []
    for row in rows:
        if row.kind == "note":
            key = runs[row.run].process if row.run in runs else None
        else:
            key = row.id if row.kind == "process" else row.process if row.kind == "run" else None
        if key not in big:
            out.append(row)
            continue
        if key not in blocks:
            blocks[key] = _Block(key)
            out.append(blocks[key])
        blocks[key].add(row, problems)
    return [r for item in out for r in (item.rows(summaries[item.key], runs) if isinstance(item, _Block) else [item])]


# ------------------------------------------------------------ ptb show PROCESS
_HOSTS_SHOWN = 8


def show_lines(summary: RunSummary, runs: Sequence[RunRecord]) -> List[str]:
    """A process's runs in ``ptb show``: the summary, then every run, or (when grouped) the problem ones."""
    if not summary.total:
        return ["  runs: none recorded"]
    hosts = [f"{h} {n:,}" for h, n in list(summary.by_host.items())[:_HOSTS_SHOWN]]
    if len(summary.by_host) > _HOSTS_SHOWN:
        hosts.append(f"… and {len(summary.by_host) - _HOSTS_SHOWN:,} more")
    out = [f"  runs:        {summary.line().split(': ', 1)[1]}",
           f"  by host:     {', '.join(hosts) or '-'}",
           f"  duration:    {summary.durations_text()}"]
    listed = summary.problems if summary.grouped else list(runs)
    if summary.grouped:
        out.append(f"  failures ({len(listed):,}):" if listed else "  failures:    none")
    else:
        out.append(f"  every run ({len(listed):,}):")
    for run in listed:
        out.append(f"    {run.id}  {fmt_time(run.started)}  {run_state(run)}, {who(run) or 'unknown'}")
        if run.parameters:
            out.append(f"      values: {params_summary(run.parameters, 200, 100)}")
        if run.error and summary.grouped:
            out.append(f"      {error_text(run.error)}")
    return out


def show_runs(process: Dict[str, Any], runs: Sequence[Dict[str, Any]],
              notes: Sequence[Dict[str, Any]]) -> Tuple[List[str], List[Dict[str, Any]]]:
    """``ptb show PROCESS``'s lines about its runs (from ``show()``'s JSON), and the notes still worth printing.

    A grouped process keeps the notes of its problem runs and those of no run.
    """
    records = [RunRecord.from_json(r) for r in runs]
    summary = summarise(process["key"], process["task"], records)
    lines = show_lines(summary, records)
    if not summary.grouped:
        return lines, list(notes)
    wanted = {r.id for r in summary.problems}
    kept = [n for n in notes if n.get("run") in wanted or n.get("run") is None]
    if len(kept) < len(notes):
        lines.append(f"  ({len(notes) - len(kept):,} notes of the other runs not shown: "
                     f"`ptb show PATH RUN` shows a run's, --json all of them)")
    return lines, kept
