"""The installation of a command a documented command-line step runs (``ptb run``).

``command_env(argv)`` records what the shell would run for ``argv[0]``: the
executable found on ``PATH`` and its content hash, and, for a Python console
script (``igneous``, ``cloudfiles``), the distribution that provides it and its
version, so the step's tool is pinned as well as the working directory's git
checkout is. The script's interpreter is read from its ``#!`` line: when it is
another Python than ptb's own, that Python is asked (one short subprocess).
A wrapper that is not a Python script (a pyenv shim) is taken to lead to the
script of the same name in ptb's own Python, when there is one. ``python -m
MODULE`` records the distribution that provides ``MODULE``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Any, Dict, List, Optional, Sequence

from .codeenv import CodeEnv

__all__ = ["CommandEnv", "command_env", "MAX_HASHED_BYTES"]

MAX_HASHED_BYTES = 64 * 1024 * 1024     # executables up to this size get a content hash
_ASK_TIMEOUT = 20.0                     # seconds for another Python to say which distribution a script is

_ASK = """
import importlib.metadata as m, json, sys
name, module = sys.argv[1], sys.argv[2]
out = {}
for ep in m.entry_points(group="console_scripts"):
    if ep.name == name and ep.dist is not None:
        out = {"distribution": ep.dist.metadata["Name"], "version": ep.dist.version, "entry point": ep.value}
        break
if module:
    dists = m.packages_distributions().get(module.split(".")[0]) or []
    if dists:
        out = {"distribution": dists[0], "version": m.version(dists[0]), "module": module}
out["python version"] = sys.version.split()[0]
print(json.dumps(out))
"""


class CommandEnv(CodeEnv):
    """The command a step ran: ``argv0``, ``executable`` (the resolved path) and, for a Python console
    script, ``distribution`` and ``version`` (see ``command_env``)."""

    kind = "Command"

    def __init__(self, info: Dict[str, Any]):
        self.info = dict(info)
        self.name = os.path.basename(str(info.get("argv0") or "command"))

    @property
    def executable(self) -> Optional[str]:
        return self.info.get("executable")

    def contents(self) -> Dict[str, Any]:
        return {"CodeEnv type": self.kind, "name": self.name, **self.info}


def _sha256(path: str) -> Optional[str]:
    try:
        if os.path.getsize(path) > MAX_HASHED_BYTES:
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _shebang(path: str) -> List[str]:
    """The interpreter and its arguments from a script's ``#!`` line; [] for a binary or an unreadable file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    return head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()


def _python_of(words: Sequence[str]) -> Optional[str]:
    """The Python a ``#!`` line names (``/usr/bin/python3``, ``/usr/bin/env python3``), resolved; else None."""
    if not words:
        return None
    program: Optional[str] = words[0]
    if os.path.basename(words[0]) == "env":
        args = [w for w in words[1:] if not w.startswith("-")]
        program = shutil.which(args[0]) if args else None
    if not program or not os.path.basename(program).startswith("python"):
        return None
    return os.path.realpath(program)


def _same_python(python: str) -> bool:
    base = getattr(sys, "_base_executable", sys.executable)     # a venv's python is its base's too
    return python in (os.path.realpath(sys.executable), os.path.realpath(base))


def _entry_point(name: str) -> Dict[str, Any]:
    """The console script ``name`` of ptb's own Python: its distribution, version and entry point."""
    try:
        for ep in importlib.metadata.entry_points(group="console_scripts"):
            if ep.name == name and getattr(ep, "dist", None) is not None:
                return {"distribution": ep.dist.metadata["Name"], "version": ep.dist.version,  # type: ignore
                        "entry point": ep.value}
    except Exception:       # a broken distribution must not fail the step
        pass
    return {}


def _module_dist(module: str) -> Dict[str, Any]:
    """The distribution of ptb's own Python that provides ``module`` (``python -m module``)."""
    try:
        dists = importlib.metadata.packages_distributions().get(module.split(".")[0]) or []
        if dists:
            return {"distribution": dists[0], "version": importlib.metadata.version(dists[0]), "module": module}
    except Exception:
        pass
    return {}


def _ask(python: str, name: str, module: str) -> Dict[str, Any]:
    """Ask another Python which distribution provides console script ``name`` (or ``module``)."""
    try:
        done = subprocess.run([python, "-I", "-c", _ASK, name, module], capture_output=True, text=True,
                              timeout=_ASK_TIMEOUT, stdin=subprocess.DEVNULL)
        found = json.loads(done.stdout) if done.returncode == 0 else {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def _module_of(argv: Sequence[str]) -> str:
    """``MODULE`` of ``python [-X ...] -m MODULE ...``; "" otherwise."""
    for i, arg in enumerate(argv[1:], 1):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("-m") and len(arg) > 2:
            return arg[2:]
        if not arg.startswith("-"):
            return ""
    return ""


def command_env(argv: Sequence[str], cwd: Optional[str] = None) -> CommandEnv:
    """What ``argv`` runs: ``argv0``, ``executable`` (None when it is not found), its ``sha256``, the
    working directory, and for Python console scripts (or ``python -m``) ``distribution`` and ``version``."""
    argv0 = str(argv[0])
    found = shutil.which(argv0)
    info: Dict[str, Any] = {"argv0": argv0, "executable": os.path.abspath(found) if found else None,
                            "cwd": cwd or os.getcwd()}
    if found is None:
        return CommandEnv(info)
    executable = info["executable"]
    real = os.path.realpath(executable)
    if real != executable:
        info["realpath"] = real
    info["sha256"] = _sha256(real)
    name = os.path.basename(argv0)
    interpreter = _python_of(_shebang(real))
    own_script = os.path.join(sysconfig.get_path("scripts"), name)
    if os.path.basename(real).startswith("python") and not interpreter:       # python itself
        interpreter, module = real, _module_of(argv)
        if module:
            info.update(_module_dist(module) if _same_python(real) else _ask(real, "", module))
    elif interpreter is not None:                                             # a Python script
        info.update(_entry_point(name) if _same_python(interpreter) else _ask(interpreter, name, ""))
    elif os.path.isfile(own_script) and _python_of(_shebang(own_script)):   # a wrapper (a pyenv shim)
        interpreter = _python_of(_shebang(own_script))
        info.update({**_entry_point(name), "script": own_script})
    if interpreter is not None:
        info["python"] = interpreter
        if _same_python(interpreter):
            info["python version"] = sys.version.split()[0]
    return CommandEnv(info)
