"""The ``ptb`` command line, through click's CliRunner and as the installed console script."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import volumes
from click.testing import CliRunner
from prov.model import ProvDocument
from test_export import parse_html
from test_report import SOURCE, documented_volume

import ptb
from ptb.cli import main
from ptb.read.history import history
from ptb.records import Note, NoteType, envelope, utcnow
from ptb.store import spool

NEVER = "never finished (worker died?)"


def ptb_cli(*args, input=None, color=False):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False, color=color)
    return result


@pytest.fixture
def good(tmp_path, git_repo):
    path = f"file://{tmp_path / 'meshes'}"
    process, ids = documented_volume(path, repo=git_repo)
    return path, process, ids


@pytest.fixture
def legacy(legacy_volume):
    return legacy_volume


@pytest.fixture
def foreign(foreign_volume):
    return foreign_volume


# ------------------------------------------------------------------------- log
def test_log_of_a_ptb_volume(good):
    path, process, ids = good
    result = ptb_cli("log", path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[0] == path and f"sources: {SOURCE}" in out
    assert "succeeded in 1.2 s, alice@node1 (pid 1000)" in out and "failed after 3.2 min" in out
    assert NEVER in out and "ValueError: mip 7 does not exist" in out
    assert out.index("meshes for proofreading round 3") < out.index("succeeded in 1.2 s") < out.index(NEVER)
    assert result.stderr == ""


def test_log_accepts_a_local_directory(good, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ptb_cli("log", "meshes")
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == good[0]


def test_log_filters_and_json(good):
    path, process, ids = good
    data = json.loads(ptb_cli("log", path, "--json").stdout)
    assert data["volume"] == path and data["sources"] == [SOURCE]
    assert [r["id"] for r in data["rows"] if r["kind"] == "run"] == ids
    failures = json.loads(ptb_cli("log", path, "--failures", "--json").stdout)["rows"]
    assert {r["id"] for r in failures if r["kind"] == "run"} == set(ids[1:])
    assert {r["kind"] for r in failures} == {"run", "note"}
    only = json.loads(ptb_cli("log", path, "--type", "process", "--type", "RESULT", "--json").stdout)["rows"]
    assert sorted({r["kind"] if r["kind"] != "note" else r["note_type"] for r in only}) == ["RESULT", "process"]
    assert len(json.loads(ptb_cli("log", path, "-n", "2", "--json").stdout)["rows"]) == 2
    since = json.loads(ptb_cli("log", path, "--since", "2024-05-01T12:15:00Z", "--json").stdout)["rows"]
    assert since and all(r["time"] >= "2024-05-01T12:15" for r in since)
    text = ptb_cli("log", path, "--failures").stdout
    assert "succeeded in" not in text and NEVER in text


def test_log_in_colour_on_a_terminal(good):
    out = ptb_cli("log", good[0], color=True).stdout
    assert "\x1b[31m\x1b[1mfailed after 3.2 min" in out


def test_log_of_legacy_and_foreign_volumes(legacy, foreign):
    out = ptb_cli("log", legacy).stdout
    assert "watershed segmentation (mip=1, threshold=0.3)  [0.1.x]" in out
    assert "motivation                segment pinky for the proofreading round  [0.1.x]" in out
    out = ptb_cli("log", foreign).stdout
    assert "owners:  alice@lab.org" in out
    assert "DownsampleTask (mip=0, num_mips=2) by alice@lab.org  [foreign]" in out
    assert '{"note": "hand-fixed slab 3"} by bob  [foreign]' in out
    rows = json.loads(ptb_cli("log", foreign, "--type", "foreign", "--json").stdout)["rows"]
    assert [r["entry"] for r in rows] == [{"note": "hand-fixed slab 3", "by": "bob"}, volumes.IGNEOUS_ENTRY]


def test_usage_errors_exit_2(good):
    path = good[0]
    assert ptb_cli("log", path, "--since", "yesterday").exit_code == 2
    assert ptb_cli("log", path, "--type", "bogus").exit_code == 2
    assert ptb_cli("log").exit_code == 2
    assert ptb_cli("show", path).exit_code == 2
    assert ptb_cli("nosuchcommand").exit_code == 2


def test_errors_are_one_line_and_exit_1(good, tmp_path):
    result = ptb_cli("log", tmp_path / "nowhere")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("ptb: error: nothing is recorded at file://") and result.stderr.count("\n") == 1
    result = ptb_cli("show", good[0], good[2][0][:4])
    assert result.exit_code == 1 and result.stderr.startswith("ptb: error: ") and "ambiguous" in result.stderr
    (tmp_path / "meshes" / "provenance").write_text("{broken")
    result = ptb_cli("note", good[0], "--generic", "x")
    assert result.exit_code == 0            # the note is journalled; the view warns and is left alone
    assert "ptb: warning: the provenance view of" in result.stderr and "Traceback" not in result.stderr


def test_warnings_are_ptb_warning_lines(good, tmp_path):
    (tmp_path / "meshes" / "ptb" / "journal" / "0000000000000000bad.json").write_text(
        '{"kind": "mystery", "rid": "0000000000000000bad", "v": 1}')
    result = ptb_cli("log", good[0])
    assert result.exit_code == 0
    assert result.stderr.startswith("ptb: warning: skipping journal record 0000000000000000bad")


# ------------------------------------------------------------------ show, diff
def test_show_by_prefix(good, git_repo):
    path, process, ids = good
    out = ptb_cli("show", path, process.key[:8]).stdout
    assert out.startswith(f"process {process.key}") and "image ID: sha256:aaa" in out
    assert "https://github.com/lab/pipeline.git" in out and "SECRETTOKEN" not in out
    out = ptb_cli("show", path, ids[1][:14]).stdout
    assert out.startswith(f"run {ids[1]}") and 'File "mesh.py", line 3' in out
    data = json.loads(ptb_cli("show", path, ids[2], "--json").stdout)
    assert data["kind"] == "run" and data["run"]["status"] == "running" and data["process"]["key"] == process.key
    assert set(data) == {"volume", "kind", "run", "process", "runs", "summary", "notes", "envs",
                         "envs_inherited", "env_spread", "packages_elsewhere"}
    assert data["envs_inherited"] and data["env_spread"] is None   # journalled without its own: its process's
    assert data["summary"] is None            # a run's view; a process's sums up its runs


def test_show_on_legacy_volume(legacy):
    out = ptb_cli("show", legacy, "legacy-0").stdout
    assert "watershed segmentation" in out and "commit hash: 0123456789abcdef" in out
    assert "packages: 2 installed" in out and "numpy==" not in out
    assert "numpy==1.22.0" in ptb_cli("show", legacy, "legacy-0", "--packages").stdout


def test_diff(good):
    path, process, ids = good
    other = ptb.logprocess(path, ptb.Process("meshing at 16x16x40", {"mip": 3, "simplification": 40},
                                             ptb.DockerEnv("lab/mesher", "v2", "sha256:bbb")))
    result = ptb_cli("diff", path, process.key[:8], other.key[:8])
    assert result.exit_code == 0
    assert "* parameters.mip" in result.stdout and "* env.Docker.tag" in result.stdout
    assert "* env.PythonGithub " in result.stdout
    data = json.loads(ptb_cli("diff", path, ids[0], ids[1], "--json").stdout)
    assert {r["field"] for r in data["rows"] if not r["same"]} >= {"run.status", "run.duration"}
    assert "packages.pytest" in ptb_cli("diff", path, ids[0], ids[1], "--all").stdout


def test_diff_on_foreign_volume(foreign):
    ptb.logprocess(foreign, ptb.Process("watershed segmentation", {"threshold": 0.5, "mip": 1}))
    out = ptb_cli("diff", foreign, "legacy-0", history(foreign).processes[-1].key).stdout
    assert "* parameters.threshold" in out


# ----------------------------------------------------------------------- check
def test_check_passes_on_a_good_volume(good):
    result = ptb_cli("check", good[0])
    assert result.exit_code == 0
    assert result.stdout == f"ok    {good[0]}\n1 of 1 volume properly documented\n"


def test_check_fails_on_an_undocumented_volume(tmp_path):
    path = f"file://{tmp_path / 'bare'}"
    volumes.make_volume(path)
    result = ptb_cli("check", path)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"FAIL  {path}"
    assert lines[1].startswith("      - names no sources") and lines[2].startswith("      - holds no motivation")
    assert lines[-1] == "0 of 1 volume properly documented"


def test_check_many_volumes(good, legacy, foreign, tmp_path):
    paths = [good[0], legacy, foreign, tmp_path / "nowhere"]
    result = ptb_cli("check", *paths)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "2 of 4 volumes properly documented"
    quiet = ptb_cli("check", "-q", *paths).stdout
    assert good[0] not in quiet and f"FAIL  {legacy}" in quiet
    data = json.loads(ptb_cli("check", "--json", *paths).stdout)
    assert data["ok"] is False
    assert [v["ok"] for v in data["volumes"]] == [True, False, True, False]
    assert ptb_cli("check", good[0], foreign).exit_code == 0
    assert ptb_cli("check").exit_code == 2


# ---------------------------------------------------------------------- export
@pytest.mark.parametrize("volume", ["good", "legacy", "foreign"])
def test_export_every_format(volume, request, tmp_path):
    path = request.getfixturevalue(volume)
    path = path[0] if isinstance(path, tuple) else path
    prov_json = ptb_cli("export", path).stdout                          # prov-json is the default
    doc = ProvDocument.deserialize(content=prov_json, format="json")
    assert doc.get_records()
    assert ptb_cli("export", path, "--format", "prov-n").stdout.startswith("document")
    assert ptb_cli("export", path, "-f", "dot").stdout.startswith("digraph lineage {")
    out = tmp_path / "page.html"
    result = ptb_cli("export", path, "-f", "html", "-o", out)
    assert result.exit_code == 0 and result.stdout == "" and f"wrote html of {path}" in result.stderr
    page = parse_html(out.read_text(encoding="utf-8"))
    assert len(page.rows) == len(ptb.read.timeline.timeline(history(path)))


def test_export_upstream(tmp_path):
    raw, seg = f"file://{tmp_path / 'raw'}", f"file://{tmp_path / 'seg'}"
    documented_volume(raw, sources=["acquired on the Zeiss, 2021"])     # no gs:// to reach from a test
    documented_volume(seg, sources=[raw])
    data = json.loads(ptb_cli("export", seg, "--upstream", "--no-progress").stdout)
    labels = {e.get("prov:label") for e in data["entity"].values()}
    assert {raw, seg, "acquired on the Zeiss, 2021"} <= labels
    assert ptb_cli("export", seg, "-f", "html", "--upstream").stdout.count('<section class="upstream">') == 1


def test_export_without_prov_is_one_error_line(good, monkeypatch):
    monkeypatch.setitem(sys.modules, "prov", None)
    result = ptb_cli("export", good[0])
    assert result.exit_code == 1
    assert result.stderr == ("ptb: error: PROV export needs the prov package: "
                             "pip install provenance-toolbox[prov]\n")
    assert ptb_cli("export", good[0], "-f", "dot").exit_code == 0
    assert ptb_cli("export", good[0], "-f", "pdf").exit_code == 2


# ------------------------------------------------------------------- note, sync
def test_note_is_in_the_view_when_the_command_exits(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_volume(path)
    result = ptb_cli("note", path, "--motivation", "meshes for <round 3>")
    assert result.exit_code == 0 and result.stdout.startswith(f"added a motivation note to {path} at ")
    view = json.loads((tmp_path / "vol" / "provenance").read_text())
    assert [n["content"] for n in view["ptb"]["notes"]] == ["meshes for <round 3>"]
    data = json.loads(ptb_cli("note", path, "--result", "-", "--json", input="it worked\n").stdout)
    assert data["note"]["type"] == "RESULT" and data["note"]["content"] == "it worked"
    ptb_cli("note", path, "--generic", "by the way")
    assert [(n.note_type, n.content) for n in ptb.parsenotes(path)] == [
        (NoteType.MOTIVATION, "meshes for <round 3>"), (NoteType.RESULT, "it worked"), (NoteType.GENERIC, "by the way")]


def test_a_commit_message_piped_in_reads_as_one_block(good, git_repo):
    """``git log -1 --format=%B | ptb note PATH --generic -``: no blank line in the log."""
    path = good[0]
    subprocess.run(["git", "-c", "commit.gpgsign=false", "commit", "--allow-empty", "-q", "-m", "Fix the mip 7 check",
                    "-m", "The check read the wrong scale."], cwd=git_repo, check=True)
    message = subprocess.run(["git", "log", "-1", "--format=%B"], cwd=git_repo, check=True, capture_output=True,
                             text=True).stdout
    assert "\n\n" in message and ptb_cli("note", path, "--generic", "-", input=message).exit_code == 0
    lines = ptb_cli("log", path).stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.endswith("Fix the mip 7 check"))
    assert lines[first + 1].strip() == "The check read the wrong scale."


def test_note_on_legacy_volume_keeps_its_notes(legacy):
    assert ptb_cli("note", legacy, "--generic", "re-checked in 2024").exit_code == 0
    notes = [n.content for n in ptb.parsenotes(legacy)]
    assert notes[-1] == "re-checked in 2024" and len(notes) == 4


def test_note_needs_exactly_one_kind(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    assert ptb_cli("note", path).exit_code == 2
    assert ptb_cli("note", path, "--motivation", "a", "--result", "b").exit_code == 2
    assert ptb_cli("note", path, "--generic", "  ").exit_code == 2


def test_sync_packs_and_rebuilds(good, tmp_path):
    path, process, ids = good
    view_file = tmp_path / "meshes" / "provenance"
    view = json.loads(view_file.read_text())
    del view["ptb"]
    view["processing"] = []
    view_file.write_text(json.dumps(view))          # a view that lost everything
    result = ptb_cli("sync", path)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("packed ") and lines[0].endswith(" journal records into a segment")
    assert lines[1] == (f"rebuilt {path}/provenance: 1 process, 3 runs, 6 notes; kept 0 other processing "
                        f"entries, 1 source, 0 owners")
    (entry,) = [e for e in json.loads(view_file.read_text())["processing"] if "ptb" in e]
    assert entry["ptb"]["runs"]["count"] == 3
    data = json.loads(ptb_cli("sync", path, "--json").stdout)
    assert data["packed"] == 0 and data["runs"] == 3
    assert ptb_cli("sync", path).stdout.startswith("the journal was already packed")


def test_sync_keeps_foreign_content(foreign):
    ptb_cli("note", foreign, "--generic", "x")
    out = ptb_cli("sync", foreign).stdout
    assert "kept 3 other processing entries, 1 source, 1 owner" in out
    assert volumes.IGNEOUS_ENTRY in history(foreign).foreign


# ------------------------------------------------------------------------ flush
def _spool_a_note(cloudpath):
    note = Note(utcnow(), NoteType.GENERIC, "written while the volume was away")
    with pytest.warns(ptb.SpoolWarning):
        spool.spool(cloudpath, {f"ptb/journal/{note.id}.json": envelope(note)}, reason="test")
    return note


def test_flush_uploads_what_was_spooled(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_volume(path)
    note = _spool_a_note(path)
    result = ptb_cli("flush")
    assert result.exit_code == 0 and result.stdout == "uploaded 1 spooled object; nothing remains\n"
    assert [n.id for n in ptb.parsenotes(path)] == [note.id]
    assert json.loads(ptb_cli("flush", "--json").stdout)["uploaded"] == 0


def test_flush_exits_1_while_something_remains(tmp_path, spool_dir):
    (tmp_path / "a-file").write_text("not a directory")
    _spool_a_note(f"file://{tmp_path / 'a-file' / 'vol'}")
    result = ptb_cli("flush")
    assert result.exit_code == 1
    assert result.stdout == f"uploaded 0 spooled objects; 1 still spooled in {spool_dir}\n"
    assert "ptb: warning:" in result.stderr and "still not writable" in result.stderr
    data = json.loads(ptb_cli("flush", "--json").stdout)
    assert data == {"uploaded": 0, "remaining": 1, "spool": str(spool_dir)}


# ------------------------------------------------------------------------- demo
def test_demo(tmp_path):
    result = ptb_cli("demo", tmp_path / "demo")
    if importlib.util.find_spec("ptb.demo") is None:
        assert result.exit_code == 1 and result.stderr.startswith("ptb: error: ptb demo is not available")
        return
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("documented a small pipeline on ")
    assert "process" in result.stdout and "run" in result.stdout
    assert "it is properly documented (`ptb check` passes)" in result.stdout
    path = f"file://{tmp_path / 'demo'}"
    assert f"is in {tmp_path / 'demo'}; next, try:" in result.stdout        # where it left the volume
    assert f"  ptb check {path}\n" in result.stdout and f"  ptb export {path} -f html -o demo.html" in result.stdout
    show = next(line.strip() for line in result.stdout.splitlines() if line.startswith("  ptb show "))
    assert ptb_cli(*show.split()[1:]).stdout.startswith("run ")              # the failed run, as suggested
    assert ptb_cli("check", path).exit_code == 0


def test_version_and_help():
    assert ptb_cli("--version").stdout == f"ptb, version {ptb.__version__}\n"
    out = ptb_cli("--help").stdout
    for command in ("check", "demo", "diff", "export", "flush", "log", "note", "show", "sync"):
        assert f"  {command} " in out


# --------------------------------------------------------- the real console script
@pytest.fixture
def console_script():
    exe = shutil.which("ptb")
    if exe is None:
        pytest.skip("the ptb console script is not installed (pip install -e .)")
    return exe


def test_console_script(console_script, good, tmp_path):
    path = good[0]
    done = subprocess.run([console_script, "log", path, "--failures"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert NEVER in done.stdout and "failed after 3.2 min" in done.stdout and "\x1b[" not in done.stdout
    bare = f"file://{tmp_path / 'bare'}"
    volumes.make_volume(bare)
    done = subprocess.run([console_script, "check", path, bare], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and f"ok    {path}" in done.stdout and f"FAIL  {bare}" in done.stdout
    assert done.stderr == ""           # no progress bar when stderr is not a terminal
    done = subprocess.run([console_script, "export", path, "-f", "prov-json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    ProvDocument.deserialize(content=done.stdout, format="json")
    done = subprocess.run([console_script, "show", path, "nosuchid"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("ptb: error: no process or run")
    assert "Traceback" not in done.stderr


def test_log_of_a_worker_killed_mid_run(console_script, tmp_path):
    """A SIGKILLed writer leaves a run that never finished, and ``ptb log`` says so."""
    if importlib.util.find_spec("ptb.run") is None:
        pytest.skip("ptb.run is not there yet")
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_volume(path)
    worker = textwrap.dedent(f"""
        import os, signal
        from ptb.block import documented
        with documented({path!r}, "segment slab 3", parameters={{"slab": 3}}):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", worker], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -9, done.stderr
    done = subprocess.run([console_script, "log", path, "--failures"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{NEVER}, " in done.stdout and "segment slab 3" in done.stdout
