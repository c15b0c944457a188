"""A step run once per chunk, read back: 4 worker processes x 500 chunk calls on one ``file://`` volume.

Each worker (``workers.py chunks``) calls one ``per_run=["bbox"]``-decorated step 500 times
as if on a node of its own; two chunks fail and the last chunk of one worker kills it, so
its run never finishes. That is one process with 2,000 runs, and ``ptb log``, ``ptb show``,
the HTML page and the DOT graph must sum it up in a few lines, while ``--json`` and PROV
keep every run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from prov.model import ProvActivity, ProvDocument
from test_export import parse_html
from volumes import make_volume

import ptb
from ptb.cli import main
from ptb.read.export import export

WORKERS_PY = Path(__file__).with_name("workers.py")
WORKERS, CALLS, CHUNK = 4, 500, 64
FAILING = {("0", 123), ("2", 7)}
DYING = ("3", CALLS - 1)
STEP = "downsample to mip 1"


def box(tag, i):
    row = int(tag) * CHUNK
    return [i * CHUNK, row, 0, (i + 1) * CHUNK, row + CHUNK, CHUNK]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunks")
    path = f"file://{tmp / 'volume'}"
    make_volume(path)
    env = dict(os.environ, PTB_SPOOL_DIR=str(tmp / "spool"), PTB_DIE_CHUNK="{}:{}".format(*DYING),
               PTB_FAIL_CHUNKS=",".join(f"{t}:{i}" for t, i in sorted(FAILING)))
    workers = [subprocess.Popen([sys.executable, str(WORKERS_PY), "chunks", path, str(CALLS), str(w)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
               for w in range(WORKERS)]
    done = [(w.communicate(timeout=600), w.returncode) for w in workers]
    assert [code for _, code in done] == [0, 0, 0, 3], [err for (_, err), _ in done]
    return path, ptb.history(path)


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_chunk_is_a_run_of_one_process(chunked):
    _, h = chunked
    assert len(h.processes) == 1 and len(h.runs) == WORKERS * CALLS
    assert {r.process for r in h.runs} == {h.processes[0].key}
    assert "bbox" not in h.processes[0].parameters
    got = {tuple(r.parameters["bbox"]) for r in h.runs}
    assert got == {tuple(box(str(w), i)) for w in range(WORKERS) for i in range(CALLS)}
    bad = {tuple(r.parameters["bbox"]): r.status for r in h.runs if r.status != "succeeded"}
    assert bad == {**{tuple(box(t, i)): "failed" for t, i in FAILING}, tuple(box(*DYING)): "running"}


def test_log_is_one_line_for_the_step_and_one_per_problem_run(chunked):
    path, h = chunked
    out = cli("log", path)
    lines = out.splitlines()
    assert len(lines) < 20, out
    (group,) = [line for line in lines if "  runs  " in line]
    assert re.search(rf"  {STEP}: 2,000 runs — 1,997 succeeded, 2 failed, 1 never finished — "
                     r"\d\d:\d\d–\d\d:\d\d on 4 hosts$", group), group
    problems = [line for line in lines if "  run  " in line]
    assert len(problems) == 3
    for t, i in [*sorted(FAILING), DYING]:
        assert sum(f"bbox={box(t, i)}" in line for line in problems) == 1, (t, i, problems)
    assert "1,997 motivation notes of these runs not shown" in out
    failed = cli("log", path, "--failures", "--type", "run")
    assert "3 of 2,000 runs" in failed and failed.count("\n") < 12


def test_log_runs_and_json_have_every_run(chunked):
    path, h = chunked
    every = cli("log", path, "--runs", "--type", "run")
    assert sum("  run  " in line for line in every.splitlines()) == WORKERS * CALLS
    rows = json.loads(cli("log", path, "--json"))["rows"]
    runs = [r for r in rows if r["kind"] == "run"]
    assert len(runs) == WORKERS * CALLS and len([r for r in rows if r["kind"] == "note"]) == len(h.notes)
    assert all(r["parameters"]["bbox"] for r in runs)
    failures = [r["parameters"]["bbox"] for r in runs if r["status"] != "succeeded"]     # what to re-run
    assert sorted(failures) == sorted(box(t, i) for t, i in [*FAILING, DYING])


def test_show_sums_up_the_step_by_status_host_and_duration(chunked):
    path, h = chunked
    out = cli("show", path, h.processes[0].key[:10])
    assert "  by host:     node-0 500, node-1 500, node-2 500, node-3 500" in out
    assert re.search(r"  duration:    median \S+ \w+, p95 \S+ \w+, max \S+ \w+", out)
    assert "  failures (3):" in out and out.count("has no data at mip 0") >= 2
    for t, i in [*FAILING, DYING]:
        assert f"      values: bbox={box(t, i)}" in out
    assert "(3,994 notes of the other runs not shown" in out
    data = json.loads(cli("show", path, h.processes[0].key, "--json"))
    assert len(data["runs"]) == WORKERS * CALLS
    assert data["summary"]["by_status"] == {"succeeded": 1997, "failed": 2, "running": 1}


def test_html_and_dot_are_summaries_prov_has_every_run(chunked):
    import pydot

    path, h = chunked
    page = export(path, "html")
    assert len(page) < 40_000, len(page)
    assert len(parse_html(page).rows) < 20
    assert f"{STEP}: 2,000 runs — 1,997 succeeded, 2 failed, 1 never finished" in page
    assert all(f"bbox={box(t, i)}" in page for t, i in [*FAILING, DYING])
    assert "--runs" not in page and "ptb log" not in page         # a published page gives no CLI hints
    dot = export(path, "dot")
    assert len(dot) < 3_000 and len(pydot.graph_from_dot_data(dot)[0].get_nodes()) < 10
    doc = ProvDocument.deserialize(content=export(path, "prov-json"), format="json")
    activities = [a for a in doc.get_records() if isinstance(a, ProvActivity)]
    assert len(activities) == WORKERS * CALLS
    values = {tuple(json.loads(next(iter(a.get_attribute("ptb:parameters"))))["bbox"]) for a in activities}
    assert len(values) == WORKERS * CALLS
