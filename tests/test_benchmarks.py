"""The benchmark command runs from end to end and prints its table (no timing is asserted here)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def table(out: str) -> Dict[str, List[str]]:
    """The printed reStructuredText table: {measure: [ptb, 0.1.5, ratio]}."""
    lines = out.splitlines()
    rule = next(line for line in lines if line.startswith("===="))
    starts = [m.start() for m in re.finditer("=+", rule)] + [None]
    body = lines[lines.index(rule) + 3:]
    rows = {}
    for line in body[:body.index(rule)]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:])]
        rows[cells[0]] = cells[1:]
    return rows


def ptb(rows: Dict[str, List[str]], start: str) -> str:
    """The ptb cell of the one row whose measure starts with ``start``."""
    found = [cells[0] for measure, cells in rows.items() if measure.startswith(start)]
    assert len(found) == 1, (start, list(rows))
    return found[0]


def test_quick_benchmark_prints_the_table(tmp_path, toolbox_015):
    """The baseline is the suite's own copy of 0.1.5: the benchmark installs nothing and writes nothing to ``~``."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(RUN), "--quick", "--baseline-dir", str(toolbox_015),
                           "--json", str(tmp_path / "results.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert "installing provenance-toolbox" not in done.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "measure" in out and "ptb / 0.1.5" in out
    rows = table(out)
    for row in ("documented call over the bare call, a new volume", "one note after 10 earlier notes",
                "import ptb / import provenancetoolbox", "environment capture, first",
                "CloudVolume(path) open, 10,000 notes", "provenance file size at"):
        ptb(rows, row)
    assert ptb(rows, "notes surviving 4 writers x 5 (file://)") == "20/20"          # ptb loses nothing
    assert ptb(rows, "the view those writers left = what ptb sync writes") == "converged: yes"
    for kind in ("a decorated call", "a ptb.documented block", "addgeneric"):       # current on return
        assert ptb(rows, f"view current after {kind} returns") == "4/4 at +0 s, all by 0.0 s"
    for kind in ("10 decorated calls", "10 notes"):                                  # one write per run end
        assert ptb(rows, f"whole-file writes of provenance per run, {kind}") == "1.00"
    assert ptb(rows, "native writer's entries kept") == "20/20"                     # another tool's are kept
    assert (tmp_path / "results.json").stat().st_size > 0
