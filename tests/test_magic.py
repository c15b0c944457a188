"""The %%provenance cell magic, driven through a real IPython InteractiveShell."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cloudvolume import CloudVolume

import ptb
import ptb.magic
from ptb.records import NoteType, RunRecord

InteractiveShell = pytest.importorskip("IPython.core.interactiveshell").InteractiveShell


@pytest.fixture(scope="module")
def shell():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ptb.magic")
    return shell


@pytest.fixture
def vol(tmp_path, monkeypatch, shell):
    monkeypatch.setenv("PTB_SPOOL_DIR", str(tmp_path / "spool"))
    vol = CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path="file://" + str(tmp_path / "v"),
                                 resolution=(1, 1, 1))
    shell.user_ns.update(path=vol.cloudpath, vol=vol, mip=2, threshold=0.25)
    return vol


def run_cell(shell, source):
    return shell.run_cell(source, store_history=True)


def notes(hist, run, kind):
    return [n.content for n in hist.notes_of(run.id) if n.note_type is kind]


def test_a_cell_is_documented_with_its_source_and_parameters(shell, vol):
    cell = ('%%provenance {path} "count voxels" -m "check the threshold" -p mip,threshold\n'
            "voxels = int((vol[:, :, :] > threshold).sum()) + mip\n"
            "voxels * 10\n")
    result = run_cell(shell, cell)
    assert result.success and result.result == 20 and shell.user_ns["voxels"] == 2

    hist = ptb.history(vol)
    (run,) = hist.runs
    proc = hist.process(run.process)
    assert run.description == "count voxels" and run.status == "succeeded"
    assert proc.parameters == {"mip": 2, "threshold": 0.25}
    assert notes(hist, run, NoteType.MOTIVATION) == ["check the threshold"]
    envs = [hist.envs[f] for f in proc.code_envfiles]
    (source,) = [e for e in envs if e["CodeEnv type"] == "Source"]
    assert source["source"] == "voxels = int((vol[:, :, :] > threshold).sum()) + mip\nvoxels * 10\n"
    assert any(e["CodeEnv type"] == "PythonGithub" for e in envs)


def test_the_volume_may_be_a_notebook_variable_and_the_result_given(shell, vol):
    result = run_cell(shell, '%%provenance vol "touch" -r "nothing to see"\nx = 1\n')
    assert result.success and result.result is None
    hist = ptb.history(vol)
    assert notes(hist, hist.runs[0], NoteType.RESULT) == ["nothing to see"]


def test_a_failing_cell_is_recorded_and_raises_its_own_exception(shell, vol):
    result = run_cell(shell, '%%provenance {path} "fragile"\nfailure = ValueError("bad slab")\nraise failure\n')
    assert not result.success
    assert result.error_in_exec is shell.user_ns["failure"]
    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "failed" and run.error["message"] == "bad slab"
    assert notes(hist, run, NoteType.RESULT)[0].endswith("ValueError: bad slab")


def test_notes_and_nested_runs_inside_a_cell(shell, vol):
    shell.user_ns["step"] = ptb.decorate.provenance("dst", "inner step")(lambda dst: 1)
    result = run_cell(shell, '%%provenance {path} "outer cell"\n'
                             'import ptb\nptb.run.current_run().note("looked fine")\nstep(path)\n')
    assert result.success
    hist = ptb.history(vol)
    cell_run = next(r for r in hist.runs if r.description == "outer cell")
    inner = next(r for r in hist.runs if r.description == "inner step")
    assert inner.parent == cell_run.id
    assert notes(hist, cell_run, NoteType.GENERIC) == ["looked fine"]


def test_an_edited_cell_records_a_new_source(shell, vol):
    for threshold in ("0.5", "0.75"):
        assert run_cell(shell, f'%%provenance {{path}} "tune"\nlevel = {threshold}\n').success
    env_dir = Path(vol.cloudpath[len("file://"):]) / "ptb" / "env"
    stored = {json.loads(f.read_text())["source"] for f in env_dir.glob("Source-*.json")}
    assert stored == {"level = 0.5\n", "level = 0.75\n"}
    hist = ptb.history(vol)
    assert len(hist.processes) == 1 and len(hist.runs) == 2        # same description and parameters
    if "code_envfiles" in RunRecord.__dataclass_fields__:          # each run names its own cell source
        linked = [hist.envs[f]["source"] for run in hist.runs for f in run.code_envfiles if "/Source-" in f]
        assert linked == ["level = 0.5\n", "level = 0.75\n"]


@pytest.mark.parametrize("line, message", [
    ('%%provenance {path}', "description"),
    ('%%provenance {path} "x" -p nowhere', "nowhere"),
    ('%%provenance not_a_variable "x"', "not_a_variable"),
    ('%%provenance {path} "unbalanced', "quotation"),
])
def test_usage_errors_run_nothing(shell, vol, line, message, capsys):
    shell.user_ns.pop("ran", None)
    result = run_cell(shell, line + "\nran = True\n")
    assert not result.success and message in str(result.error_in_exec)
    assert "ran" not in shell.user_ns and ptb.history(vol).runs == []


def test_a_syntax_error_starts_no_run(shell, vol):
    result = run_cell(shell, '%%provenance {path} "broken"\nx = (\n')
    assert not result.success and isinstance(result.error_in_exec, SyntaxError)
    assert ptb.history(vol).runs == []


def test_load_ext_ptb(shell, vol):
    if not hasattr(ptb, "load_ipython_extension"):
        pytest.skip("ptb/__init__.py does not export load_ipython_extension yet")
    shell.run_line_magic("load_ext", "ptb")
    assert run_cell(shell, '%%provenance {path} "via load_ext ptb"\n1\n').success


def test_documented_in_a_cell_records_the_cells_source(shell, vol):
    cell = ('import ptb.block\n'
            'with ptb.block.documented(path, "block in a cell", parameters=["mip"]) as run:\n'
            '    pass\n')
    assert run_cell(shell, cell).success
    hist = ptb.history(vol)
    (proc,) = hist.processes
    assert proc.parameters == {"mip": 2}
    (source,) = [hist.envs[f]["source"] for f in proc.code_envfiles if "/Source-" in f]
    assert source == cell


def test_secrets_in_a_cell_its_exception_and_its_traceback_never_reach_the_volume(shell, vol):
    token, ticket, bearer = ("S3CR3T" + word + "X" for word in ("CELLTOKEN", "CELLTICKET", "CELLBEARER"))
    cell = ('%%provenance {path} "call the api" --redact ticket\n'
            f'api_token = "{token}"\n'
            f'ticket = "{ticket}"\n'
            f'raise PermissionError("401 with Authorization: Bearer {bearer}")\n')
    result = run_cell(shell, cell)
    assert not result.success and bearer in str(result.error_in_exec)      # the user's own exception
    ptb.store.updater.flush()
    hist = ptb.history(vol)
    (run,) = hist.runs
    assert run.status == "failed" and "<redacted>" in run.error["traceback"]
    (source,) = [e["source"] for e in hist.envs.values() if e["CodeEnv type"] == "Source"]
    assert source.startswith('api_token = "<redacted>"\nticket = "<redacted>"\n')
    root = Path(vol.cloudpath[len("file://"):])
    stored = "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())
    assert not [s for s in (token, ticket, bearer) if s in stored]


def test_per_run_names_the_cells_own_values_not_the_step(shell, vol):
    shell.user_ns.update(bbox=[0, 0, 0, 8, 8, 8])
    cell = '%%provenance {path} "count voxels in a chunk" -p mip --per-run bbox\nint(vol[:, :, :].sum())\n'
    assert run_cell(shell, cell).success
    shell.user_ns.update(bbox=[8, 0, 0, 16, 8, 8])
    assert run_cell(shell, cell).success
    hist = ptb.history(vol)
    (process,) = hist.processes                  # one step, two chunks
    assert process.parameters == {"mip": 2}
    assert sorted(r.parameters["bbox"] for r in hist.runs) == [[0, 0, 0, 8, 8, 8], [8, 0, 0, 16, 8, 8]]
    assert not run_cell(shell, '%%provenance {path} "x" --per-run nowhere\n1\n').success
