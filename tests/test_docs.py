"""The documentation works: every Python block of the README runs as pasted, and the site builds.

A README block runs alone, typed into a fresh interactive interpreter (the way a
reader pastes it) in an empty directory. A block that cannot (it needs a cloud
account, or shows a file from ``examples/`` that its own test runs) says so in an
RST comment on the line before its ``code-block``: ``.. not run: <why>``.
The Sphinx site is built with ``-W``: a warning (a broken link between pages, a
docstring autodoc cannot read, a chapter missing from the toctree) fails the test.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

import ptb
from ptb.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.rst"
NOT_RUN = re.compile(r"^\.\. not run: (\S.*)$")

# Feeds a block to code.InteractiveConsole line by line, as the REPL does with pasted text,
# and exits 1 at the first exception or syntax error.
PASTE = """
import code, sys

class Console(code.InteractiveConsole):
    def showtraceback(self):
        super().showtraceback()
        sys.exit(1)

    def showsyntaxerror(self, filename=None, **kwargs):
        super().showsyntaxerror(filename)
        sys.exit(1)

console = Console({"__name__": "__main__"})
more = False
for line in open(sys.argv[1], encoding="utf-8").read().splitlines():
    more = console.push(line)
if more:
    console.push("")
"""


def python_blocks(text: str) -> List[Tuple[int, str, str]]:
    """(line number, code, why it is not run or "") of every ``.. code-block:: python`` in an RST text."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip())
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = NOT_RUN.match(before)
        body = []
        for following in lines[i + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        code = "\n".join(body).strip("\n")
        width = min(len(x) - len(x.lstrip()) for x in code.splitlines() if x.strip())
        blocks.append((i + 1, "\n".join(x[width:] for x in code.splitlines()) + "\n", skip[1] if skip else ""))
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks_and_says_why_any_is_not_run():
    assert len(BLOCKS) >= 4
    assert all(len(why) > 10 for _, _, why in BLOCKS if why)
    assert python_blocks(".. not run: needs a gs:// bucket\n\n.. code-block:: python\n\n    x = 1\n") == [
        (3, "x = 1\n", "needs a gs:// bucket")]


@pytest.mark.parametrize("line, code, why", BLOCKS, ids=[f"README.rst:{n}" for n, _, _ in BLOCKS])
def test_a_readme_block_runs_pasted_alone_in_an_empty_directory(tmp_path, line, code, why):
    if why:
        pytest.skip(f"README.rst:{line} is not run: {why}")
    workdir = tmp_path / "empty"
    workdir.mkdir()
    block = tmp_path / "block.py"
    block.write_text(code, encoding="utf-8")
    env = {**os.environ, "PTB_SPOOL_DIR": str(tmp_path / "spool"), "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", PASTE, str(block)], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"README.rst:{line}\n{code}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def test_a_failing_block_fails(tmp_path):
    """The console above stops at an error (a NameError, a block pasted without its blank line)."""
    for code in ("print(ptb.history)\n", "def f():\n    return 1\nf()\n"):
        block = tmp_path / "block.py"
        block.write_text(code)
        done = subprocess.run([sys.executable, "-c", PASTE, str(block)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 1, (code, done.stderr)


def test_the_documentation_site_builds_without_a_warning(tmp_path):
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
                           str(tmp_path / "doctrees"), str(REPO / "docs"), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Documenting a step" in index and 'href="engines.html"' in index      # the README, linked to the site
    api = (out / "api.html").read_text(encoding="utf-8")
    missing = [name for name in ptb.__all__ if f'id="ptb.{name}"' not in api and f'id="module-ptb.{name}"' not in api]
    assert missing == [], f"add them to docs/api.rst: {missing}"
    cli = (out / "cli.html").read_text(encoding="utf-8")
    assert [c for c in main.commands if f'id="ptb-{c}"' not in cli] == []              # every command



def test_ci_runs_the_readme_s_test_command():
    """The Quickstart's second command is what CI runs, word for word."""
    commands = re.findall(r"^\.\. code-block:: bash\n\n    (.+)\n", README.read_text(encoding="utf-8"), re.MULTILINE)
    assert commands[:3] == ["pip install provenance-toolbox", "pip install . && ptb demo",
                            "pip install -e '.[test]' && pytest"]
    assert (REPO / ".ci" / "run").read_text().strip().splitlines()[-1] == commands[2]
