"""``ptb reproduce``: a recorded run turned back into its code, its pinned packages and its call.

``restore`` clones the recorded repository (or ``repo``), checks out the
recorded commit, applies the recorded uncommitted diff, and writes the
packages, the image, the parameters, a script that makes the call again and a
README.txt saying what was restored and what could not be. It builds in a
temporary directory next to DIR and renames it into place at the end, so a
failure leaves nothing half-made. What cannot be restored exactly (no
repository, a missing commit, a diff that was cut, scrubbed or does not
apply) is an error naming it, unless ``inexact``: then what can be is
restored and README.txt lists the rest. ``check`` compares a checkout and
this Python environment with the run's code. What is worked out from the
records alone is in ``ptb.read.reproduce`` and ``ptb.read.rerun``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from .errors import InvalidInputError, NotReproducibleError
from .read import rerun as texts
from .read.fmt import one_line
from .read.history import History, history
from .read.reproduce import REDACTED, Plan, comparable, plan, truncated

__all__ = ["restore", "check", "command"]

_SAFE_PROTOCOLS = "https:http:ssh:git"          # what a URL read from a volume may use
_SCP_LIKE = re.compile(r"[\w.-]+@[\w.-]+:(?!//)")
_DIFF_SECTION = re.compile(r"^diff --git ", re.M)


def _history(volume: Any) -> History:
    h = history(volume)
    if h.empty:
        raise InvalidInputError(f"nothing is recorded at {h.cloudpath}: it has no provenance file and no ptb journal "
                                f"(is the path right?)")
    return h


def _git(cwd: str, *args: str, protocols: str = _SAFE_PROTOCOLS) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": protocols, "LC_ALL": "C"}
    try:
        return subprocess.run(["git", "-c", "advice.detachedHead=false", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, errors="replace")
    except FileNotFoundError:
        raise NotReproducibleError("ptb reproduce needs git, and there is no git command here") from None


def _is_local(url: str) -> bool:
    return url.startswith("file:") or ("://" not in url and not _SCP_LIKE.match(url))


def _source_problems(p: Plan, repo: Optional[str]) -> List[str]:
    """Why there can be no checkout of the run's commit, known before cloning."""
    git = p.git
    if git is None or git.get("git") == "no repository":
        return ["no git repository was recorded with the run"]
    if p.commit is None:
        return [f"the run's repository had no commit recorded (git: {one_line(git.get('git'))})"]
    if repo is None and p.remote is None:
        return [f"the run's repository had no remote (it was at {one_line(git.get('path'))}): pass --repo "
                f"PATH_OR_URL to clone it from"]
    if repo is None and _is_local(p.remote or ""):
        return [f"the recorded remote {one_line(p.remote)} is a local path, which ptb does not follow from a "
                f"volume on its own: pass --repo with it (or another clone)"]
    return []


def _clone(p: Plan, repo: Optional[str], into: str) -> str:
    """``into`` made a checkout of the run's commit; returns where it was cloned from."""
    url = repo if repo is not None else p.remote or ""
    protocols = _SAFE_PROTOCOLS + (":file" if repo is not None else "")
    if repo is not None and "://" not in repo and os.path.exists(repo):
        url = os.path.abspath(repo)
    done = _git(os.path.dirname(into), "clone", "--quiet", "--no-checkout", "--", url, into, protocols=protocols)
    if done.returncode != 0:
        raise NotReproducibleError(f"cannot clone {one_line(url)}: {one_line(done.stderr.strip(), 500)}")
    commit = p.commit or ""
    if _git(into, "checkout", "--quiet", "--detach", commit).returncode != 0:
        _git(into, "fetch", "--quiet", "origin", commit, protocols=protocols)
        done = _git(into, "checkout", "--quiet", "--detach", commit)
        if done.returncode != 0:
            raise NotReproducibleError(f"commit {commit} is not in {one_line(url)} (was it pushed? --repo can "
                                       f"name a clone that has it)")
    return url


def _sections(diff: str) -> List[str]:
    """A diff as one patch per file (a cut diff loses its last, incomplete, file)."""
    cut = truncated(diff)
    if cut:
        diff = diff[: diff.rindex("\n... [")] + "\n"
    starts = [m.start() for m in _DIFF_SECTION.finditer(diff)]
    sections = [diff[a:b] for a, b in zip(starts, starts[1:] + [len(diff)])]
    return sections[:-1] if cut and sections else sections


def _apply(p: Plan, source: str, patch: str, outcome: texts.Outcome, inexact: bool) -> None:
    """Apply the recorded diff (``patch`` is its file); with ``inexact``, file by file, as far as it goes."""
    files = p.diff_files()
    if not truncated(p.diff or ""):
        done = _git(source, "apply", "--index", "--whitespace=nowarn", patch)
        if done.returncode == 0:
            outcome.applied = files
            return
        if not inexact:
            raise NotReproducibleError(f"the recorded diff does not apply to commit {p.commit}: "
                                       f"{one_line(done.stderr.strip(), 500)}")
    for section in _sections(p.diff or ""):
        name = section.split("\n", 1)[0].rsplit(" b/", 1)[-1]
        one = patch + ".part"
        with open(one, "w", encoding="utf-8", newline="") as handle:
            handle.write(section)
        ok = _git(source, "apply", "--index", "--whitespace=nowarn", one).returncode == 0
        os.unlink(one)
        (outcome.applied if ok else outcome.not_applied).append(name)
    outcome.not_applied += [f for f in files if f not in outcome.applied and f not in outcome.not_applied]
    if outcome.not_applied:
        named = ", ".join(map(one_line, outcome.not_applied))
        outcome.problems.append(f"the run's uncommitted changes to {named} (they do not apply, or were not recorded "
                                f"whole)")


def _verify(p: Plan, source: str, outcome: texts.Outcome) -> None:
    """Does the restored work tree give the recorded diff back, and hold the function's recorded source?"""
    from .capture.git import PythonGithubEnv

    if p.diff is not None:
        outcome.verified = comparable(PythonGithubEnv(source).contents())["diff"] == comparable(p.git)["diff"]
    recorded = next((e for e in p.run.envs.values() if isinstance(e, dict) and e.get("CodeEnv type") == "Source"),
                    None)
    text = (recorded or {}).get("source")
    if p.call.kind == "function" and p.call.file and isinstance(text, str) and REDACTED not in text \
            and not truncated(text):
        try:
            with open(os.path.join(source, p.call.file), encoding="utf-8", errors="replace") as handle:
                outcome.source_matches = text in handle.read()
        except OSError:
            outcome.source_matches = False


def _write(path: str, text: str, executable: bool = False) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    if executable:
        os.chmod(path, 0o755)


def _build(p: Plan, build: str, repo: Optional[str], inexact: bool, run_arg: str) -> texts.Outcome:
    from ._version import __version__

    outcome = texts.Outcome()
    blocking = _source_problems(p, repo)        # no checkout at all
    problems = blocking or p.diff_problems()    # else: not exactly the run's work tree
    if problems and not inexact:
        raise NotReproducibleError(f"run {p.run_id} of {p.volume} cannot be restored as recorded: "
                                   + "; ".join(problems) + ". --inexact restores what can be, and README.txt lists "
                                                           "the rest")
    outcome.problems += problems
    if not blocking:
        source = os.path.join(build, "source")
        try:
            outcome.source = _clone(p, repo, source)
        except NotReproducibleError as exc:
            if not inexact:
                raise
            outcome.problems.append(str(exc))
            shutil.rmtree(source, ignore_errors=True)
        else:
            outcome.files.append("source")
            if p.diff:
                patch = os.path.join(build, "uncommitted.diff")
                _write(patch, p.diff)
                outcome.files.append("uncommitted.diff")
                _apply(p, source, patch, outcome, inexact)
            _verify(p, source, outcome)
    if p.git is not None:
        _write(os.path.join(build, "requirements.txt"), texts.requirements(p))
        outcome.files.append("requirements.txt")
    else:
        outcome.problems.append("the packages and the Python version (no git environment was recorded)")
    _write(os.path.join(build, "parameters.json"), texts.parameters_json(p))
    outcome.files.append("parameters.json")
    call = p.call
    if call.kind == "cell":
        _write(os.path.join(build, "cell.py"), call.source or "")
        outcome.files.append("cell.py")
    if call.problem is None and call.kind in ("function", "cell"):
        _write(os.path.join(build, "rerun.py"), texts.rerun_py(p, "cell.py" if call.kind == "cell" else None), True)
        outcome.files.append("rerun.py")
    if call.problem is None and call.kind == "command":
        _write(os.path.join(build, "rerun.sh"), texts.rerun_sh(p), True)
        outcome.files.append("rerun.sh")
    dockerfile = texts.dockerfile(p, outcome.files)
    if dockerfile is not None:
        _write(os.path.join(build, "Dockerfile"), dockerfile)
        outcome.files.append("Dockerfile")
    elif p.docker is not None:
        outcome.problems.append("the Docker image (its recorded name is not one a Dockerfile can use)")
    hint = texts.rerun_hint(p, outcome.files, run_arg)
    _write(os.path.join(build, "README.txt"), texts.readme(p, outcome, version=__version__, rerun_hint=hint))
    outcome.files.append("README.txt")
    return outcome


def restore(volume: Any, ident: str, into: str, *, repo: Optional[str] = None,
            inexact: bool = False) -> Tuple[Plan, texts.Outcome, str]:
    """Restore run ``ident`` of ``volume`` into the new (or empty) directory ``into``; returns what was done.

    Raises ``NotReproducibleError`` when something cannot be restored as
    recorded (unless ``inexact``), and ``InvalidInputError`` when ``into``
    exists and is not empty. Nothing is left in ``into`` on failure.
    """
    p = plan(_history(volume), ident)
    target = os.path.abspath(into)
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.path.islink(target)
                                        and not os.listdir(target)):
        raise InvalidInputError(f"{into} already exists and is not an empty directory: give a new one")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    build = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".ptb-partial", dir=parent)
    try:
        outcome = _build(p, build, repo, inexact, ident)
        os.chmod(build, 0o755 & ~_umask())
        os.rename(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return p, outcome, target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check(volume: Any, ident: str, checkout: str = ".") -> Dict[str, Any]:
    """The run's code (commit, diff, packages, Python) beside ``checkout``'s and this environment's.

    Returns ``ptb diff``'s view of the two, with ``same`` true when nothing differs.
    """
    from .capture.git import PythonGithubEnv
    from .read.reproduce import check as compare

    p = plan(_history(volume), ident)
    env = PythonGithubEnv(checkout)
    if env.git != "present" or not env.commithash:
        raise InvalidInputError(f"{checkout} is not in a git repository with a commit (git: {env.git})"
                                + (f": {env.git_error}" if env.git_error else ""))
    return compare(p, env.contents(), env.path or checkout)


def command(volume: str, ident: str, *, into: Optional[str], repo: Optional[str], inexact: bool,
            checkout: Optional[str], as_json: bool) -> Tuple[str, int]:
    """``ptb reproduce``'s output and exit status: ``into`` restores, else ``checkout`` is checked."""
    import json

    from .read.diff import render_diff

    if into is None:
        view = check(volume, ident, checkout or ".")
        if as_json:
            return json.dumps(view, indent=2, ensure_ascii=False, default=str), 0 if view["same"] else 1
        verdict = (f"the same code as run {view['a']['id']} ({view['code']})" if view["same"] else
                   f"not the code of run {view['a']['id']}: what differs is marked *")
        return f"{render_diff(view)}\n{verdict}", 0 if view["same"] else 1
    p, outcome, target = restore(volume, ident, into, repo=repo, inexact=inexact)
    if as_json:
        return json.dumps({**texts.summary(p), "into": target, "files": outcome.files, "applied": outcome.applied,
                           "not_applied": outcome.not_applied, "verified": outcome.verified,
                           "problems": outcome.problems}, indent=2, ensure_ascii=False), 0
    with open(os.path.join(target, "README.txt"), encoding="utf-8") as handle:
        return f"restored into {target}\n\n{handle.read().rstrip()}", 0
