"""The 0.1.x API as people already write it: Process, logprocess, notes, env classes."""
from __future__ import annotations

import argparse
import configparser
import dataclasses
import os
import types

import pytest
from volumes import make_volume

import ptb
from ptb.store import updater


@pytest.fixture
def token_repo(git_repo):
    """The shared repository (its remote URL carries a token, as labs' CI clones do), edited."""
    (git_repo / "pipeline.py").write_text("def step(x):\n    return x + 2  # edited\n")
    return git_repo


def every_stored_byte(cloudpath):
    from cloudfiles import CloudFiles

    cf = CloudFiles(cloudpath)
    return b"".join(cf.get(key) or b"" for key in cf.list())


def test_logprocess_records_process_params_and_environment(cloudpath, token_repo):
    vol = make_volume(cloudpath)
    env = ptb.PythonGithubEnv(str(token_repo))
    assert env.url == "https://github.com/lab/pipeline.git" and env.repo_name == "pipeline"
    assert "edited" in env.diff and len(env.commithash) == 40
    assert ("wrapt", __import__("wrapt").__version__) in env.packagelist
    record = ptb.logprocess(vol, ptb.Process("mesh", {"mip": 2, "api_token": "abc123"}, env))
    found = ptb.history(cloudpath)
    assert found.processes == [record]
    assert record.parameters == {"mip": 2, "api_token": ptb.capture.params.REDACTED}
    stored = found.envs[record.code_envfiles[0]]
    assert stored["CodeEnv type"] == "PythonGithub" and stored["commit hash"] == env.commithash
    assert stored["diff"] == env.diff and ["wrapt", __import__("wrapt").__version__] in stored["packages"]
    updater.flush()
    blob = every_stored_byte(cloudpath)
    assert b"SECRETTOKEN" not in blob and b"abc123" not in blob


def test_duplicate_processes_raise_an_assertion_error_unless_allowed(cloudpath):
    process = ptb.Process("mesh", {"mip": 2})
    assert ptb.process_absent(cloudpath, process)
    ptb.logprocess(cloudpath, process)
    assert not ptb.process_absent(cloudpath, process)
    with pytest.raises(AssertionError, match="already logged"):
        ptb.logprocess(cloudpath, ptb.Process("mesh", {"mip": 2}))
    with pytest.raises(ptb.DuplicateProcessError):
        ptb.logprocess(cloudpath, process)
    ptb.logprocess(cloudpath, process, duplicate=True)
    assert ptb.process_absent(cloudpath, ptb.Process("mesh", {"mip": 3}))
    assert len(ptb.history(cloudpath).processes) == 1  # the same process is listed once


@dataclasses.dataclass
class Settings:
    mip: int = 2
    password: str = "hunter2"


def parameter_forms():
    config = configparser.ConfigParser()
    config["mesh"] = {"mip": "2", "password": "hunter2"}
    return [
        ({"mip": 2, "password": "hunter2"}, {"mip": 2, "password": "<redacted>"}),
        (types.SimpleNamespace(mip=2, password="hunter2"), {"mip": 2, "password": "<redacted>"}),
        (argparse.Namespace(mip=2, password="hunter2"), {"mip": 2, "password": "<redacted>"}),
        (Settings(), {"mip": 2, "password": "<redacted>"}),
        (config, {"mesh": {"mip": "2", "password": "<redacted>"}}),
    ]


@pytest.mark.parametrize("given, recorded", parameter_forms())
def test_every_parameter_form_is_recorded_by_value(cloudpath, given, recorded):
    ptb.logprocess(cloudpath, ptb.Process("mesh", given))
    assert ptb.history(cloudpath).processes[0].parameters == recorded


def test_unsupported_parameters_are_a_clear_error():
    with pytest.raises(ptb.InvalidInputError, match="parameters"):
        ptb.Process("mesh", 42)


def test_docker_env_keeps_0_1_attributes_and_file_shape(cloudpath):
    env = ptb.DockerEnv("lab/segmenter", "v3", "sha256:abcdef", include_packages=True)
    assert (env.imagename, env.tag, env.imageID, env.include_packages) == ("lab/segmenter", "v3", "sha256:abcdef", True)
    record = ptb.logprocess(cloudpath, ptb.Process("segment", {}, env))
    stored = ptb.history(cloudpath).envs[record.code_envfiles[0]]
    assert {k: stored[k] for k in ("CodeEnv type", "image name", "tag", "image ID")} == {
        "CodeEnv type": "Docker", "image name": "lab/segmenter", "tag": "v3", "image ID": "sha256:abcdef"}
    assert stored["packages"]


def test_notes_of_every_type_round_trip(cloudpath):
    motivation = ptb.addmotivation(cloudpath, "why: proofreading round 3")
    result = ptb.addresult(cloudpath, "12 more synapses; 3 merges \n fixed")
    generic = ptb.addgeneric(cloudpath, "bizarre output in slice 37 ✓", timestamp="2030-01-01T00:00:00Z")
    assert ptb.parsenotes(cloudpath) == [motivation, result, generic]
    assert not ptb.note_absent(cloudpath, "12 more synapses; 3 merges \n fixed", ptb.NoteType.RESULT)
    assert ptb.note_absent(cloudpath, "12 more synapses; 3 merges \n fixed", "MOTIVATION")
    assert ptb.note_absent(cloudpath, "never written")


def test_process_log_keeps_the_0_1_shape(token_repo):
    env = ptb.PythonGithubEnv(str(token_repo))
    entry, contents = ptb.Process("mesh", {"mip": 2}, env).log()
    assert entry == {"task": "mesh", "parameters": {"mip": 2}, "code_envfiles": [env.filename]}
    assert "SECRETTOKEN" not in contents[0]


def test_dockerimageID_without_a_daemon_says_so():
    pytest.importorskip("docker")
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("a docker daemon is present")
    with pytest.raises(ptb.ProvenanceError, match="cannot ask the Docker daemon for the ID of lab/segmenter:v3"):
        ptb.dockerimageID("lab/segmenter", "v3")


@pytest.mark.parametrize("call, message", [
    (lambda path: ptb.logprocess(path, "meshing"), "expected a ptb.Process"),
    (lambda path: ptb.process_absent(path, {"task": "meshing"}), "expected a ptb.Process"),
    (lambda path: ptb.Process("mesh", {}, "abc"), "code environments must be"),
    (lambda path: ptb.Process("", {}), "needs a description"),
    (lambda path: ptb.addnote(path, True, "x"), "note type True"),
    (lambda path: ptb.addresult(path, 42), "note content must be a string"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, call, message):
    path = "file://" + str(tmp_path / "vol")
    with pytest.raises(ptb.InvalidInputError, match=message):
        call(path)
    assert not (tmp_path / "vol").exists()
