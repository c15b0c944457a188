"""``ptb find`` / ``ptb.find``: which steps, across many volumes, came from this code or these settings.

Filters AND together: a commit (a prefix of the full hash), a package
(``NAME`` or ``NAME==VERSION``: an installed distribution, or the tool a
``ptb run`` step ran), parameters (``KEY=VALUE``, the step's or the run's own
values), a status and a piece of the description. Each run is judged by the
code it ran with (its own environment files), so a step re-run after a fix
matches only through the runs made with the fixed code. The answer is one row
per (volume, process) with its matching runs counted. A process with no runs
(0.1.x's, ``logprocess``) is judged by its own environment and parameters.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import InvalidInputError
from ..read.fmt import count, one_line
from ..read.liveness import run_state_name
from .digest import Run
from .table import table

STATUSES = ("running", "never-finished", "succeeded", "failed", "interrupted")
_MISSING = object()


def _norm_name(name: str) -> str:
    """Distribution names as pip compares them: ``Cloud_Volume`` is ``cloud-volume``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _norm_version(version: str) -> str:
    return re.sub(r"(\.0+)+$", "", version.strip().lower().lstrip("v"))


def version_matches(installed: str, wanted: str) -> bool:
    """``4.36`` is ``4.36.0``; ``4.36.*`` is any 4.36 release."""
    if wanted.endswith(".*"):
        prefix = _norm_version(wanted[:-2])
        got = _norm_version(installed)
        return got == prefix or installed.strip().lower().lstrip("v").startswith(wanted[:-1].lower().lstrip("v"))
    return _norm_version(installed) == _norm_version(wanted)


@dataclasses.dataclass(frozen=True)
class Filters:
    """What ``find`` looks for; None (or empty) matches everything."""

    commit: Optional[str] = None
    package: Optional[Tuple[str, Optional[str]]] = None
    params: Tuple[Tuple[str, Any, Optional[str]], ...] = ()
    status: Optional[str] = None
    description: Optional[str] = None

    @classmethod
    def make(cls, commit: Optional[str] = None, package: Optional[str] = None,
             params: Union[Mapping[str, Any], Iterable[str], None] = None, status: Optional[str] = None,
             description: Optional[str] = None) -> Filters:
        """Filters from ``find``'s arguments; ``InvalidInputError`` names a bad one."""
        if commit is not None and not re.fullmatch(r"[0-9a-fA-F]{4,40}", commit.strip()):
            raise InvalidInputError(f"commit {commit!r} is not a commit hash prefix (4 to 40 hex digits)")
        wanted_package = None
        if package is not None:
            name, sep, version = package.partition("==")
            if not name.strip() or re.search(r"[<>=!~ ,;]", name.strip()) or (sep and not version.strip()):
                raise InvalidInputError(f"package {package!r} is not NAME or NAME==VERSION (e.g. igneous==4.36)")
            wanted_package = (_norm_name(name), version.strip() or None)
        wanted_status = None
        if status is not None:
            wanted_status = status.strip().lower().replace(" ", "-")
            if wanted_status not in STATUSES:
                raise InvalidInputError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        return cls(commit.strip().lower() if commit else None, wanted_package, _params(params), wanted_status,
                   description.lower() if description else None)


def _params(params: Union[Mapping[str, Any], Iterable[str], None]) -> Tuple[Tuple[str, Any, Optional[str]], ...]:
    """(key, value, the text given) for each parameter; ``KEY=VALUE`` texts have their VALUE read as JSON if it is."""
    if params is None:
        return ()
    if isinstance(params, Mapping):
        return tuple((str(k), v, None) for k, v in params.items())
    out = []
    for item in [params] if isinstance(params, str) else params:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"parameter filter {item!r} is not KEY=VALUE")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        out.append((key.strip(), value, text))
    return tuple(out)


def _lookup(parameters: Mapping[str, Any], key: str) -> Any:
    """``parameters[key]``, or a dotted path into nested values (``section.threshold``)."""
    if key in parameters:
        return parameters[key]
    value: Any = parameters
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same(actual: Any, wanted: Any, text: Optional[str]) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(actual, bool) == isinstance(wanted, bool) and actual == wanted:
        return True
    return text is not None and isinstance(actual, str) and actual == text


class _Matcher:
    """``Filters`` applied to one volume's digest."""

    def __init__(self, filters: Filters, digest: Mapping[str, Any], now: datetime.datetime):
        self.f, self.digest, self.now = filters, digest, now
        self.envs: List[Dict[str, Any]] = list(digest.get("envs") or [])

    def env(self, index: Optional[int]) -> Dict[str, Any]:
        return self.envs[index] if index is not None and 0 <= index < len(self.envs) else {}

    def code(self, env: Mapping[str, Any]) -> bool:
        f = self.f
        if f.commit and not str(env.get("commit") or "").lower().startswith(f.commit):
            return False
        if f.package:
            name, version = f.package
            found = [v for n, v in (env.get("packages") or {}).items() if _norm_name(n) == name]
            tool = env.get("tool") or {}
            if _norm_name(str(tool.get("distribution") or "")) == name:
                found.append(str(tool.get("version") or ""))
            if not found or (version and not any(version_matches(v, version) for v in found)):
                return False
        return True

    def values(self, parameters: Mapping[str, Any]) -> bool:
        return all(_same(_lookup(parameters, k), v, t) for k, v, t in self.f.params)

    def row(self, process: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        f = self.f
        if f.description and f.description not in str(process.get("description") or "").lower():
            return None
        params = process.get("parameters") or {}
        runs = [Run(r) for r in process.get("runs") or []]
        if not runs:
            if f.status or not self.code(self.env(process.get("env"))) or not self.values(params):
                return None
            return _row(self.digest, process, [], self.env(process.get("env")), self)
        states = [run_state_name(r, self.now, process.get("p95")).replace(" ", "-") for r in runs]
        matched = [(r, s) for r, s in zip(runs, states)
                   if (not f.status or s == f.status) and self.code(self.env(r.env))
                   and self.values({**params, **(r.parameters or {})})]
        return _row(self.digest, process, matched, None, self) if matched else None


def _row(digest: Mapping[str, Any], process: Mapping[str, Any], matched: Sequence[Tuple[Run, str]],
         own_env: Optional[Dict[str, Any]], m: _Matcher) -> Dict[str, Any]:
    by_status: Dict[str, int] = {}
    commits: Dict[Tuple[Any, Any], int] = {}
    for run, state in matched:
        by_status[state] = by_status.get(state, 0) + 1
        env = m.env(run.env)
        commits[(env.get("commit"), env.get("label"))] = commits.get((env.get("commit"), env.get("label")), 0) + 1
    newest = max(matched, key=lambda rs: (rs[0].ended or rs[0].started or datetime.datetime.min.replace(
        tzinfo=datetime.timezone.utc)), default=None)
    env = (own_env or {}) if newest is None else m.env(newest[0].env)
    last = None if newest is None else (newest[0].ended or newest[0].started)
    return {
        "volume": digest["volume"], "process": process["key"], "id": process["id"],
        "description": process["description"], "parameters": process.get("parameters") or {},
        "origin": process.get("origin"), "runs": len(matched), "total_runs": len(process.get("runs") or []),
        "by_status": by_status, "commit": env.get("commit"), "commit_label": env.get("label"),
        "commits": [{"commit": c, "label": label, "runs": n} for (c, label), n in commits.items()],
        "tool": env.get("tool"), "last": None if last is None else last.isoformat(),
    }


def rows(digests: Iterable[Mapping[str, Any]], filters: Filters,
         now: Optional[datetime.datetime] = None) -> List[Dict[str, Any]]:
    """The matching (volume, process) rows of ``digests``, in volume order then process order."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    out: List[Dict[str, Any]] = []
    for digest in digests:
        matcher = _Matcher(filters, digest, now)
        out.extend(r for r in map(matcher.row, digest.get("processes") or []) if r is not None)
    return out


def find(prefixes: Union[str, Sequence[str]], commit: Optional[str] = None, package: Optional[str] = None,
         params: Union[Mapping[str, Any], Iterable[str], None] = None, status: Optional[str] = None,
         description: Optional[str] = None, *, cache: bool = True) -> List[Dict[str, Any]]:
    """Which steps, in the volumes at or under ``prefixes``, match every filter given.

    Args:
        prefixes: Volumes, or directories and cloudpaths above them (found recursively).
        commit: A prefix of the commit the runs' code was at (``3f2a9c1``).
        package: ``NAME`` or ``NAME==VERSION`` (``igneous==4.36``; ``4.36.*`` any 4.36):
            installed in the runs' environment, or the tool ``ptb run`` ran.
        params: ``{KEY: VALUE}`` (or ``["KEY=VALUE", ...]``): the step's parameters or
            the run's own values; a dotted KEY reaches into nested values.
        status: ``running``, ``never-finished``, ``succeeded``, ``failed`` or ``interrupted``.
        description: Text the step's description contains (any case).
        cache: Use the local index (only what changed is read); False reads everything.

    Returns:
        One dict per (volume, process) with matching runs: ``volume``, ``process`` (its key),
        ``id``, ``description``, ``parameters``, ``runs`` (matching), ``total_runs``,
        ``by_status``, ``commit`` (of its newest matching run), ``commits``, ``tool``, ``last``.
    """
    from .scan import digests_under

    filters = Filters.make(commit, package, params, status, description)
    return rows(digests_under(prefixes, cache=cache)[1], filters)


def render(found: Sequence[Mapping[str, Any]], volumes: int) -> str:
    """``ptb find``'s table, and a line that says how much matched of how much was searched."""
    lines = []
    if found:
        body = [(one_line(r["volume"]), r["process"][:8],
                 f"{r['runs']:,} of {r['total_runs']:,}" if r["total_runs"] else "-",
                 one_line(r.get("commit_label") or "-"), one_line(r["description"], 60)) for r in found]
        lines = table(body, ("VOLUME", "PROCESS", "RUNS", "COMMIT", "DESCRIPTION")) + [""]
    matched = len({r["volume"] for r in found})
    lines.append(f"{count(len(found), 'process', 'processes')} in {count(matched, 'volume')} "
                 f"match{'es' if len(found) == 1 else ''}, of {count(volumes, 'volume')} searched")
    return "\n".join(lines)
