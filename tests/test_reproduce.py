"""``ptb reproduce``: from a run's record back to its code, packages and call (issue 22).

End to end with a real git repository, a local bare "remote", real volumes
and real processes: a decorated function runs with an uncommitted change,
then HEAD moves on; ``reproduce --into`` restores the dirty work tree byte
for byte and its ``rerun.py`` recreates the same output on a new volume;
``--check`` passes at the restored state and fails at the new HEAD; a secret
parameter never reaches DIR.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import ptb
from ptb.cli import main

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hunter2-SECRET-value"

LAYER = '''import numpy as np
from cloudvolume import CloudVolume

import ptb
from ptb.cli import main
import settings


@ptb.provenance("dst", "brighten a layer", per_run=["offset"])
def brighten(src, dst, offset, token=None):
    """One chunk of the brightened layer: the source's voxels times FACTOR."""
    x, y, z = offset
    image = CloudVolume(src, progress=False)[x:x + 32, y:y + 32, z:z + 16]
    out = CloudVolume(dst, progress=False, non_aligned_writes=True, fill_missing=True)
    out[x:x + 32, y:y + 32, z:z + 16] = (image.astype(np.uint16) * settings.FACTOR % 256).astype(np.uint8)
'''
DIRTY_SETTINGS = b"FACTOR = 3\n# trying a brighter layer\t(uncommitted)\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def env(*paths: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [ROOT, *paths]))}


def ptb_cli(*args: str) -> subprocess.CompletedProcess:
    """The command line, in this process (``ptb reproduce`` itself runs git in subprocesses)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def ptb_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line in a fresh Python, whose packages are those the recorded run saw."""
    return subprocess.run([sys.executable, "-m", "ptb", *args], env=env(), cwd=cwd, capture_output=True, text=True)


def every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_symlink())


def run_brighten(repo: Path, src: str, dst: str, offset: list, token: str = None) -> None:
    """One documented call of the repository's ``brighten``, in a fresh Python started in the repository."""
    call = f"from layer import brighten; brighten({src!r}, {dst!r}, {offset!r}, token={token!r})"
    done = subprocess.run([sys.executable, "-c", call], cwd=repo, env=env(repo), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def recorded(git_repo: Path, tmp_path: Path, make_volume):
    """A run of ``brighten`` at commit A with settings.py changed and notes.txt untracked; then HEAD moves on."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "-q", str(remote))
    (git_repo / "layer.py").write_text(LAYER)
    (git_repo / "settings.py").write_text("FACTOR = 2\n")
    git(git_repo, "add", "layer.py", "settings.py")
    git(git_repo, "commit", "-q", "-m", "the layer")
    git(git_repo, "push", "-q", str(remote), "main")
    commit = git(git_repo, "rev-parse", "HEAD")
    (git_repo / "settings.py").write_bytes(DIRTY_SETTINGS)
    (git_repo / "notes.txt").write_text("not committed\n")
    src, dst = f"file://{tmp_path / 'src'}", f"file://{tmp_path / 'dst'}"
    image = make_volume(src)
    image[:, :, :] = (np.arange(64 * 64 * 16).reshape(64, 64, 16, 1) % 251).astype(np.uint8)
    make_volume(dst)
    run_brighten(git_repo, src, dst, [32, 0, 0], SECRET)
    (git_repo / "settings.py").write_text("FACTOR = 5\n")
    git(git_repo, "commit", "-q", "-am", "a brighter layer")
    git(git_repo, "push", "-q", str(remote), "main")
    (run,) = ptb.history(dst).runs
    (source,) = [e for e in run.envs.values() if e["CodeEnv type"] == "Source"]
    assert (source["module"], source["qualname"]) == ("layer", "brighten")     # not only "layer.brighten" joined
    return {"repo": git_repo, "remote": remote, "commit": commit, "src": src, "dst": dst, "run": run.id}


def test_reproduce_restores_the_code_packages_and_call_and_check_says_whether_it_is_the_same(
        recorded, tmp_path, make_volume):
    into = tmp_path / "again"
    done = ptb_cli("reproduce", recorded["dst"], recorded["run"][:12], "--into", str(into),
                   "--repo", str(recorded["remote"]))
    assert done.returncode == 0, done.stderr
    assert f"restored into {into}" in done.stdout and "rerun.py" in done.stdout
    source = into / "source"
    assert git(source, "rev-parse", "HEAD") == recorded["commit"]
    assert (source / "settings.py").read_bytes() == DIRTY_SETTINGS          # the dirty file, byte for byte
    assert not (source / "notes.txt").exists()                              # untracked: only its name is known
    readme = (into / "README.txt").read_text()
    assert "notes.txt" in readme and "equals the recorded diff" in readme
    assert "token: a secret, redacted when recorded" in readme
    requirements = (into / "requirements.txt").read_text().splitlines()
    assert requirements[1] == f"# Python {sys.version}"
    assert f"numpy=={np.__version__}" in requirements
    assert {"source", "requirements.txt", "parameters.json", "rerun.py", "README.txt", "uncommitted.diff"} == \
        {p.name for p in into.iterdir()}
    assert not [p for p in tmp_path.iterdir() if "ptb-partial" in p.name]

    # the rerun refuses until the secret is supplied and the output points elsewhere
    rerun = [sys.executable, str(into / "rerun.py")]
    refused = subprocess.run(rerun, env=env(), capture_output=True, text=True)
    assert refused.returncode == 2 and "token: a secret, redacted when recorded" in refused.stderr
    assert "give --volume NEW_CLOUDPATH" in refused.stderr          # every reason at once
    refused = subprocess.run([*rerun, "--set", "token=x"], env=env(), capture_output=True, text=True)
    assert refused.returncode == 2 and "--volume" in refused.stderr
    refused = subprocess.run([*rerun, "--set", "token=x", "--volume", recorded["dst"] + "/"], env=env(),
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "--overwrite-original" in refused.stderr

    new = f"file://{tmp_path / 'new'}"
    make_volume(new)
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"token": "another-secret"}))
    again = subprocess.run([*rerun, "--volume", new, "--values", str(values)], env=env(), capture_output=True,
                           text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    from cloudvolume import CloudVolume

    original = CloudVolume(recorded["dst"], progress=False)[32:64, 0:32, 0:16]
    assert original.any() and np.array_equal(CloudVolume(new, progress=False)[32:64, 0:32, 0:16], original)
    (rerun_run,) = ptb.history(new).runs        # the rerun is documented on the new volume, as any run
    assert rerun_run.description == "brighten a layer" and rerun_run.parameters == {"offset": [32, 0, 0]}

    # --check: the restored state is the run's code; the new HEAD is not
    same = ptb_process("reproduce", recorded["dst"], recorded["run"], "--check", cwd=source)
    assert same.returncode == 0, same.stdout + same.stderr
    assert re.search(rf"the same code as run {recorded['run']} \(commit {recorded['commit'][:12]} with its "
                     rf"uncommitted diff, \d+ packages, Python {re.escape(sys.version.split()[0])}\)\Z",
                     same.stdout.rstrip()), same.stdout
    differ = ptb_process("reproduce", recorded["dst"], recorded["run"], "--check", "--source", str(recorded["repo"]),
                         cwd=tmp_path)
    assert differ.returncode == 1, differ.stderr
    rows = {line.split()[1]: line for line in differ.stdout.splitlines() if line.startswith("* ")}
    assert set(rows) == {"env.PythonGithub.commit", "env.PythonGithub.diff"}, differ.stdout
    assert recorded["commit"][:12] in rows["env.PythonGithub.commit"]
    assert "-+FACTOR = 3" in differ.stdout        # the unified diff of the diffs, as ptb diff shows
    as_json = json.loads(ptb_cli("reproduce", recorded["dst"], recorded["run"], "--check", "--json",
                                 "--source", str(recorded["repo"])).stdout)
    assert as_json["same"] is False and as_json["b"]["id"] == str(recorded["repo"])

    assert SECRET.encode() not in every_byte(into) and b"SECRETTOKEN" not in every_byte(into)


def test_nothing_half_made_is_left_when_the_commit_is_missing(recorded, tmp_path):
    elsewhere = tmp_path / "other.git"
    git(tmp_path, "init", "--bare", "-q", str(elsewhere))
    assert git(recorded["repo"], "rev-parse", "HEAD~1") == recorded["commit"]
    git(recorded["repo"], "push", "-q", str(elsewhere), "HEAD~2:refs/heads/main")     # its parent only: never pushed
    into = tmp_path / "again"
    done = ptb_cli("reproduce", recorded["dst"], recorded["run"], "--into", str(into), "--repo", str(elsewhere))
    assert done.returncode == 1
    assert f"commit {recorded['commit']} is not in {elsewhere}" in done.stderr
    assert not into.exists() and not [p for p in tmp_path.iterdir() if "ptb-partial" in p.name]


def test_the_recorded_remote_is_followed_only_when_safe(recorded, tmp_path, make_volume):
    """The recorded remote (credentials stripped) is cloned when no --repo is given; a local path is not."""
    into = tmp_path / "again"
    done = ptb_cli("reproduce", recorded["dst"], recorded["run"], "--into", str(into))
    assert done.returncode == 1 and "cannot clone https://github.com/lab/pipeline.git" in done.stderr
    assert "SECRETTOKEN" not in done.stderr and not into.exists()
    git(recorded["repo"], "remote", "set-url", "origin", str(recorded["remote"]))
    git(recorded["repo"], "reset", "-q", "--hard", recorded["commit"])
    (recorded["repo"] / "settings.py").write_bytes(DIRTY_SETTINGS)
    dst = f"file://{tmp_path / 'dst2'}"
    make_volume(dst)
    run_brighten(recorded["repo"], recorded["src"], dst, [0, 0, 0])
    run = ptb.history(dst).runs[0].id
    done = ptb_cli("reproduce", dst, run, "--into", str(into))
    assert done.returncode == 1 and "is a local path" in done.stderr and "--repo" in done.stderr
    assert ptb_cli("reproduce", dst, run, "--into", str(into), "--repo", str(recorded["remote"])).returncode == 0
    assert (into / "source" / "settings.py").read_bytes() == DIRTY_SETTINGS


def test_a_directory_in_use_is_refused(recorded, tmp_path):
    into = tmp_path / "busy"
    into.mkdir()
    (into / "mine.txt").write_text("keep me")
    done = ptb_cli("reproduce", recorded["dst"], recorded["run"], "--into", str(into), "--repo",
                   str(recorded["remote"]))
    assert done.returncode == 1 and "already exists and is not an empty directory" in done.stderr
    assert [p.name for p in into.iterdir()] == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ptb_cli("reproduce", recorded["dst"], recorded["run"], "--into", str(empty), "--repo",
                   str(recorded["remote"])).returncode == 0
    assert (empty / "README.txt").exists()


def test_usage(recorded):
    assert ptb_cli("reproduce", recorded["dst"], recorded["run"]).returncode == 2
    assert ptb_cli("reproduce", recorded["dst"], recorded["run"], "--check", "--into", "x").returncode == 2
    done = ptb_cli("reproduce", recorded["dst"], "ffff", "--check")
    assert done.returncode == 1 and "no process or run" in done.stderr
