"""provenance-toolbox 0.1.5, the original, installed beside ptb for comparison.

Both are distributed as ``provenance-toolbox``, so the original cannot be installed into the
same environment. It goes into a directory of its own (``pip install --target``), outside the
repository, and the baseline probes put that directory first on ``sys.path``. 0.1.5 imports
``pkg_resources``, which setuptools 81 removed, so an older setuptools goes there too; its
other imports (GitPython, docker, cloud-volume) come from the environment, and the ``docker``
SDK is added to the directory when the environment lacks it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

VERSION = "0.1.5"
REQUIREMENTS = [f"provenance-toolbox=={VERSION}", "setuptools<81"]


def default_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ptb-bench" / "baseline"


def _importable(directory: Path) -> Optional[str]:
    """None when 0.1.5 imports from ``directory``; else the error."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import provenancetoolbox as p; "
            f"assert p.__version__ == {VERSION!r}, p.__version__")
    done = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


def _pip(directory: Path, *requirements: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                    "--root-user-action=ignore", "--target", str(directory), *requirements], check=True)


def ensure(directory: Optional[Path] = None) -> Path:
    """Install 0.1.5 into ``directory`` unless it is already there; returns the directory.

    Raises RuntimeError (with pip's or Python's words) when it cannot be made importable.
    """
    directory = Path(directory or default_dir())
    if (directory / "provenancetoolbox").is_dir() and _importable(directory) is None:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    print(f"installing provenance-toolbox {VERSION} into {directory} ...", file=sys.stderr, flush=True)
    try:
        _pip(directory, *REQUIREMENTS)
        problem = _importable(directory)
        if problem and "docker" in problem:
            _pip(directory, "docker")
            problem = _importable(directory)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"pip could not install the baseline into {directory}: {exc}") from exc
    if problem:
        raise RuntimeError(f"provenance-toolbox {VERSION} in {directory} does not import: {problem}")
    return directory
