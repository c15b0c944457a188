"""Every warning ptb gives goes through one helper that cannot raise (``ptb.errors.warn``).

Under ``python -W error`` a warning is an exception wherever it is issued: in
an ``except`` handler of the engine, in the view's thread, at exit. None of
them may break the user's call, kill the thread or dump a traceback; the
warning is still said, as one line on stderr.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from volumes import make_volume

SCRIPT = textwrap.dedent("""
    import os, sys
    import ptb

    path = sys.argv[1]

    @ptb.provenance(path, "a step whose view cannot be merged")
    def step():
        with open(os.path.join(path[len("file://"):], "provenance"), "w") as f:
            f.write("{not json")     # the view is corrupt by the time the run ends
        return 7

    assert step() == 7
    journal = os.path.join(path[len("file://"):], "ptb", "journal")
    with open(os.path.join(journal, "zz-not-a-record.json"), "w") as f:
        f.write("garbage")
    h = ptb.history(path)            # a corrupt view and a foreign journal object: two warnings
    assert len(h.runs) == 1, h.runs
    print("done")
""")


def test_warnings_as_errors_never_break_a_call_a_read_or_the_exit(tmp_path: Path):
    vol = tmp_path / "vol"
    make_volume(f"file://{vol}")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, "-W", "error", str(script), f"file://{vol}"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "ptb: ViewWarning:" in done.stderr
    assert "ptb: RecordWarning:" in done.stderr
