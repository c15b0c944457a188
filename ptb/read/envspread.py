"""Which code a process's runs ran with: commits, package sets, images, across its runs.

A step re-run after a fix is one process (same description and parameters)
with runs at two commits. Each run records its own environment files; this
module groups runs by what they say, so ``ptb log``, ``ptb show PROCESS`` and
``ptb diff`` can say "runs at 2 commits: 31dead2 (1 run), e7d7b47 (1 run)"
instead of showing the process's first environment as if it were every run's.
Pure functions over resolved environments (``RecordedRun.envs``).
"""
from __future__ import annotations

import collections
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

GIT = "PythonGithub"
DOCKER = "Docker"
_SHOWN = 4        # groups named in one line; the rest are counted


def _of_type(envs: Mapping[str, Any], kind: str) -> Optional[Dict[str, Any]]:
    return next((e for e in envs.values() if isinstance(e, dict) and e.get("CodeEnv type") == kind), None)


def commit_label(envs: Mapping[str, Any]) -> Optional[str]:
    """``31dead2``, or ``31dead2+diff`` when the checkout had uncommitted changes; None without git."""
    git = _of_type(envs, GIT)
    if git is None:
        return None
    commit = git.get("commit hash")
    label = str(commit)[:7] if isinstance(commit, str) and commit else "no commit"
    return label + ("+diff" if git.get("dirty") else "")


def packages_of(envs: Mapping[str, Any]) -> Dict[str, str]:
    """{name: version} of the installed packages an environment lists (the git snapshot holds them)."""
    found: Dict[str, str] = {}
    for env in envs.values():
        value = env.get("packages") if isinstance(env, dict) else None
        for pair in value if isinstance(value, list) else []:
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                found[str(pair[0])] = str(pair[1])
    return found


def image_label(envs: Mapping[str, Any]) -> Optional[str]:
    docker = _of_type(envs, DOCKER)
    if docker is None:
        return None
    name = f"{docker.get('image name') or '?'}:{docker.get('tag') or 'latest'}"
    image = docker.get("image ID")
    return f"{name} ({str(image)[:19]})" if image else name


def _key(envs: Mapping[str, Any], kind: str) -> Optional[str]:
    """What tells two runs' code apart, for one kind: the git env file (commit and diff), the image."""
    for path, env in envs.items():
        if isinstance(env, dict) and env.get("CodeEnv type") == kind:
            return path
    return None


def spread(runs: Iterable[Any]) -> Dict[str, Any]:
    """How the code of ``runs`` (``RecordedRun`` s, oldest first) varied, as JSON.

    ``commits``: one group per git snapshot (a commit, and its uncommitted
    diff), with its label and run count; ``package_sets``: how many distinct
    package lists, and the packages whose versions differ, with the run count
    of each version; ``images``: one group per Docker image. Runs without the
    environment are left out of that kind's groups.
    """
    runs = list(runs)
    commits: Dict[str, Dict[str, Any]] = {}
    images: Dict[str, Dict[str, Any]] = {}
    package_sets: Dict[Tuple[Tuple[str, str], ...], int] = collections.Counter()
    for run in runs:
        envs = run.envs
        key = _key(envs, GIT)
        if key is not None:
            group = commits.setdefault(key, {"file": key, "label": commit_label(envs), "runs": 0,
                                             "commit": (envs[key] or {}).get("commit hash")})
            group["runs"] += 1
        key = _key(envs, DOCKER)
        if key is not None:
            images.setdefault(key, {"file": key, "label": image_label(envs), "runs": 0})["runs"] += 1
        packages = packages_of(envs)
        if packages:
            package_sets[tuple(sorted(packages.items()))] += 1
    return {"commits": _ordered(commits), "images": _ordered(images), "package_sets": len(package_sets),
            "packages_differ": _differing(package_sets)}


def _ordered(groups: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Groups in the order of their first run; labels made unique (``31dead2+diff``, ``31dead2+diff#2``)."""
    out = list(groups.values())
    seen: Dict[str, int] = collections.Counter()
    for group in out:
        seen[group["label"]] += 1
        if seen[group["label"]] > 1:
            group["label"] = f"{group['label']}#{seen[group['label']]}"
    return out


def _differing(package_sets: Mapping[Tuple[Tuple[str, str], ...], int]) -> Dict[str, Dict[str, int]]:
    """{package: {version: runs}} for the packages whose version is not the same in every set."""
    if len(package_sets) < 2:
        return {}
    versions: Dict[str, Dict[str, int]] = {}
    for packages, runs in package_sets.items():
        for name, version in packages:
            per = versions.setdefault(name, {})
            per[version] = per.get(version, 0) + runs
    total = sum(package_sets.values())
    differ = {}
    for name, per in sorted(versions.items(), key=lambda kv: kv[0].lower()):
        absent = total - sum(per.values())
        if len(per) > 1 or absent:
            differ[name] = {**dict(sorted(per.items())), **({"": absent} if absent else {})}
    return differ


def _runs(n: int) -> str:
    return f"{n:,} run{'s' * (n != 1)}"


def _groups_text(groups: List[Dict[str, Any]]) -> str:
    named = [f"{g['label']} ({_runs(g['runs'])})" for g in groups[:_SHOWN]]
    if len(groups) > _SHOWN:
        named.append(f"and {len(groups) - _SHOWN:,} more")
    return ", ".join(named)


def spread_lines(spread_json: Mapping[str, Any]) -> List[str]:
    """One line for each kind of code that varied across the runs; none when every run had the same."""
    lines = []
    commits = spread_json.get("commits") or []
    if len(commits) > 1:
        distinct = len({g.get("commit") for g in commits})
        what = (f"{distinct} commits" if distinct == len(commits) else
                f"{len(commits)} code versions ({distinct} commit{'s' * (distinct != 1)})")
        lines.append(f"runs at {what}: {_groups_text(commits)}")
    differ = spread_json.get("packages_differ") or {}
    if spread_json.get("package_sets", 0) > 1:
        named = [f"{name} " + ", ".join(f"{v or '(absent)'} ({_runs(n)})" for v, n in versions.items())
                 for name, versions in list(differ.items())[:_SHOWN]]
        more = f"; and {len(differ) - _SHOWN:,} more packages" if len(differ) > _SHOWN else ""
        lines.append(f"runs used {spread_json['package_sets']} package sets: " + "; ".join(named) + more)
    images = spread_json.get("images") or []
    if len(images) > 1:
        lines.append(f"runs in {len(images)} images: {_groups_text(images)}")
    return lines
