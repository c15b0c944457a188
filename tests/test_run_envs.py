"""Every run shows the code that made it, not its process's first environment (issue 25).

A step re-run after a fix is one process (same description, same parameters)
with runs at two commits. Each reader must answer "which code made this run?"
from the run's own environment files: ``ptb show`` (text, --json), ``ptb diff``,
``ptb export`` (PROV and the page), ``ptb check`` and ``ptb.history()``.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ptb
from ptb.read.export import export

ROOT = Path(__file__).resolve().parent.parent

STEP = '''import ptb


@ptb.provenance("dst", "make layer", motivation="a layer for the tests")
def make_layer(dst, mip=0):
    return mip {op} 1
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def fake_package(where: Path, version: str) -> Path:
    """A directory holding an installed distribution ``ptbfakepkg`` at ``version`` (a real dist-info)."""
    info = where / f"ptbfakepkg-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ptbfakepkg\nVersion: {version}\n")
    return where


def run_step(repo: Path, cloudpath: str, site: Path) -> None:
    """One documented call of the repository's step, in a fresh Python whose packages include ``site``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site), str(repo)])}
    subprocess.run([sys.executable, "-c", f"from make_layer import make_layer; make_layer({cloudpath!r})"],
                   cwd=repo, env=env, check=True, capture_output=True, text=True)


def ptb_cli(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ptb", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def committed_step(repo: Path, tmp_path: Path, make_volume) -> tuple:
    """A new volume, and the repository with the decorated step committed; returns (cloudpath, commit)."""
    path = f"file://{tmp_path / 'layer'}"
    make_volume(path)
    (repo / "make_layer.py").write_text(STEP.format(op="+"))
    git(repo, "add", "make_layer.py")
    git(repo, "commit", "-q", "-m", "the step")
    return path, git(repo, "rev-parse", "HEAD")


@pytest.fixture
def two_commits(git_repo, tmp_path, make_volume):
    """One process, run A at commit A with ptbfakepkg 1.0; run B at commit B, a diff on top, ptbfakepkg 2.0."""
    path, commit_a = committed_step(git_repo, tmp_path, make_volume)
    run_step(git_repo, path, fake_package(tmp_path / "site-1", "1.0"))
    (git_repo / "make_layer.py").write_text(STEP.format(op="-"))
    git(git_repo, "commit", "-q", "-am", "fix the off-by-one")
    commit_b = git(git_repo, "rev-parse", "HEAD")
    (git_repo / "pipeline.py").write_text("def step(x):\n    return x + 2  # trying something\n")
    run_step(git_repo, path, fake_package(tmp_path / "site-2", "2.0"))
    h = ptb.history(path)
    assert len(h.processes) == 1 and len(h.runs) == 2      # one step, re-run after the fix
    run_a, run_b = h.runs
    return path, h, (run_a, commit_a), (run_b, commit_b)


def git_env(envs):
    (found,) = [e for e in envs.values() if e and e.get("CodeEnv type") == "PythonGithub"]
    return found


def test_history_gives_each_run_its_own_environment(two_commits):
    path, h, (run_a, commit_a), (run_b, commit_b) = two_commits
    assert git_env(run_a.envs)["commit hash"] == commit_a and not git_env(run_a.envs)["dirty"]
    assert git_env(run_b.envs)["commit hash"] == commit_b and git_env(run_b.envs)["dirty"]
    assert "trying something" in git_env(run_b.envs)["diff"]
    assert ["ptbfakepkg", "1.0"] in git_env(run_a.envs)["packages"]
    assert ["ptbfakepkg", "2.0"] in git_env(run_b.envs)["packages"]
    assert not run_a.envs_inherited and not run_b.envs_inherited
    assert h.envs_of(run_b) == run_b.envs and h.envs_of(h.processes[0]) == run_a.envs   # the process: as first logged


def test_show_names_each_runs_own_commit_diff_and_packages(two_commits):
    path, h, (run_a, commit_a), (run_b, commit_b) = two_commits
    text_a, text_b = ptb_cli("show", path, run_a.id), ptb_cli("show", path, run_b.id)
    assert f"commit hash: {commit_a}" in text_a and commit_b not in text_a
    assert f"commit hash: {commit_b}" in text_b and commit_a not in text_b
    assert "dirty: true" in text_b and "dirty: false" in text_a
    assert "trying something" in text_b and "trying something" not in text_a
    assert "ptbfakepkg==2.0 (other runs: 1.0)" in text_b and "ptbfakepkg==1.0 (other runs: 2.0)" in text_a
    for run, commit, version in ((run_a, commit_a, "1.0"), (run_b, commit_b, "2.0")):
        data = json.loads(ptb_cli("show", path, run.id, "--json"))
        env = git_env(data["envs"])
        assert env["commit hash"] == commit and ["ptbfakepkg", version] in env["packages"]
        assert data["envs_inherited"] is False


def test_show_and_log_say_a_process_ran_at_two_commits(two_commits):
    path, h, (run_a, commit_a), (run_b, commit_b) = two_commits
    text = ptb_cli("show", path, h.processes[0].key)
    assert f"runs at 2 commits: {commit_a[:7]} (1 run), {commit_b[:7]}+diff (1 run)" in text   # oldest first
    assert "runs used 2 package sets: ptbfakepkg 1.0 (1 run), 2.0 (1 run)" in text
    data = json.loads(ptb_cli("show", path, h.processes[0].key, "--json"))
    assert {g["commit"] for g in data["env_spread"]["commits"]} == {commit_a, commit_b}
    log = ptb_cli("log", path)
    assert "runs at 2 commits" in log
    assert f"at {commit_a[:7]}\n" in log + "\n" or f"at {commit_a[:7]} " in log
    assert f"at {commit_b[:7]}+diff" in log


def test_diff_marks_commit_diff_and_package_as_different(two_commits):
    path, h, (run_a, commit_a), (run_b, commit_b) = two_commits
    data = json.loads(ptb_cli("diff", path, run_a.id, run_b.id, "--json"))
    rows = {r["field"]: r for r in data["rows"]}
    commit = rows["env.PythonGithub.commit hash"]
    assert (commit["a"], commit["b"], commit["same"]) == (commit_a, commit_b, False)
    assert rows["env.PythonGithub.dirty"]["same"] is False
    assert rows["env.PythonGithub.diff"]["same"] is False
    package = rows["env.PythonGithub.packages.ptbfakepkg"]
    assert (package["a"], package["b"], package["same"]) == ("1.0", "2.0", False)
    assert rows["parameters.mip"]["same"] and rows["description"]["same"]     # same step
    text = ptb_cli("diff", path, run_a.id, run_b.id)
    assert any(line.startswith("* env.PythonGithub.commit hash") for line in text.splitlines())
    assert "trying something" in text                    # the unified diff of the uncommitted changes


def test_export_and_page_point_each_run_at_its_own_environment(two_commits):
    pytest.importorskip("prov")
    path, h, (run_a, commit_a), (run_b, commit_b) = two_commits
    doc = json.loads(export(path, "prov-json"))
    agents = {ident: attrs for ident, attrs in doc["agent"].items() if "ptb:commit" in attrs}
    commit_of = {ident: attrs["ptb:commit"] for ident, attrs in agents.items()}
    used = {}
    for assoc in doc["wasAssociatedWith"].values():
        if assoc.get("prov:agent") in commit_of:
            used.setdefault(assoc["prov:activity"], set()).add(commit_of[assoc["prov:agent"]])
    assert used == {f"ptb:run-{run_a.id}": {commit_a}, f"ptb:run-{run_b.id}": {commit_b}}
    page = export(path, "html")
    assert f"at {commit_a[:7]}" in page and f"at {commit_b[:7]}+diff" in page
    assert "runs at 2 commits" in page


def test_check_reads_every_runs_environment(two_commits, tmp_path):
    path, h, (run_a, commit_a), (run_b, commit_b) = two_commits
    git_file = next(f for f, e in run_b.envs.items() if e and e.get("CodeEnv type") == "PythonGithub")
    assert git_file not in h.processes[0].code_envfiles            # only run B ran with it
    (tmp_path / "layer" / git_file).unlink()
    problems = ptb.check(path).problems
    assert any(git_file in p and "is missing from the volume (the environment of 1 of its 2 runs)" in p
               for p in problems), problems


def test_a_run_recorded_without_its_own_environment_says_it_shows_its_processs(tmp_path, make_volume):
    """Runs journalled before runs recorded their own environment fall back to the process's, and say so."""
    from ptb.records import RunRecord, new_id, utcnow
    from ptb.store import journal
    from ptb.store.volume import Volume

    path = f"file://{tmp_path / 'old'}"
    make_volume(path)
    process = ptb.logprocess(path, ptb.Process("old step", {"mip": 1}, ptb.DockerEnv("lab/old", "v1", "sha256:1")))
    rid = new_id()
    old = RunRecord(rid, "old step", process.key, "succeeded", utcnow(), utcnow(), 1.0)    # no code_envfiles
    journal.append(Volume.resolve(path), [old])
    (run,) = ptb.history(path).runs
    assert run.envs_inherited and run.envfiles == process.code_envfiles
    assert run.envs[process.code_envfiles[0]]["image name"] == "lab/old"
    text = ptb_cli("show", path, rid)
    assert "code environment (this run's): its process's (this run was recorded without its own" in text
    assert "image name: lab/old" in text


# ----------------------------------------------------------- a pool worker whose code changed between tasks
def _pool_task(repo: str, cloudpath: str) -> int:
    sys.path.insert(0, repo)
    from make_layer import make_layer

    make_layer(cloudpath)
    return os.getpid()


def test_a_pool_worker_records_the_commit_each_task_ran_at(git_repo, tmp_path, make_volume):
    path, commit_a = committed_step(git_repo, tmp_path, make_volume)
    with multiprocessing.get_context("spawn").Pool(1) as pool:       # one long-lived worker for both tasks
        pid_a = pool.apply(_pool_task, (str(git_repo), path))
        (git_repo / "notes.txt").write_text("deployed a fix\n")        # the checkout moves on under the worker
        git(git_repo, "add", "notes.txt")
        git(git_repo, "commit", "-q", "-m", "a later commit")
        commit_b = git(git_repo, "rev-parse", "HEAD")
        pid_b = pool.apply(_pool_task, (str(git_repo), path))
    assert pid_a == pid_b
    h = ptb.history(path)
    assert len(h.processes) == 1 and [git_env(r.envs)["commit hash"] for r in h.runs] == [commit_a, commit_b]
    text = ptb_cli("show", path, h.runs[1].id)
    assert f"commit hash: {commit_b}" in text and commit_a not in text
