"""One process or run of a ``History`` in full (``ptb show``), with its code environments."""
from __future__ import annotations

import json
import textwrap
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import InvalidInputError
from ..records import ProcessRecord, RunRecord, to_utc
from ..visible import visible
from .envspread import spread, spread_lines
from .fmt import compact, error_text, fmt_resources, fmt_time, lines_of, origin_of, params_summary, run_state, who
from .history import History


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


def _foreign(history: History, ident: str) -> Optional[Dict[str, Any]]:
    """``foreign-N``, as ``ptb log`` names another tool's entry (igneous' ``processing`` entries): the entry."""
    from .timeline import foreign_rows

    for row in foreign_rows(history):
        if row.id == ident.strip():
            return {"volume": history.cloudpath, "kind": "foreign", "id": row.id, "text": row.text,
                    "date": None if row.time is None else row.time.isoformat(), "resolution": row.resolution,
                    "entry": row.entry,
                    "run": None, "process": None, "runs": [], "notes": [], "envs": {}}
    return None


def show(history: History, ident: str) -> Dict[str, Any]:
    """One process, run or foreign entry in full, as JSON: the record, its runs or notes, its code environment.

    A run is shown with the environment it ran with (``envs``); a process with
    the one it was first logged with, and ``env_spread`` says how its runs'
    code varied (commits, package sets, images).
    """
    foreign = _foreign(history, ident) if ident.strip().startswith("foreign-") else None
    if foreign is not None:
        return foreign
    record = resolve(history, ident)
    if isinstance(record, RunRecord):
        process = history.process(record.process)
        runs: List[RunRecord] = [record]
        notes = history.notes_of(record.id)
    else:
        process = record
        runs = list(history.runs_of(record.key))
        notes = [n for r in runs for n in history.notes_of(r.id)]
    pdata = None
    if process is not None:
        pdata = process.to_json()
        pdata["origin"] = origin_of(process)
    from .runsummary import summarise

    summary = summarise(record.key, record.description, runs).to_json() if isinstance(record, ProcessRecord) else None
    envs = history.envs_of(record)
    return {
        "volume": history.cloudpath,
        "kind": "run" if isinstance(record, RunRecord) else "process",
        "run": record.to_json() if isinstance(record, RunRecord) else None,
        "process": pdata,
        "runs": [r.to_json() for r in runs],
        "summary": summary,
        "notes": [n.to_json() for n in sorted(notes, key=lambda n: (n.timestamp is None, n.timestamp or 0, n.id))],
        "envs": envs,
        "envs_inherited": bool(getattr(record, "envs_inherited", False)),
        "env_spread": spread(runs) if isinstance(record, ProcessRecord) else None,
        "packages_elsewhere": _packages_elsewhere(history, process, set(envs)),
        "children": [r.to_json() for r in history.runs if r.parent == record.id]
        if isinstance(record, RunRecord) else [],
    }


def _packages(content: Any) -> Dict[str, str]:
    value = content.get("packages") if isinstance(content, dict) else None
    return {str(p[0]): str(p[1]) for p in value or [] if isinstance(p, (list, tuple)) and len(p) == 2}


def _packages_elsewhere(history: History, process: Optional[ProcessRecord], shown: set) -> Dict[str, List[str]]:
    """{package: versions} in the environments of the process's other runs (files other than ``shown``)."""
    if process is None:
        return {}
    others = {f for r in history.runs_of(process.key) for f in r.envfiles} - shown
    found: Dict[str, set] = {}
    for path in sorted(others):
        for name, version in _packages(history.envs.get(path)).items():
            found.setdefault(name, set()).add(version)
    return {name: sorted(versions) for name, versions in found.items()}


_ENV_ORDER = ("CodeEnv type", "name", "repo name", "commit hash", "branch", "detached", "shallow", "dirty",
              "git", "path", "image name", "tag", "image ID", "file", "sha256", "python", "platform")
ENV_TEXTS = ("diff", "source", "traceback")


def _indent(text: str, by: str) -> str:
    return "\n".join(by + line for line in str(text).splitlines())


def render_env(path: str, content: Any, indent: str = "    ", *, packages: bool = False,
               elsewhere: Optional[Dict[str, List[str]]] = None) -> str:
    """A code-environment file for humans: known fields in a useful order, then the rest.

    Installed packages are counted, with those that differ from ``elsewhere``
    (the process's other runs); ``packages`` lists them all.
    """
    lines = [f"{indent}{path}"]
    inner = indent + "  "
    if content is None:
        return "\n".join(lines + [f"{inner}(missing on the volume)"])
    if not isinstance(content, dict):
        return "\n".join(lines + [f"{inner}{compact(content, 200)}"])
    keys = [k for k in _ENV_ORDER if k in content] + sorted(k for k in content if k not in _ENV_ORDER)
    for key in keys:
        value = content[key]
        if key == "packages" and isinstance(value, list) and packages:
            pkgs = ", ".join("==".join(map(str, p)) if isinstance(p, (list, tuple)) else str(p) for p in value)
            lines.append(textwrap.fill(f"packages ({len(value)}): {pkgs}", 110, initial_indent=inner,
                                       subsequent_indent=inner + "  ", break_on_hyphens=False))
        elif key == "packages" and isinstance(value, list):
            lines.append(f"{inner}packages: {len(value)} installed (`ptb show --packages` lists them)")
            differ = [f"{name}=={version} (other runs: {', '.join(elsewhere[name])})"
                      for name, version in sorted(_packages(content).items())
                      if elsewhere and name in elsewhere and elsewhere[name] != [version]]
            if differ:
                lines.append(textwrap.fill(f"differ from the process's other runs: {', '.join(differ)}", 110,
                                           initial_indent=inner + "  ", subsequent_indent=inner + "    ",
                                           break_on_hyphens=False))
        elif key in ENV_TEXTS and isinstance(value, str) and value:
            lines.append(f"{inner}{key}:")
            lines.append(_indent(value, inner + "  "))
        elif value not in (None, "", [], {}):
            lines.append(f"{inner}{key}: {value if isinstance(value, str) else compact(value, 200)}")
    return "\n".join(lines)


def _envs_heading(view: Dict[str, Any], heading: str) -> str:
    if not view["envs"]:
        return f"{heading}: (none recorded)"
    if view.get("envs_inherited"):
        return f"{heading}: its process's (this run was recorded without its own, by an older ptb)"
    return f"{heading}:"


def _render_envs(view: Dict[str, Any], packages: bool) -> List[str]:
    return [render_env(path, content, packages=packages, elsewhere=view.get("packages_elsewhere"))
            for path, content in view["envs"].items()]


def render_show(view: Dict[str, Any], packages: bool = False) -> str:
    """``ptb show``'s text, from ``show()``'s JSON; ``packages`` lists every installed package.

    Control characters from the volume are made visible (``ptb.visible``).
    """
    if view["kind"] == "foreign":
        return visible(_render_foreign(view))
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
            out.append(f"  resources:   {fmt_resources(record.resources)}")
        if record.error:
            out.append(f"  error:       {error_text(record.error)}")
            if record.error.get("traceback"):
                out.append(_indent(record.error["traceback"], "    "))
        out += _children(view.get("children") or [])
    if run is not None:
        out.append(_envs_heading(view, "  code environment (this run's)"))
        out += _render_envs(view, packages)
    if process is not None:
        if out:
            out.append("")
        origin = f"  [{process['origin']}]" if process["origin"] != "ptb" else ""
        out += [f"process {process['key']}{origin}", f"  description: {process['task']}",
                f"  id:          {process['id']}",
                f"  logged:      {fmt_time(to_utc(process['timestamp']))}", "  parameters:",
                _indent(json.dumps(process["parameters"], indent=2, sort_keys=True, ensure_ascii=False), "    ")]
        if run is None:
            from .runsummary import show_runs

            out.append(_envs_heading(view, "  code environment (as first logged)"))
            out += _render_envs(view, packages)
            out += [f"  {line}" for line in spread_lines(view.get("env_spread") or {})]
            lines, notes = show_runs(process, view["runs"], notes)
            out += lines
    elif run is not None:
        out.append(f"  process:     {run['process']} (not found on the volume)")
    if notes:
        out.append("notes:")
        out += [f"  {fmt_time(to_utc(n['timestamp']))}  {n['type'].lower():<10}  "
                + ("\n" + " " * 36).join(lines_of(n["content"])) for n in notes]
    return visible("\n".join(out))


_CHILDREN_SHOWN = 20


def _children(children: List[Dict[str, Any]]) -> List[str]:
    """The runs documented inside this one (a driver's tasks), the first ``_CHILDREN_SHOWN`` of them."""
    if not children:
        return []
    out = [f"  child runs:  {len(children):,}"]
    for data in children[:_CHILDREN_SHOWN]:
        child = RunRecord.from_json(data)
        values = f" ({params_summary(child.parameters, 80)})" if child.parameters else ""
        out.append(f"    {child.id}  {run_state(child)}: {child.description}{values}")
    if len(children) > _CHILDREN_SHOWN:
        out.append(f"    … and {len(children) - _CHILDREN_SHOWN:,} more (--json lists them all)")
    return out


def _render_foreign(view: Dict[str, Any]) -> str:
    """Another tool's entry (igneous writes ``{"method": {"task": ..., ...}, "by": ..., "date": ...}``) in full."""
    entry = view["entry"] if isinstance(view["entry"], dict) else {"value": view["entry"]}
    out = [f"{view['id']}  [foreign: written by another tool, not ptb]", f"  what:        {view['text']}"]
    when = entry.get("date")
    if when is not None:
        read = fmt_time(to_utc(view["date"])) if view["date"] else "(its zone or format is not one ptb reads)"
        if view["date"] and view.get("resolution", 0) >= 60:
            read = read[:-4] + "Z (to the minute)"
        out.append(f"  date:        {when} = {read}" if isinstance(when, str) else f"  date:        {read}")
    if entry.get("by") is not None:
        out.append(f"  by:          {entry['by'] if isinstance(entry['by'], str) else compact(entry['by'], 200)}")
    method = entry.get("method")
    if isinstance(method, dict):
        out.append("  parameters:")
        out.append(_indent(json.dumps(method, indent=2, sort_keys=True, ensure_ascii=False, default=str), "    "))
    rest = {k: v for k, v in entry.items() if k not in ("method", "by", "date")}
    if rest or (method is not None and not isinstance(method, dict)):
        out.append("  entry:")
        out.append(_indent(json.dumps(entry, indent=2, sort_keys=True, ensure_ascii=False, default=str), "    "))
    return "\n".join(out)
