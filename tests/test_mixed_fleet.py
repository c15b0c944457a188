"""A rolling upgrade: writers on the real 0.1.5 and writers on ptb, real OS processes, one volume.

0.1.5 writes by read-modify-write of the whole ``provenance`` file (in place, on ``file://``), so
its writers can undo each other's writes: that is the old behaviour, measured here. What ptb
must guarantee is that it never undoes theirs: it never overwrites a version of the file it has
not merged. To tell the two apart, ``test_ptb_drops_no_entry_of_015_writers`` makes the 0.1.5
writers take turns (a lock among themselves; ptb knows nothing of it), so that no 0.1.5 entry
can be lost to another 0.1.5 writer: every one must then still be in the file at the end.
``test_015_writers_racing_each_other`` lets them race, as they did before the upgrade, and
reports what they lose.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from oldtoolbox import start

import ptb
from ptb.read.history import legacy_notes

OLD_WRITERS = 4       # each: notes, and a process every 4th call, until the ptb writers are done
PTB_WRITERS, PTB_RUNS = 3, 4          # each: 4 decorated runs with a note inside, and a note after each
OLD_ONLY_SECONDS = 2.5


def fleet(toolbox_015: Path, repo: Path, path: str, tmp_path: Path, old_writers: int, ptb_writers: int,
          take_turns: bool, pace: float) -> Dict[str, Dict[str, Any]]:
    """Start every writer, let them all go at once, and return what each says it wrote.

    The 0.1.5 writers make a call every ``pace`` seconds until the ptb writers
    have finished (or for ``OLD_ONLY_SECONDS``), so that every ptb write meets
    0.1.5 writes.
    """
    go, stop = tmp_path / "go", tmp_path / "stop"
    lock = [str(tmp_path / "old-writers.lock")] if take_turns else []
    procs = {}
    try:
        for w in range(old_writers):
            procs[f"old{w}"] = start("0.1.5", toolbox_015, repo, tmp_path / f"old{w}.err",
                                     "old-notes", path, f"old{w}", pace, go, stop, *lock)
        for w in range(ptb_writers):
            procs[f"new{w}"] = start("ptb", None, repo, tmp_path / f"new{w}.err", "ptb-writer", path, PTB_RUNS,
                                     f"new{w}", go)
        for tag, proc in procs.items():
            assert proc.stdout.readline().strip() == "ready", (tmp_path / f"{tag}.err").read_text()[-3000:]
        go.touch()
        results = {}
        if not ptb_writers:
            time.sleep(OLD_ONLY_SECONDS)
        for tag, proc in sorted(procs.items(), key=lambda item: item[0].startswith("old")):
            if tag.startswith("old"):
                stop.touch()
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{tag}: {(tmp_path / f'{tag}.err').read_text()[-3000:]}"
            results[tag] = json.loads(out.strip().splitlines()[-1])
        old = [r["span"] for tag, r in results.items() if tag.startswith("old")]
        new = [r["span"] for tag, r in results.items() if tag.startswith("new")]
        if new:   # the 0.1.5 writers wrote all the while the ptb writers did
            assert max(s[0] for s in old) <= min(s[0] for s in new) + 3.0, (old, new)
            assert min(s[1] for s in old) >= max(s[1] for s in new), (old, new)
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def ptb_volume(path: str, make_volume) -> ptb.ProcessRecord:
    """A volume already documented with ptb, as one is by the time a fleet is half upgraded."""
    make_volume(path, commit_provenance=True)
    record = ptb.logprocess(path, ptb.Process("segmentation", {"mip": 1}))
    ptb.addmotivation(path, "segment pinky for proofreading round 3")
    ptb.store.updater.flush()
    return record


def in_file(root):
    """The 0.1.5 notes and the process tasks in the ``provenance`` file now (None if it is not JSON).

    ``root``: the volume's directory, or its cloudpath.
    """
    from cloudfiles import CloudFiles

    raw = (root / "provenance").read_bytes() if isinstance(root, Path) else CloudFiles(root).get("provenance")
    try:
        prov = json.loads(raw)
    except ValueError:
        return None, None
    return ({n.content for n in legacy_notes(prov.get("description") or "")},
            {e.get("task") for e in prov.get("processing", []) if isinstance(e, dict)})


def assert_ptb_records_all_there(path: str, results: Dict[str, Dict[str, Any]], before: ptb.ProcessRecord) -> None:
    h = ptb.history(path)
    runs = {r.id: r.status for r in h.runs}
    notes = {n.id for n in h.notes}
    for tag, result in results.items():
        if tag.startswith("new"):
            ran = len(result["runs"])
            assert ran + len(result["refused"]) == PTB_RUNS and len(result["notes"]) == ran + PTB_RUNS
            assert {runs.get(r) for r in result["runs"]} <= {"succeeded"}, tag
            assert set(result["notes"]) <= notes, tag
            assert sum(p.description == result["process_description"] for p in h.processes) == ran
    assert h.process(before.key) is not None
    assert "segment pinky for proofreading round 3" in {n.content for n in h.notes}


def written_by_015(results: Dict[str, Dict[str, Any]]):
    old = [r for tag, r in results.items() if tag.startswith("old")]
    return ({n for r in old for n in r["notes"]}, {p for r in old for p in r["processes"]},
            [e for r in old for e in r["errors"]])


@pytest.mark.s3
def test_ptb_drops_no_entry_of_015_writers(toolbox_015, git_repo, tmp_path, cloud_home, make_volume, s3_server):
    """ptb's compare-and-swap writes never undo a 0.1.5 write, and a half-written file is read again.

    On S3, where a put replaces the object whole, this holds for every write. On file://,
    0.1.5 writes in place; the one write ptb cannot protect is one whose open() races
    ptb's rename within microseconds (ptb sees most of those in the file it replaced and
    merges them back): docs/upgrading.rst.
    """
    path = s3_server.root + f"fleet-{tmp_path.name}"
    root = path
    before = ptb_volume(path, make_volume)
    results = fleet(toolbox_015, git_repo, path, tmp_path, OLD_WRITERS, PTB_WRITERS, take_turns=True, pace=0.002)

    notes, processes, errors = written_by_015(results)
    assert errors == []                     # taking turns, 0.1.5 never reads a half-written file
    # on S3 the old writers, taking turns, make a call every 50 to 200 ms: enough to meet every ptb write
    assert len(notes) > 5 * OLD_WRITERS and len(processes) >= OLD_WRITERS
    found_notes, found_tasks = in_file(root)
    assert found_notes is not None, "the provenance file is not JSON"
    assert sorted(notes - found_notes) == [], "ptb dropped notes of 0.1.5 writers"
    assert sorted(processes - found_tasks) == [], "ptb dropped processes of 0.1.5 writers"
    # a file caught half-written is not corrupt: ptb waits for it (DESIGN 4, "Torn is not corrupt")
    assert [r["refused"] for tag, r in results.items() if tag.startswith("new")] == [[]] * PTB_WRITERS
    assert_ptb_records_all_there(path, results, before)

    synced = ptb.sync(path)                 # the view, rebuilt: both sides, whole
    assert notes <= {n.content for n in legacy_notes(synced["description"])}
    keys = {e["ptb"]["key"] for e in synced["processing"] if "ptb" in e}
    assert {p.key for p in ptb.history(path).processes if not p.id.startswith("legacy-")} == keys
    assert processes <= {e["task"] for e in synced["processing"]}


@pytest.mark.parametrize("ptb_writers", [0, PTB_WRITERS], ids=["old-only", "mixed"])
def test_015_writers_racing_each_other(toolbox_015, git_repo, tmp_path, cloud_home, make_volume, ptb_writers,
                                       record_property):
    """The old behaviour, measured: what 0.1.5 writers lose when they race (printed with ``-s``).

    Racing in-place writes on ``file://`` usually leave the file corrupt (0.1.5 then fails on
    every call). ptb refuses to start a run on a corrupt file, and never rewrites it, but
    loses none of its records.
    """
    root = tmp_path / "vol"
    path = f"file://{root}"
    before = ptb_volume(path, make_volume)
    results = fleet(toolbox_015, git_repo, path, tmp_path, OLD_WRITERS, ptb_writers, take_turns=False, pace=0.02)

    notes, processes, errors = written_by_015(results)
    found_notes, found_tasks = in_file(root)
    corrupt = found_notes is None
    lost_notes = len(notes) if corrupt else len(notes - found_notes)
    lost_processes = len(processes) if corrupt else len(processes - found_tasks)
    measured = {"old_writers": OLD_WRITERS, "ptb_writers": ptb_writers, "notes_written": len(notes),
                "notes_lost": lost_notes, "processes_written": len(processes), "processes_lost": lost_processes,
                "failed_calls": len(errors), "file_corrupt": corrupt, "errors": sorted(set(errors))[:3],
                "ptb_runs_refused": sum(len(r["refused"]) for tag, r in results.items() if tag.startswith("new"))}
    record_property("measured", measured)
    print("\n0.1.5 writers racing:", json.dumps(measured))

    # whatever 0.1.5 did to the file, ptb's records are all in the journal
    assert_ptb_records_all_there(path, results, before)
    h = ptb.history(path)
    if corrupt:
        assert h.problems and "not a JSON object" in h.problems[0]
    else:                                   # ptb reads exactly the 0.1.5 notes that survived
        assert {n.content for n in h.notes if n.id.startswith("legacy-")} == found_notes
        synced = ptb.sync(path)             # and puts its own processes back, keeping theirs
        assert found_tasks <= {e.get("task") for e in synced["processing"]}
        assert before.key in {e["ptb"]["key"] for e in synced["processing"] if "ptb" in e}
