"""The real provenance-toolbox 0.1.5, from the package index, for the upgrade tests.

0.1.5 and ptb are both the distribution ``provenance-toolbox``, so 0.1.5 goes into a directory
of its own (``pip install --no-deps --target``), with ``setuptools<81`` because it imports
``pkg_resources``; its other imports (GitPython, docker, cloud-volume) come from this
environment. Programs run with ``PYTHONPATH`` set to that directory import the real 0.1.5
``provenancetoolbox`` (PYTHONPATH comes before site-packages and the editable install), and
programs run with ``PYTHONPATH`` set to this checkout import ptb's compatibility package. The
working directory of every program is a temporary one, never this checkout, which would
shadow PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import ptb

VERSION = "0.1.5"
REQUIREMENTS = [f"provenance-toolbox=={VERSION}", "setuptools<81"]
WORKERS = Path(__file__).with_name("upgrade_workers.py")
PTB_ROOT = Path(ptb.__file__).resolve().parent.parent    # the checkout under test


def _pip(target: Path, scratch: Path, *requirements: str) -> None:
    env = {**os.environ, "TMPDIR": str(scratch), "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-cache-dir",
                           "--root-user-action=ignore", "--target", str(target), *requirements],
                          capture_output=True, text=True, env=env, cwd=scratch, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {' '.join(requirements)} into {target} (is the package "
                           f"index reachable?):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def _import_problem(target: Path, scratch: Path) -> Optional[str]:
    code = ("import json, provenancetoolbox as p; "
            "print(json.dumps([p.__version__, p.__file__]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=scratch,
                          env=environ("0.1.5", target), timeout=120)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["failed"])[-1]
    version, where = json.loads(done.stdout.strip().splitlines()[-1])
    if version != VERSION or not Path(where).resolve().is_relative_to(target.resolve()):
        return f"imported provenancetoolbox {version} from {where}, not {VERSION} from {target}"
    return None


def install(target: Path, scratch: Path) -> Path:
    """Install the real 0.1.5 into ``target`` (pip's temporary files in ``scratch``); returns ``target``.

    Raises RuntimeError with pip's or Python's words when it cannot be installed or imported:
    a test that needs it must fail, not skip.
    """
    _pip(target, scratch, *REQUIREMENTS)
    problem = _import_problem(target, scratch)
    if problem and "docker" in problem:      # the docker SDK is an extra of ptb, but 0.1.5 imports it
        _pip(target, scratch, "docker")
        problem = _import_problem(target, scratch)
    if problem:
        raise RuntimeError(f"provenance-toolbox {VERSION} in {target} does not import: {problem}")
    return target


def environ(toolbox: str, target: Optional[Path] = None) -> Dict[str, str]:
    """The environment of a program: 0.1.5 (``target`` first on the path) or this checkout's ptb."""
    env = {**os.environ, "TOOLBOX": toolbox, "EXPECT_PTB": str(PTB_ROOT / "ptb")}
    if toolbox == "0.1.5":
        assert target is not None
        env["PYTHONPATH"] = str(target)
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(PTB_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                               if p and Path(p).resolve() != PTB_ROOT]])
    return env


def command(command: str, *args: Any) -> List[str]:
    return [sys.executable, str(WORKERS), command, *[str(a) for a in args]]


def run(toolbox: str, target: Optional[Path], cwd: Path, name: str, *args: Any, timeout: float = 180) -> Any:
    """Run one program to its end; returns its last line, parsed. A non-zero exit fails with its stderr."""
    done = subprocess.run(command(name, *args), capture_output=True, text=True, cwd=cwd,
                          env=environ(toolbox, target), timeout=timeout)
    assert done.returncode == 0, f"{name} under {toolbox} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def start(toolbox: str, target: Optional[Path], cwd: Path, stderr: Path, name: str, *args: Any) -> subprocess.Popen:
    """Start a fleet program (its stderr to a file); it prints ``ready``, then waits for its GO file."""
    with open(stderr, "w") as err:
        return subprocess.Popen(command(name, *args), stdout=subprocess.PIPE, stderr=err, text=True,
                                cwd=cwd, env=environ(toolbox, target))


def ptb_cli(cwd: Path, *args: Any, timeout: float = 120) -> subprocess.CompletedProcess:
    """The ``ptb`` command of this checkout (``python -m ptb``), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "ptb", *[str(a) for a in args]], capture_output=True, text=True,
                          cwd=cwd, env=environ("ptb"), timeout=timeout)
