"""Timeline rows, ``show`` and ``diff`` views over real volumes (ptb, 0.1.x, foreign).

``documented_volume`` and ``add_runs`` build the volumes the other reading tests
(check, export, cli) use too: processes through the seed API, runs journalled
as the instrumentation journals them (``running`` on entry, final on exit).
"""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
from types import SimpleNamespace

import pytest
import volumes

import ptb
from ptb.capture.docker import DockerEnv
from ptb.capture.git import PythonGithubEnv
from ptb.read import diff, fmt, show, timeline
from ptb.read.history import history
from ptb.records import Note, NoteType, RunRecord, new_id
from ptb.store import journal, updater
from ptb.store.volume import Volume

T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
SOURCE = "gs://lab/pinky/image"
ERROR = {"type": "ValueError", "message": "mip 7 does not exist", "traceback": "Traceback (most recent call last):\n"
         "  File \"mesh.py\", line 3, in mesh\nValueError: mip 7 does not exist"}


def add_runs(cloudpath, process, statuses=("succeeded", "failed", "running"), start=T0, user="alice"):
    """Runs of ``process`` as the instrumentation journals them; returns their ids in order."""
    records, ids = [], []
    for i, status in enumerate(statuses):
        rid = new_id()
        ids.append(rid)
        began = start + datetime.timedelta(minutes=10 * i)
        common = dict(user=user, host="node1", pid=1000 + i)
        records += [RunRecord(rid, process.description, process.key, "running", began, **common),
                    Note(began, NoteType.MOTIVATION, f"run {i}: meshes for round 3", run=rid)]
        if status != "running":
            seconds = 1.2 if status == "succeeded" else 190.0
            ended = began + datetime.timedelta(seconds=seconds)
            records += [RunRecord(rid, process.description, process.key, status, began, ended, seconds,
                                  error=ERROR if status == "failed" else None, resources={"cpu_time": 1.1},
                                  **common),
                        Note(ended, NoteType.RESULT, f"run {i} {status}", run=rid)]
    journal.append(Volume.resolve(cloudpath), records)
    return ids


def documented_volume(cloudpath, *, repo=None, sources=(SOURCE,), motivation=True, runs=True,
                      parameters=None, envs=None):
    """A volume documented with ptb: sources, a motivation, one process with code envs, three runs."""
    vol = volumes.make_volume(cloudpath)
    if sources:
        vol.provenance.sources = list(sources)
        vol.commit_provenance()
    if motivation:
        ptb.addmotivation(cloudpath, "meshes for proofreading round 3", timestamp=T0 - datetime.timedelta(hours=1))
    if envs is None:
        envs = [DockerEnv("lab/mesher", "v1", "sha256:aaa")] + ([PythonGithubEnv(str(repo))] if repo else [])
    params = {"mip": 2, "simplification": 40} if parameters is None else parameters
    process = ptb.logprocess(cloudpath, ptb.Process("meshing at 16x16x40", params, *envs))
    ids = add_runs(cloudpath, process) if runs else []
    updater.flush()      # the motivation note's view update, so later edits of the volume race with nothing
    return process, ids


def git(repo, *args):
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def ptb_volume(tmp_path):
    path = f"file://{tmp_path / 'meshes'}"
    process, ids = documented_volume(path)
    return path, process, ids


# ------------------------------------------------------------------ formatting
@pytest.mark.parametrize("seconds, text", [
    (0.000215, "0.2 ms"), (1e-5, "<0.1 ms"), (0.0, "0 ms"), (0.4, "400 ms"), (0.99999, "1 s"), (1.25, "1.2 s"),
    (12.0, "12 s"), (59.4, "59 s"), (59.6, "1 min"), (180, "3 min"), (90, "1.5 min"), (5400, "1.5 h"),
    (3 * 86400, "3 d"), (None, "-")])
def test_durations_read_like_a_human_wrote_them(seconds, text):
    assert fmt.fmt_duration(seconds) == text


def test_times_are_utc_iso():
    tz = datetime.timezone(datetime.timedelta(hours=2))
    assert fmt.fmt_time(datetime.datetime(2024, 5, 1, 14, 0, 5, 999, tzinfo=tz)) == "2024-05-01T12:00:05Z"
    assert fmt.fmt_time(None) == "-"


def test_since_takes_durations_and_iso_dates_naive_meaning_utc():
    now = datetime.datetime(2024, 5, 10, tzinfo=datetime.timezone.utc)
    assert fmt.parse_since("2h", now) == now - datetime.timedelta(hours=2)
    assert fmt.parse_since("30min", now) == now - datetime.timedelta(minutes=30)
    assert fmt.parse_since("1w", now) == now - datetime.timedelta(days=7)
    assert fmt.parse_since("2024-05-01") == datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    assert fmt.parse_since("2024-05-01T14:00+02:00") == T0
    with pytest.raises(ptb.InvalidInputError, match="neither a duration"):
        fmt.parse_since("yesterday")


def test_foreign_dates_are_read_leniently():
    assert fmt.parse_time("2022-08-01 10:00 UTC") == datetime.datetime(2022, 8, 1, 10, tzinfo=datetime.timezone.utc)
    assert fmt.parse_time("whenever") is None
    assert fmt.parse_time(None) is None


# -------------------------------------------------------------------- timeline
def test_timeline_of_a_ptb_volume_newest_last(ptb_volume):
    path, process, ids = ptb_volume
    rows = timeline.timeline(history(path))
    times = [r.time for r in rows]
    assert None not in times and times == sorted(times)
    assert [r.id for r in rows if r.kind == "run"] == ids
    runs = {r.id: r for r in rows if r.kind == "run"}
    assert runs[ids[0]].status == "succeeded" and runs[ids[0]].duration == 1.2
    assert runs[ids[1]].error == "ValueError: mip 7 does not exist"
    assert runs[ids[2]].status == "running" and runs[ids[2]].duration is None
    assert runs[ids[0]].user == "alice" and runs[ids[0]].host == "node1" and runs[ids[0]].pid == 1000
    assert [r.kind for r in rows].count("process") == 1
    notes = [r for r in rows if r.kind == "note"]
    assert {r.label for r in notes} == {"motivation", "result"}
    assert all(r.run in ids for r in notes if r.text.startswith("run "))


def test_rendered_log_says_what_happened(ptb_volume):
    path, process, ids = ptb_volume
    h = history(path)
    text = timeline.render_log(h, timeline.timeline(h))
    assert text.splitlines()[0] == path
    assert f"sources: {SOURCE}" in text
    assert "1 process, 3 runs (1 failed, 1 never finished), 6 notes, 0 foreign entries" in text
    assert "succeeded in 1.2 s, alice@node1 (pid 1000): meshing at 16x16x40" in text
    assert "failed after 3.2 min" in text and "ValueError: mip 7 does not exist" in text
    assert "never finished (worker died?)" in text
    assert "2024-05-01T12:00:00Z" in text
    assert process.key[:8] in text and all(i[:12] in text for i in ids)


def test_a_process_comes_before_its_first_run(tmp_path):
    """A run logs its process just after it starts; the log still reads process, run, notes."""
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_volume(path)

    @ptb.provenance(path, "smooth", motivation="why")
    def smooth(passes=1):
        return passes

    smooth(2)
    h = history(path)
    assert h.processes[0].timestamp > h.runs[0].started           # as the journal has them
    rows = [r for r in timeline.timeline(h) if r.kind != "foreign"]
    assert [r.label for r in rows] == ["process", "run", "motivation", "result"]
    assert rows[0].time == h.runs[0].started


def test_blank_lines_of_a_note_are_not_printed(ptb_volume):
    path, _, _ = ptb_volume
    ptb.addgeneric(path, "Fix the mip 7 check\n\nThe check read the wrong scale.\n")
    h = history(path)
    lines = timeline.render_log(h, timeline.timeline(h)).splitlines()
    first = next(i for i, line in enumerate(lines) if line.endswith("Fix the mip 7 check"))
    assert lines[first + 1].strip() == "The check read the wrong scale."
    assert h.notes[-1].content == "Fix the mip 7 check\n\nThe check read the wrong scale.\n"    # kept whole


def test_sizes_and_resources_read_like_a_human_wrote_them():
    assert [fmt.fmt_bytes(n) for n in (0, 1023, 1536, 116412416, 10 * 2**30)] == [
        "0 B", "1023 B", "1.5 KiB", "111 MiB", "10 GiB"]
    assert fmt.fmt_resources({"cpu_time_s": 1.9, "cpu_user_s": 1.8, "cpu_system_s": 3e-06,
                              "memory_bytes": 116412416, "peak_memory_bytes": 120000000}) == (
        "CPU 1.9 s (user 1.8 s, system <0.1 ms), memory 111 MiB, peak 114 MiB")
    assert fmt.fmt_resources({"cpu_time": 1.1, "memory_bytes": "lots"}) == "cpu_time=1.1, memory_bytes=lots"
    assert fmt.count(1, "process", "processes") == "1 process" and fmt.count(2000, "run") == "2,000 runs"


def test_filters(ptb_volume):
    path, process, ids = ptb_volume
    rows = timeline.timeline(history(path))
    failures = timeline.select(rows, failures=True)
    assert {r.id for r in failures if r.kind == "run"} == {ids[1], ids[2]}
    assert all(r.run in (ids[1], ids[2]) for r in failures if r.kind == "note")
    assert [r.kind for r in timeline.select(rows, types=["process"])] == ["process"]
    motivations = timeline.select(rows, types=["motivation"])
    assert len(motivations) == 4 and all(r.note_type == "MOTIVATION" for r in motivations)
    since = timeline.select(rows, since=T0 + datetime.timedelta(minutes=15))
    assert since and all(r.time >= T0 + datetime.timedelta(minutes=15) for r in since)
    assert timeline.select(rows, limit=2) == rows[-2:]
    assert timeline.select(rows, limit=0) == []
    with pytest.raises(ptb.InvalidInputError, match="unknown type"):
        timeline.select(rows, types=["bogus"])


def test_timeline_of_a_legacy_volume(legacy_volume):
    h = history(legacy_volume)
    rows = timeline.timeline(h)
    assert rows[0].kind == "process" and rows[0].time is None and rows[0].origin == "0.1.x"
    notes = [r for r in rows if r.kind == "note"]
    assert [n.text for n in notes] == [text for _, _, text in volumes.LEGACY_NOTES]
    assert all(n.origin == "0.1.x" and n.time is not None for n in notes)
    text = timeline.render_log(h, rows)
    assert "(undated)" in text and "watershed segmentation (mip=1, threshold=0.3)  [0.1.x]" in text
    assert "threshold; chosen by eye  [0.1.x]" in text


def test_timeline_of_foreign_entries(foreign_volume):
    h = history(foreign_volume)
    foreign = [r for r in timeline.timeline(h) if r.kind == "foreign"]
    igneous = next(r for r in foreign if r.user == "alice@lab.org")
    assert igneous.text == "DownsampleTask (mip=0, num_mips=2)"
    assert igneous.time == datetime.datetime(2022, 8, 1, 10, tzinfo=datetime.timezone.utc)
    assert igneous.entry == volumes.IGNEOUS_ENTRY
    hand = next(r for r in foreign if r.user == "bob")
    assert "hand-fixed slab 3" in hand.text and hand.time is None
    text = timeline.render_log(h, timeline.timeline(h))
    assert "owners:  alice@lab.org" in text and "DownsampleTask (mip=0, num_mips=2) by alice@lab.org" in text


def test_log_json_has_stable_keys(ptb_volume):
    path, _, _ = ptb_volume
    h = history(path)
    data = json.loads(json.dumps(timeline.log_json(h, timeline.timeline(h))))
    assert set(data) == {"volume", "sources", "owners", "problems", "rows"}
    keys = {frozenset(row) for row in data["rows"]}
    assert len(keys) == 1
    wanted = {"kind", "id", "time", "text", "status", "duration", "user", "host", "note_type", "run"}
    assert wanted <= set(next(iter(keys)))


# ------------------------------------------------------------------- ids, show
def test_short_ids_tell_records_apart_and_resolve_back(ptb_volume):
    path, process, ids = ptb_volume
    h = history(path)
    short = timeline.id_lengths(h)
    assert short(process.key, "process") == process.key[:8]
    assert all(i.startswith(short(i)) and len(short(i)) >= 12 for i in ids)   # longer if made in one 65 µs
    assert show.resolve(h, short(process.key, "process")) == h.process(process.key)
    assert show.resolve(h, process.id) == h.process(process.key)   # the record id works too, whole:
    with pytest.raises(ptb.InvalidInputError, match="no process or run"):   # time-ordered like run ids,
        show.resolve(h, process.id[:20])                                 # it would shadow their prefixes
    for rid in ids:
        assert show.resolve(h, short(rid)).id == rid
    with pytest.raises(ptb.InvalidInputError, match="ambiguous"):
        show.resolve(h, ids[0][:4])
    with pytest.raises(ptb.InvalidInputError, match="no process or run"):
        show.resolve(h, "zzzz")


def test_run_ids_have_one_width_however_long_the_history(tmp_path):
    """12 characters for a run, 8 for a process, on a new volume and after thousands of runs alike."""
    h = chunk_history_of(tmp_path, 1)
    widths = {len(timeline.id_lengths(h)(r.id)) for r in h.runs}
    longer = chunk_history_of(tmp_path / "b", 400)
    assert widths == {len(timeline.id_lengths(longer)(r.id)) for r in longer.runs} == {12}
    lines = timeline.render_log(longer, timeline.timeline(longer)).splitlines()
    columns = {line.index(": downsample") for line in lines if "  run  " in line}
    assert len(columns) == 1                                       # the text starts in one column


def test_only_ids_that_share_their_first_characters_are_shown_longer():
    stamp = "18ee8a211d7deb7a"                   # two runs started in the same nanosecond, on two hosts
    runs = [f"{stamp}b0e7b7cfb7", f"{stamp}c629721d22", "18ee8a300000000000000000aa"]
    keys = ["18ee8a30ffffffff", "0123456789abcdef"]   # a process key that shares a run id's first 8
    h = SimpleNamespace(processes=[SimpleNamespace(key=k) for k in keys], runs=[SimpleNamespace(id=r) for r in runs])
    short = timeline.id_lengths(h)
    assert [short(r) for r in runs] == [runs[0][:17], runs[1][:17], runs[2][:12]]
    assert [short(k, "process") for k in keys] == [keys[0][:9], keys[1][:8]]


def chunk_history_of(directory, n):
    """A volume with ``n`` runs of one process, started 1 ms apart, as a worker's loop of chunks starts them."""
    path = f"file://{directory}"
    volumes.make_volume(path)
    process = ptb.logprocess(path, ptb.Process("downsample", {"mip": 1}))
    first = int(new_id()[:16], 16)
    records = []
    for i in range(n):
        began = T0 + datetime.timedelta(milliseconds=i)
        rid = f"{first + i * 1_000_000:016x}{os.urandom(5).hex()}"
        records += [RunRecord(rid, "downsample", process.key, "running", began, user="alice", host="node1", pid=7),
                    RunRecord(rid, "downsample", process.key, "succeeded", began, began, 0.001, user="alice",
                              host="node1", pid=7)]
    journal.append(Volume.resolve(path), records)
    return history(path)


def test_show_a_process_with_its_environment_and_runs(tmp_path, git_repo):
    path = f"file://{tmp_path / 'vol'}"
    process, ids = documented_volume(path, repo=git_repo)
    h = history(path)
    view = show.show(h, process.key[:10])
    assert view["kind"] == "process" and view["run"] is None
    assert view["process"]["parameters"] == {"mip": 2, "simplification": 40}
    assert [r["id"] for r in view["runs"]] == ids
    assert len(view["envs"]) == 2 and all(isinstance(v, dict) for v in view["envs"].values())
    json.dumps(view)
    text = show.render_show(view)
    commit = git(git_repo, "rev-parse", "HEAD")
    assert f"commit hash: {commit}" in text and "image ID: sha256:aaa" in text
    assert "SECRETTOKEN" not in text and "https://github.com/lab/pipeline.git" in text
    assert "packages (" not in text and '"simplification": 40' in text
    assert re.search(r"packages: \d+ installed \(`ptb show --packages` lists them\)", text)
    assert "packages (" in show.render_show(view, packages=True)
    assert "never finished (worker died?)" in text


def test_show_a_failed_run_in_full(ptb_volume):
    path, process, ids = ptb_volume
    view = show.show(history(path), ids[1])
    assert view["kind"] == "run" and view["run"]["status"] == "failed"
    assert [n["content"] for n in view["notes"]] == ["run 1: meshes for round 3", "run 1 failed"]
    text = show.render_show(view)
    assert f"run {ids[1]}" in text and "failed after 3.2 min" in text
    assert "ValueError: mip 7 does not exist" in text and 'File "mesh.py", line 3' in text
    assert "who:         alice@node1 (pid 1001)" in text and "cpu_time=1.1" in text
    assert f"process {process.key}" in text


def test_show_gives_a_run_s_resources_in_human_units(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_volume(path)
    ptb.provenance(path, "step")(lambda: None)()
    h = history(path)
    view = show.show(h, h.runs[0].id)
    assert isinstance(view["run"]["resources"]["memory_bytes"], int)           # --json keeps the numbers
    line = next(line for line in show.render_show(view).splitlines() if "resources:" in line)
    assert re.fullmatch(r"  resources:   CPU \S+ m?s \(user \S+ m?s, system \S+ m?s\), "
                        r"memory [\d.]+ MiB, peak [\d.]+ MiB", line), line


def test_show_a_legacy_process_with_root_env_files(legacy_volume):
    h = history(legacy_volume)
    view = show.show(h, "legacy-")
    assert view["process"]["origin"] == "0.1.x"
    assert set(view["envs"]) == {volumes.LEGACY_ENV_FILE, volumes.LEGACY_DOCKER_FILE}
    text = show.render_show(view)
    assert "commit hash: 0123456789abcdef0123456789abcdef01234567" in text
    assert "packages: 2 installed" in text and "image name: lab/segmenter" in text and "[0.1.x]" in text
    assert "numpy==1.22.0" in show.render_show(view, packages=True)
    assert "runs: none recorded" in text


def test_show_names_the_packages_that_differ_from_the_process_s_other_runs():
    content = {"CodeEnv type": "PythonGithub", "packages": [["numpy", "1.26.0"], ["click", "8.1.7"]]}
    text = show.render_env("ptb/env/a.json", content, elsewhere={"numpy": ["1.25.2"], "click": ["8.1.7"]})
    assert "packages: 2 installed" in text
    assert "differ from the process's other runs: numpy==1.26.0 (other runs: 1.25.2)" in text
    assert "click" not in text


def test_show_says_when_an_env_file_is_missing(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    process, _ = documented_volume(path, runs=False)
    (tmp_path / "vol" / process.code_envfiles[0]).unlink()
    text = show.render_show(show.show(history(path), process.key))
    assert "(missing on the volume)" in text


# ------------------------------------------------------------------------ diff
def test_diff_two_processes_parameters_commit_diff_packages(tmp_path, git_repo):
    path = f"file://{tmp_path / 'vol'}"
    first, _ = documented_volume(path, repo=git_repo, runs=False)
    old_commit = git(git_repo, "rev-parse", "HEAD")
    (git_repo / "pipeline.py").write_text("def step(x):\n    return x + 2\n")
    git(git_repo, "commit", "-qam", "second step")
    (git_repo / "pipeline.py").write_text("def step(x):\n    return x + 3  # trying\n")
    envs = [DockerEnv("lab/mesher", "v2", "sha256:bbb"), PythonGithubEnv(str(git_repo))]
    second = ptb.logprocess(path, ptb.Process("meshing at 16x16x40", {"mip": 3, "simplification": 40}, *envs))
    h = history(path)
    view = diff.diff(h, first.key, second.key[:10])
    rows = {r["field"]: r for r in view["rows"]}
    assert rows["parameters.mip"] == {"field": "parameters.mip", "a": 2, "b": 3, "same": False}
    assert rows["parameters.simplification"]["same"]
    assert rows["description"]["same"]
    assert rows["env.PythonGithub.commit hash"]["a"] == old_commit
    assert rows["env.PythonGithub.commit hash"]["b"] == git(git_repo, "rev-parse", "HEAD")
    assert rows["env.PythonGithub.dirty"] == {"field": "env.PythonGithub.dirty", "a": False, "b": True, "same": False}
    assert rows["env.Docker.tag"]["a"] == "v1" and rows["env.Docker.tag"]["b"] == "v2"
    assert rows["env.PythonGithub.packages"]["same"]
    assert rows["env.PythonGithub.packages.pytest"]["same"]
    (unified,) = [t["unified"] for t in view["texts"] if t["field"] == "env.PythonGithub.diff"]
    assert "+    return x + 3  # trying" in unified
    text = diff.render_diff(view)
    assert "* parameters.mip" in text and "  parameters.simplification" in text
    assert "* env.PythonGithub.commit hash" in text and old_commit in text
    assert "packages.pytest" not in text and "identical environment details not shown" in text
    assert "packages.pytest" in diff.render_diff(view, all_rows=True)
    assert "+    return x + 3  # trying" in text


def test_diff_two_runs_compares_runs_and_their_process(ptb_volume):
    path, process, ids = ptb_volume
    view = diff.diff(history(path), ids[0], ids[1])
    assert view["a"] == {"kind": "run", "id": ids[0], "process": process.key}
    rows = {r["field"]: r for r in view["rows"]}
    assert rows["run.status"]["a"] == "succeeded" and rows["run.status"]["b"] == "failed"
    assert rows["parameters.mip"]["same"] and rows["env.Docker.image ID"]["same"]
    assert view["texts"] == []
    assert (rows["run.duration"]["a"], rows["run.duration"]["b"]) == (1.2, 190.0)     # --json: seconds
    line = next(line for line in diff.render_diff(view).splitlines() if "run.duration" in line)
    assert line.split()[-4:] == ["1.2", "s", "3.2", "min"]


def test_diff_against_a_legacy_process(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_legacy_volume(path)
    process = ptb.logprocess(path, ptb.Process("watershed segmentation", {"threshold": 0.4, "mip": 1},
                                               DockerEnv("lab/segmenter", "v4", "sha256:abcdef")))
    view = diff.diff(history(path), "legacy-", process.key)
    rows = {r["field"]: r for r in view["rows"]}
    assert rows["parameters.threshold"]["a"] == 0.3 and rows["parameters.threshold"]["b"] == 0.4
    assert rows["env.Docker.tag"]["a"] == "v3" and rows["env.Docker.tag"]["b"] == "v4"
    assert rows["env.PythonGithub"] == {"field": "env.PythonGithub", "a": volumes.LEGACY_ENV_FILE, "b": None,
                                        "same": False}
