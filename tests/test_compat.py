"""``import provenancetoolbox`` after the upgrade: 0.1.x's names and signatures, served by ptb.

Compared with the real provenance-toolbox 0.1.5 (installed from the package index by the
``toolbox_015`` fixture): the same program runs under both, in separate OS processes, and
must see the same things.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from cloudfiles import CloudFiles
from oldtoolbox import environ
from volumes import make_volume

import ptb

SURFACE = r'''
import enum, importlib, inspect, json, types, warnings
warnings.simplefilter("ignore")

def own(obj):
    if isinstance(obj, types.ModuleType):
        return obj.__name__.startswith("provenancetoolbox")
    module = getattr(obj, "__module__", None) if isinstance(obj, type) or callable(obj) else type(obj).__module__
    return isinstance(module, str) and (module.startswith("provenancetoolbox") or module == "builtins")

def members(cls, instance):
    out = {}
    for name in sorted(set(dir(cls)) | set(vars(instance) if instance is not None else ())):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name, None)
        if callable(attr) and not isinstance(attr, type):
            out[name] = "method " + str(inspect.signature(getattr(cls, name)))
        else:
            out[name] = "attribute"          # a property or an instance attribute
    return out

def describe(obj, name, instance=None):
    if isinstance(obj, types.ModuleType):
        return "module " + obj.__name__
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        return {"enum": {m.name: m.value for m in obj}}
    if isinstance(obj, type):
        return {"init": str(inspect.signature(obj.__init__)), "members": members(obj, instance)}
    if callable(obj):
        return "function " + str(inspect.signature(obj))
    return "value " + (type(obj).__name__ if name == "__version__" else repr(obj))

import provenancetoolbox as top
samples = {
    "Note": lambda m: m.Note("2024-05-01 12:00:00", "RESULT", "x"),
    "PythonGithubEnv": lambda m: m.PythonGithubEnv("."),
    "DockerEnv": lambda m: m.DockerEnv("lab/seg", "v3", "sha256:abc"),
    "Process": lambda m: m.Process("mesh", {"mip": 2}),
}
out = {}
for name in ["provenancetoolbox", "provenancetoolbox.process", "provenancetoolbox.notebook",
             "provenancetoolbox.utils"]:
    module = importlib.import_module(name)
    names = {n for n in vars(module) if not n.startswith("_") or n in ("__all__", "__version__")}
    out[name] = {
        "names": sorted(names),
        "own": sorted(n for n in names if own(vars(module)[n])),
        "described": {n: describe(vars(module)[n], n, samples[n](module) if n in samples else None)
                      for n in sorted(names) if not isinstance(vars(module)[n], types.ModuleType)
                      or vars(module)[n].__name__.startswith("provenancetoolbox")},
    }
print(json.dumps(out))
'''

# A 0.1.x script as its users wrote it: every function of the API, and a code environment class
# of the user's own. It prints what it saw; the same text runs under 0.1.5 and under ptb.
USAGE = r'''
import datetime, json, sys, types
import cloudvolume as cv
import provenancetoolbox as ptb
from provenancetoolbox import notebook, process, utils
from provenancetoolbox.process import Process, PythonGithubEnv, DockerEnv
from provenancetoolbox.notebook import NoteType
from provenancetoolbox.utils import dockerimageID

class ConfigEnv(process.CodeEnv):
    """A code environment of the user's own, as 0.1.x let them write one."""
    @property
    def filename(self):
        return "config_v1"
    @property
    def contents(self):
        return json.dumps({"CodeEnv type": "Config", "file": self.codeptr})

path = sys.argv[1]
info = cv.CloudVolume.create_new_info(1, "image", "uint8", "raw", [4, 4, 40], [0, 0, 0], [64, 64, 16])
vol = cv.CloudVolume(path, info=info)
vol.commit_info()
vol.commit_provenance()
out = {}

vol = cv.CloudVolume(path)
ptb.addmotivation(vol, "why this volume exists")
ptb.addresult(vol, "what came of it", "2024-05-01 12:00:00")
notebook.addnote(vol, NoteType.GENERIC, "anything else", datetime.datetime(2024, 5, 2, 9, 30))
vol = cv.CloudVolume(path)
notes = ptb.parsenotes(vol)
out["notes"] = sorted([n.note_type.name, n.content] for n in notes)
out["packed"] = sorted(str(n) for n in notes if n.content != "why this volume exists")
out["timestamps"] = sorted({f"{type(n.timestamp).__name__} tz={n.timestamp.tzinfo}" for n in notes})
out["recent"] = [abs(n.timestamp - datetime.datetime.now()).total_seconds() < 600
                 for n in notes if n.content == "why this volume exists"]
out["note_absent"] = [ptb.note_absent(vol, "what came of it", NoteType.RESULT),
                      ptb.note_absent(vol, "what came of it", NoteType.GENERIC),
                      ptb.note_absent(vol, "never written", NoteType.RESULT)]
out["Note"] = str(notebook.Note("2024-05-01 12:00:00", "RESULT", "x"))
out["NoteType"] = [[t.name, t.value] for t in NoteType]

env = PythonGithubEnv(".")
out["url"] = env.url
out["env"] = [env.repo_name, env.commithash == env.repo.head.commit.hexsha, isinstance(env.diff, str),
              len(env.packagelist) > 10, all(len(p) == 2 for p in env.packagelist)]
docker = DockerEnv("lab/seg", "v3", "sha256:abc", include_packages=True)
name, text = docker.log()
stored = json.loads(text)
out["docker"] = [stored["CodeEnv type"], stored["image name"], stored["tag"], stored["image ID"],
                 len(stored["packages"]) > 10, isinstance(name, str)]

watershed = Process("watershed", {"threshold": 0.3, "mip": 1}, env, docker)
entry, contents = watershed.log()
out["log"] = [sorted(entry), entry["task"], entry["parameters"], len(entry["code_envfiles"]), len(contents)]
out["logparams"] = [watershed.logparams(), Process("ns", types.SimpleNamespace(a=1)).logparams()]
out["absent"] = [ptb.process_absent(vol, watershed)]
ptb.logprocess(vol, watershed)
vol = cv.CloudVolume(path)
out["absent"] += [ptb.process_absent(vol, watershed),
                  ptb.process_absent(vol, Process("watershed", {"threshold": 0.4, "mip": 1}))]
try:
    ptb.logprocess(vol, Process("watershed", {"threshold": 0.3, "mip": 1}))
    out["duplicate"] = "logged"
except AssertionError:
    out["duplicate"] = "AssertionError"
ptb.logprocess(vol, Process("watershed", {"threshold": 0.3, "mip": 1}), duplicate=True)
ptb.logprocess(vol, Process("with config", {"x": 1}, ConfigEnv("pipeline.cfg")))

vol = cv.CloudVolume(path)
from cloudfiles import CloudFiles
files = CloudFiles(path)
out["processing"] = [[e["task"], e["parameters"]] for e in vol.provenance.processing]
named = [f for e in vol.provenance.processing for f in e["code_envfiles"]]
out["stored"] = sorted({files.get_json(f)["CodeEnv type"] for f in named})
out["config env"] = [files.get_json(f) for f in named if "onfig" in f][0]
out["codefile_absent"] = [process.codefile_absent(vol, f) for f in named[:1]] + [process.codefile_absent(vol, "x")]
out["jsonify"] = process.jsonify({"a": (1, 2), "b": {"c": None}})
out["repo_name_from_url"] = process.repo_name_from_url("https://github.com/lab/pipeline.git")
utils.sendjsonfile(vol, "extra.json", '{"b": 1, "a": [1, 2]}')
process.logjsonfiles(vol, ["more.json"], ['{"c": 3}'])
process.logcodefiles(vol, ["code.json"], ['{"d": 4}'])
out["json files"] = [files.get("extra.json").decode(), files.get_json("more.json"), files.get_json("code.json")]
try:
    dockerimageID("lab/no-such-image", "v0")
    out["dockerimageID"] = "found"
except ValueError:
    out["dockerimageID"] = "ValueError"         # a Docker daemon without that image
except Exception:
    out["dockerimageID"] = "no daemon"
print(json.dumps(out))
'''

# The example in 0.1.x's README (provenance-toolbox 0.1.5's PyPI page), verbatim.
README_015 = '''\
import provenancetoolbox as ptb
import cloudvolume as cv

volume = cv.CloudVolume(cloudpath)

# Defining a process
description = 'Properly documenting a process
parameters = {'prudence': 10/10}
code_env = ptb.PythonGithubEnv('.')  # path to the github repo directory

demoprocess = ptb.Process(description, parameters, code_env)

logprocess(cloudvolume, demoprocess)
'''
README_015_NOTES = '''\
ptb.addmotivation(cloudvolume, "Bootstrapping: adding segments 19&34")
ptb.addresult(cloudvolume, "Found more synapses")
ptb.addgeneric(cloudvolume, "Bizarre output in slice 37")
'''


def run_script(tmp_path: Path, cwd: Path, name: str, code: str, toolbox: str, target=None, *args: str,
               flags: tuple = ()) -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(code)
    return subprocess.run([sys.executable, *flags, str(script), *args], capture_output=True, text=True, cwd=cwd,
                          env=environ(toolbox, target), timeout=180)


def output(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_same_names_and_signatures_as_015(toolbox_015, git_repo, tmp_path):
    old = output(run_script(tmp_path, git_repo, "surface.py", SURFACE, "0.1.5", toolbox_015))
    new = output(run_script(tmp_path, git_repo, "surface.py", SURFACE, "ptb"))
    assert set(old) == set(new)
    for module, was in old.items():
        now = new[module]
        api = {n: was["described"][n] for n in was["own"]}
        assert api, module
        assert {n: now["described"].get(n) for n in api} == api, module
        assert set(now["names"]) <= set(was["names"]), f"new names under {module}"
    assert set(old["provenancetoolbox"]["own"]) == {
        "__version__", "process", "notebook", "utils", "Process", "PythonGithubEnv", "DockerEnv", "logprocess",
        "process_absent", "NoteType", "parsenotes", "note_absent", "addmotivation", "addresult", "addgeneric",
        "dockerimageID"}


def test_a_015_script_runs_unchanged_and_sees_what_it_saw_under_015(toolbox_015, git_repo, tmp_path):
    old_path, new_path = f"file://{tmp_path / 'old'}", f"file://{tmp_path / 'new'}"
    old = output(run_script(tmp_path, git_repo, "usage.py", USAGE, "0.1.5", toolbox_015, old_path))
    new = output(run_script(tmp_path, git_repo, "usage.py", USAGE, "ptb", None, new_path))
    differ = {"url", "processing"}
    assert {k: v for k, v in new.items() if k not in differ} == {k: v for k, v in old.items() if k not in differ}
    assert new["timestamps"] == ["datetime tz=None"] and new["recent"] == [True]
    assert new["absent"] == [True, False, True] and new["duplicate"] == "AssertionError"
    assert new["config env"] == {"CodeEnv type": "Config", "file": "pipeline.cfg"}
    # where ptb differs on purpose: no credentials, and one process listed once
    assert "SECRETTOKEN" in old["url"] and new["url"] == "https://github.com/lab/pipeline.git"
    assert old["processing"][:2] == [["watershed", {"mip": 1, "threshold": 0.3}]] * 2
    assert new["processing"] == [["watershed", {"mip": 1, "threshold": 0.3}], ["with config", {"x": 1}]]
    files = CloudFiles(new_path)
    assert not any(b"SECRETTOKEN" in (files.get(key) or b"") for key in files.list())
    # ptb keeps it all in its journal, as for any ptb volume
    h = ptb.history(new_path)
    assert len(h.processes) == 2 and len(h.notes) == 3 and h.problems == []


def test_the_example_in_015s_readme_runs_as_under_015(toolbox_015, git_repo, tmp_path):
    # No version could run the example verbatim; these are the fewest changes that run it.
    example = (README_015
               .replace("'Properly documenting a process\n", "'Properly documenting a process'\n")  # a typo
               .replace("logprocess(cloudvolume", "ptb.logprocess(volume"))       # as defined above it
    notes = README_015_NOTES.replace("(cloudvolume,", "(volume,")
    assert example.count("\n") == README_015.count("\n") and notes.count("(volume,") == 3
    code = "import sys\ncloudpath = sys.argv[1]\n" + example + notes + textwrap.dedent('''
        import json
        vol = cv.CloudVolume(cloudpath)
        print(json.dumps({"notes": sorted([n.note_type.name, n.content] for n in ptb.parsenotes(vol)),
                          "processing": [[e["task"], e["parameters"]] for e in vol.provenance.processing]}))
        ''')
    seen = {}
    for toolbox, target in (("0.1.5", toolbox_015), ("ptb", None)):
        path = f"file://{tmp_path / toolbox}"
        assert make_volume(path).provenance.processing == []
        seen[toolbox] = output(run_script(tmp_path, git_repo, "readme.py", code, toolbox, target, path))
    assert seen["ptb"] == seen["0.1.5"] == {
        "notes": [["GENERIC", "Bizarre output in slice 37"], ["MOTIVATION", "Bootstrapping: adding segments 19&34"],
                  ["RESULT", "Found more synapses"]],
        "processing": [["Properly documenting a process", {"prudence": 1.0}]]}


SUBMODULE_IMPORTS = '''\
from provenancetoolbox.process import Process
from provenancetoolbox.notebook import NoteType
from provenancetoolbox.utils import dockerimageID
import provenancetoolbox as ptb
import provenancetoolbox.process
'''


def test_one_deprecation_warning_that_says_import_ptb(tmp_path):
    for flags in ((), ("-W", "always::DeprecationWarning")):
        done = run_script(tmp_path, tmp_path, "script.py", SUBMODULE_IMPORTS, "ptb", None, flags=flags)
        assert done.returncode == 0, done.stderr
        warned = [line for line in done.stderr.splitlines() if "Warning" in line]
        assert len(warned) == 1, done.stderr
        assert warned[0].startswith(f"{tmp_path / 'script.py'}:1: DeprecationWarning: provenancetoolbox is")
        assert "`import ptb`" in warned[0]


def test_importing_it_costs_no_more_than_import_ptb(tmp_path):
    code = textwrap.dedent('''
        import json, sys, warnings
        warnings.simplefilter("ignore")
        import ptb
        before = set(sys.modules)
        import provenancetoolbox
        heavy = [m for m in ("cloudvolume", "cloudfiles", "git", "docker", "pkg_resources", "numpy")
                 if m in sys.modules]
        print(json.dumps({"new": sorted(set(sys.modules) - before), "heavy": heavy}))
        ''')
    seen = output(run_script(tmp_path, tmp_path, "cost.py", code, "ptb"))
    assert seen == {"new": ["provenancetoolbox", "provenancetoolbox.notebook", "provenancetoolbox.process",
                            "provenancetoolbox.utils"], "heavy": []}
