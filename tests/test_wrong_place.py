"""Never a silent wrong answer: a call that does not bind, a mistyped path, a volume deleted mid-call.

Real volumes, real calls; nothing of ptb is mocked.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from cloudvolume import CloudVolume

import ptb
from ptb.decorate import provenance
from ptb.errors import VolumeUnavailableError
from ptb.run import RecordingWarning


def make_volume(path: Path) -> CloudVolume:
    return CloudVolume.from_numpy(np.zeros((8, 8, 8), np.uint8), vol_path=f"file://{path}", resolution=(1, 1, 1))


def _recording_warnings(caught) -> list:
    return [str(w.message) for w in caught if issubclass(w.category, RecordingWarning)]


# ------------------------------------------------------------------ a call that does not bind
def test_a_call_that_does_not_bind_raises_as_undecorated_and_records_nothing(tmp_path: Path):
    make_volume(tmp_path / "v")

    def step(a: int, b: int = 2) -> int:
        return a + b

    documented = provenance(f"file://{tmp_path / 'v'}", "a step")(step)
    with pytest.raises(TypeError) as bare:
        step(1, 2, 3)
    with pytest.raises(TypeError) as decorated:
        documented(1, 2, 3)
    assert str(decorated.value) == str(bare.value)
    assert ptb.history(f"file://{tmp_path / 'v'}").runs == []     # no run with empty parameters


# ------------------------------------------------------------------ a mistyped path
def test_a_mistyped_path_is_said_at_entry_and_at_the_end(tmp_path: Path):
    make_volume(tmp_path / "segmentation")
    typo = f"file://{tmp_path / 'segmentaton'}"

    @provenance(typo, "meshing")
    def mesh() -> int:
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mesh() == 1
    said = _recording_warnings(caught)
    assert len(said) == 2, said
    assert "no info file" in said[0] and typo in said[0]
    assert "no volume" in said[1] and typo in said[1] and "is the path right?" in said[1]


def test_a_step_that_creates_its_volume_is_warned_only_at_entry(tmp_path: Path):
    path = tmp_path / "new"

    @provenance(f"file://{path}", "create the output volume")
    def create() -> None:
        make_volume(path)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create()
    said = _recording_warnings(caught)
    assert len(said) == 1 and "no info file" in said[0], said
    assert [r.status for r in ptb.history(f"file://{path}").runs] == ["succeeded"]


def test_a_volume_deleted_mid_call_gets_the_mistyped_path_warning(tmp_path: Path):
    path = tmp_path / "v"
    make_volume(path)

    @provenance(f"file://{path}", "a step whose volume someone deletes")
    def step() -> None:
        shutil.rmtree(path)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step()
    said = _recording_warnings(caught)
    assert len(said) == 1, said
    assert "no volume" in said[0] and f"file://{path}" in said[0] and "is the path right?" in said[0]


def test_the_0_1_functions_refuse_a_path_that_is_not_a_volume(tmp_path: Path):
    typo = f"file://{tmp_path / 'segmentaton'}"
    with pytest.raises(VolumeUnavailableError, match="not a volume"):
        ptb.addgeneric(typo, "a note")
    with pytest.raises(VolumeUnavailableError, match="not a volume"):
        ptb.logprocess(typo, ptb.Process("a step", {"x": 1}))
    assert not (tmp_path / "segmentaton").exists()


def test_ptb_note_refuses_a_path_that_is_not_a_volume(tmp_path: Path):
    typo = tmp_path / "segmentaton"
    done = subprocess.run([sys.executable, "-m", "ptb.cli", "note", str(typo), "--generic", "hello"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "not a volume" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not typo.exists()


# ------------------------------------------------------------------ a bug is not a storage failure
def test_a_bug_at_the_end_of_a_run_is_said_as_one_not_spooled(tmp_path: Path, spool_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    """Spooling is for storage failures: a bug spooled would be replayed by every `ptb flush`."""
    import cloudfiles

    import ptb.testing

    vol = ptb.testing.volume()

    def broken_put(self, *args, **kwargs):        # a client that is wrong, not a store that is down
        raise TypeError("put() got an unexpected keyword argument 'compress'")

    @provenance(vol, "a step whose end hits a bug")
    def step() -> int:
        monkeypatch.setattr(cloudfiles.CloudFiles, "put", broken_put)
        return 3

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert step() == 3
    said = _recording_warnings(caught)
    assert any("TypeError" in w and "a bug, not a storage failure" in w for w in said), said
    assert not spool_dir.exists() or not any(spool_dir.rglob("*.json"))
