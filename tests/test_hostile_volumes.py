"""A volume someone else wrote, read by us; a filesystem and a spool others share, written by us.

Each test builds the hostile volume or spool as an attacker with write access would (objects,
files and links put there directly), then runs the real readers and writers on it (``ptb``
through click's runner, ``ptb.history``, decorated calls) and shows the safe outcome: text made
visible, nothing read outside the volume, bounds hit as warnings naming the object, nothing
honest lost or hidden, nothing written through a link or outside the volume.
"""
from __future__ import annotations

import datetime
import hashlib
import http.server
import json
import os
import re
import stat
import threading
import warnings
from pathlib import Path
from typing import Dict, List

import brotli
import pytest
from click.testing import CliRunner
from volumes import make_volume

import ptb
from ptb.cli import main
from ptb.records import Note, ProcessRecord, RunRecord, envelope, new_id
from ptb.store import journal, spool, updater
from ptb.store.volume import Volume

SECRET = "S3CRET-the-reader-keeps-to-themselves"
# OSC 52 (clipboard), OSC 0 (window title), CSI 2J (clear screen), a bare CR, an 8-bit CSI, a bidi override
HOSTILE = "\x1b]52;c;cHduZWQ=\x07 \x1b]0;owned\x07 \x1b[2J\rover \x9b31m \u202egnp.exe"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")     # \r counted; \n and \t are not
T0 = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)


def cli(*args, color=False):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, color=color)


def raw_controls(text: str) -> List[str]:
    return RAW.findall(text.replace("\r\n", "\n"))


def new_volume(tmp_path: Path, name: str = "vol") -> str:
    cloudpath = f"file://{tmp_path / name}"
    make_volume(cloudpath)
    return cloudpath


def volume_bytes(root: Path) -> bytes:
    """Every file under ``root``, links not followed (what the volume itself holds)."""
    updater.flush()
    found = []
    for directory, _, files in os.walk(root):
        found += [Path(directory, f).read_bytes() for f in files if not os.path.islink(os.path.join(directory, f))]
    return b"\n".join(found)


def deep(levels: int = 100_000) -> str:
    return "[" * levels + "]" * levels


def a_failed_run(cloudpath: str, description: str = "meshing", **fields) -> Dict:
    """A process and one failed run of it, journalled as ptb writes them; returns their records and rids."""
    vol = Volume.resolve(cloudpath)
    process = ProcessRecord(description, {"mip": 2}, id=new_id(), timestamp=T0)
    run_id = new_id()
    start = RunRecord(run_id, description, process.key, "running", T0, **fields)
    end = RunRecord(run_id, description, process.key, "failed", T0, T0 + datetime.timedelta(seconds=3), 3.0,
                    error={"type": "ValueError", "message": "mip 7 does not exist"}, **fields)
    journal.append(vol, [process, start])
    (end_rid, _), = journal.append(vol, [end])
    return {"process": process, "run": end, "end_rid": end_rid}


# ------------------------------------------------------------------ 1. terminal escapes
@pytest.fixture
def escapes(tmp_path):
    """A volume whose every text holds terminal escapes: notes, descriptions, parameters, who, errors, keys."""
    cloudpath = new_volume(tmp_path)
    vol = Volume.resolve(cloudpath)
    prov = vol.read_provenance()
    prov.update(sources=[HOSTILE], owners=[HOSTILE])
    prov["processing"].append({"method": {"task": HOSTILE, HOSTILE: HOSTILE}, "by": HOSTILE, "date": "2024-05-01"})
    vol.put_json("provenance", prov)
    process = ProcessRecord(HOSTILE, {HOSTILE: HOSTILE}, id=new_id(), timestamp=T0)
    run_id = new_id()
    run = RunRecord(run_id, HOSTILE, process.key, "failed", T0, T0, 1.0, user=HOSTILE, host=HOSTILE, pid=7,
                    error={"type": "Boom" + HOSTILE, "message": HOSTILE, "traceback": HOSTILE},
                    parameters={HOSTILE: HOSTILE})
    journal.append(vol, [process, run, Note(T0, "GENERIC", HOSTILE, run=run_id)])
    vol.put_json(f"ptb/journal/{HOSTILE}.json", '{"not": "a record"}')       # a key name with escapes
    return cloudpath, process, run


def test_terminal_escapes_from_a_volume_are_shown_visible_by_every_reader(escapes):
    cloudpath, process, run = escapes
    for args in (["log", cloudpath], ["log", "--runs", cloudpath], ["show", cloudpath, run.id],
                 ["show", cloudpath, process.key], ["diff", cloudpath, process.key, run.id], ["check", cloudpath],
                 ["export", cloudpath, "-f", "dot"], ["export", cloudpath, "-f", "html"],
                 ["export", cloudpath, "-f", "prov-n"], ["export", cloudpath, "-f", "prov-json"]):
        result = cli(*args)
        assert raw_controls(result.stdout) == [], (args, result.stdout)
        assert raw_controls(result.stderr) == [], (args, result.stderr)
        if args[0] in ("log", "show"):
            assert "\\x1b]52;c;cHduZWQ=\\x07" in result.stdout and "\\rover \\x9b31m \\u202e" in result.stdout
    warned = cli("log", cloudpath).stderr          # the key name with escapes, in a warning
    assert "ptb: warning:" in warned and "\\x1b]0;owned\\x07" in warned


def test_only_ptbs_own_colours_reach_a_colour_terminal(escapes):
    cloudpath, _, _ = escapes
    out = cli("log", cloudpath, color=True).stdout
    assert "\x1b[" in out                                   # ptb's colours are there...
    assert re.sub(r"\x1b\[[0-9;]*m", "", out).count("\x1b") == 0     # ...and nothing else is an escape
    assert raw_controls(re.sub(r"\x1b\[[0-9;]*m", "", out)) == []


def test_json_output_is_exact_and_still_escapes_every_control(escapes):
    cloudpath, process, run = escapes
    logged = cli("log", "--json", cloudpath).stdout
    shown = cli("show", "--json", cloudpath, run.id).stdout
    assert raw_controls(logged) == [] and raw_controls(shown) == []
    data = json.loads(logged)                                       # the exact values, for scripts
    assert data["sources"] == [HOSTILE] and data["owners"] == [HOSTILE]
    assert {row["text"] for row in data["rows"]} >= {HOSTILE}
    assert [n["content"] for n in json.loads(shown)["notes"]] == [HOSTILE]
    assert json.loads(shown)["run"]["parameters"] == {HOSTILE: HOSTILE}


def test_warnings_of_the_library_show_escapes_visible(escapes):
    cloudpath, _, _ = escapes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ptb.history(cloudpath)
    messages = [str(w.message) for w in caught]
    assert any("\\x1b]0;owned" in m for m in messages)
    assert all(raw_controls(m) == [] for m in messages)


# ------------------------------------------------------------- 2. paths out of the volume
def test_code_environment_paths_are_read_inside_the_volume_or_not_at_all(tmp_path):
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"CodeEnv type": "PythonGithub", "token": SECRET}))
    cloudpath = new_volume(tmp_path)
    root = tmp_path / "vol"
    (root / "ptb" / "env").mkdir(parents=True)
    os.symlink(private, root / "ptb" / "env" / "linked.json")
    escaping = ["../private.json", str(private), "ptb/env/../../../private.json", "/etc/passwd",
                "../../../../../../../../etc/passwd", "ptb/env//x.json"]
    process = ProcessRecord("step", {"a": 1}, (*escaping, "ptb/env/linked.json", "info"), id=new_id())
    journal.append(Volume.resolve(cloudpath), [process])

    for args in (["show", cloudpath, process.key], ["show", "--json", cloudpath, process.key],
                 ["export", cloudpath, "-f", "html"], ["diff", cloudpath, process.key, process.key]):
        result = cli(*args)
        assert SECRET not in result.stdout + result.stderr and "root:x:0" not in result.stdout, args
    with pytest.warns(UserWarning, match="not a path inside the volume"):
        envs = ptb.history(cloudpath).envs
    assert set(envs) == {"ptb/env/linked.json", "info"}
    assert envs["ptb/env/linked.json"] == {"refused": envs["ptb/env/linked.json"]["refused"]}
    assert "symbolic link" in envs["ptb/env/linked.json"]["refused"]

    checked = cli("check", "--json", cloudpath)
    assert checked.exit_code == 1
    problems = "\n".join(json.loads(checked.stdout)["volumes"][0]["problems"])
    for path in escaping:
        assert f"code environment {path!r}" in problems and "not a path inside the volume" in problems
    assert "info cannot be used: it is not a code environment" in problems   # no longer accepted
    assert "linked.json cannot be used" in problems and SECRET not in problems


class _Server(http.server.ThreadingHTTPServer):
    requests: List[str] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):   # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        body = json.dumps({"description": SECRET, "sources": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_upstream_follows_only_volumes_unless_asked(tmp_path, http_server):
    web = f"http://127.0.0.1:{http_server.server_address[1]}/vol"
    plain = tmp_path / "home-dir"          # a local directory that is no volume, holding a provenance-like file
    plain.mkdir()
    (plain / "provenance").write_text(json.dumps({"description": SECRET, "sources": []}))
    endpoint = f"s3://http://127.0.0.1:{http_server.server_address[1]}/bucket/vol"
    upstream = new_volume(tmp_path, "upstream")
    cloudpath = new_volume(tmp_path)
    vol = Volume.resolve(cloudpath)
    vol.put_json("provenance", {**vol.read_provenance(), "sources": [web, f"file://{plain}", endpoint, upstream]})
    ptb.addmotivation(upstream, "the raw images")

    for fmt in ("html", "dot", "prov-json"):
        result = cli("export", cloudpath, "-f", fmt, "--upstream")
        assert result.exit_code == 0 and SECRET not in result.stdout
        assert "the raw images" in result.stdout or fmt == "dot"       # a volume source is still followed
    assert http_server.requests == []
    external = ptb.read.lineage.lineage(cloudpath, upstream=True).external
    assert all(external[key].startswith("not followed") for key in (web, f"file://{plain}", endpoint))

    opted = cli("export", cloudpath, "-f", "html", "--upstream", "--any-source")
    assert opted.exit_code == 0 and http_server.requests != []         # the user asked for it
    assert SECRET in opted.stdout                                      # and the local directory was read


# --------------------------------------------------------------------------- 3. the spool
def test_flush_writes_only_journal_and_env_keys_of_the_volume_and_keeps_the_rest(tmp_path, spool_dir):
    cloudpath = new_volume(tmp_path)
    root = tmp_path / "vol"
    view_before = (root / "provenance").read_bytes()
    note = Note(T0, "GENERIC", "honest, spooled while the volume was away")
    with pytest.warns(ptb.SpoolWarning):
        directory = spool.spool(cloudpath, {f"ptb/journal/{note.id}.json": envelope(note)}, reason="test")
    forged = {"ptb%2Fjournal%2F..%2F..%2F..%2Fescaped.json": "{}",
              "ptb%2Fjournal%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fescaped2.json": "{}",
              "provenance": json.dumps({"description": "replaced", "processing": []}),
              "info": "{}", "ptb%2Fjournal%2Fsub%2Fx.json": "{}", "..%2F..%2Fup.json": "{}"}
    for name, text in forged.items():
        (directory / name).write_text(text)

    result = cli("flush")
    assert result.exit_code == 1                      # something remains: what was kept
    assert f"uploaded 1 spooled object; {len(forged)} still spooled" in result.stdout
    assert result.stderr.count("is kept in the spool, not uploaded") == len(forged)
    assert [n.content for n in ptb.history(cloudpath).notes] == [note.content]
    assert (root / "provenance").read_bytes() != b"" and b"replaced" not in (root / "provenance").read_bytes()
    assert json.loads((root / "provenance").read_bytes())["description"] == json.loads(view_before)["description"]
    assert not list(tmp_path.rglob("escaped*.json")) and not list(tmp_path.rglob("up.json"))
    assert sorted(p.name for p in directory.iterdir() if p.name != spool.VOLUME_FILE) == sorted(forged)


def test_the_spool_is_private_whatever_the_umask(tmp_path, spool_dir):
    old = os.umask(0)
    try:
        with pytest.warns(ptb.SpoolWarning):
            directory = spool.spool("file:///nowhere/vol", {"ptb/journal/x.json": {"rid": "x"}}, reason="test")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}
    assert re.fullmatch(r"[0-9a-f]{16}-\w{8}", directory.name)          # a random part: not predictable


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's directory needs root")
def test_a_spool_directory_another_user_made_is_never_used(tmp_path, spool_dir):
    victim = new_volume(tmp_path, "victim")
    attacker = new_volume(tmp_path, "attacker")
    spool_dir.mkdir(mode=0o1777)
    planted = []
    for name in (hashlib.sha256(victim.encode()).hexdigest()[:16], "0000-planted"):
        trap = spool_dir / name         # at the name an older ptb used, and anywhere else
        trap.mkdir(mode=0o700)
        (trap / spool.VOLUME_FILE).write_text(json.dumps({"cloudpath": victim if "planted" in name else attacker}))
        forged = Note(T0, "RESULT", "forged by another user")
        (trap / f"ptb%2Fjournal%2F{forged.id}.json").write_text(json.dumps(envelope(forged)))
        for path in (trap, *trap.iterdir()):
            os.chown(path, 54321, 54321)
        planted.append(trap)
    note = Note(T0, "GENERIC", "the victim's record")
    with pytest.warns(ptb.SpoolWarning):
        directory = spool.spool(victim, {f"ptb/journal/{note.id}.json": envelope(note)}, reason="test")
    assert directory not in planted and directory.stat().st_uid == os.getuid()
    assert ptb.flush() == (1, 0)
    assert [n.content for n in ptb.history(victim).notes] == ["the victim's record"]
    assert ptb.history(attacker).notes == []
    assert all(len(list(trap.iterdir())) == 2 for trap in planted)          # another user's: left alone


# ------------------------------------------------------------------- 4. links on file://
def test_a_provenance_link_to_a_private_file_is_never_read_nor_copied(tmp_path):
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"description": SECRET, "sources": ["x"], "processing": []}))
    cloudpath = new_volume(tmp_path)
    root = tmp_path / "vol"
    (root / "provenance").unlink()
    os.symlink(private, root / "provenance")
    called = []

    @ptb.provenance(cloudpath, "a step")
    def step() -> None:
        called.append(1)

    with pytest.raises(ptb.CorruptProvenanceError, match="symbolic link"):
        step()
    assert called == []                                       # refused before the user's code ran
    noted = cli("note", cloudpath, "--generic", "hello")
    synced = cli("sync", cloudpath)
    assert synced.exit_code == 1 and "symbolic link" in synced.stderr
    assert "symbolic link" in noted.stderr
    assert "symbolic link" in cli("log", cloudpath).stdout   # a problem line; the journal is still shown
    assert SECRET.encode() not in volume_bytes(root)
    assert os.path.islink(root / "provenance") and SECRET in private.read_text()


def test_a_journal_linked_to_another_volumes_is_not_read_nor_packed_away(tmp_path):
    other = new_volume(tmp_path, "other")
    a_failed_run(other)
    ptb.addmotivation(other, "their own history")
    their_journal = sorted(os.listdir(tmp_path / "other" / "ptb" / "journal"))
    cloudpath = new_volume(tmp_path)
    (tmp_path / "vol" / "ptb").mkdir()
    os.symlink(tmp_path / "other" / "ptb" / "journal", tmp_path / "vol" / "ptb" / "journal")

    synced = cli("sync", cloudpath)
    assert "not reading" in synced.stderr and "symbolic link" in synced.stderr
    assert sorted(os.listdir(tmp_path / "other" / "ptb" / "journal")) == their_journal
    theirs = ptb.history(other)
    assert len(theirs.runs) == 1 and [n.content for n in theirs.notes] == ["their own history"]
    with pytest.warns(UserWarning, match="symbolic link"):
        assert ptb.history(cloudpath).runs == []


def test_a_lock_link_creates_nothing_at_its_target(tmp_path):
    cloudpath = new_volume(tmp_path)
    (tmp_path / "vol" / "ptb").mkdir()
    target = tmp_path / "created-through-the-link"
    os.symlink(target, tmp_path / "vol" / "ptb" / "view.lock")

    @ptb.provenance(cloudpath, "a step")
    def step(x: int) -> int:
        return x + 1

    with pytest.warns(ptb.ViewWarning, match="symbolic link"):
        assert step(1) == 2                                  # the call succeeds; its records are journalled
    assert cli("sync", cloudpath).exit_code == 1
    assert not target.exists() and os.path.islink(tmp_path / "vol" / "ptb" / "view.lock")
    assert [r.status for r in ptb.history(cloudpath).runs] == ["succeeded"]


# ------------------------------------------------------------------- 5. decompression bombs
_BOMB: List[bytes] = []


def bomb() -> bytes:
    """About 300 bytes of brotli that inflate to more than ptb's bound (made once)."""
    if not _BOMB:
        from ptb.store.bounded import MAX_INFLATED

        _BOMB.append(brotli.compress(b" " * (MAX_INFLATED + 1024 * 1024), quality=5))
    return _BOMB[0]


def test_a_bomb_segment_is_skipped_by_name_and_the_rest_is_shown(cloudpath):
    from cloudfiles import CloudFiles

    make_volume(cloudpath)
    honest = a_failed_run(cloudpath)
    CloudFiles(cloudpath).put("ptb/segments/0000bomb.json", bomb(), compress="br", raw=True)
    with pytest.warns(journal.RecordWarning, match=r"0000bomb\.json.*inflates past"):
        found = ptb.history(cloudpath)
    assert [r.status for r in found.runs] == ["failed"] and found.runs[0].id == honest["run"].id
    checked = ptb.check(cloudpath)
    assert any("0000bomb.json" in p for p in checked.problems)


# ---------------------------------------------------------------------- 6. deep nesting
def test_json_nested_a_hundred_thousand_levels_deep_is_refused_by_name_everywhere(tmp_path):
    cloudpath = new_volume(tmp_path)
    vol = Volume.resolve(cloudpath)
    honest = a_failed_run(cloudpath)
    vol.put_json("ptb/journal/deep-object.json", deep())
    vol.put_json("ptb/segments/deep-segment.json", '{"v": 1, "records": ' + deep() + "}")
    vol.put_json("ptb/env/deep-env.json", deep())
    uses = ProcessRecord("uses a deep env", {"a": 1}, ("ptb/env/deep-env.json",), id=new_id())
    journal.append(vol, [uses])

    logged = cli("log", cloudpath)
    assert logged.exit_code == 0 and "mip 7 does not exist" in logged.stdout
    for name in ("deep-object.json", "deep-segment.json"):
        assert name in logged.stderr
    assert "nested deeper than" in logged.stderr and "Traceback" not in logged.stderr
    shown = cli("show", cloudpath, uses.key)
    assert shown.exit_code == 0
    assert cli("sync", cloudpath).exit_code == 0
    with pytest.warns(journal.RecordWarning, match="nested deeper than"):
        assert [r.id for r in ptb.history(cloudpath).runs] == [honest["run"].id]

    other = new_volume(tmp_path, "other")
    (tmp_path / "other" / "provenance").write_text(deep())
    checked = cli("check", other, cloudpath)                      # the first does not stop the second
    assert checked.stdout.count("FAIL") == 2 and "nested deeper than" in checked.stdout
    assert "deep-env.json cannot be used: it is nested deeper than" in checked.stdout

    @ptb.provenance(other, "a step")
    def step() -> int:
        return 1

    with pytest.raises(ptb.CorruptProvenanceError, match="nested deeper than"):
        step()


# --------------------------------------------------------------- 7. time on a bad provenance
def test_a_large_provenance_that_does_not_parse_is_parsed_once_and_never_by_json5(tmp_path, monkeypatch):
    import json5

    calls = []
    real = json5.loads
    monkeypatch.setattr(json5, "loads", lambda text, *a, **k: calls.append(len(text)) or real(text, *a, **k))
    cloudpath = new_volume(tmp_path)
    vol = Volume.resolve(cloudpath)
    big = '{"description": "' + "x" * 1024 * 1024 + '", oops}'
    (tmp_path / "vol" / "provenance").write_text(big)
    with pytest.raises(ptb.CorruptProvenanceError, match="too large for the JSON5 fallback"):
        vol.read_provenance()
    assert len(big) not in calls               # json5 takes about 13 s a megabyte: never given one
    # (the view thread of an earlier test may parse some other file meanwhile: only these texts are counted)
    small = '{"description": "' + "x" * 8000 + '", oops}'
    (tmp_path / "vol" / "provenance").write_text(small)
    with pytest.raises(ptb.CorruptProvenanceError):
        vol.read_provenance()                  # read again for a second (torn?), but parsed once
    assert calls.count(len(small)) == 1
    (tmp_path / "vol" / "provenance").write_text('{"description": "hand-edited", /* a comment */ "sources": []}')
    assert vol.read_provenance()["description"] == "hand-edited"      # JSON5 still read, as CloudVolume does


# ------------------------------------------------------------- 8. forged twins of a record
def test_a_forged_twin_of_a_failed_run_is_kept_flagged_and_never_hides_the_failure(tmp_path):
    cloudpath = new_volume(tmp_path)
    vol = Volume.resolve(cloudpath)
    honest = a_failed_run(cloudpath)
    forged = envelope(RunRecord(honest["run"].id, "meshing", honest["process"].key, "succeeded", T0,
                                T0 + datetime.timedelta(seconds=3), 3.0), rid=honest["end_rid"])
    vol.put_json("ptb/journal/ffffffffffffffffffffffffff.json", json.dumps(forged))

    def read() -> ptb.History:
        with pytest.warns(journal.RecordWarning, match=f"two different records claim one id.*{honest['end_rid']}"):
            return ptb.history(cloudpath)

    assert [r.status for r in read().runs] == ["failed"]
    assert cli("sync", cloudpath).exit_code == 0
    assert vol.list(journal.JOURNAL) == []                            # packed...
    with pytest.warns(journal.RecordWarning):
        bodies = [e for e in journal.read_envelopes(vol).values() if e["rid"] == honest["end_rid"]]
    assert sorted(e["status"] for e in bodies) == ["failed", "succeeded"]     # ...with both bodies kept
    assert [r.status for r in read().runs] == ["failed"]
    for _ in range(journal.MAX_SEGMENTS + 1):                          # and merging segments keeps both too
        journal.append(vol, [Note(T0, "GENERIC", "more")])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", journal.RecordWarning)
            journal.pack(vol)
    with pytest.warns(journal.RecordWarning):
        bodies = [e for e in journal.read_envelopes(vol).values() if e["rid"] == honest["end_rid"]]
    assert len(vol.list(journal.SEGMENTS)) <= journal.MAX_SEGMENTS and len(bodies) == 2


# --------------------------------------------------------------- 9. modes and temporary files
def test_a_shared_provenance_keeps_its_mode_when_replaced(tmp_path):
    cloudpath = new_volume(tmp_path)
    view = tmp_path / "vol" / "provenance"
    os.chmod(view, 0o664)
    old = os.umask(0o077)
    try:
        ptb.addmotivation(cloudpath, "a note from a user with a private umask")
        updater.flush()
    finally:
        os.umask(old)
    assert "a private umask" in view.read_text()
    assert stat.S_IMODE(view.stat().st_mode) == 0o664


def test_temporary_files_of_a_killed_writer_are_swept_and_a_live_ones_kept(tmp_path):
    cloudpath = new_volume(tmp_path)
    a_failed_run(cloudpath)
    root = tmp_path / "vol"
    stale = [root / ".provenance.tmp-0123456789ab", root / "ptb" / "journal" / ".x.json.tmp-0123456789ab"]
    live = root / ".provenance.tmp-ba9876543210"
    foreign = root / ".provenance.tmp-notours"               # not a name ptb makes: not ptb's to remove
    for path in (*stale, live, foreign):
        path.write_text("{")
    an_hour_ago = datetime.datetime.now().timestamp() - 3600
    for path in (*stale, foreign):
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert cli("sync", cloudpath).exit_code == 0
    assert not any(path.exists() for path in stale)
    assert live.exists() and foreign.exists()


# -------------------------------------------------------------- 10. a bad journal object is named
def test_a_journal_object_that_is_json_but_not_a_record_is_named(tmp_path):
    cloudpath = new_volume(tmp_path)
    Volume.resolve(cloudpath).put_json("ptb/journal/some-object.json", '{"hello": "world"}')
    with pytest.warns(journal.RecordWarning, match=r"ptb/journal/some-object\.json: not a ptb record"):
        ptb.history(cloudpath)


def test_a_record_over_the_size_bound_is_not_read_and_its_object_never_packed(tmp_path):
    cloudpath = new_volume(tmp_path)
    vol = Volume.resolve(cloudpath)
    small, big = Note(T0, "GENERIC", "small"), Note(T0, "GENERIC", "x" * (journal.MAX_RECORD_BYTES + 1))
    batch = {"batch": big.id, "records": [envelope(small), envelope(big)], "v": 1}
    vol.put_json(f"ptb/journal/{big.id}.json", json.dumps(batch))      # what ptb's own writer refuses to write
    with pytest.warns(journal.RecordWarning, match=f"{big.id}.json: record.s. {big.id} over the"):
        assert [n.content for n in ptb.history(cloudpath).notes] == ["small"]
    with pytest.warns(journal.RecordWarning, match="left in the journal, unpacked"):
        journal.pack(vol)
    assert vol.list(journal.JOURNAL) == [f"ptb/journal/{big.id}.json"]
