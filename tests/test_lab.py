"""Many volumes at once: ``ptb status``, ``ptb find`` / ``ptb.find`` and the local index (issue 21).

The volumes are real (CloudFiles on file://, mem://, the suite's S3 and GCS
servers), their records journalled as documented calls journal them
(``labvolumes.step``). What reaches the storage is counted below ptb
(``labvolumes.counting``), so "a second query reads only listings" is a
count, not a timing.
"""
from __future__ import annotations

import datetime
import json
import os
import sqlite3
import uuid

import labvolumes as lab
import pytest
import volumes
from click.testing import CliRunner

import ptb
from ptb.cli import main
from ptb.lab import index as lab_index
from ptb.lab.discover import discover
from ptb.lab.status import status
from ptb.store import journal, updater
from ptb.store.volume import Volume

OLD = "0ff1ce0ff1ce0ff1ce0ff1ce0ff1ce0ff1ce0ff1"      # the commit with the off-by-one
FIXED = "3f2a9c1d3f2a9c1d3f2a9c1d3f2a9c1d3f2a9c1d"
PACKAGES_A = [["igneous-pipeline", "4.36.0"], ["cloud-volume", "8.5.0"]]
PACKAGES_B = [["igneous-pipeline", "4.37.1"], ["cloud-volume", "8.5.0"]]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=["file", "mem", pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("gs", marks=pytest.mark.gcs)])
def lab_root(request, tmp_path):
    """A fresh prefix on one protocol, for a tree of volumes."""
    proto, name = request.param, f"lab-{uuid.uuid4().hex[:12]}"
    root = {"file": lambda: f"file://{tmp_path / 'lab'}", "mem": lambda: f"mem://ptb-lab/{name}",
            "s3": lambda: request.getfixturevalue("s3_server").root + name,
            "gs": lambda: request.getfixturevalue("gcs_server").root + name}[proto]()
    yield root
    updater.flush()
    if proto == "mem":
        from cloudfiles import CloudFiles

        cf = CloudFiles(root)
        cf.delete(list(cf.list()))


def tree(root):
    """A dataset: an undocumented raw layer, a re-run downsample (two commits), a meshing run by ``ptb run``."""
    raw = lab.make_volume(f"{root}/pinky/raw")
    image = lab.make_volume(f"{root}/pinky/image")
    lab.step(image, "downsample to mip 2", {"mip": 2, "method": "average"}, [
        lab.run("succeeded", [lab.git_env(OLD, PACKAGES_A)], {"chunk": 0}),
        lab.run("failed", [lab.git_env(OLD, PACKAGES_A)], {"chunk": 1}),
        lab.run("succeeded", [lab.git_env(FIXED, PACKAGES_B)], {"chunk": 1}),
    ])
    mesh = lab.make_volume(f"{root}/pinky/seg")
    lab.step(mesh, "igneous mesh forge", {}, [lab.run("succeeded", [lab.git_env(FIXED), lab.command_env(
        "igneous", "igneous-pipeline", "4.36.0")])], command=["igneous", "mesh", "forge", "--mip", "3"])
    lab.make_volume(f"{root}/pinky/seg/mesh")           # inside a volume: part of it, not a volume of its own
    return {"raw": raw, "image": image, "seg": mesh}


# ------------------------------------------------------------------ discovery
def test_volumes_are_found_recursively_and_not_inside_volumes(lab_root):
    made = tree(lab_root)
    lab.make_volume(f"{lab_root}/other/deeper/still/layer")
    from cloudfiles import CloudFiles

    CloudFiles(f"{lab_root}/notes-only").put_json("provenance", {"sources": [], "processing": []})
    CloudFiles(f"{lab_root}/journal-only/ptb/journal").put("x.json", b"{}")
    CloudFiles(f"{lab_root}/.hidden/layer").put_json("info", lab.VOLUME_INFO)
    found = [f.cloudpath for f in discover(lab_root)]
    assert found == sorted([*made.values(), f"{lab_root}/other/deeper/still/layer", f"{lab_root}/notes-only",
                            f"{lab_root}/journal-only"])
    assert [f.cloudpath for f in discover(made["image"])] == [made["image"]]        # a prefix may be a volume
    assert [f.cloudpath for f in discover([f"{lab_root}/pinky/", made["seg"]])] == sorted(made.values())
    assert discover(f"{lab_root}/nothing-here") == []


def test_a_local_directory_is_a_prefix(tmp_path):
    made = tree(f"file://{tmp_path / 'lab'}")
    assert [f.cloudpath for f in discover(str(tmp_path / "lab"))] == sorted(made.values())


# ------------------------------------------------------------------------ find
def test_find_by_commit_package_params_status_description(lab_root):
    made = tree(lab_root)
    by_commit = ptb.find(lab_root, commit=OLD[:7])
    assert [(r["volume"], r["runs"], r["total_runs"]) for r in by_commit] == [(made["image"], 2, 3)]
    assert by_commit[0]["commit"] == OLD and by_commit[0]["by_status"] == {"succeeded": 1, "failed": 1}
    assert {r["volume"] for r in ptb.find(lab_root, commit=FIXED[:10].upper())} == {made["image"], made["seg"]}
    # a package installed in the runs' environment, or the tool a `ptb run` step ran: 4.36 is 4.36.0
    found = ptb.find(lab_root, package="igneous_pipeline==4.36")
    assert [(r["volume"], r["runs"]) for r in found] == [(made["image"], 2), (made["seg"], 1)]
    assert found[1]["tool"]["argv0"] == "igneous" and found[1]["parameters"]["command"][:2] == ["igneous", "mesh"]
    assert [r["runs"] for r in ptb.find(lab_root, package="igneous-pipeline==4.37.*")] == [1]
    assert len(ptb.find(lab_root, package="cloud-volume")) == 1                       # no version: any
    assert ptb.find(lab_root, package="numpy") == []
    # parameters: the step's and the run's own values; filters AND together
    assert [r["runs"] for r in ptb.find(lab_root, params={"mip": 2, "chunk": 1})] == [2]
    assert [r["runs"] for r in ptb.find(lab_root, params=["chunk=1"], commit=FIXED[:7])] == [1]
    assert ptb.find(lab_root, params={"mip": "2"}) == []                               # a string is not a number
    assert [r["runs"] for r in ptb.find(lab_root, status="failed")] == [1]
    assert ptb.find(lab_root, status="failed", commit=FIXED[:7]) == []
    assert [r["description"] for r in ptb.find(lab_root, description="MESH")] == ["igneous mesh forge"]


def test_find_rows_carry_the_keys_scripts_read_and_the_cli_prints_the_same(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    rows = ptb.find(root, commit=OLD[:7])
    for key in ("volume", "process", "description", "runs", "commit"):
        assert key in rows[0]
    result = cli("find", root, "--commit", OLD[:7], "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == json.loads(json.dumps(rows, default=str))
    text = cli("find", root, "--package", "igneous-pipeline==4.36.0")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["VOLUME", "PROCESS", "RUNS", "COMMIT", "DESCRIPTION"]
    assert made["image"] in lines[1] and "2 of 3" in lines[1] and "0ff1ce0" in lines[1]
    assert lines[-1] == "2 processes in 2 volumes match, of 3 volumes searched"
    none = cli("find", root, "--commit", "deadbeef")
    assert none.exit_code == 1 and none.stdout.strip() == "0 processes in 0 volumes match, of 3 volumes searched"


@pytest.mark.parametrize("args, message", [
    (["--commit", "xyz"], "not a commit hash prefix"), (["--package", "igneous>=4"], "not NAME or NAME==VERSION"),
    (["--param", "mip"], "not KEY=VALUE"), (["--status", "done"], "Invalid value for '--status'")])
def test_find_says_which_filter_is_wrong(tmp_path, args, message):
    result = CliRunner().invoke(main, ["find", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output


def test_find_reads_0_1_x_volumes(legacy_volume, foreign_volume):
    rows = ptb.find([legacy_volume, foreign_volume], commit="0123456")
    assert [(r["volume"], r["origin"], r["runs"]) for r in rows] == [(foreign_volume, "0.1.x", 0),
                                                                     (legacy_volume, "0.1.x", 0)]
    assert rows[0]["description"] == "watershed segmentation" and rows[0]["commit"] == volumes.LEGACY_ENV_FILE[9:]
    assert len(ptb.find(legacy_volume, package="cloud-volume==8.5.0")) == 1
    assert ptb.find(legacy_volume, status="succeeded") == []      # no runs: a status cannot match


def test_a_step_re_run_after_a_fix_matches_only_through_its_new_runs(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    tree(root)
    row = ptb.find(root, commit=FIXED[:7], description="downsample")[0]
    assert (row["runs"], row["commit"], row["by_status"]) == (1, FIXED, {"succeeded": 1})


# ---------------------------------------------------------------------- status
def test_status_one_line_per_volume_running_apart_from_never_finished(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    now = datetime.datetime.now(datetime.timezone.utc)
    lab.step(made["raw"], "proofreading export", {"round": 3}, [
        lab.run("running", host=lab.HERE, pid=os.getpid()),                       # this process: alive
        lab.run("running", host=lab.HERE, pid=_dead_pid()),                        # its worker is gone
        lab.run("running", host="node7", started=now - datetime.timedelta(minutes=5)),   # elsewhere, young
        lab.run("running", host="node7", started=now - datetime.timedelta(days=3)),     # elsewhere, long ago
    ])
    rows = {r["volume"]: r for r in status(root)}
    assert rows[made["raw"]]["runs"] == {"running": 2, "never-finished": 2}
    assert rows[made["image"]]["runs"] == {"succeeded": 2, "failed": 1}
    assert rows[made["image"]]["processes"] == 1 and rows[made["image"]]["last"] is not None
    result = cli("status", root)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["VOLUME", "PROCESSES", "RUNS", "LAST", "CHECK"]
    assert "2 running, 2 never finished" in next(line for line in lines if line.startswith(made["raw"]))
    assert lines[-1].startswith("total: 3 volumes (3 documented); 3 processes; 3 succeeded, 1 failed, 2 running, "
                                "2 never finished; 0 of 3 documented pass ptb check")


def _dead_pid() -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_status_lists_undocumented_volumes_as_information(tmp_path, make_volume):
    root = tmp_path / "lab"
    plain = make_volume(f"file://{root}/raw", commit_provenance=True)      # CloudVolume's own entries only
    good = f"file://{root}/image"
    from test_report import documented_volume

    documented_volume(good, sources=["gs://lab/raw"])
    ptb.addmotivation(good, "for the tests")
    result = cli("status", root)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith(plain.cloudpath))
    assert line.split()[1:] == ["-", "undocumented", "-", "-"]
    assert result.stdout.splitlines()[-1].startswith("total: 2 volumes (1 documented, 1 undocumented)")
    data = json.loads(cli("status", root, "--json").stdout)
    assert [v["check"] for v in data["volumes"] if v["volume"] == plain.cloudpath] == [None]
    checked = [v["check"] for v in data["volumes"] if v["volume"] == good]
    assert checked == [{"ok": ptb.check(good).ok, "problems": ptb.check(good).problems}]
    assert data["total"]["documented"] == 1


def test_status_check_column_is_ptb_check(tmp_path, foreign_volume):
    root = os.path.dirname(foreign_volume[len("file://"):])
    rows = status(f"file://{root}")
    assert [r["check"]["problems"] for r in rows] == [ptb.check(foreign_volume).problems]
    assert rows[0]["foreign"] == 2 and rows[0]["processes"] == 1


def test_an_unreadable_volume_is_a_row_and_the_others_are_still_listed(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    broken = lab.make_volume(f"{root}/broken")
    os.makedirs(tmp_path / "lab" / "broken" / "ptb")
    (tmp_path / "lab" / "broken" / "ptb" / "journal").write_text("a file where a directory should be")
    result = cli("status", root)
    assert result.exit_code == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith(broken))
    assert "cannot be read" in line and line.rstrip().endswith("FAIL")
    assert all(any(line.startswith(v) for line in result.stdout.splitlines()) for v in made.values())


def test_text_from_a_volume_never_reaches_the_terminal_raw(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    vol = lab.make_volume(f"{root}/evil")
    lab.step(vol, "mesh\x1b]0;pwned\x07\rdone", {"mip": 1}, [lab.run("succeeded")])
    out = cli("find", root).stdout
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\\x1b]0;pwned\\x07\\rdone" in out
    assert json.loads(cli("find", root, "--json").stdout)[0]["description"] == "mesh\x1b]0;pwned\x07\rdone"


def test_no_volumes_is_an_error_that_says_what_a_volume_is(tmp_path):
    result = cli("status", tmp_path)
    assert result.exit_code == 1 and "no volumes at or under" in result.output and "info, provenance or ptb/" in \
        result.output


# ----------------------------------------------------------------------- index
def test_a_second_query_over_unchanged_volumes_reads_only_listings(lab_root, ptb_cache_dir):
    tree(lab_root)
    first = ptb.find(lab_root, commit=FIXED[:7])
    with lab.counting() as seen:
        again = ptb.find(lab_root, commit=FIXED[:7])
    assert again == first
    assert seen.gets() == [], seen.calls                   # not one object read: listings (and view versions)
    assert seen.count("list") > 0
    if lab_root.startswith("labs3"):
        assert "GetObject" not in seen.s3_ops() and seen.s3_ops().get("ListObjectsV2")
    assert (ptb_cache_dir / "index.sqlite").exists()


def test_a_changed_volume_is_read_incrementally(lab_root):
    made = tree(lab_root)
    ptb.find(lab_root)
    lab.step(made["image"], "downsample to mip 2", {"mip": 2, "method": "average"},
             [lab.run("failed", [lab.git_env(FIXED, PACKAGES_B)], {"chunk": 2})])
    with lab.counting() as seen:
        rows = ptb.find(lab_root, status="failed")
    journal_gets = [p for p in seen.gets() if "ptb/journal/" in p]
    assert len(journal_gets) == 2, seen.gets()             # the new run's two objects, nothing else of the journal
    assert not [p for p in seen.gets() if "ptb/segments/" in p or "/raw/" in p or "/seg/" in p]
    assert [r["runs"] for r in rows] == [2]


def test_a_pack_costs_no_read_when_the_index_had_every_record(lab_root):
    made = tree(lab_root)
    before = ptb.find(lab_root)
    updater.sync(made["image"])                             # the journal packed into a segment
    with lab.counting() as seen:
        after = ptb.find(lab_root)
    assert not [p for p in seen.gets() if "ptb/" in p], seen.gets()
    assert after == before
    for i in range(10):                                     # past MAX_SEGMENTS: a sync merges them all
        lab.step(made["image"], "downsample to mip 2", {"mip": 2, "method": "average"}, [lab.run(values={"c": i})])
        ptb.find(lab_root)
        updater.sync(made["image"])
    assert len(Volume.resolve(made["image"]).list(journal.SEGMENTS)) <= journal.MAX_SEGMENTS
    with lab.counting() as seen:
        rows = ptb.find(lab_root, description="downsample")
    assert not [p for p in seen.gets() if "ptb/" in p], seen.gets()
    assert rows[0]["runs"] == 13


def test_records_packed_between_two_queries_are_read_from_their_segment(lab_root):
    made = tree(lab_root)
    ptb.find(lab_root)
    lab.step(made["image"], "downsample to mip 2", {"mip": 2, "method": "average"},
             [lab.run("interrupted", values={"chunk": 9})])
    updater.sync(made["image"])                             # packed before the index saw them
    with lab.counting() as seen:
        rows = ptb.find(lab_root, status="interrupted")
    assert len([p for p in seen.gets() if "ptb/segments/" in p]) == 1
    assert [r["runs"] for r in rows] == [1]
    assert ptb.find(lab_root, description="downsample", cache=False)[0]["total_runs"] == 4


def test_a_changed_view_is_read_again_and_check_follows_it(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    assert not status(made["image"])[0]["check"]["ok"]
    from cloudvolume import CloudVolume

    vol = CloudVolume(made["image"])
    vol.provenance.sources = ["gs://lab/pinky/raw"]
    vol.commit_provenance()
    ptb.addmotivation(made["image"], "mips for the viewer")
    updater.flush()
    problems = status(made["image"])[0]["check"]["problems"]
    assert problems == ptb.check(made["image"]).problems
    assert not [p for p in problems if "sources" in p or "motivation" in p]


def test_no_cache_reads_everything_and_leaves_nothing(tmp_path, ptb_cache_dir):
    root = f"file://{tmp_path / 'lab'}"
    tree(root)
    with lab.counting() as seen:
        rows = ptb.find(root, cache=False)
    assert len(seen.gets()) > 5 and not ptb_cache_dir.exists()
    assert cli("status", root, "--no-cache").exit_code == 0 and not ptb_cache_dir.exists()
    assert rows == ptb.find(root)


def test_the_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PTB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lab_index.cache_dir() == tmp_path / "xdg" / "ptb"
    root = f"file://{tmp_path / 'lab'}"
    tree(root)
    ptb.find(root)
    assert (tmp_path / "xdg" / "ptb" / "index.sqlite").exists()
    assert oct((tmp_path / "xdg" / "ptb" / "index.sqlite").stat().st_mode & 0o777) == "0o600"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lab_index.cache_dir() == tmp_path / "home" / ".cache" / "ptb"


@pytest.mark.parametrize("damage", ["garbage", "foreign-version", "someone-elses", "truncated"])
def test_a_corrupt_or_foreign_index_is_rebuilt_never_trusted(tmp_path, ptb_cache_dir, damage):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    right = ptb.find(root)
    path = ptb_cache_dir / "index.sqlite"
    if damage == "garbage":
        path.write_bytes(b"not a database at all" * 100)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        db = sqlite3.connect(path)
        if damage == "foreign-version":
            db.execute(f"PRAGMA user_version={lab_index.SCHEMA_VERSION + 1}")
            db.execute("UPDATE volumes SET digest='{\"v\": 1, \"processes\": []}'")     # what a newer ptb might hold
        else:
            db.execute("PRAGMA application_id=42")
        db.commit()
        db.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}") and damage in ("garbage", "truncated"):
            os.unlink(f"{path}{suffix}")
    lab.step(made["seg"], "igneous skeleton forge", {}, [lab.run()], command=["igneous", "skeleton", "forge"])
    with pytest.warns(lab_index.IndexWarning, match="rebuilding the index"):
        rows = ptb.find(root)
    assert len(rows) == len(right) + 1 and all(r in rows for r in right)
    assert ptb.find(root) == rows                           # and the rebuilt one is used again


def test_an_index_that_cannot_be_written_is_bypassed_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PTB_CACHE_DIR", str(blocker / "ptb"))
    root = f"file://{tmp_path / 'lab'}"
    tree(root)
    with pytest.warns(lab_index.IndexWarning, match="reading every volume in full"):
        rows = ptb.find(root, commit=OLD[:7])
    assert len(rows) == 1


def test_an_index_held_by_another_command_is_a_clear_error(tmp_path, ptb_cache_dir, monkeypatch):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    ptb.find(root)
    monkeypatch.setattr(lab_index, "BUSY_SECONDS", 0.2)
    other = sqlite3.connect(ptb_cache_dir / "index.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        lab.step(made["image"], "downsample to mip 2", {"mip": 2, "method": "average"}, [lab.run()])
        with pytest.raises(lab_index.IndexBusyError, match="--no-cache"):
            ptb.find(root)
        result = cli("find", root)
        assert result.exit_code == 1 and result.output.startswith("ptb: error: the index")
        assert len(ptb.find(root, cache=False)) == 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert ptb.find(root, description="downsample")[0]["total_runs"] == 4


def test_what_reading_a_volume_skipped_is_a_check_problem_and_the_rest_is_counted(tmp_path):
    root = f"file://{tmp_path / 'lab'}"
    made = tree(root)
    (tmp_path / "lab" / "pinky" / "image" / "ptb" / "journal" / "junk.json").write_text("not json")
    (tmp_path / "lab" / "pinky" / "seg" / "provenance").write_text("{torn")
    rows = {r["volume"]: r for r in status(root)}
    image, seg = rows[made["image"]], rows[made["seg"]]
    assert image["runs"] == {"succeeded": 2, "failed": 1}
    assert any("junk.json: not JSON" in p for p in image["check"]["problems"])
    assert seg["runs"] == {"succeeded": 1} and any("is not a JSON object" in p for p in seg["check"]["problems"])
    assert {r["volume"]: r for r in status(root)} == rows              # the same from the index
