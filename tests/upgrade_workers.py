"""Programs for the upgrade and mixed-fleet tests, each run as a real OS process.

The ``old-*`` programs are 0.1.x scripts, written as 0.1.x's users wrote them
(``import provenancetoolbox as ptb``, a ``CloudVolume`` each time). They run
under the real provenance-toolbox 0.1.5 (``TOOLBOX=0.1.5``, PYTHONPATH its
directory) or, unchanged, under ptb's compatibility package (``TOOLBOX=ptb``);
each checks first that it imported the one it was meant to. The ``ptb-*``
programs use ptb itself. Each prints one JSON line last.

    old-write PATH                      make a volume and document it the 0.1.x way
    old-read PATH EXPECT-JSON           read it back the 0.1.x way, then log one more process and note
    old-notes PATH TAG PACE GO STOP [LOCK]
                                        a fleet writer: notes (and a process every 4th) until STOP exists
    ptb-continue PATH                   decorated runs (one fails), a documented block, notes
    ptb-writer PATH COUNT TAG GO        a fleet writer: COUNT decorated runs, each with a note, and notes
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, List

SOURCES = ["gs://lab/pinky/image"]
MAX_OLD_CALLS = 1000


def _toolbox() -> Any:
    """``provenancetoolbox``, after checking that it is the one the test asked for."""
    import provenancetoolbox

    wanted = os.environ["TOOLBOX"]
    if wanted == "0.1.5":
        assert provenancetoolbox.__version__ == "0.1.5", provenancetoolbox.__file__
    else:
        import ptb

        assert provenancetoolbox.__version__ == ptb.__version__, provenancetoolbox.__file__
        assert os.path.dirname(ptb.__file__) == os.environ["EXPECT_PTB"], ptb.__file__
    return provenancetoolbox


def _ptb() -> Any:
    import ptb

    assert os.path.dirname(ptb.__file__) == os.environ["EXPECT_PTB"], ptb.__file__
    return ptb


def _wait(go: str) -> None:
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)


def _entries(vol: Any) -> List[Dict[str, Any]]:
    return [{k: e[k] for k in ("task", "parameters", "code_envfiles")} for e in vol.provenance.processing]


# ------------------------------------------------------------------ 0.1.x scripts
def old_write(path: str) -> Dict[str, Any]:
    """What a 0.1.x user did: notes, processes with git and Docker environments, sources."""
    import types

    import cloudvolume as cv

    ptb = _toolbox()
    info = cv.CloudVolume.create_new_info(1, "segmentation", "uint32", "raw", [4, 4, 40], [0, 0, 0], [64, 64, 16])
    vol = cv.CloudVolume(path, info=info)
    vol.commit_info()
    vol.provenance.sources = SOURCES
    vol.commit_provenance()

    vol = cv.CloudVolume(path)
    ptb.addmotivation(vol, "segment pinky for proofreading round 2")
    watershed = ptb.Process("watershed", {"threshold": 0.3, "mip": 1},
                            ptb.PythonGithubEnv("."), ptb.DockerEnv("lab/segmenter", "v3", "sha256:0f1e2d"))
    if ptb.process_absent(vol, watershed):
        ptb.logprocess(vol, watershed)
    ptb.addgeneric(vol, "threshold chosen by eye on slab 3", "2022-07-02 08:30:00.000001")
    agglomerate = ptb.Process("agglomeration", types.SimpleNamespace(size_threshold=250),
                              ptb.PythonGithubEnv("."))
    ptb.logprocess(vol, agglomerate)
    ptb.addresult(vol, "merge errors remain in slab 3")
    vol = cv.CloudVolume(path)
    return {"notes": [[n.note_type.name, n.content, str(n.timestamp)] for n in ptb.parsenotes(vol)],
            "processes": _entries(vol)}


def old_read(path: str, expect: str) -> Dict[str, Any]:
    """A 0.1.x script on a volume ptb has written to: parse, check, then log once more."""
    import cloudvolume as cv

    ptb = _toolbox()
    asked = json.loads(expect)
    vol = cv.CloudVolume(path)
    out: Dict[str, Any] = {
        "notes": [[n.note_type.name, n.content] for n in ptb.parsenotes(vol)],
        "process_absent": [ptb.process_absent(vol, ptb.Process(p["task"], p["parameters"]))
                           for p in asked["processes"]],
        "note_absent": [ptb.note_absent(vol, n["content"], ptb.NoteType[n["type"]]) for n in asked["notes"]],
        "tasks": [e.get("task") for e in vol.provenance.processing],
    }
    downsample = ptb.Process("downsample", {"mip": 1, "num_mips": 2}, ptb.PythonGithubEnv("."))
    if ptb.process_absent(vol, downsample):
        ptb.logprocess(vol, downsample)
    ptb.addgeneric(vol, "downsampled again by an old script")
    out["keys_after"] = sorted(cv.CloudVolume(path).provenance)
    return out


def old_notes(path: str, tag: str, pace: str, go: str, stop: str, lock: str = "") -> Dict[str, Any]:
    """A 0.1.5 fleet writer: notes (and a process every 4th call), PACE seconds apart, until STOP exists.

    A fresh CloudVolume (a fresh read) before every call, and a call that fails
    is counted, not fatal. With LOCK, the old writers take turns (an flock among
    themselves only; ptb writers know nothing of it), so no 0.1.5 write can undo
    another's.
    """
    import fcntl

    import cloudvolume as cv

    ptb = _toolbox()
    notes: List[str] = []
    processes: List[str] = []
    errors: List[str] = []
    handle = open(lock, "a") if lock else None
    _wait(go)
    began = time.time()
    i = 0
    while not os.path.exists(stop) and i < MAX_OLD_CALLS:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            vol = cv.CloudVolume(path)
            ptb.addgeneric(vol, f"{tag}-{i}")
            notes.append(f"{tag}-{i}")
            if i % 4 == 3:
                vol = cv.CloudVolume(path)
                ptb.logprocess(vol, ptb.Process(f"{tag} step {i}", {"worker": tag, "i": i}))
                processes.append(f"{tag} step {i}")
        except Exception as exc:  # 0.1.5 reading a half-written file: the old behaviour, counted
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        finally:
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
        i += 1
        time.sleep(float(pace))
    return {"notes": notes, "processes": processes, "errors": errors, "span": [began, time.time()]}


# ------------------------------------------------------------------ ptb scripts
def ptb_continue(path: str) -> Dict[str, Any]:
    """The upgraded pipeline: decorated steps and notes on the volume 0.1.5 started."""
    ptb = _ptb()

    @ptb.provenance("dst", "meshing", motivation="meshes for proofreading round 3")
    def mesh(dst: str, mip: int = 2, simplification: int = 40) -> int:
        if mip > 4:
            raise ValueError(f"mip {mip} does not exist")
        return mip

    mesh(path, mip=2)
    mesh(path, mip=3)
    try:
        mesh(path, mip=7)
    except ValueError:
        pass
    note = ptb.addresult(path, "meshes look right in slab 3")
    with ptb.documented(path, "proofreading export", parameters={"round": 3},
                        motivation="export for the proofreaders") as doc:
        doc.note("slab 3 exported first")
    h = ptb.history(path)
    return {"runs": [[r.id, r.description, r.status] for r in h.runs], "note": note.id,
            "processes": [{"task": p.description, "parameters": p.parameters} for p in h.processes
                          if not p.id.startswith("legacy-")]}


def ptb_writer(path: str, count: int, tag: str, go: str) -> Dict[str, Any]:
    """A ptb fleet writer: COUNT decorated runs, each with a note of its own, and a note after each.

    A run that ptb refuses before it starts (``CorruptProvenanceError``: the
    ``provenance`` file does not parse, for good) is counted, not fatal.
    """
    ptb = _ptb()
    runs: List[str] = []
    notes: List[str] = []
    refused: List[str] = []

    @ptb.provenance("dst", f"{tag} step", motivation=f"fleet writer {tag}")
    def step(dst: str, i: int) -> int:
        current = ptb.current_run()
        assert current is not None
        runs.append(current.id)
        notes.append(ptb.addgeneric(dst, f"{tag}-run-{i}").id)
        return i

    _wait(go)
    began = time.time()
    for i in range(count):
        try:
            step(path, i)
        except ptb.CorruptProvenanceError as exc:
            refused.append(str(exc)[:300])
        notes.append(ptb.addgeneric(path, f"{tag}-note-{i}").id)
    ptb.store.updater.flush()
    return {"runs": runs, "notes": notes, "refused": refused, "process_description": f"{tag} step",
            "span": [began, time.time()]}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "old-write":
        result = old_write(*args)
    elif command == "old-read":
        result = old_read(*args)
    elif command == "old-notes":
        result = old_notes(*args)
    elif command == "ptb-continue":
        result = ptb_continue(*args)
    elif command == "ptb-writer":
        result = ptb_writer(args[0], int(args[1]), *args[2:])
    else:
        sys.exit(f"unknown command {command}")
    print(json.dumps(result), flush=True)
