"""``ptb.read.runsummary``: a process of thousands of runs summed up, in ``ptb log``, ``ptb show``, DOT and HTML.

Most tests build a ``History`` in memory (no storage: thousands of runs in
milliseconds); the last ones go through the real decorator and the real
command. ``test_chunkscale.py`` does it all with real worker processes.
"""
from __future__ import annotations

import datetime
import json

import pytest
from click.testing import CliRunner
from prov.model import ProvDocument
from test_export import parse_html

import ptb
import ptb.testing
from ptb.capture.params import REDACTED
from ptb.cli import main
from ptb.read import diff, runsummary, show, timeline
from ptb.read.export import Lineage, export, to_dot
from ptb.read.history import History
from ptb.read.page import to_html
from ptb.records import Note, NoteType, ProcessRecord, RunRecord, new_id

T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
ERROR = {"type": "ValueError", "message": "chunk has no data", "traceback": "Traceback ...\nValueError"}


def bbox(i):
    return [64 * i, 0, 0, 64 * (i + 1), 64, 64]


def chunk_history(n, failed=(3, 7), running=(11,), hosts=4, minutes=40, description="downsample"):
    """A step run once per chunk: ``n`` runs of one process over ``minutes``, on ``hosts`` hosts.

    Run ``i`` lasts ``i + 1`` ms (so the statistics are known), each has a motivation and a result note.
    """
    process = ProcessRecord(description, {"mip": 0}, timestamp=T0)
    runs, notes = [], []
    for i in range(n):
        began = T0 + datetime.timedelta(seconds=minutes * 60 * i / max(n - 1, 1))
        status = "failed" if i in failed else "running" if i in running else "succeeded"
        took = (i + 1) / 1000
        done = status != "running"
        run = RunRecord(new_id(), description, process.key, status, began,
                        began + datetime.timedelta(seconds=took) if done else None, took if done else None,
                        user="alice", host=f"node{i % hosts}", pid=100 + i % hosts,
                        error=ERROR if status == "failed" else None, parameters={"bbox": bbox(i)})
        runs.append(run)
        notes.append(Note(began, NoteType.MOTIVATION, "mip 1 for proofreading", run=run.id))
        if done:
            notes.append(Note(run.ended, NoteType.RESULT, f"{status} in {took * 1000:.0f} ms", run=run.id))
    notes.append(Note(T0 + datetime.timedelta(hours=1), NoteType.RESULT, "mip 1 looks right"))
    return History("file:///lab/pinky/image", [process], runs, notes, [], {"sources": ["gs://lab/raw"]}, {})


# -------------------------------------------------------------------- summary
def test_the_summary_line_counts_statuses_span_and_hosts():
    h = chunk_history(2000, failed=(3, 7), running=())
    (summary,) = runsummary.by_process(h).values()
    assert summary.line() == "downsample: 2,000 runs — 1,998 succeeded, 2 failed — 12:00–12:40 on 4 hosts"
    assert summary.by_host == {"node0": 500, "node1": 500, "node2": 500, "node3": 500}
    assert summary.grouped and [r.parameters["bbox"] for r in summary.problems] == [bbox(3), bbox(7)]


def test_durations_median_p95_max():
    h = chunk_history(100, failed=(), running=())          # 1 ms .. 100 ms
    (summary,) = runsummary.by_process(h).values()
    assert (summary.median, summary.p95, summary.longest) == (0.05, 0.095, 0.1)
    assert summary.durations_text() == "median 50 ms, p95 95 ms, max 100 ms"
    assert runsummary.percentile([], 0.5) is None and runsummary.percentile([3.0], 0.95) == 3.0


def test_never_finished_runs_are_problems_and_have_no_duration():
    h = chunk_history(20, failed=(), running=(4, 9))
    (summary,) = runsummary.by_process(h).values()
    assert summary.by_status == {"succeeded": 18, "running": 2}
    assert summary.counts_text() == "18 succeeded, 2 never finished"
    assert [r.status for r in summary.problems] == ["running", "running"]
    assert summary.longest == 0.02                          # the runs that never finished have no duration


def test_a_span_across_days_says_the_dates():
    h = chunk_history(20, minutes=3 * 24 * 60)
    (summary,) = runsummary.by_process(h).values()
    assert summary.span_text() == "2024-05-01T12:00Z–2024-05-04T12:00Z"


# ------------------------------------------------------------------- ptb log
def lines_of(h, rows):
    return timeline.render_log(h, rows).splitlines()[4:]


def test_log_groups_a_process_of_many_runs_and_lists_its_problems():
    h = chunk_history(2000)
    out = lines_of(h, runsummary.grouped(h, timeline.timeline(h)))
    text = "\n".join(out)
    assert len(out) < 20, text
    assert ("runs        " in out[1] and
            out[1].endswith("downsample: 2,000 runs — 1,997 succeeded, 2 failed, 1 never finished — 12:00–12:40 "
                            "on 4 hosts"))
    problems = [line for line in out if "  run  " in line]
    assert len(problems) == 3 and all(f"bbox={bbox(i)}" in line for i, line in zip((3, 7, 11), problems))
    assert "ValueError: chunk has no data" in text and "never finished (worker died?)" in text
    assert "1,997 motivation notes of these runs not shown: mip 1 for proofreading (×1,997)" in text
    assert "1,997 result notes of these runs not shown; --runs lists them" in text
    assert out[-1].endswith("mip 1 looks right")            # a note of no run is kept
    assert f"  {h.processes[0].key[:8]}  " in out[1]         # the id to type into `ptb show`
    notes_row = next(r for r in runsummary.grouped(h, timeline.timeline(h)) if r.kind == "notes")
    assert "--runs" not in notes_row.text                   # the hint is the command line's, not the page's


def test_a_process_with_few_runs_is_listed_run_by_run():
    h = chunk_history(runsummary.GROUP_AT - 1, failed=(3,), running=())
    rows = timeline.timeline(h)
    assert runsummary.grouped(h, rows) == rows
    h = chunk_history(runsummary.GROUP_AT, failed=(3,), running=())
    assert [r.kind for r in runsummary.grouped(h, timeline.timeline(h))].count("run") == 1


def test_filters_then_grouping_counts_what_was_selected():
    h = chunk_history(2000)
    rows = timeline.timeline(h)
    failures = runsummary.grouped(h, timeline.select(rows, failures=True))
    assert failures[0].kind == "runs"
    assert failures[0].text == "downsample: 3 of 2,000 runs — 2 failed, 1 never finished — 12:00–12:00 on 1 host"
    assert [r.kind for r in failures[1:]].count("run") == 3 and "notes" not in {r.kind for r in failures}
    only_runs = runsummary.grouped(h, timeline.select(rows, types=["run"]))
    assert [r.kind for r in only_runs] == ["runs", "run", "run", "run"]
    motivations = runsummary.grouped(h, timeline.select(rows, types=["motivation"]))
    assert [r.kind for r in motivations] == ["note", "note", "note", "notes"]


def test_json_rows_stay_complete_with_every_runs_values():
    h = chunk_history(500)
    data = json.loads(json.dumps(timeline.log_json(h, timeline.timeline(h))))
    runs = [r for r in data["rows"] if r["kind"] == "run"]
    assert len(runs) == 500 and [r["parameters"]["bbox"] for r in runs] == [bbox(i) for i in range(500)]
    assert len({frozenset(r) for r in data["rows"]}) == 1


# ------------------------------------------------------------------ ptb show
def test_show_a_process_sums_up_its_runs_and_lists_the_failures():
    h = chunk_history(2000)
    view = show.show(h, h.processes[0].key)
    assert len(view["runs"]) == 2000 and len(view["notes"]) == 3999          # the JSON stays complete
    assert view["summary"]["by_status"] == {"succeeded": 1997, "failed": 2, "running": 1}
    assert view["summary"]["duration"] == {"median": 1.001, "p95": 1.901, "max": 2.0}     # of 1,999 finished
    text = show.render_show(view)
    assert "  runs:        2,000 runs — 1,997 succeeded, 2 failed, 1 never finished — 12:00–12:40 on 4 hosts" in text
    assert "  by host:     node0 500, node1 500, node2 500, node3 500" in text
    assert "  duration:    median 1 s, p95 1.9 s, max 2 s" in text
    assert "  failures (3):" in text and text.count("ValueError: chunk has no data") == 2
    assert all(f"      values: bbox={bbox(i)}" in text for i in (3, 7, 11))
    assert "(3,994 notes of the other runs not shown" in text and len(text.splitlines()) < 40


def test_show_a_process_with_few_runs_lists_each_with_its_values():
    h = chunk_history(3, failed=(1,), running=())
    text = show.render_show(show.show(h, h.processes[0].key))
    assert "  every run (3):" in text and text.count("      values: bbox=") == 3
    assert text.count("mip 1 for proofreading") == 3                         # every note, as before


def test_show_a_run_prints_its_values_and_diff_compares_them():
    h = chunk_history(20)
    text = show.render_show(show.show(h, h.runs[7].id))
    assert f"  values:      {json.dumps({'bbox': bbox(7)})}" in text
    rows = {r["field"]: r for r in diff.diff(h, h.runs[3].id, h.runs[7].id)["rows"]}
    assert rows["run.parameters.bbox"] == {"field": "run.parameters.bbox", "a": bbox(3), "b": bbox(7), "same": False}
    assert rows["parameters.mip"]["same"]


# ------------------------------------------------------------- page and DOT
def lineage_of(h):
    return Lineage(h.cloudpath, {h.cloudpath: h}, {"gs://lab/raw": "source"}, [("gs://lab/raw", h.cloudpath)])


def test_page_and_dot_do_not_grow_with_the_runs():
    small, big = chunk_history(50), chunk_history(5000)
    page_small, page_big = to_html(lineage_of(small)), to_html(lineage_of(big))
    assert len(page_big) - len(page_small) < 300, (len(page_small), len(page_big))
    assert len(to_dot(lineage_of(big))) - len(to_dot(lineage_of(small))) < 50
    page = parse_html(page_big)
    assert len(page.rows) < 15
    assert "downsample: 5,000 runs — 4,997 succeeded, 2 failed, 1 never finished" in page_big
    assert all(f"bbox={bbox(i)}" in page_big for i in (3, 7, 11))
    assert "median 2.5 s, p95 4.8 s, max 5 s" in page_big
    dot = to_dot(lineage_of(big))
    assert "5,000 runs: 4,997 succeeded, 2 failed, 1 never finished" in dot and f"bbox={bbox(11)}" in dot


def test_the_page_lists_at_most_a_hundred_failures():
    h = chunk_history(300, failed=range(0, 300, 2), running=())
    text = to_html(lineage_of(h))
    assert "Failed or never finished (150):" in text and "… and 50 more runs" in text


# --------------------------------------------- the real decorator and command
def test_secret_per_run_values_are_never_shown(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    ptb.testing.volume(path=str(tmp_path / "vol"))

    @ptb.provenance("dst", "fetch chunks", per_run=["bbox", "token"])
    def fetch(dst, bbox, token):
        if bbox[0] == 64:
            raise ValueError("chunk failed")

    for i in range(12):
        try:
            fetch(path, bbox(i), token="hunter2-secret")
        except ValueError:
            pass
    h = ptb.history(path)
    assert len(h.processes) == 1 and h.runs[0].parameters == {"bbox": bbox(0), "token": REDACTED}
    runner = CliRunner()
    outputs = [runner.invoke(main, args).stdout for args in (
        ["log", path], ["log", path, "--runs"], ["log", path, "--json"], ["show", path, h.processes[0].key],
        ["show", path, h.runs[1].id], ["diff", path, h.runs[0].id, h.runs[1].id])]
    outputs += [export(path, fmt) for fmt in ("html", "dot", "prov-json")]
    assert all("hunter2" not in text for text in outputs)
    assert "fetch chunks: 12 runs — 11 succeeded, 1 failed" in outputs[0]
    assert f"token={REDACTED}" in outputs[0] and "failures (1):" in outputs[3]


def test_prov_has_every_run_with_its_values(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    ptb.testing.volume(path=str(tmp_path / "vol"))

    @ptb.provenance("dst", "chunk step", per_run="bbox")
    def step(dst, bbox, mip=0):
        return bbox

    for i in range(15):
        step(path, bbox(i))
    doc = ProvDocument.deserialize(content=export(path, "prov-json"), format="json")
    values = sorted(json.loads(next(iter(a.get_attribute("ptb:parameters"))))["bbox"][0]
                    for a in doc.get_records() if str(a.identifier).startswith("ptb:run-"))
    assert values == [64 * i for i in range(15)]


@pytest.mark.parametrize("args, runs", [(["--runs"], 15), ([], 0)])
def test_log_runs_lists_every_run(tmp_path, args, runs):
    path = f"file://{tmp_path / 'vol'}"
    ptb.testing.volume(path=str(tmp_path / "vol"))

    @ptb.provenance("dst", "chunk step", per_run="bbox")
    def step(dst, bbox):
        return bbox

    for i in range(15):
        step(path, bbox(i))
    out = CliRunner().invoke(main, ["log", path, "--type", "run", *args]).stdout
    assert sum("  run  " in line for line in out.splitlines()) == runs
    assert ("chunk step: 15 runs — 15 succeeded" in out) == (not runs)
