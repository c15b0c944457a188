"""The examples run as written, ``ptb demo``'s pipeline documents itself, and ptb.testing works."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import ptb
import ptb.testing
from ptb.decorate import provenance
from ptb.demo import run_demo
from ptb.records import NoteType

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PUBLIC = ("provenance", "documented", "current_run", "load_ipython_extension")
needs_exports = pytest.mark.skipif(
    not all(hasattr(ptb, name) for name in PUBLIC),
    reason=f"the examples use ptb.{', ptb.'.join(PUBLIC)}, not yet exported by ptb/__init__.py")


@pytest.fixture(autouse=True)
def environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PTB_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def statuses(cloudpath):
    return [(run.description, run.status) for run in ptb.history(cloudpath).runs]


def run_example(name, cwd, *args, env=None):
    """Run ``examples/NAME`` as a user would; its stdout."""
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_exports
def test_the_pipeline_script_runs_and_documents_its_steps(tmp_path):
    directory = tmp_path / "volume"
    assert "label failed as planned" in run_example("pipeline.py", tmp_path, directory)
    cloudpath = "file://" + str(directory)
    assert statuses(cloudpath) == [("smooth the image", "succeeded"), ("threshold into a mask", "succeeded"),
                                   ("label connected components", "failed")]
    hist = ptb.history(cloudpath)
    assert hist.runs[2].error["type"] == "ValueError"
    assert any(n.content.endswith("voxels in the mask") for n in hist.notes)
    assert all(p.code_envfiles for p in hist.processes)


@needs_exports
def test_the_chunked_step_is_one_process_with_a_run_per_chunk(tmp_path):
    directory = tmp_path / "work"
    out = run_example("chunked.py", tmp_path, directory)
    assert "16 chunk tasks, 2 failed:" in out and "2 of 2 succeeded this time" in out
    assert "threshold into a mask: 16 runs — 14 succeeded, 2 failed — " in out          # the grouped log
    assert "threshold into a mask: 18 runs — 16 succeeded, 2 failed — " in out          # after the re-run
    assert sum("  run  " in line for line in out.splitlines()) == 2                      # the failed ones
    assert "14 motivation notes of these runs not shown" in out
    hist = ptb.history("file://" + str(directory / "mask"))
    (process,) = hist.processes
    assert "offset" not in process.parameters and process.parameters["shape"] == [16, 16, 8]
    offsets = [run.parameters["offset"] for run in hist.runs]
    assert len(offsets) == 18 and len({tuple(o) for o in offsets}) == 16
    failed = [run.parameters["offset"] for run in hist.runs if run.status == "failed"]
    assert sorted(failed) == [[16, 32, 0], [48, 0, 0]]
    assert [run.status for run in hist.runs if run.parameters["offset"] in failed] == ["failed", "failed",
                                                                                       "succeeded", "succeeded"]


# What `pip install provenance-toolbox` does not bring: the extras' and the engines' packages.
NOT_INSTALLED = ("taskqueue", "dask", "distributed", "joblib", "ray", "docker", "IPython", "nbformat", "hypothesis")


@pytest.mark.parametrize("name", ["pipeline.py", "chunked.py"])
def test_the_examples_run_on_a_plain_install(tmp_path, name):
    """As after ``pip install provenance-toolbox`` alone: the optional packages cannot be imported."""
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({NOT_INSTALLED!r})); "
            f"sys.argv = [{str(EXAMPLES / name)!r}, {str(tmp_path / 'work')!r}]; "
            f"runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "label failed as planned" in done.stdout if name == "pipeline.py" else "16 runs" in done.stdout
    assert "ModuleNotFoundError" not in done.stderr


def test_the_default_export_needs_no_extra():
    """``ptb export PATH`` writes PROV-JSON by default, so ``prov`` is a dependency, not only an extra."""
    import configparser
    import re

    from ptb.cli import export

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    required = {re.split(r"[<>=!~\[; ]", line.strip())[0].lower()
                for line in config["options"]["install_requires"].splitlines() if line.strip()}
    default = next(p.default for p in export.params if p.name == "fmt")
    assert default == "prov-json" and "prov" in required


@needs_exports
def test_the_chunked_example_cleans_up_its_temporary_directory(tmp_path):
    run_example("chunked.py", tmp_path, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert not list(tmp_path.glob("ptb-chunked-*"))


@needs_exports
def test_the_notebook_runs_with_the_context_manager_and_the_magic(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    directory = tmp_path / "volume"
    monkeypatch.setenv("PTB_EXAMPLE_DIR", str(directory))
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    hist = ptb.history("file://" + str(directory))
    block, cell = hist.runs
    assert (block.description, block.status) == ("manual cleanup of speckle", "succeeded")
    assert hist.process(block.process).parameters == {"mip": 0, "level": 100}
    assert [n.content for n in hist.notes_of(block.id) if n.note_type is NoteType.RESULT] == ["speckle removed"]
    assert (cell.description, cell.status) == ("count foreground voxels", "succeeded")
    sources = [hist.envs[f]["source"] for f in hist.process(cell.process).code_envfiles if "/Source-" in f]
    assert sources == ["foreground = int((vol[:, :, :] > level).sum())\nforeground\n"]
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    (shown,) = [o for o in outputs if o.output_type == "execute_result"]       # the cell's last value
    from cloudvolume import CloudVolume

    assert int(shown["data"]["text/plain"]) == int((CloudVolume("file://" + str(directory))[:, :, :] > 100).sum())


def test_run_demo_documents_a_small_pipeline(tmp_path):
    cloudpath = run_demo(str(tmp_path / "demo"))
    assert cloudpath == "file://" + str(tmp_path / "demo")
    assert statuses(cloudpath) == [("smooth with a 3x3x3 box filter", "succeeded"),
                                   ("threshold into a foreground mask", "succeeded"),
                                   ("mesh the mask", "failed")]
    hist = ptb.history(cloudpath)
    assert hist.notes[0].content.startswith("ptb demo:") and hist.notes[0].run is None
    assert any(n.content.startswith("mean intensity after smoothing") for n in hist.notes)
    assert len(hist.processes) == 3


def test_run_demo_makes_its_own_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cloudpath = run_demo()
    assert cloudpath.startswith("file://" + str(tmp_path) + "/ptb-demo-")
    assert len(ptb.history(cloudpath).runs) == 3


# ------------------------------------------------------------------ ptb.testing
def test_testing_helpers_for_users_own_tests():
    vol = ptb.testing.volume()
    assert vol.cloudpath.startswith("mem://") and vol.shape[:3] == (8, 8, 8)

    @provenance("dst", "segment", motivation="for round 3", result=lambda n: f"{n} segments")
    def segment(dst, threshold=0.3, sizes=(1, 2)):
        return 7

    segment(vol.cloudpath)
    segment(vol.cloudpath, threshold=0.5)
    run = ptb.testing.assert_documented(vol, "segment", parameters={"threshold": 0.5, "sizes": (1, 2)},
                                        motivation="round 3", result="7 segments")
    assert run.status == "succeeded"
    ptb.testing.assert_documented(vol, "segment", count=2)
    ptb.testing.assert_documented(vol, "segment", status="failed", count=0)
    with pytest.raises(AssertionError, match=r"found 0; documented:\n  'segment' \[succeeded\]"):
        ptb.testing.assert_documented(vol, "segment", parameters={"threshold": 0.9})
    with pytest.raises(AssertionError, match="found 2"):
        ptb.testing.assert_documented(vol, count=1)
    assert isinstance(ptb.testing.records(vol), ptb.History)


def test_testing_volume_on_file_and_at_a_path(tmp_path):
    on_disk = ptb.testing.volume("file", shape=(4, 4, 4))
    assert on_disk.cloudpath.startswith("file://") and os.path.isdir(on_disk.cloudpath[7:])
    here = ptb.testing.volume(path=str(tmp_path / "here"))
    assert here.cloudpath == "file://" + str(tmp_path / "here")
    with pytest.raises(ValueError):
        ptb.testing.volume("gs")


def test_testing_volume_on_file_is_removed_when_the_process_exits(tmp_path):
    code = "import ptb.testing; print(ptb.testing.volume('file').cloudpath[len('file://'):])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    made = Path(done.stdout.strip())
    assert made.name.startswith("ptb-testing-") and not made.exists()
