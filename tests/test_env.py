"""Code-environment capture against real git repositories made with the git CLI."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ptb.capture import codeenv
from ptb.capture import docker as ptbdocker
from ptb.capture import env as ptbenv
from ptb.capture import git as ptbgit
from ptb.capture.codeenv import CodeEnv, installed_packages
from ptb.capture.docker import DockerEnv, detect_docker, dockerimageID
from ptb.capture.env import capture
from ptb.capture.git import PythonGithubEnv
from ptb.capture.source import SourceEnv

TOKEN_URL = "https://user:SECRETTOKEN@github.com/lab/pipe.git"
CLEAN_URL = "https://github.com/lab/pipe.git"


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path, *, remote=True, commit=True):
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.org")
    (path / "a.py").write_text("x = 1\n")
    (path / "pkg").mkdir()
    (path / "pkg" / "b.py").write_text("y = 2\n")
    git(path, "add", ".")
    if commit:
        git(path, "commit", "-q", "-m", "first")
    if remote:
        git(path, "remote", "add", "origin", TOKEN_URL)
    return path


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "pipe")


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    for var in ptbdocker.IMAGE_VARS + ptbdocker.IMAGE_ID_VARS:
        monkeypatch.delenv(var, raising=False)
    ptbenv._git_cache.clear()
    ptbenv._source_cache.clear()


def test_clean_repo(repo):
    env = PythonGithubEnv(str(repo))
    assert env.git == "present"
    assert env.commithash == git(repo, "rev-parse", "HEAD")
    assert env.branch == "main" and not env.detached and not env.shallow
    assert env.dirty is False and env.diff == "" and env.untracked == []
    assert env.url == CLEAN_URL and env.remote and env.repo_name == "pipe" and env.name == "pipe"
    assert env.path == str(repo)
    text = json.dumps(env.contents())
    assert "SECRETTOKEN" not in text and "SECRETTOKEN" not in env.log()[1]


def test_any_path_inside_the_work_tree(repo):
    assert PythonGithubEnv(str(repo / "pkg")).path == str(repo)
    assert PythonGithubEnv(str(repo / "pkg" / "b.py")).commithash == git(repo, "rev-parse", "HEAD")


def test_legacy_keys_and_value_shapes(repo):
    env = PythonGithubEnv(str(repo))
    contents = env.contents()
    assert contents["CodeEnv type"] == "PythonGithub"
    assert contents["name"] == CLEAN_URL
    assert re.fullmatch(r"[0-9a-f]{40}", contents["commit hash"])
    assert isinstance(contents["diff"], str)
    assert all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
               for p in contents["packages"])
    for key in ("repo name", "branch", "detached", "shallow", "dirty", "untracked", "path", "python",
                "platform", "remote"):
        assert key in contents
    assert contents["python"] == sys.version
    filename, text = env.log()
    assert filename == env.filename and json.loads(text) == contents
    assert json.loads(json.dumps(contents)) == contents          # JSON-safe as it is


def test_dirty_diff_and_untracked(repo):
    (repo / "a.py").write_text("x = 1\nunstaged_change = True\n")
    (repo / "pkg" / "b.py").write_text("y = 2\nstaged_change = True\n")
    git(repo, "add", "pkg/b.py")
    (repo / "new.txt").write_text("new")
    (repo / "newdir").mkdir()
    (repo / "newdir" / "f.txt").write_text("f")
    env = PythonGithubEnv(str(repo))
    assert env.dirty is True
    assert "+unstaged_change = True" in env.diff and "+staged_change = True" in env.diff
    assert env.untracked == ["new.txt", "newdir/"]
    assert env.contents()["untracked"] == ["new.txt", "newdir/"]


def test_diff_of_a_tracked_config_file_is_scrubbed(repo):
    """Review finding: an uncommitted edit of a tracked settings.ini reached the env file verbatim."""
    (repo / "settings.ini").write_text("[db]\npassword = changeme_OLD\nhost = db.lab\n")
    (repo / "deploy.env").write_text("AWS_REGION=us-east-1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "config")
    (repo / "settings.ini").write_text("[db]\npassword = S3CR3T_IN_DIFF\nhost = db.lab\n")
    (repo / "deploy.env").write_text("AWS_REGION=us-east-1\nAWS_SECRET_ACCESS_KEY=S3CR3T_STAGED\n")
    git(repo, "add", "deploy.env")
    (repo / "untracked_token.txt").write_text("S3CR3T_UNTRACKED_CONTENT")
    env = PythonGithubEnv(str(repo))
    filename, text = env.log()
    for stored in (env.diff, text, json.dumps(env.contents())):
        assert "S3CR3T" not in stored and "changeme_OLD" not in stored
    assert "-password = <redacted>" in env.diff and "+password = <redacted>" in env.diff
    assert "+AWS_SECRET_ACCESS_KEY=<redacted>" in env.diff and " host = db.lab" in env.diff
    assert env.untracked == ["untracked_token.txt"]          # names are kept, contents never read
    assert capture(str(repo / "a.py"))[0].diff == env.diff   # what capture stores is scrubbed too


def test_diff_and_untracked_are_bounded(repo):
    (repo / "a.py").write_text("".join(f"line {i} " + "z" * 60 + "\n" for i in range(6000)))
    for i in range(ptbgit.MAX_UNTRACKED + 5):
        (repo / f"u{i:05d}.txt").write_text("")
    env = PythonGithubEnv(str(repo))
    head, marker = env.diff.rsplit("\n... [diff truncated: ", 1)
    assert len(head.encode()) <= codeenv.MAX_TEXT and re.fullmatch(r"\d+ bytes\]", marker)
    assert len(env.untracked) == ptbgit.MAX_UNTRACKED and env.untracked_omitted == 5


def test_detached_head(repo):
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    env = PythonGithubEnv(str(repo))
    assert env.detached is True and env.branch is None and env.commithash == sha
    assert env.contents()["detached"] is True


def test_shallow_clone(tmp_path, repo):
    (repo / "a.py").write_text("x = 3\n")
    git(repo, "commit", "-q", "-am", "second")
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", "clone")
    env = PythonGithubEnv(str(tmp_path / "clone"))
    assert env.shallow is True and env.commithash == git(repo, "rev-parse", "HEAD")
    assert env.url == f"file://{repo}" and env.branch == "main" and env.repo_name == "pipe"


def test_linked_worktree(tmp_path, repo, monkeypatch):
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"))
    env = PythonGithubEnv(str(tmp_path / "side"))
    assert env.branch == "side" and env.commithash == git(repo, "rev-parse", "HEAD")
    first = capture(source_file=str(tmp_path / "side" / "a.py"))[0]
    assert capture(source_file=str(tmp_path / "side" / "a.py"))[0] is first
    (tmp_path / "side" / "a.py").write_text("x = 'worktree edit'\n")
    git(tmp_path / "side", "commit", "-q", "-am", "on side")
    fresh = capture(source_file=str(tmp_path / "side" / "a.py"))[0]
    assert fresh.commithash == git(tmp_path / "side", "rev-parse", "HEAD") and fresh.diff == ""
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    absent = PythonGithubEnv(str(tmp_path / "side"))
    assert absent.git == "absent" and absent.branch == "side" and absent.commithash == fresh.commithash
    assert absent.url == CLEAN_URL


def test_no_remote(tmp_path):
    path = make_repo(tmp_path / "local", remote=False)
    env = PythonGithubEnv(str(path))
    assert env.url is None and env.remote is False
    assert env.repo_name == "local" and env.contents()["name"] == str(path)
    assert env.commithash == git(path, "rev-parse", "HEAD")


def test_no_commits_yet(tmp_path):
    path = make_repo(tmp_path / "fresh", commit=False)
    (path / "c.py").write_text("unstaged_new = 1\n")
    env = PythonGithubEnv(str(path))
    assert env.git == "present" and env.commithash is None and env.branch == "main"
    assert env.dirty is True and "+x = 1" in env.diff and env.untracked == ["c.py"]
    assert env.contents()["commit hash"] is None


def test_no_repository(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    env = PythonGithubEnv(str(plain))
    assert env.git == "no repository" and env.path == str(plain)
    assert env.commithash is None and env.url is None and env.remote is False
    assert env.contents()["packages"] and json.dumps(env.contents())
    missing = PythonGithubEnv(str(tmp_path / "does" / "not" / "exist"))
    assert missing.git == "no repository" and missing.commithash is None


def test_git_binary_missing_reads_the_files(tmp_path, repo, monkeypatch):
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all")             # the branch now lives in packed-refs only
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    env = PythonGithubEnv(str(repo / "pkg"))
    assert env.git == "absent" and env.path == str(repo)
    assert env.commithash == sha and env.branch == "main" and env.url == CLEAN_URL
    assert env.dirty is None and env.diff is None
    assert "SECRETTOKEN" not in json.dumps(env.contents())


def test_filename_is_content_addressed(repo):
    first, again = PythonGithubEnv(str(repo)), PythonGithubEnv(str(repo))
    assert re.fullmatch(r"ptb/env/PythonGithub-pipe-[0-9a-f]{16}\.json", first.filename)
    assert first.filename == again.filename
    (repo / "a.py").write_text("x = 'one edit'\n")
    one = PythonGithubEnv(str(repo)).filename
    (repo / "a.py").write_text("x = 'another edit'\n")
    other = PythonGithubEnv(str(repo)).filename
    assert len({first.filename, one, other}) == 3


def test_safe_names():
    env = DockerEnv("gcr.io/lab/img:odd name", "v1", "sha256:1")
    assert re.fullmatch(r"ptb/env/Docker-gcr\.io_lab_img_odd_name-[0-9a-f]{16}\.json", env.filename)
    long = DockerEnv("x" * 200, "v1", "sha256:1").filename
    assert len(long.split("/")[-1]) < 100


def test_capture_cache_reused_and_refreshed(repo, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    src = str(repo / "a.py")
    first = capture(source_file=src)[0]
    assert capture(source_file=src)[0] is first               # nothing changed: no new snapshot
    empty = tmp_path / "nobin"
    empty.mkdir()
    with monkeypatch.context() as m:                           # a warm capture never runs git
        m.setenv("PATH", str(empty))
        assert capture(source_file=src)[0] is first

    (repo / "pkg" / "b.py").write_text("y = 'edited in a notebook'\n")   # clean tracked file, not src
    second = capture(source_file=src)[0]
    assert second is not first and "+y = 'edited in a notebook'" in second.diff
    assert capture(source_file=src)[0] is second
    (repo / "pkg" / "b.py").write_text("y = 'edited again, differently'\n")
    third = capture(source_file=src)[0]
    assert "+y = 'edited again, differently'" in third.diff and third.filename != second.filename

    (repo / "notes.txt").write_text("new")
    fourth = capture(source_file=src)[0]
    assert fourth.untracked == ["notes.txt"]
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "more")
    fifth = capture(source_file=src)[0]
    assert fifth.commithash == git(repo, "rev-parse", "HEAD") and fifth.dirty is False
    git(repo, "checkout", "-q", "-b", "feature")
    assert capture(source_file=src)[0].branch == "feature"


def test_capture_falls_back_to_the_working_directory(repo, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "cell.py").write_text("pass\n")
    monkeypatch.chdir(repo)
    envs = capture(source_file=str(outside / "cell.py"))
    assert envs[0].path == str(repo) and envs[0].url == CLEAN_URL
    monkeypatch.chdir(outside)
    (env,) = capture()
    assert env.git == "no repository" and env.path == str(outside)
    assert capture()[0] is env


def sample(a, b=2):
    """A function whose source is recorded."""
    return a + b


def test_source_env_from_callable():
    env = SourceEnv.from_callable(sample)
    assert env.name == f"{__name__}.sample" and env.file == __file__
    assert env.source.startswith("def sample(a, b=2):")
    contents = env.contents()
    assert contents["CodeEnv type"] == "Source" and contents["file"] == __file__
    assert contents["sha256"] == hashlib.sha256(env.source.encode()).hexdigest()
    assert re.fullmatch(r"ptb/env/Source-test_env\.sample-[0-9a-f]{16}\.json", env.filename)


def test_source_env_unwraps_and_gives_up_cleanly():
    @functools.wraps(sample)
    def wrapper(*args, **kwargs):
        return sample(*args, **kwargs)

    class K:
        @classmethod
        def cm(cls):
            return 1

    assert SourceEnv.from_callable(wrapper).source.startswith("def sample")
    assert "def cm(cls)" in SourceEnv.from_callable(K.cm).source
    assert SourceEnv.from_callable(functools.partial(sample, 1)).name.endswith("sample")
    assert SourceEnv.from_callable(len) is None
    namespace: dict = {}
    exec("def typed_at_a_repl():\n    return 1\n", namespace)
    assert SourceEnv.from_callable(namespace["typed_at_a_repl"]) is None


def test_source_is_bounded_but_hashed_whole():
    source = "# " + "s" * (codeenv.MAX_TEXT + 100)
    contents = SourceEnv("big", source).contents()
    assert contents["source"].endswith("... [source truncated: 102 bytes]")
    assert contents["sha256"] == hashlib.sha256(source.encode()).hexdigest()


def test_source_is_scrubbed_but_hashed_as_it_is():
    """Review finding: a function's or cell's source stored ``token = "..."`` verbatim."""
    source = 'def connect():\n    token = "S3CR3Tabcdef0123"\n    keys = d.keys()\n    return token\n'
    env = SourceEnv("cell", source)
    contents = env.contents()
    assert "S3CR3T" not in contents["source"] and "S3CR3T" not in env.log()[1]
    assert contents["source"] == source.replace("S3CR3Tabcdef0123", "<redacted>")
    assert contents["sha256"] == hashlib.sha256(source.encode()).hexdigest()    # the real code's identity
    other = SourceEnv("cell", source.replace("S3CR3Tabcdef0123", "S3CR3Tother"))
    assert other.contents()["sha256"] != contents["sha256"] and other.filename != env.filename
    env.source = "x = 1\n"                                                      # contents follow the source
    assert env.contents()["source"] == "x = 1\n"


def test_source_from_callable_is_scrubbed(tmp_path, monkeypatch):
    (tmp_path / "secret_step.py").write_text(
        'def step(x, api_key="S3CR3Tdefault"):\n    password = "S3CR3Tliteral"\n    return x\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    import secret_step

    env = capture(func=secret_step.step)[-1]
    assert isinstance(env, SourceEnv) and "S3CR3T" not in env.log()[1]
    assert 'password = "<redacted>"' in env.contents()["source"]
    assert env.contents()["sha256"] == hashlib.sha256((tmp_path / "secret_step.py").read_bytes()).hexdigest()


def test_capture_with_func(repo, monkeypatch):
    monkeypatch.chdir(repo)
    envs = capture(func=sample)
    assert [type(e) for e in envs] == [PythonGithubEnv, SourceEnv]
    assert capture(func=sample)[1] is envs[1]


def test_docker_env_contents():
    env = DockerEnv("lab/img", "v3", "sha256:abc")
    assert env.contents() == {"CodeEnv type": "Docker", "image name": "lab/img", "tag": "v3",
                              "image ID": "sha256:abc"}
    assert isinstance(env, CodeEnv) and env.name == "lab/img" and not env.include_packages
    with_packages = DockerEnv("lab/img", "v3", "sha256:abc", True)
    assert ["wrapt", importlib.metadata.version("wrapt")] in with_packages.contents()["packages"]
    assert with_packages.filename != env.filename
    assert json.loads(env.log()[1]) == env.contents()


def test_detect_docker_from_the_environment(monkeypatch):
    assert detect_docker() is None                         # no image named anywhere
    monkeypatch.setenv("PTB_DOCKER_IMAGE", "lab/img:v3")
    monkeypatch.setenv("PTB_DOCKER_IMAGE_ID", "sha256:abc")
    env = detect_docker()
    assert (env.imagename, env.tag, env.imageID) == ("lab/img", "v3", "sha256:abc")
    monkeypatch.delenv("PTB_DOCKER_IMAGE_ID")
    monkeypatch.setenv("PTB_DOCKER_IMAGE", "localhost:5000/img")
    env = detect_docker()
    assert (env.imagename, env.tag, env.imageID) == ("localhost:5000/img", "latest", None)
    monkeypatch.setenv("PTB_DOCKER_IMAGE", "lab/img:v4@sha256:def")
    env = detect_docker()
    assert (env.imagename, env.tag, env.imageID) == ("lab/img", "v4", "sha256:def")
    monkeypatch.delenv("PTB_DOCKER_IMAGE")
    monkeypatch.setenv("container", "docker")              # what podman/systemd set in a container
    monkeypatch.setenv("CONTAINER_IMAGE", "gcr.io/lab/worker:2")
    env = detect_docker()
    assert (env.imagename, env.tag) == ("gcr.io/lab/worker", "2")


def test_capture_includes_the_detected_image(repo, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PTB_DOCKER_IMAGE", "lab/img:v3")
    envs = capture()
    assert isinstance(envs[1], DockerEnv) and envs[1].tag == "v3"


def test_dockerimageID_without_the_sdk(monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)       # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"pip install provenance-toolbox\[docker\]"):
        dockerimageID("lab/img", "v3")


def test_dockerimageID_not_found():
    docker = pytest.importorskip("docker")
    try:
        docker.from_env().ping()
    except Exception:
        pytest.skip("no Docker daemon")
    with pytest.raises(ValueError, match="not found"):
        dockerimageID("ptb-no-such-image", "never")


def test_installed_packages():
    packages = installed_packages()
    assert ("wrapt", importlib.metadata.version("wrapt")) in packages
    assert len(set(packages)) == len(packages)
    assert packages == sorted(packages, key=lambda p: (p[0].lower(), p[0], p[1]))
    assert PythonGithubEnv(".").packagelist == packages


def test_capture_does_not_import_pkg_resources(tmp_path):
    code = textwrap.dedent("""
        import sys, ptb.capture.env
        ptb.capture.env.capture()
        print("pkg_resources" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(ptbenv.__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("hangs", ["status", "diff"])
def test_a_hung_git_is_recorded_as_timed_out_not_waited_for(tmp_path, repo, monkeypatch, hangs):
    """A git that never answers (a stale NFS lock, a credential prompt) is killed after GIT_TIMEOUT."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = {hangs} ] && exec sleep 60; done\nexec {real} "$@"\n')
    fake.chmod(0o755)
    (repo / "a.py").write_text("x = 2\n")         # dirty, so the diff runs too
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(ptbgit, "GIT_TIMEOUT", 1.0)
    started = time.monotonic()
    env = PythonGithubEnv(str(repo))
    assert time.monotonic() - started < 10
    assert env.git == "timed out", (env.git, env.git_error)
    assert f"git {hangs} did not finish within 1 s" in env.git_error
    assert env.contents()["git"] == "timed out"


def test_the_snapshot_cache_stays_bounded(tmp_path, monkeypatch):
    """One entry per (repository, source file): a process importing many scripts keeps a bounded memory."""
    monkeypatch.chdir(tmp_path)           # no repository: each snapshot is one quick git call
    for i in range(ptbenv.MAX_GIT_CACHED + 20):
        capture(str(tmp_path / f"script{i}.py"))
    assert len(ptbenv._git_cache) <= ptbenv.MAX_GIT_CACHED + 1
