"""The package's layers (setup.cfg's import-linter contracts) hold, and a broken layer fails this test."""
from __future__ import annotations

import configparser
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ptb

ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``ptb`` found under ``pythonpath``, with the contracts of ``cwd/setup.cfg``."""
    assert importlib.util.find_spec("importlinter") is not None, "pip install import-linter (the test extra)"
    code = "import sys; from importlinter.cli import lint_imports_command; sys.argv[1:] = ['--no-cache']; " \
           "lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(pythonpath)})


def test_the_layers_hold():
    done = lint_imports(ROOT, ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 broken" in done.stdout and "KEPT" in done.stdout


def test_every_module_the_contracts_name_exists():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    contracts = [s for s in config.sections() if s.startswith("importlinter:contract:")]
    assert len(contracts) >= 5
    named = set()
    for section in contracts:
        containers = config[section].get("containers", "").split() or [""]
        for key in ("layers", "source_modules", "forbidden_modules", "ancestors"):
            for line in config[section].get(key, "").split("\n"):
                for name in filter(None, (n.strip() for n in line.split("|"))):
                    named.update(f"{c}.{name}" if c else name for c in containers)
    assert {"ptb.capture", "ptb.store", "ptb.read", "ptb.store.writer", "ptb.store.updater", "ptb.run"} <= named
    missing = sorted(n for n in named if importlib.util.find_spec(n) is None)
    assert missing == []


@pytest.mark.parametrize("module, line, contract", [
    ("store/spool.py", "from ..run import Run", "capture and store import nothing"),
    ("read/history.py", "from ..store import writer", "the reader never imports the writer"),
    ("store/journal.py", "from . import spool", "the store: the writer"),
])
def test_a_broken_layer_fails(tmp_path, module, line, contract):
    copy = tmp_path / "ptb"
    shutil.copytree(Path(ptb.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SETUP_CFG, tmp_path / "setup.cfg")
    target = copy / module
    text = target.read_text()
    future = "from __future__ import annotations\n"
    assert future in text
    target.write_text(text.replace(future, f"{future}{line}\n", 1))
    done = lint_imports(tmp_path, tmp_path)
    assert done.returncode != 0, done.stdout
    assert "BROKEN" in done.stdout and contract in " ".join(done.stdout.split())


def test_no_public_function_shadows_a_module():
    """``ptb.check`` is the function only: the module it once shadowed is ``ptb.read.check``."""
    import inspect

    for name in ("check", "export", "history"):
        assert inspect.isfunction(getattr(ptb, name)), name
        assert not _is_module(name), name
        module = importlib.import_module(f"ptb.read.{name}")
        assert getattr(module, name) is getattr(ptb, name)
    functions = [n for n in ptb.__all__ if inspect.isfunction(getattr(ptb, n))]
    assert {"documented", "provenance", "sync", "flush"} <= set(functions)
    assert [n for n in functions if _is_module(n)] == []


def _is_module(name: str) -> bool:
    """Whether ``ptb/<name>.py`` or ``ptb/<name>/`` exists (by path: an editable install elsewhere may answer
    ``find_spec`` for names this checkout does not have)."""
    package = Path(ptb.__file__).parent
    return (package / f"{name}.py").exists() or (package / name / "__init__.py").exists()


def test_no_module_imports_the_package_root_and_no_contract_ignores_an_import():
    """The package root imports everything (it is the public API), so a module importing it is a cycle."""
    import grimp

    graph = grimp.build_graph("ptb", cache_dir=None)
    assert graph.find_modules_that_directly_import("ptb") == set()
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    assert [s for s in config.sections() if config[s].get("ignore_imports", "").strip()] == []


def test_the_package_namespace_is_its_api_and_its_modules():
    """``dir(ptb)`` shows the public names and the package's own modules, nothing a module's imports leave."""
    import types

    stray = [n for n in dir(ptb) if not n.startswith("_") and n not in ptb.__all__
             and not isinstance(getattr(ptb, n), types.ModuleType)]
    assert stray == []
    assert ptb.__version__ == importlib.import_module("ptb._version").__version__
