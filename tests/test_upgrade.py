"""The upgrade path, with the real provenance-toolbox 0.1.5 from the package index.

0.1.5 documents a volume; after the upgrade, ptb reads it, continues it with decorated runs and
notes, and ``ptb check`` / ``ptb log`` show both; 0.1.5 (a machine not yet upgraded) still reads
it and writes to it, and the 0.1.x script, unchanged, runs on it under ptb. Every program is a
real OS process (see ``oldtoolbox`` and ``upgrade_workers``).
"""
from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

from oldtoolbox import ptb_cli, run
from upgrade_workers import SOURCES

import ptb
from ptb.records import to_utc


def _head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def _check(cwd: Path, path: str) -> dict:
    done = ptb_cli(cwd, "check", "--json", path)
    report = json.loads(done.stdout)
    assert done.returncode == 0, (report, done.stderr)
    return report


def test_a_015_volume_is_continued_by_ptb_and_still_read_by_015(toolbox_015, git_repo, tmp_path, cloud_home):
    root = tmp_path / "pinky"
    path = f"file://{root}"

    # 0.1.5 documents a volume, as it always did
    wrote = run("0.1.5", toolbox_015, git_repo, "old-write", path)
    assert [n[:2] for n in wrote["notes"]] == [
        ["MOTIVATION", "segment pinky for proofreading round 2"],
        ["GENERIC", "threshold chosen by eye on slab 3"],
        ["RESULT", "merge errors remain in slab 3"],
    ]
    assert [e["task"] for e in wrote["processes"]] == ["watershed", "agglomeration"]
    envfiles = [f for e in wrote["processes"] for f in e["code_envfiles"]]
    assert len(envfiles) == 3 and all((root / f).is_file() for f in envfiles)
    assert not (root / "ptb").exists()

    # ptb reads it: notes (type, content, time), processes, code environments
    h = ptb.history(path)
    assert [[n.note_type.name, n.content] for n in h.notes] == sorted(
        (n[:2] for n in wrote["notes"]), key=lambda n: n[1] != "threshold chosen by eye on slab 3")
    when = {n.content: n.timestamp for n in h.notes}
    for _, content, stamp in wrote["notes"]:   # 0.1.5 wrote naive local time; ptb reads the same instant
        assert when[content] == to_utc(datetime.datetime.fromisoformat(stamp))
    assert [[p.description, p.parameters, list(p.code_envfiles)] for p in h.processes] == [
        [e["task"], e["parameters"], e["code_envfiles"]] for e in wrote["processes"]]
    kinds = sorted(h.envs[f]["CodeEnv type"] for f in envfiles)
    assert kinds == ["Docker", "PythonGithub", "PythonGithub"]
    assert {h.envs[f].get("commit hash") for f in envfiles} == {_head(git_repo), None}
    assert h.sources == SOURCES

    # the upgraded pipeline continues it
    cont = run("ptb", None, git_repo, "ptb-continue", path)
    assert sorted((d, s) for _, d, s in cont["runs"]) == [
        ("meshing", "failed"), ("meshing", "succeeded"), ("meshing", "succeeded"), ("proofreading export", "succeeded")]

    # ptb check and ptb log judge and show both
    assert _check(tmp_path, path)["volumes"][0]["problems"] == []
    done = ptb_cli(tmp_path, "log", "--json", path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    old = {(r["kind"], r["text"]) for r in rows if r["origin"] == "0.1.x"}
    assert old == {("process", "watershed"), ("process", "agglomeration"),
                   *(("note", n[1]) for n in wrote["notes"])}, old
    new = [r for r in rows if r["origin"] == "ptb"]
    assert sorted(r["id"] for r in new if r["kind"] == "run") == sorted(r[0] for r in cont["runs"])
    assert "meshes look right in slab 3" in {r["text"] for r in new if r["kind"] == "note"}
    text = ptb_cli(tmp_path, "log", path).stdout
    assert "segment pinky for proofreading round 2  [0.1.x]" in text and "watershed (mip=1, threshold=0.3)" in text
    assert "ValueError: mip 7 does not exist" in text and "meshes for proofreading round 3" in text

    # a machine still on 0.1.5 reads the volume and writes to it, without error
    old_processes = [{"task": e["task"], "parameters": e["parameters"]} for e in wrote["processes"]]
    ask = {"processes": old_processes + cont["processes"],
           "notes": [{"content": "meshes look right in slab 3", "type": "RESULT"}]}
    seen = run("0.1.5", toolbox_015, git_repo, "old-read", path, json.dumps(ask))
    assert seen["process_absent"] == [False] * len(ask["processes"])   # ptb's processes too
    assert seen["tasks"] == ["watershed", "agglomeration", "meshing", "meshing", "meshing", "proofreading export"]
    assert seen["notes"] == [n[:2] for n in wrote["notes"]]             # only the notes in `description`
    assert seen["note_absent"] == [True]
    assert "ptb" in seen["keys_after"]                                  # its rewrite kept ptb's section

    # the same 0.1.x script, unchanged, under ptb: it sees every note
    seen_by_ptb = run("ptb", None, git_repo, "old-read", path, json.dumps(ask))
    assert seen_by_ptb["process_absent"] == [False] * len(ask["processes"])
    assert seen_by_ptb["note_absent"] == [False]
    notes_now = [[n.note_type.name, n.content] for n in ptb.history(path).notes]
    assert seen_by_ptb["notes"] == notes_now[:-1]                        # before its own note
    assert notes_now.count(["GENERIC", "downsampled again by an old script"]) == 2

    # and nothing was lost on either side
    after = ptb.history(path)
    assert [p.description for p in after.processes] == [
        "watershed", "agglomeration", "downsample", "meshing", "meshing", "meshing", "proofreading export"]
    assert {(r.id, r.status) for r in after.runs} == {(r[0], r[2]) for r in cont["runs"]}
    assert cont["note"] in {n.id for n in after.notes}
    assert _check(tmp_path, path)["volumes"][0]["problems"] == []


def test_what_a_015_reader_sees_on_a_volume_only_ptb_wrote(toolbox_015, git_repo, tmp_path, cloud_home, make_volume):
    path = f"file://{tmp_path / 'fresh'}"
    make_volume(path, commit_provenance=True)
    cont = run("ptb", None, git_repo, "ptb-continue", path)
    ask = {"processes": cont["processes"], "notes": [{"content": "meshes look right in slab 3", "type": "RESULT"}]}

    seen = run("0.1.5", toolbox_015, git_repo, "old-read", path, json.dumps(ask))
    assert seen["notes"] == []                                  # ptb's notes are not in `description`
    assert seen["note_absent"] == [True]
    assert seen["process_absent"] == [False] * 4                # its processes are `processing` entries
    assert seen["tasks"] == ["meshing", "meshing", "meshing", "proofreading export"]
    assert "ptb" in seen["keys_after"]

    after = ptb.history(path)
    assert [p.description for p in after.processes] == ["downsample", "meshing", "meshing", "meshing",
                                                         "proofreading export"]
    assert {(r.id, r.status) for r in after.runs} == {(r[0], r[2]) for r in cont["runs"]}
    assert ["GENERIC", "downsampled again by an old script"] in [[n.note_type.name, n.content] for n in after.notes]
    view = json.loads((tmp_path / "fresh" / "provenance").read_text())
    assert [e["task"] for e in view["processing"]] == ["meshing", "meshing", "meshing", "proofreading export",
                                                       "downsample"]
