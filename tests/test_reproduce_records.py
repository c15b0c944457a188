"""``ptb reproduce`` from records of every kind: ``ptb run`` steps, cells, older records, damaged diffs.

The records are journalled directly (``ptb.store.writer``), as ``ptb run``,
the cell magic or an older ptb would have left them, beside a real git
repository pushed to a local bare remote; the scripts written are run for real.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from click.testing import CliRunner

from ptb.capture.codeenv import CodeEnv
from ptb.capture.git import PythonGithubEnv
from ptb.cli import main
from ptb.read.reproduce import _split, to_supply, volume_paths
from ptb.records import ProcessRecord, RunRecord, new_id, utcnow
from ptb.store import writer
from ptb.store.volume import Volume

ECHO = "import json, sys; print(json.dumps(sys.argv[1:]))"
HOSTILE = "it's $(echo pwned) `echo x` \"q\" \\ ; rm -rf /nothing"


class RecordedEnv(CodeEnv):
    """An environment file with given contents, as another ptb wrote it."""

    def __init__(self, contents: Dict[str, Any]):
        self._contents = contents
        self.kind = str(contents["CodeEnv type"])
        self.name = "recorded"

    def contents(self) -> Dict[str, Any]:
        return self._contents


def journal_run(cloudpath: str, description: str, parameters: Dict[str, Any], envs: List[Dict[str, Any]],
                values: Optional[Dict[str, Any]] = None) -> str:
    vol = Volume.resolve(cloudpath)
    files = tuple(writer.write_env(vol, RecordedEnv(e)) for e in envs)
    process = ProcessRecord(description, parameters, files, timestamp=utcnow())
    run = RunRecord(id=new_id(), description=description, process=process.key, status="succeeded",
                    started=utcnow(), ended=utcnow(), duration=0.5, code_envfiles=files, parameters=values or {})
    writer.append(vol, [process, run])
    return run.id


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def ptb_cli(*args: str) -> subprocess.CompletedProcess:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def pushed(git_repo: Path, tmp_path: Path) -> Dict[str, Any]:
    """git_repo pushed to a local bare remote, and the volume path records go to."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "-q", str(remote))
    git(git_repo, "push", "-q", str(remote), "HEAD:refs/heads/main")
    return {"repo": git_repo, "remote": str(remote), "volume": f"file://{tmp_path / 'layer'}"}


def snapshot(repo: Path) -> Dict[str, Any]:
    return PythonGithubEnv(str(repo)).contents()


def test_a_ptb_run_step_gets_a_rerun_sh_that_quotes_its_argv_and_asks_for_redacted_items(pushed, tmp_path):
    volume = pushed["volume"]
    argv = [sys.executable, "-c", ECHO, f"--dst={volume}", "--password", "<redacted>", HOSTILE, volume]
    command = {"CodeEnv type": "Command", "argv0": "python", "executable": sys.executable,
               "distribution": "ptbfaketool", "version": "1.2"}
    digest = "sha256:" + "a" * 64
    docker = {"CodeEnv type": "Docker", "image name": "ghcr.io/lab/tool", "tag": "1.2", "image ID": digest}
    run = journal_run(volume, "echo the arguments", {"command": argv}, [snapshot(pushed["repo"]), command, docker])
    into = tmp_path / "again"
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", pushed["remote"], "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["kind"] == "command" and summary["supply"] == {"command.5": "a secret, redacted when recorded"}
    assert summary["volume_at"] == ["command.3", "command.7"] and summary["into"] == str(into)
    dockerfile = (into / "Dockerfile").read_text().splitlines()
    assert f"FROM ghcr.io/lab/tool@{digest}" in dockerfile and "COPY rerun.sh /reproduce/rerun.sh" in dockerfile
    script = into / "rerun.sh"
    assert os.access(script, os.X_OK) and not (into / "rerun.py").exists()
    assert "ptbfaketool==1.2" in (into / "requirements.txt").read_text().splitlines()

    def rerun(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(script), *args], capture_output=True, text=True)

    refused = rerun("--volume", "file:///elsewhere")
    assert refused.returncode == 2 and "argument 5 was redacted" in refused.stderr
    refused = rerun("--set", "5=pw")
    assert refused.returncode == 2 and "--volume NEW_CLOUDPATH" in refused.stderr
    refused = rerun("--set", "5=pw", "--volume", volume + "/")
    assert refused.returncode == 2 and "--overwrite-original" in refused.stderr
    again = rerun("--set", "5=p w'd", "--volume", "file:///elsewhere")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == ["--dst=file:///elsewhere", "--password", "p w'd", HOSTILE, "file:///elsewhere"]
    again = rerun("--set", "5=pw", "--overwrite-original")
    assert json.loads(again.stdout) == [f"--dst={volume}", "--password", "pw", HOSTILE, volume]
    readme = (into / "README.txt").read_text()
    assert "runs the recorded command line" in readme and "sh rerun.sh --volume NEW_CLOUDPATH --set 5=VALUE" in readme


def test_a_cell_without_a_repository_is_restored_only_inexactly_and_its_rerun_asks_for_the_secret(pushed, tmp_path):
    volume = pushed["volume"]
    cell = "import json\nprint(json.dumps([vol, threshold * 2, api_token]))\n"
    source = {"CodeEnv type": "Source", "name": "cell", "file": "<ipython-input-3>", "source": cell, "sha256": "0"}
    params = {"vol": volume, "threshold": 21, "api_token": "<redacted>"}
    hostile = {"CodeEnv type": "Docker", "image name": "lab/img\nRUN touch /pwned", "tag": None, "image ID": None}
    run = journal_run(volume, "a notebook cell", params, [source, hostile])
    into = tmp_path / "again"
    done = ptb_cli("reproduce", volume, run, "--into", str(into))
    assert done.returncode == 1 and "no git repository was recorded" in done.stderr and "--inexact" in done.stderr
    assert not into.exists()
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--inexact")
    assert done.returncode == 0, done.stderr
    assert (into / "cell.py").read_text() == cell and not (into / "source").exists()
    assert not (into / "requirements.txt").exists()
    readme = (into / "README.txt").read_text()
    assert "no git repository was recorded" in readme and "the Docker image (its recorded name" in readme
    assert not (into / "Dockerfile").exists()
    rerun = [sys.executable, str(into / "rerun.py")]
    refused = subprocess.run([*rerun, "--volume", "file:///new"], capture_output=True, text=True)
    assert refused.returncode == 2 and "api_token: a secret" in refused.stderr
    again = subprocess.run([*rerun, "--volume", "file:///new", "--set", "api_token=tok", "--set", "threshold=4"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == ["file:///new", 8, "tok"]


@pytest.fixture
def two_changes(pushed) -> Dict[str, Any]:
    """A git snapshot with uncommitted changes to a.py and b.py (the commit is on the remote)."""
    repo = pushed["repo"]
    (repo / "a.py").write_text("A = 1\n")
    (repo / "b.py").write_text("B = 1\n")
    git(repo, "add", "a.py", "b.py")
    git(repo, "commit", "-q", "-m", "a and b")
    git(repo, "push", "-q", pushed["remote"], "HEAD:refs/heads/main")
    (repo / "a.py").write_text("A = 2\n")
    (repo / "b.py").write_text("B = 2\n" + "# more\n" * 50)
    return {**pushed, "env": snapshot(repo)}


def test_a_truncated_diff_is_refused_unless_inexact(two_changes, tmp_path):
    env = dict(two_changes["env"])
    cut = env["diff"].index("# more")
    env["diff"] = env["diff"][:cut] + "\n... [diff truncated: 300000 bytes]"
    volume = two_changes["volume"]
    run = journal_run(volume, "step", {}, [env])
    into = tmp_path / "again"
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", two_changes["remote"])
    assert done.returncode == 1 and "cut at the size bound" in done.stderr and "b.py" in done.stderr
    assert not into.exists()
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", two_changes["remote"], "--inexact")
    assert done.returncode == 0, done.stderr
    assert (into / "source" / "a.py").read_text() == "A = 2\n"
    assert (into / "source" / "b.py").read_text() == "B = 1\n"
    readme = (into / "README.txt").read_text()
    assert "changes NOT applied to: b.py" in readme and "cut at the size bound" in readme


def test_a_scrubbed_diff_is_refused_unless_inexact_and_then_named(two_changes, tmp_path):
    env = dict(two_changes["env"])
    env["diff"] = env["diff"].replace("+A = 2", "+A = '<redacted>'")
    volume = two_changes["volume"]
    run = journal_run(volume, "step", {}, [env])
    into = tmp_path / "again"
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", two_changes["remote"])
    assert done.returncode == 1 and "scrubbed of secrets: a.py" in done.stderr
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", two_changes["remote"], "--inexact")
    assert done.returncode == 0, done.stderr
    assert (into / "source" / "a.py").read_text() == "A = '<redacted>'\n"
    assert "a.py hold <redacted> where a secret was" in (into / "README.txt").read_text()


def test_a_diff_that_does_not_apply_is_a_clear_error(two_changes, tmp_path):
    env = dict(two_changes["env"])
    env["diff"] = env["diff"].replace("-A = 1", "-A = 7")
    volume = two_changes["volume"]
    run = journal_run(volume, "step", {}, [env])
    into = tmp_path / "again"
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", two_changes["remote"])
    assert done.returncode == 1 and f"the recorded diff does not apply to commit {env['commit hash']}" in done.stderr
    assert not into.exists() and not [p for p in tmp_path.iterdir() if "ptb-partial" in p.name]
    done = ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", two_changes["remote"], "--inexact")
    assert done.returncode == 0, done.stderr
    assert (into / "source" / "b.py").read_text().startswith("B = 2\n")
    assert "changes NOT applied to: a.py" in (into / "README.txt").read_text()


def test_a_function_recorded_by_an_older_ptb_is_found_and_its_rerun_does_not_guess_the_output(pushed, tmp_path):
    """No module/qualname fields: the joined name is split where the file's path says; the parameters do not
    name the volume, so the rerun refuses to run unless told it may write where the original did."""
    repo = pushed["repo"]
    source = {"CodeEnv type": "Source", "name": "pipeline.step", "file": str(repo / "pipeline.py"),
              "source": "def step(x):\n    return x + 1\n", "sha256": "0"}
    volume = pushed["volume"]
    run = journal_run(volume, "step", {"x": 41}, [snapshot(repo), source])
    into = tmp_path / "again"
    assert ptb_cli("reproduce", volume, run, "--into", str(into), "--repo", pushed["remote"]).returncode == 0
    rerun = [sys.executable, str(into / "rerun.py")]
    refused = subprocess.run(rerun, capture_output=True, text=True)
    assert refused.returncode == 2 and "do not name the run's volume" in refused.stderr
    dry = subprocess.run([*rerun, "--overwrite-original", "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0 and dry.stdout.strip() == 'would run step with {"x": 41}'
    done = subprocess.run([*rerun, "--overwrite-original", "--set", "x=1"], capture_output=True, text=True)
    assert done.returncode == 0 and "calling pipeline.step" in done.stderr
    assert "calls pipeline.step from source/" in (into / "README.txt").read_text()


def test_values_to_supply_are_found_by_their_markers():
    params = {"weights": {"type": "ndarray", "shape": [512, 512], "dtype": "float32"},
              "model": {"type": "Net", "repr": "Net(layers=3)"}, "blob": {"type": "bytes", "length": 9, "sha256": "0"},
              "huge": {"type": "list", "summary": "too large: 100000 items", "sha256": None},
              "db": {"user": "me", "password": "<redacted>"}, "argv": ["tool", "--key", "<redacted>"],
              "url": "https://host/x?token=<redacted>", "fine": {"type": "json", "value": 3}, "mip": 2}
    found = dict(to_supply(params))
    assert set(found) == {("weights",), ("model",), ("blob",), ("huge",), ("db", "password"), ("argv", 2), ("url",)}
    assert "shape [512, 512]" in found[("weights",)]


def test_the_volume_is_found_in_parameters_however_it_was_written(tmp_path):
    cloudpath = f"file://{tmp_path}/layer"
    params = {"dst": f"precomputed://{cloudpath}/", "vol": {"cloudpath": cloudpath, "mip": 0},
              "local": f"{tmp_path}/layer", "many": ["gs://b/x", cloudpath], "other": f"{cloudpath}-2"}
    assert volume_paths(params, cloudpath) == [("dst",), ("vol",), ("local",), ("many", 1)]


def test_an_older_joined_name_is_split_where_the_file_says():
    assert _split("lab.pipe.steps.Mesher.run", "src/lab/pipe/steps.py") == ("lab.pipe.steps", "Mesher.run")
    assert _split("lab.pipe.Mesher.run", "lab/pipe/__init__.py") == ("lab.pipe", "Mesher.run")
    assert _split("tool.run", None) == ("tool", "run")
