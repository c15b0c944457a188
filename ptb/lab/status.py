"""``ptb status``: one line per volume under some prefixes, and a total.

Per volume: its processes, its runs by status (a run still at work apart
from one whose worker is gone, see ``liveness``), its last activity, and
whether ``ptb check`` passes. A volume with nothing ptb or 0.1.x recorded is
listed as undocumented (its ``check`` is None): information, not a failure.
"""
from __future__ import annotations

import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..read.fmt import count, one_line
from ..read.liveness import run_state_name
from .digest import Run
from .table import table

ORDER = ("succeeded", "failed", "interrupted", "running", "never-finished")


def row(digest: Mapping[str, Any], now: Optional[datetime.datetime] = None) -> Dict[str, Any]:
    """The status of one volume, as JSON."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    runs: Dict[str, int] = {}
    for process in digest.get("processes") or []:
        for raw in process.get("runs") or []:
            state = raw[1] if raw[1] != "running" else run_state_name(Run(raw), now, process.get("p95")).replace(
                " ", "-")
            runs[state] = runs.get(state, 0) + 1
    check = digest.get("check") or {}
    out = {"volume": digest["volume"], "documented": bool(digest.get("documented")),
           "processes": len(digest.get("processes") or []),
           "runs": {s: runs[s] for s in ORDER if s in runs}, "notes": digest.get("notes", 0),
           "foreign": digest.get("foreign", 0), "last": digest.get("last"),
           "check": {"ok": bool(check.get("ok")), "problems": list(check.get("problems") or [])}
           if digest.get("documented") or digest.get("error") else None}
    if digest.get("error"):
        out["error"] = digest["error"]
    return out


def status(prefixes: Union[str, Sequence[str]], *, cache: bool = True) -> List[Dict[str, Any]]:
    """The status of every volume at or under ``prefixes`` (see ``row``), sorted by volume."""
    from .scan import digests_under

    return [row(d) for d in digests_under(prefixes, cache=cache)[1]]


def total(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The sums of ``rows``: volumes, documented, processes, runs by status, check passes and failures."""
    runs: Dict[str, int] = {}
    for r in rows:
        for state, n in r["runs"].items():
            runs[state] = runs.get(state, 0) + n
    documented = [r for r in rows if r["documented"]]
    return {"volumes": len(rows), "documented": len(documented), "unreadable": sum("error" in r for r in rows),
            "processes": sum(r["processes"] for r in rows), "runs": {s: runs[s] for s in ORDER if s in runs},
            "check_ok": sum(r["check"]["ok"] for r in documented)}


def _runs_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {s.replace('-', ' ')}" for s, n in counts.items()) or "no runs"


def _short_time(value: Optional[str]) -> str:
    if not value:
        return "-"
    when = datetime.datetime.fromisoformat(value).astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    """``ptb status``'s table and its total line."""
    body = []
    for r in rows:
        if "error" in r:
            runs, check = f"cannot be read: {one_line(r['error'], 80)}", "FAIL"
        elif not r["documented"]:
            runs = "undocumented" + (f" ({count(r['foreign'], 'other entry', 'other entries')})"
                                     if r["foreign"] else "")
            check = "-"
        else:
            runs = _runs_text(r["runs"])
            problems = len(r["check"]["problems"])
            check = "ok" if r["check"]["ok"] else count(problems, "problem")
        body.append((one_line(r["volume"]), f"{r['processes']:,}" if r["documented"] else "-", runs,
                     _short_time(r["last"]), check))
    lines = table(body, ("VOLUME", "PROCESSES", "RUNS", "LAST", "CHECK"))
    t = total(rows)
    undocumented = t["volumes"] - t["documented"] - t["unreadable"]
    parts = [f"{t['documented']:,} documented"] + ([f"{undocumented:,} undocumented"] if undocumented else []) + (
        [f"{t['unreadable']:,} unreadable"] if t["unreadable"] else [])
    lines.append(f"total: {count(t['volumes'], 'volume')} ({', '.join(parts)}); "
                 f"{count(t['processes'], 'process', 'processes')}; {_runs_text(t['runs'])}; "
                 f"{t['check_ok']:,} of {t['documented']:,} documented pass ptb check")
    return "\n".join(lines)
