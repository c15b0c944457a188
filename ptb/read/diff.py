"""``ptb diff``: two processes or runs side by side.

Kept apart from ``ptb.read.report`` because it compares, where the report views
read one record; it resolves ids and reads environments the way ``show`` does.
"""
from __future__ import annotations

import datetime
import difflib
from typing import Any, Dict, List, Tuple

from ..records import RunRecord
from ..visible import visible
from .envspread import spread
from .fmt import compact, fmt_duration
from .history import History
from .show import ENV_TEXTS, resolve

_KEY_ENV_FIELDS = ("file", "name", "commit hash", "branch", "dirty", "image name", "tag", "image ID", "sha256",
                   "packages", "diff", "source")


def _flatten(prefix: str, value: Any, out: Dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def env_groups(envs: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A process's environments by ``env.<type>[#n]``, each as comparable fields."""
    groups: Dict[str, Dict[str, Any]] = {}
    for path, content in envs.items():
        content = content if isinstance(content, dict) else {"CodeEnv type": "missing"}
        kind = str(content.get("CodeEnv type", "unknown"))
        base = f"env.{kind}"
        n = 1
        while base in groups:
            n += 1
            base = f"env.{kind}#{n}"
        fields: Dict[str, Any] = {"file": path}
        for key, value in content.items():
            if key == "packages" and isinstance(value, list):
                fields[key] = {str(p[0]): p[1] for p in value if isinstance(p, (list, tuple)) and len(p) >= 2}
            elif key != "CodeEnv type":
                fields[key] = value
        groups[base] = fields
    return groups


def _side(history: History, ident: str) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Dict[str, Any]]]:
    record = resolve(history, ident)
    fields: Dict[str, Any] = {}
    if isinstance(record, RunRecord):
        process = history.process(record.process)
        head = {"kind": "run", "id": record.id, "process": record.process}
        for key in ("status", "started", "ended", "duration", "user", "host"):
            value = getattr(record, key)
            fields[f"run.{key}"] = value.isoformat() if isinstance(value, datetime.datetime) else value
        _flatten("run.parameters", record.parameters, fields)      # its own values (per_run): the chunk
    else:
        process = record
        head = {"kind": "process", "id": record.key, "process": record.key}
        runs = spread(history.runs_of(record.key))    # what its runs ran with, beside its first environment
        fields["runs.commits"] = ", ".join(f"{g['label']} ({g['runs']})" for g in runs["commits"]) or None
        fields["runs.package sets"] = runs["package_sets"] or None
    if process is not None:
        fields["description"] = process.description
        _flatten("parameters", process.parameters, fields)
    return head, fields, env_groups(history.envs_of(record))


def _lines(text: Any) -> str:
    return f"{len(str(text).splitlines())} lines" if text else "empty"


def diff(history: History, ident_a: str, ident_b: str) -> Dict[str, Any]:
    """Two processes (or runs, compared with their processes) side by side.

    A run is compared with the environment it ran with, a process with the
    one it was first logged with, plus the commits and package sets its runs
    used (``runs.commits``, ``runs.package sets``).

    ``rows`` hold each field with its two values (``None`` when absent on a
    side) and whether they are equal: parameters flattened, environments
    paired by type, package versions one row each. ``texts`` hold unified
    diffs of long texts (uncommitted git diffs, function sources) that differ.
    """
    head_a, fields_a, envs_a = _side(history, ident_a)
    head_b, fields_b, envs_b = _side(history, ident_b)
    rows = [{"field": k, "a": fields_a.get(k), "b": fields_b.get(k), "same": fields_a.get(k) == fields_b.get(k)}
            for k in dict.fromkeys(list(fields_a) + list(fields_b))]
    texts: List[Dict[str, Any]] = []
    for base in dict.fromkeys(list(envs_a) + list(envs_b)):
        a, b = envs_a.get(base), envs_b.get(base)
        if a is None or b is None:
            rows.append({"field": base, "a": a and a["file"], "b": b and b["file"], "same": False})
            continue
        env_rows(base, a, b, rows, texts)
    return {"volume": history.cloudpath, "a": head_a, "b": head_b, "rows": rows, "texts": texts}


def env_rows(base: str, a: Dict[str, Any], b: Dict[str, Any], rows: List[Dict[str, Any]],
             texts: List[Dict[str, Any]]) -> None:
    """Append to ``rows`` (and ``texts``) the fields of two environments of one kind, as ``diff`` pairs them.

    ``a`` and ``b`` are fields as ``env_groups`` makes them (``packages`` a
    {name: version} dict); ``ptb reproduce --check`` compares a run with a
    checkout through here too.
    """
    for key in dict.fromkeys(list(a) + list(b)):
        va, vb = a.get(key), b.get(key)
        field = f"{base}.{key}"
        if key == "packages":
            va, vb = va or {}, vb or {}
            rows.append({"field": field, "a": f"{len(va)} packages", "b": f"{len(vb)} packages", "same": va == vb})
            rows += [{"field": f"{field}.{name}", "a": va.get(name), "b": vb.get(name),
                      "same": va.get(name) == vb.get(name)} for name in sorted(set(va) | set(vb), key=str.lower)]
        elif key in ENV_TEXTS:
            rows.append({"field": field, "a": _lines(va), "b": _lines(vb), "same": va == vb})
            if va != vb:
                texts.append({"field": field, "unified": "".join(difflib.unified_diff(
                    str(va or "").splitlines(True), str(vb or "").splitlines(True), f"a/{field}", f"b/{field}"))})
        else:
            rows.append({"field": field, "a": va, "b": vb, "same": va == vb})


def _shown(row: Dict[str, Any]) -> bool:
    field = row["field"]
    if not row["same"] or not field.startswith("env."):
        return True
    parts = field.split(".", 2)
    return len(parts) < 3 or parts[2] in _KEY_ENV_FIELDS


def render_diff(view: Dict[str, Any], *, all_rows: bool = False, width: int = 42) -> str:
    """``ptb diff``'s text: fields side by side (``*`` where they differ), then unified diffs of long texts.

    Identical environment details (package versions, platform...) are left
    out unless ``all_rows``. Control characters from the volume are made visible.
    """
    a, b = view["a"], view["b"]
    rows = [r for r in view["rows"] if all_rows or _shown(r)]
    fw = min(max([len(r["field"]) for r in rows] + [5]), 40)

    def cell(value: Any, field: str = "") -> str:
        if field == "run.duration" and isinstance(value, (int, float)):
            return fmt_duration(value)             # --json keeps the seconds
        return "-" if value is None else compact(value, width)

    out = [f"  {'':<{fw}}  {compact(a['kind'] + ' ' + a['id'], width):<{width}}  {b['kind']} {b['id']}"]
    for r in rows:
        mark = " " if r["same"] else "*"
        out.append(f"{mark} {compact(r['field'], fw):<{fw}}  {cell(r['a'], r['field']):<{width}}  "
                   f"{cell(r['b'], r['field'])}")
    differ = sum(1 for r in view["rows"] if not r["same"])
    hidden = len(view["rows"]) - len(rows)
    out.append(f"{differ} of {len(view['rows'])} fields differ"
               + (f"; {hidden} identical environment details not shown (--all shows them)" if hidden else ""))
    for text in view["texts"]:
        out += ["", text["unified"].rstrip("\n")]
    return visible("\n".join(out))
