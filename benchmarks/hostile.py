"""Hostile volumes: the memory and time of ``ptb`` reading what someone else left in a volume.

    python hostile.py make JSON-ARGS     # (run.py starts this) builds the volumes, prints one JSON line

``bench_hostile`` (run by ``run.py``) copies one honest volume (a process, its runs, notes) once
per hostile file: a brotli bomb segment, three of them, JSON nested 100,000 levels deep in the
``provenance`` file, a journal object, a segment and a code-environment file, and a
``provenance`` file that does not parse (100 KB and 1 MB, where json5 took minutes). Each is read
by a fresh ``ptb log --json`` process (``check`` too for the bombs; a decorated call for the bad
``provenance``), its wall time and peak memory taken from ``wait4``; the honest volume read the
same way is the baseline of the same run. ``rows`` adds the results to run.py's table.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

RUNS = 50                      # honest runs in the volume; every case must still show all of them
BOMB_MB = (256, 2048)          # what a bomb segment inflates to: --quick, full
CALL = """
import ptb
@ptb.provenance({path!r}, "a step")
def step():
    return 1
try:
    step()
except ptb.CorruptProvenanceError:
    pass
"""


# --------------------------------------------------------------------- the volumes (in a probe)
def _bomb(megabytes: int) -> bytes:
    """Brotli of ``megabytes`` MiB of spaces, made in chunks (a few hundred bytes; JSON whitespace)."""
    import brotli

    packer, out, chunk = brotli.Compressor(quality=5), [], b" " * (16 << 20)
    for _ in range(megabytes // 16):
        out.append(packer.process(chunk))
    return b"".join(out) + packer.finish()


def make(args: Dict[str, Any]) -> Dict[str, Any]:
    """The honest volume and its hostile copies under ``args["root"]``: {case: cloudpath}, and the bomb's size."""
    import datetime

    from cloudfiles import CloudFiles
    from probe import make_volume

    import ptb
    from ptb.records import Note, ProcessRecord, RunRecord
    from ptb.store import journal
    from ptb.store.volume import Volume

    root = Path(args["root"])
    honest = root / "honest"
    make_volume(f"file://{honest}")
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    process = ProcessRecord("step", {"x": 1}, timestamp=start)
    records: List[Any] = [process]
    for i in range(RUNS):
        at = start + datetime.timedelta(seconds=i)
        run = RunRecord(f"run-{i:04d}", "step", process.key, "failed" if i % 10 == 0 else "succeeded", at, at, 1.0)
        records += [run, Note(at, "RESULT", f"run {i} done", run=run.id)]
    journal.append(Volume.resolve(f"file://{honest}"), records)
    ptb.sync(f"file://{honest}")
    deep = "[" * 100_000 + "]" * 100_000
    bomb = _bomb(args["bomb_mb"])
    cases: Dict[str, List[Tuple[str, Any]]] = {
        "bomb segment": [("ptb/segments/0-bomb.json", bomb)],
        "three bomb segments": [(f"ptb/segments/{i}-bomb.json", bomb) for i in range(3)],
        "deep provenance": [("provenance", deep)], "deep journal object": [("ptb/journal/0-deep.json", deep)],
        "deep segment": [("ptb/segments/0-deep.json", '{"v": 1, "records": ' + deep + "}")],
        "deep env file": [("ptb/env/0-deep.json", deep)],
        "100 KB provenance, not JSON": [("provenance", '{"description": "' + "x" * 100_000 + '", oops}')],
        "1 MB provenance, not JSON": [("provenance", '{"description": "' + "x" * 1_000_000 + '", oops}')]}
    paths = {"honest": f"file://{honest}"}
    for n, (case, files) in enumerate(cases.items()):
        copy = root / f"case-{n}"
        shutil.copytree(honest, copy)
        cf = CloudFiles(f"file://{copy}")
        for key, data in files:
            if isinstance(data, bytes):      # compressed as another tool would (ptb never compresses)
                cf.put(key, data, compress="br", raw=True)
            else:
                cf.put(key, data.encode(), compress=None)
        if case == "deep env file":
            journal.append(Volume.resolve(f"file://{copy}"), [ProcessRecord("uses it", {}, ("ptb/env/0-deep.json",))])
        paths[case] = f"file://{copy}"
    return {"paths": paths, "bomb_bytes": len(bomb), "bomb_mb": args["bomb_mb"]}


# -------------------------------------------------------------------------- measuring (run.py)
def measure(bench: Any, argv: List[str]) -> Dict[str, Any]:
    """Run ``argv`` in a fresh process: wall seconds, peak memory (MiB, from ``wait4``), exit status, stdout."""
    with tempfile.TemporaryFile() as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=bench.root, env=bench.env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return {"s": seconds, "mb": usage.ru_maxrss / 1024, "exit": proc.returncode, "out": text}


def _runs_shown(found: Dict[str, Any]) -> int:
    try:
        return sum(row["kind"] == "run" for row in json.loads(found.pop("out"))["rows"])
    except (ValueError, KeyError):
        return -1


def bench_hostile(bench: Any) -> Dict[str, Any]:
    root = bench.root / "hostile"
    root.mkdir()
    made = bench.probe("ptb", "make", {"root": str(root), "bomb_mb": BOMB_MB[0 if bench.quick else 1]},
                       Path(__file__))
    ptb_cli = [sys.executable, "-m", "ptb.cli"]
    cases: Dict[str, Any] = {}
    for case, path in made["paths"].items():
        found = measure(bench, [*ptb_cli, "log", "--json", path])
        found["runs"] = _runs_shown(found)
        cases[case] = found
        if "bomb" in case:
            checked = measure(bench, [*ptb_cli, "check", path])
            checked.pop("out")
            cases[f"{case}, check"] = checked
        if "not JSON" in case:
            called = measure(bench, [sys.executable, "-c", CALL.format(path=path)])
            called.pop("out")
            cases[f"{case}, decorated call"] = called
    shutil.rmtree(root, ignore_errors=True)
    return {"cases": cases, "bomb_bytes": made["bomb_bytes"], "bomb_mb": made["bomb_mb"], "runs": RUNS}


def rows(results: Dict[str, Any], table: List[Tuple[str, ...]], goals: List[str]) -> None:
    """The hostile-volume rows and goals of run.py's table (ratios: against the honest volume's ``ptb log``)."""
    found = results["hostile"]
    cases, clean = found["cases"], found["cases"]["honest"]
    bombs = {k: v for k, v in cases.items() if "bomb" in k}
    hostile = {k: v for k, v in cases.items() if k != "honest"}
    worst_mb = max(bombs.values(), key=lambda c: c["mb"])
    slowest = max(hostile, key=lambda k: hostile[k]["s"])
    size = f"{found['bomb_bytes']:,} bytes of brotli inflating to {found['bomb_mb']:,} MiB"
    table.append((f"ptb log / check of a volume with bomb segments ({size}): peak memory, of honest volume's",
                  f"{worst_mb['mb']:.0f} MiB", "", f"{worst_mb['mb'] / clean['mb']:.2f}x"))
    table.append((f"slowest answer of {len(hostile)} to a hostile file ({slowest}), of honest volume's log",
                  f"{hostile[slowest]['s']:.2f} s", "", f"{hostile[slowest]['s'] / clean['s']:.2f}x"))
    lost = [k for k, v in cases.items() if "runs" in v and v["runs"] != found["runs"] and "provenance" not in k]
    crashed = [k for k, v in hostile.items() if v["exit"] not in (0, 1)]
    goals.append(f"ptb log and check on a volume holding bomb segments peak at {worst_mb['mb']:.0f} MiB "
                 f"({'within' if worst_mb['mb'] < 300 else 'NOT within'} 300 MB)")
    goals.append(f"every hostile file answered within {hostile[slowest]['s']:.1f} s "
                 f"({'within' if hostile[slowest]['s'] < 5 else 'NOT within'} 5 s; slowest: {slowest})")
    goals.append(f"honest runs shown beside every hostile file: "
                 f"{'all ' + str(found['runs']) if not lost else 'NOT all, in ' + ', '.join(lost)}"
                 f"{'' if not crashed else '; crashed: ' + ', '.join(crashed)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from probe import main

    main({"make": make})
