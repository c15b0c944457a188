"""The benchmark command runs from end to end and prints its table (no timing is asserted here)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_quick_benchmark_prints_the_table(tmp_path):
    done = subprocess.run([sys.executable, str(RUN), "--quick", "--json", str(tmp_path / "results.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "measure" in out and "ptb / 0.1.5" in out
    for row in ("documented call over the bare call, a new volume", "one note after 10 earlier notes",
                "notes surviving 4 writers x 5 (file://)", "import ptb / import provenancetoolbox",
                "environment capture"):
        assert row in out, out
    assert "20/20" in out.split("notes surviving")[1].splitlines()[0]      # ptb loses nothing
    assert (tmp_path / "results.json").stat().st_size > 0
