"""A ``History`` made readable: timeline rows and the ``show`` view (``ptb.diff`` compares two).

Pure functions over a ``History`` (no storage access), shared by the command
line and ``ptb.export``: what the CLI prints and what the HTML page shows come
from the same rows. Every view has a JSON form with stable keys, for scripts.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
import textwrap
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import InvalidInputError
from .history import History
from .records import Note, ProcessRecord, RunRecord, to_utc

NEVER_FINISHED = "never finished (worker died?)"
KINDS = ("process", "run", "note", "foreign")
TYPES = KINDS + ("motivation", "result", "generic")
_KIND_ORDER = {"process": 0, "run": 1, "note": 2, "foreign": 3}
_SHORT = 8


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


def who(run: Union[RunRecord, Row]) -> str:
    """``alice@host (pid 123)``, as much of it as is known."""
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


# ------------------------------------------------------------------- timeline
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
    if row.kind == "process":
        text = row.text + (f" ({params_summary(row.parameters or {})})" if row.parameters else "")
    elif row.kind == "run":
        text = f"{style(state_text(row.status, row.duration), row.status or '')}, {who(row) or 'unknown'}: {row.text}"
        if row.parameters:         # this run's own values (the chunk), whole enough to re-run it
            text += f" ({params_summary(row.parameters, 160, 80)})"
        if row.parent:
            text += f" (inside run {row.parent[:rlen]})"
        if row.error:
            text += f"\n{row.error}"
    elif row.kind == "note":
        text = row.text + (f" (run {row.run[:rlen]})" if row.run else "")
    elif row.kind in ("runs", "notes"):     # a grouped process (ptb.runsummary.grouped)
        text = row.text
    else:
        text = row.text + (f" by {row.user}" if row.user else "")
    if row.origin != "ptb":
        text += f"  [{row.origin}]"
    when = fmt_time(row.time) if row.time else "(undated)"
    lead = f"{when:<20}  {style(f'{row.label:<10}', row.label)}  {short_id(row, lengths):<{width}}  "
    lines = text.splitlines() or [""]
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
    return "\n".join(head + [""] + body)


def log_json(history: History, rows: Sequence[Row]) -> Dict[str, Any]:
    return {"volume": history.cloudpath, "sources": history.sources, "owners": history.owners,
            "problems": list(history.problems), "rows": [row.to_json() for row in rows]}


# ----------------------------------------------------------------------- show
def resolve(history: History, ident: str) -> Union[ProcessRecord, RunRecord]:
    """The process (by key or id) or run (by id) that ``ident`` names, or a unique prefix of it."""
    ident = ident.strip()
    candidates: Dict[str, Union[ProcessRecord, RunRecord]] = {}
    names: List[Tuple[str, str, bool]] = []      # (name, target, may be abbreviated)
    for p in history.processes:
        # record ids are time-ordered like run ids, so only keys (and 0.1.x's legacy-<n>) abbreviate
        names += [(p.key, f"process:{p.key}", True), (p.id, f"process:{p.key}", p.id.startswith("legacy-"))]
        candidates[f"process:{p.key}"] = p
    for r in history.runs:
        names.append((r.id, f"run:{r.id}", True))
        candidates[f"run:{r.id}"] = r
    exact = {target for name, target, _ in names if name == ident}
    found = exact or {target for name, target, short in names if short and ident and name.startswith(ident)}
    if len(found) == 1:
        return candidates[found.pop()]
    if not found:
        raise InvalidInputError(f"no process or run of {history.cloudpath} has an id starting with {ident!r}; "
                                f"`ptb log {history.cloudpath}` lists them")
    raise InvalidInputError(f"{ident!r} is ambiguous on {history.cloudpath}: it starts "
                            f"{', '.join(sorted(found))}; give more characters")


def envs_of(history: History, process: Optional[ProcessRecord]) -> Dict[str, Any]:
    return {} if process is None else {f: history.envs.get(f) for f in process.code_envfiles}


def show(history: History, ident: str) -> Dict[str, Any]:
    """One process or run in full, as JSON: the record, its runs or notes, its code environment."""
    record = resolve(history, ident)
    if isinstance(record, RunRecord):
        process = history.process(record.process)
        runs = [record]
        notes = history.notes_of(record.id)
    else:
        process = record
        runs = history.runs_of(record.key)
        notes = [n for r in runs for n in history.notes_of(r.id)]
    pdata = None
    if process is not None:
        pdata = process.to_json()
        pdata["origin"] = origin_of(process)
    from .runsummary import summarise

    summary = summarise(record.key, record.description, runs).to_json() if isinstance(record, ProcessRecord) else None
    return {
        "volume": history.cloudpath,
        "kind": "run" if isinstance(record, RunRecord) else "process",
        "run": record.to_json() if isinstance(record, RunRecord) else None,
        "process": pdata,
        "runs": [r.to_json() for r in runs],
        "summary": summary,
        "notes": [n.to_json() for n in sorted(notes, key=lambda n: (n.timestamp is None, n.timestamp or 0, n.id))],
        "envs": envs_of(history, process),
    }


_ENV_ORDER = ("CodeEnv type", "name", "repo name", "commit hash", "branch", "detached", "shallow", "dirty",
              "git", "path", "image name", "tag", "image ID", "file", "sha256", "python", "platform")
ENV_TEXTS = ("diff", "source", "traceback")


def _indent(text: str, by: str) -> str:
    return "\n".join(by + line for line in str(text).splitlines())


def render_env(path: str, content: Any, indent: str = "    ") -> str:
    """A code-environment file for humans: known fields in a useful order, then the rest."""
    lines = [f"{indent}{path}"]
    inner = indent + "  "
    if content is None:
        return "\n".join(lines + [f"{inner}(missing on the volume)"])
    if not isinstance(content, dict):
        return "\n".join(lines + [f"{inner}{compact(content, 200)}"])
    keys = [k for k in _ENV_ORDER if k in content] + sorted(k for k in content if k not in _ENV_ORDER)
    for key in keys:
        value = content[key]
        if key == "packages" and isinstance(value, list):
            pkgs = ", ".join("==".join(map(str, p)) if isinstance(p, (list, tuple)) else str(p) for p in value)
            lines.append(textwrap.fill(f"packages ({len(value)}): {pkgs}", 110, initial_indent=inner,
                                       subsequent_indent=inner + "  ", break_on_hyphens=False))
        elif key in ENV_TEXTS and isinstance(value, str) and value:
            lines.append(f"{inner}{key}:")
            lines.append(_indent(value, inner + "  "))
        elif value not in (None, "", [], {}):
            lines.append(f"{inner}{key}: {value if isinstance(value, str) else compact(value, 200)}")
    return "\n".join(lines)


def render_show(view: Dict[str, Any]) -> str:
    """``ptb show``'s text, from ``show()``'s JSON."""
    out: List[str] = []
    run, process, notes = view["run"], view["process"], view["notes"]
    if run is not None:
        record = RunRecord.from_json(run)
        out += [f"run {record.id}", f"  status:      {run_state(record)}",
                f"  description: {record.description}",
                f"  started:     {fmt_time(record.started)}", f"  ended:       {fmt_time(record.ended)}",
                f"  who:         {who(record) or 'unknown'}", f"  parent run:  {record.parent or '-'}"]
        if record.parameters:      # this run's own values (per_run), already redacted
            out.append(f"  values:      {json.dumps(record.parameters, sort_keys=True, ensure_ascii=False)}")
        if record.resources:
            out.append(f"  resources:   {params_summary(record.resources, 200)}")
        if record.error:
            out.append(f"  error:       {error_text(record.error)}")
            if record.error.get("traceback"):
                out.append(_indent(record.error["traceback"], "    "))
    if process is not None:
        if out:
            out.append("")
        origin = f"  [{process['origin']}]" if process["origin"] != "ptb" else ""
        out += [f"process {process['key']}{origin}", f"  description: {process['task']}",
                f"  id:          {process['id']}",
                f"  logged:      {fmt_time(to_utc(process['timestamp']))}", "  parameters:",
                _indent(json.dumps(process["parameters"], indent=2, sort_keys=True, ensure_ascii=False), "    ")]
        out.append("  code environment:" if view["envs"] else "  code environment: (none recorded)")
        out += [render_env(path, content) for path, content in view["envs"].items()]
        if run is None:
            from .runsummary import show_runs

            lines, notes = show_runs(process, view["runs"], notes)
            out += lines
    elif run is not None:
        out.append(f"  process:     {run['process']} (not found on the volume)")
    if notes:
        out.append("notes:")
        out += [f"  {fmt_time(to_utc(n['timestamp']))}  {n['type'].lower():<10}  " + n["content"].replace(
            "\n", "\n" + " " * 36) for n in notes]
    return "\n".join(out)
