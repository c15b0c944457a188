"""A volume's history boiled down to what ``ptb status`` and ``ptb find`` ask of it, as JSON.

The index keeps one digest per volume, so a query over unchanged volumes
reads a small JSON object each instead of every record. It holds the
processes with their parameters and runs (status, times, worker, per-run
values), the code each run ran with (grouped: one entry per set of
environment files, with its commit, packages and command-line tool), counts,
the last activity and what ``ptb check`` says.
"""
from __future__ import annotations

import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..read.check import check_history
from ..read.envspread import GIT, commit_label, packages_of
from ..read.fmt import origin_of, parse_time, percentile, run_duration
from ..read.history import History

VERSION = 1
COMMAND = "Command"      # the environment ``ptb run`` records for a command-line tool


def _iso(value: Optional[datetime.datetime]) -> Optional[str]:
    return None if value is None else value.isoformat()


def git_commit(envs: Mapping[str, Any]) -> Optional[str]:
    """The full commit of the git environment among ``envs``, if any."""
    for env in envs.values():
        if isinstance(env, dict) and env.get("CodeEnv type") == GIT:
            commit = env.get("commit hash")
            return commit if isinstance(commit, str) and commit else None
    return None


def tool_of(envs: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The command-line tool a ``ptb run`` step ran: argv0, executable, and its distribution and version."""
    for env in envs.values():
        if isinstance(env, dict) and env.get("CodeEnv type") == COMMAND:
            return {k: env.get(k) for k in ("argv0", "executable", "distribution", "version")
                    if isinstance(env.get(k), str)}
    return None


class _Groups:
    """The distinct code environments of a volume's runs, numbered in the order first seen."""

    def __init__(self) -> None:
        self.ids: Dict[Tuple[str, ...], int] = {}
        self.groups: List[Dict[str, Any]] = []

    def of(self, files: Sequence[str], envs: Mapping[str, Any]) -> Optional[int]:
        if not files:
            return None
        key = tuple(files)
        if key not in self.ids:
            self.ids[key] = len(self.groups)
            self.groups.append({"files": list(files), "commit": git_commit(envs), "label": commit_label(envs),
                                "packages": packages_of(envs), "tool": tool_of(envs)})
        return self.ids[key]


def _last_activity(h: History) -> Optional[datetime.datetime]:
    times = [t for r in h.runs for t in (r.started, r.ended) if t is not None]
    times += [n.timestamp for n in h.notes if n.timestamp is not None]
    times += [p.timestamp for p in h.processes if p.timestamp is not None]
    times += [t for t in (parse_time(e.get("date")) for e in h.foreign) if t is not None]
    return max(times, default=None)


def digest(h: History, problems: Sequence[str] = ()) -> Dict[str, Any]:
    """The digest of one volume's ``History``; ``problems`` are what reading it warned about."""
    groups = _Groups()
    processes = []
    runs_of: Dict[str, List[Any]] = {}
    for run in h.runs:
        runs_of.setdefault(run.process, []).append(run)
    keys = [p.key for p in h.processes] + [k for k in runs_of if h.process(k) is None]
    for key in keys:
        process = h.process(key)
        runs = runs_of.get(key, [])
        durations = [d for d in map(run_duration, runs) if d is not None and d >= 0]
        processes.append({
            "key": key,
            "id": process.id if process else key,
            "description": process.description if process else (runs[0].description if runs else ""),
            "parameters": process.parameters if process else {},
            "origin": origin_of(process) if process else "ptb",
            "timestamp": _iso(process.timestamp) if process else None,
            "env": groups.of(process.code_envfiles, h.envs_of(process)) if process else None,
            "p95": percentile(durations, 0.95),
            "runs": [[r.id, r.status, _iso(r.started), _iso(r.ended), run_duration(r), r.host, r.pid,
                      groups.of(r.envfiles, r.envs), r.parameters or None,
                      (r.error or {}).get("type") if r.error else None] for r in runs],
        })
    report = check_history(h)
    for problem in reversed(problems):
        if problem not in report.problems:
            report.problems.insert(0, problem)
    last = _last_activity(h)
    return {
        "v": VERSION,
        "volume": h.cloudpath,
        "documented": bool(h.processes or h.runs or h.notes),
        "processes": processes,
        "envs": groups.groups,
        "notes": len(h.notes),
        "foreign": len(h.foreign),
        "last": _iso(last),
        "check": {"ok": report.ok, "problems": report.problems},
    }


RUN_FIELDS = ("id", "status", "started", "ended", "duration", "host", "pid", "env", "parameters", "error")


class Run:
    """One run of a digest, with the fields ``ptb.read.liveness.run_liveness`` asks for."""

    __slots__ = RUN_FIELDS
    id: str
    status: str
    started: Optional[datetime.datetime]
    ended: Optional[datetime.datetime]
    duration: Optional[float]
    host: Optional[str]
    pid: Optional[int]
    env: Optional[int]
    parameters: Optional[Dict[str, Any]]
    error: Optional[str]

    def __init__(self, row: Sequence[Any]):
        values = dict(zip(RUN_FIELDS, row))
        for name in RUN_FIELDS:
            setattr(self, name, values.get(name))
        self.started = parse_time(values.get("started"))
        self.ended = parse_time(values.get("ended"))
