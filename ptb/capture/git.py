"""The git snapshot: which checkout, at which commit, in which state, ran a process.

Git is run through GitPython (imported on first use), and whatever is missing
(git itself, a repository, a remote, a commit) is recorded as what it is,
never raised. When there is no git binary, what the repository's files tell
(HEAD, refs, the remote in the config) is read directly.
Diffs, errors and remote URLs are scrubbed of secrets (``ptb.capture.redact``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

from .codeenv import MAX_TEXT, CodeEnv, bounded_text, file_stat, platform_text, read_text

__all__ = ["PythonGithubEnv", "repo_name_from_url", "find_repo", "git_state"]

MAX_UNTRACKED = 1000       # untracked names kept
GIT_TIMEOUT = float(os.environ.get("PTB_GIT_TIMEOUT") or 20.0)   # seconds per git command; a hung git is "timed out"


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")



def find_repo(path: str) -> Optional[Tuple[str, str]]:
    """``(work tree, git dir)`` holding ``path``, found with a few stats and no git call."""
    p = os.path.abspath(path)
    if not os.path.isdir(p):
        p = os.path.dirname(p)
    while True:
        dotgit = os.path.join(p, ".git")
        if os.path.isdir(dotgit):
            return p, dotgit
        text = read_text(dotgit) if os.path.isfile(dotgit) else None   # worktrees, submodules
        if text and text.startswith("gitdir:"):
            return p, os.path.normpath(os.path.join(p, text[7:].strip()))
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent


def _common_dir(gitdir: str) -> str:
    common = read_text(os.path.join(gitdir, "commondir"))
    return os.path.normpath(os.path.join(gitdir, common)) if common else gitdir


def git_state(gitdir: str) -> tuple:
    """What changes when HEAD moves, the index is written or the config is edited."""
    common = _common_dir(gitdir)
    head = read_text(os.path.join(gitdir, "HEAD")) or ""
    ref = head[4:].strip() if head.startswith("ref:") else ""
    return (head, file_stat(os.path.join(common, ref)) if ref else None,
            *(file_stat(os.path.join(common, f)) for f in ("packed-refs", "reftable/tables.list", "config",
                                                       "shallow")),
            file_stat(os.path.join(gitdir, "index")))


# GIT_OPTIONAL_LOCKS=0: `git status` must not rewrite the user's index (nor race with their git)
_ENVIRON = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def _gitpython(cwd: str) -> Any:
    """GitPython's command runner in ``cwd``; imported here, on first use (it costs 0.2 s and runs ``git``).

    Raises ``FileNotFoundError`` when GitPython cannot find a git binary.
    """
    try:
        import git
    except ImportError as exc:          # GitPython refuses to load without a git binary
        raise FileNotFoundError(f"git: {exc}") from exc
    return git.Git(cwd)


def run_git(cwd: str, *args: str) -> Tuple[int, bytes, str]:
    """``(exit status, stdout, stderr)`` of ``git args`` in ``cwd``, through GitPython, bounded by ``GIT_TIMEOUT``."""
    from git.exc import GitCommandNotFound

    try:
        status, out, err = _gitpython(cwd).execute(
            ["git", *args], with_extended_output=True, with_exceptions=False, stdout_as_string=False,
            strip_newline_in_stdout=False, kill_after_timeout=GIT_TIMEOUT, env=_ENVIRON)
    except GitCommandNotFound as exc:
        raise FileNotFoundError(str(exc)) from exc
    err = str(err or "").strip()
    if err.startswith("Timeout:") and "did not complete in" in err:     # GitPython killed it
        raise TimeoutError(f"git {args[0]} did not finish within {GIT_TIMEOUT:g} s")
    return status, out or b"", err


def _git_bounded(cwd: str, *args: str) -> Tuple[bytes, int]:
    """Stdout of git, at most MAX_TEXT bytes kept (memory stays bounded however long it is), and its full length."""
    from git.exc import GitCommandError, GitCommandNotFound

    try:
        process = _gitpython(cwd).execute(["git", *args], as_process=True, stdout_as_string=False, env=_ENVIRON)
    except GitCommandNotFound as exc:
        raise FileNotFoundError(str(exc)) from exc
    drain = threading.Thread(target=process.proc.stderr.read, daemon=True)    # a full stderr pipe must not block git
    drain.start()
    killed = threading.Event()

    def kill() -> None:         # a hung git must not hold the caller (and every call waiting for the cache)
        killed.set()
        process.proc.kill()

    watchdog = threading.Timer(GIT_TIMEOUT, kill)
    watchdog.daemon = True
    watchdog.start()
    stdout = process.proc.stdout
    head = stdout.read(MAX_TEXT)
    total = len(head)
    while chunk := stdout.read(1 << 16):
        total += len(chunk)
    drain.join()
    try:
        process.wait()
    except GitCommandError:     # as before: what git wrote is what is recorded
        pass
    finally:
        watchdog.cancel()
    if killed.is_set():
        raise TimeoutError(f"git {args[0]} did not finish within {GIT_TIMEOUT:g} s")
    return head, total


def _parse_status(out: bytes) -> Tuple[Optional[str], Optional[str], List[str], List[str]]:
    """``git status --porcelain=v2 -z --branch``: (oid, head, changed paths, untracked paths)."""
    oid = head = None
    changed: List[str] = []
    untracked: List[str] = []
    parts = out.split(b"\0")
    i = 0
    while i < len(parts):
        entry = os.fsdecode(parts[i])
        i += 1
        if entry.startswith("# branch.oid "):
            oid = entry[13:]
        elif entry.startswith("# branch.head "):
            head = entry[14:]
        elif entry.startswith(("1 ", "u ")):
            changed.append(entry.split(" ", 8 if entry[0] == "1" else 10)[-1])
        elif entry.startswith("2 "):
            changed.append(entry.split(" ", 9)[-1])
            i += 1                                  # the rename's original path follows
        elif entry.startswith("? "):
            untracked.append(entry[2:])
    return oid, head, changed, untracked


def _remote_from_config(text: str) -> Optional[str]:
    """The origin (else first) remote URL of a git config file, for when git is absent."""
    urls = re.findall(r'\[remote\s+"([^"]*)"\][^\[]*?^\s*url\s*=\s*(\S+)', text, re.M)
    return dict(urls).get("origin") or (urls[0][1] if urls else None)


def repo_name_from_url(url: str) -> str:
    """``https://host/lab/pipe.git`` and ``git@host:lab/pipe.git`` -> ``pipe``."""
    base = re.split(r"[/:]", url.rstrip("/"))[-1]
    return base[:-4] if base.endswith(".git") else base


class PythonGithubEnv(CodeEnv):
    """A snapshot of the git checkout holding ``codeptr`` plus the Python packages.

    Taken once, at construction: remote URL (credentials stripped), commit,
    branch, detached/shallow/dirty flags, the uncommitted diff against HEAD
    (staged and unstaged, bounded to 256 KiB, secrets scrubbed with
    ``ptb.capture.params.scrub_text``) and untracked names (bounded to 1000). ``git``
    is ``"present"``, ``"absent"`` (no git binary: what the repository's files
    tell is still read), ``"no repository"`` or ``"error"``.
    """

    kind = "PythonGithub"

    def __init__(self, codeptr: str = "."):
        self.codeptr = codeptr
        self.path: Optional[str] = None
        self.git = "present"
        self.git_error: Optional[str] = None
        self.url: Optional[str] = None
        self.commithash: Optional[str] = None
        self.branch: Optional[str] = None
        self.detached = self.shallow = False
        self.dirty: Optional[bool] = False
        self.diff: Optional[str] = ""
        self.untracked: List[str] = []
        self.untracked_omitted = 0
        self.changed: List[str] = []     # paths (relative) found modified or untracked
        self._memo: Optional[str] = None
        self._snapshot()

    def _snapshot(self) -> None:
        from .redact import scrub_text, strip_url_credentials

        start = os.path.abspath(self.codeptr)
        start = start if os.path.isdir(start) else os.path.dirname(start)
        found = find_repo(start) if os.path.isdir(start) else None
        if not os.path.isdir(start) or shutil.which("git", path=os.environ.get("PATH")) is None:
            return self._from_files(start, found)
        try:
            rc, out, err = run_git(start, "rev-parse", "--show-toplevel", "--is-shallow-repository")
            if rc != 0:
                self.path = start
                self.git = "no repository" if "not a git repository" in err.lower() else "error"
                self.git_error = scrub_text(err[:500]) if self.git == "error" else None
                return
            root, shallow = os.fsdecode(out).splitlines()[:2]
            self.path, self.shallow = root, shallow.strip() == "true"
            rc, out, _ = run_git(root, "config", "--get-regexp", r"^remote\..*\.url$")
            remotes = dict(line.split(" ", 1) for line in out.decode("utf-8", "replace").splitlines()
                           if " " in line)
            url = remotes.get("remote.origin.url") or next(iter(remotes.values()), None)
            self.url = strip_url_credentials(url) if url else None
            rc, out, err = run_git(root, "status", "--porcelain=v2", "-z", "--branch",
                                "--untracked-files=normal")
            if rc != 0:
                raise RuntimeError(err or "git status failed")
            oid, head, changed, untracked = _parse_status(out)
            self.commithash = oid if oid and oid != "(initial)" else None
            self.detached = head == "(detached)"
            self.branch = None if self.detached else head
            self.dirty = bool(changed)
            self.changed = changed + untracked
            names = sorted(_printable(p) for p in untracked)
            self.untracked, self.untracked_omitted = names[:MAX_UNTRACKED], max(0, len(names) - MAX_UNTRACKED)
            flags = ("--no-color", "--no-ext-diff", "--no-textconv")
            if self.commithash:
                data, total = _git_bounded(root, "diff", *flags, "HEAD")
            else:    # no commit yet: what is staged, then what is not
                staged, n1 = _git_bounded(root, "diff", *flags, "--cached")
                rest, n2 = _git_bounded(root, "diff", *flags)
                data, total = (staged + rest)[:MAX_TEXT], n1 + n2
            self.diff = scrub_text(bounded_text(data, total, "diff"))   # a config file's diff can hold secrets
        except TimeoutError as exc:     # recorded as what it is; the call goes on
            self.git, self.git_error = "timed out", str(exc)
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
            self.git, self.git_error = "error", scrub_text(f"{type(exc).__name__}: {exc}"[:500])

    def _from_files(self, start: str, found: Optional[Tuple[str, str]]) -> None:
        """No git binary (or no such directory): read HEAD, refs and config directly."""
        from .redact import strip_url_credentials

        self.path = found[0] if found else start
        if not os.path.isdir(start):
            self.git = "no repository"
            return
        self.git, self.dirty, self.diff = "absent", None, None    # unknown without git
        if not found:
            return
        gitdir, common = found[1], _common_dir(found[1])
        head = read_text(os.path.join(gitdir, "HEAD")) or ""
        if head.startswith("ref:"):
            ref = head[4:].strip()
            self.branch = ref.rsplit("refs/heads/", 1)[-1]
            sha = read_text(os.path.join(common, ref))
            for line in ([] if sha else (read_text(os.path.join(common, "packed-refs")) or "").splitlines()):
                if line.endswith(" " + ref):
                    sha = line.split(" ", 1)[0]
            self.commithash = sha or None
        else:
            self.detached, self.commithash = True, head or None
        self.shallow = os.path.exists(os.path.join(common, "shallow"))
        url = _remote_from_config(read_text(os.path.join(common, "config")) or "")
        self.url = strip_url_credentials(url) if url else None

    @property
    def remote(self) -> bool:
        return self.url is not None

    @property
    def repo_name(self) -> str:
        """The repository's name: from the remote URL, else the work tree's directory name."""
        if self.url:
            return repo_name_from_url(self.url)
        return os.path.basename(self.path.rstrip(os.sep)) if self.path else ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.repo_name

    def contents(self) -> Dict[str, Any]:
        out = {
            "CodeEnv type": self.kind, "name": self.url or self.path, "commit hash": self.commithash,
            "diff": self.diff, "packages": [list(p) for p in self.packagelist],
            "repo name": self.repo_name, "path": self.path, "remote": self.remote,
            "branch": self.branch, "detached": self.detached, "shallow": self.shallow,
            "dirty": self.dirty, "untracked": list(self.untracked),
            "untracked omitted": self.untracked_omitted, "git": self.git,
            "python": sys.version, "platform": platform_text(),
        }
        if self.git_error:
            out["git error"] = self.git_error
        return out

    def _hash(self) -> str:   # a snapshot never changes: hash its (large) contents once
        if self._memo is None:
            self._memo = super()._hash()
        return self._memo

