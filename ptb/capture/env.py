"""The code environment of a documented run, taken once per process and reused while unchanged.

``capture`` returns the git snapshot (``git``), the Docker image (``docker``)
and the function's source (``source``); the cache here is what makes a
decorated function called many times pay for capture once.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import threading
from typing import Callable, Dict, List, Optional, Tuple

from .codeenv import CodeEnv, file_stat
from .docker import detect_docker
from .git import PythonGithubEnv, find_repo, git_state, run_git
from .source import SourceEnv, unwrap

__all__ = ["capture"]

MAX_GIT_CACHED = 256
STAT_LIMIT = 2000          # repositories up to this many tracked files have every file watched
_lock = threading.Lock()
_git_cache: Dict[Tuple[str, Optional[str]], Tuple[List[str], tuple, PythonGithubEnv]] = {}
_source_cache: Dict[tuple, Optional[SourceEnv]] = {}


def _reset_lock() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


def _fingerprint(found: Optional[Tuple[str, str]], paths: List[str]) -> tuple:
    return ((git_state(found[1]) if found else ()), *(file_stat(p) for p in paths))


def _watch_list(root: str) -> List[str]:
    """Tracked files and their directories (new or removed files change a directory's mtime);
    above STAT_LIMIT files, only the repository's modules imported by this process."""
    try:
        rc, out, _ = run_git(root, "ls-files", "-z")
    except (OSError, subprocess.SubprocessError):
        return []
    tracked = [os.path.join(root, os.fsdecode(p)) for p in out.split(b"\0") if p] if rc == 0 else []
    if len(tracked) > STAT_LIMIT:
        prefix = root.rstrip(os.sep) + os.sep
        return sorted({f for m in list(sys.modules.values())
                       if isinstance(f := getattr(m, "__file__", None), str) and f.startswith(prefix)})
    return [root, *sorted({os.path.dirname(p) for p in tracked} - {root}), *tracked]


def _installed(path: str) -> bool:
    """A file of an installed distribution or of Python itself (igneous' tasks, decorated by a pipeline):
    the git checkout that holds it, if any (pyenv's own), is not the pipeline's."""
    parts = os.path.abspath(path).split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    stdlib = sysconfig.get_paths().get("stdlib") or ""
    return bool(stdlib) and os.path.abspath(path).startswith(os.path.join(stdlib, ""))


def _git_env(source_file: Optional[str]) -> PythonGithubEnv:
    if source_file and _installed(source_file):
        source_file = None          # the working directory's repository, as for a command-line step
    found = find_repo(os.path.dirname(os.path.abspath(source_file))) if source_file else None
    found = found or find_repo(os.getcwd())
    key = (found[0] if found else os.getcwd(), source_file)
    with _lock:
        hit = _git_cache.get(key)
        if hit is not None and _fingerprint(found, hit[0]) == hit[1]:
            return hit[2]
        watch = _watch_list(found[0]) if found else []
        fingerprint = _fingerprint(found, watch)     # taken before the snapshot: edits during it show next time
        env = PythonGithubEnv(key[0])
        extra = [os.path.join(env.path or key[0], p) for p in env.changed]
        extra += [source_file] if source_file else []
        fingerprint += tuple(file_stat(p) for p in extra)
        if len(_git_cache) > MAX_GIT_CACHED:      # one entry per (repository, source file) of decorated functions
            _git_cache.clear()
        _git_cache[key] = (watch + extra, fingerprint, env)
        return env


def _source_env(func: Callable) -> Optional[SourceEnv]:
    """The source of a function (cached by code object and file stat) or of a task class (by class and file)."""
    code = getattr(unwrap(func), "__code__", None)
    if code is not None:
        key: tuple = (code, file_stat(code.co_filename))
    elif isinstance(func, type):
        filename = getattr(sys.modules.get(func.__module__), "__file__", None)
        key = (func, file_stat(filename) if isinstance(filename, str) else None)
    else:
        return SourceEnv.from_callable(func)
    with _lock:
        if key in _source_cache:
            return _source_cache[key]
    env = SourceEnv.from_callable(func)
    with _lock:
        if len(_source_cache) > 512:
            _source_cache.clear()
        _source_cache[key] = env
    return env


def capture(source_file: Optional[str] = None, func: Optional[Callable] = None) -> List[CodeEnv]:
    """The environment of a documented run: git checkout, Docker image, the function's source.

    The git snapshot is of the repository holding ``source_file`` (else the
    working directory's, as it is when ``source_file`` is installed code: a
    decorated igneous task). It is cached per process and reused while nothing it
    depends on changed. The check costs stats only, no git call: HEAD and its
    ref, packed refs, the config, the index, and the work tree. In repositories
    of up to ``STAT_LIMIT`` tracked files every tracked file and its directory
    is stat'ed (O(files), about a millisecond per thousand), so an edit to any
    tracked file or a new file next to one refreshes the snapshot. Larger
    repositories trade completeness for speed: only the files the last
    snapshot found modified or untracked, the repository's imported modules
    and ``source_file`` are watched, so an edit to another, clean, non-imported
    file there is picked up at the next commit, ``git add`` or restart. The
    source of ``func`` is cached by code object and file stat.
    """
    envs: List[CodeEnv] = [_git_env(source_file)]
    docker = detect_docker()
    if docker is not None:
        envs.append(docker)
    if func is not None:
        source = _source_env(func)
        if source is not None:
            envs.append(source)
    return envs
