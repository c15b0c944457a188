"""``ptb.check``: the "properly documented" rules, on ptb, 0.1.x and foreign volumes."""
from __future__ import annotations

import json

import pytest
import volumes
from test_report import SOURCE, documented_volume

import ptb
from ptb.capture.docker import DockerEnv
from ptb.read.check import CheckReport, check, check_history
from ptb.read.history import history


def test_a_well_documented_volume_passes(tmp_path, git_repo):
    path = f"file://{tmp_path / 'vol'}"
    documented_volume(path, repo=git_repo)
    report = check(path)
    assert report.ok and bool(report) and report.problems == []
    assert report.to_json() == {"volume": path, "ok": True, "problems": []}


def test_the_rules_hold_on_every_protocol(cloudpath):
    documented_volume(cloudpath)
    assert check(cloudpath).ok
    bare = cloudpath + "-bare"
    volumes.make_volume(bare)
    assert not check(bare).ok


def test_a_fresh_volume_is_not_documented(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    volumes.make_volume(path)
    report = check(path)
    assert not report.ok and not bool(report)
    assert len(report.problems) == 2
    assert report.problems[0].startswith("names no sources")
    assert report.problems[1].startswith("holds no motivation note")
    assert f"ptb note {path} --motivation" in report.problems[1]


def test_nothing_at_all_is_one_clear_problem(tmp_path):
    report = check(f"file://{tmp_path / 'nowhere'}")
    assert report.problems == ["no provenance recorded: no `provenance` file and an empty journal"]


def test_each_rule_names_what_is_missing(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    process, _ = documented_volume(path, sources=(), motivation=False, parameters={}, envs=[], runs=False)
    problems = check(path).problems
    name = f"process 'meshing at 16x16x40' ({process.key[:8]})"
    assert problems == [
        problems[0],
        problems[1],
        f"{name} records no parameters",
        f"{name} records no code environment",
    ]
    assert "sources" in problems[0] and "motivation" in problems[1]


def test_a_process_whose_env_file_is_gone_fails(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    process, _ = documented_volume(path)
    assert check(path).ok
    envfile = process.code_envfiles[0]
    (tmp_path / "vol" / envfile).unlink()
    assert check(path).problems == [f"process 'meshing at 16x16x40' ({process.key[:8]}): code environment "
                                    f"file {envfile} is missing from the volume"]
    (tmp_path / "vol" / envfile).write_text("not json")
    assert "is empty or not JSON" in check(path).problems[0]


def test_legacy_volume_judged_by_the_same_rules(tmp_path):
    path = f"file://{tmp_path / 'legacy'}"
    volumes.make_legacy_volume(path)
    problems = check(path).problems
    assert len(problems) == 1 and problems[0].startswith("names no sources")   # motivation, envs, params: there
    volumes.add_foreign_entries(path)          # sources, owners, igneous and hand-written entries
    assert check(path).ok
    (tmp_path / "legacy" / volumes.LEGACY_DOCKER_FILE).unlink()
    assert check(path).problems == [f"process 'watershed segmentation' (legacy-0): code environment file "
                                    f"{volumes.LEGACY_DOCKER_FILE} is missing from the volume"]


def test_new_processes_on_a_legacy_volume_count_too(tmp_path):
    path = f"file://{tmp_path / 'legacy'}"
    volumes.make_legacy_volume(path)
    volumes.add_foreign_entries(path)
    ptb.logprocess(path, ptb.Process("relabel", {}, DockerEnv("lab/relabel", "v1", "sha256:1")))
    (problem,) = check(path).problems
    assert problem.startswith("process 'relabel'") and problem.endswith("records no parameters")


def test_a_corrupt_provenance_file_is_a_problem_not_a_crash(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    documented_volume(path)
    (tmp_path / "vol" / "provenance").write_text("{not json")
    report = check(path)
    assert not report.ok
    assert any("is not a JSON object" in p for p in report.problems)
    assert len([p for p in report.problems if "is not a JSON object" in p]) == 1   # the warning is not repeated


def test_an_unreadable_journal_record_is_reported(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    documented_volume(path)
    (tmp_path / "vol" / "ptb" / "journal" / "0000000000000000bad.json").write_text(
        '{"kind": "mystery", "rid": "0000000000000000bad", "v": 1}')
    (problem,) = check(path).problems
    assert "0000000000000000bad" in problem


def test_check_history_and_report_json():
    h = ptb.History("mem://x/y", [], [], [ptb.Note(None, "MOTIVATION", "why")], [], {"sources": [SOURCE]}, {})
    assert check_history(h).ok
    report = CheckReport("mem://x/y", ["a"])
    assert json.loads(json.dumps(report.to_json())) == {"volume": "mem://x/y", "ok": False, "problems": ["a"]}


def test_not_a_cloudpath_is_the_callers_error():
    with pytest.raises(ptb.InvalidInputError):
        check("just/a/dir")


def test_sources_as_a_single_string_count(tmp_path):
    path = f"file://{tmp_path / 'vol'}"
    documented_volume(path, sources=())
    vol = __import__("cloudvolume").CloudVolume(path)
    vol.provenance.sources = SOURCE     # hand-written provenance files do this
    vol.commit_provenance()
    assert history(path).sources == [SOURCE]
    assert check(path).ok
