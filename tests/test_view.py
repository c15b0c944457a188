"""The provenance file as a view: valid for CloudVolume, foreign content kept, rebuilt exactly."""
from __future__ import annotations

import json

import pytest
from cloudvolume import CloudVolume
from volumes import IGNEOUS_ENTRY, add_foreign_entries, make_volume

import ptb
from ptb import journal, view
from ptb.storage import Volume


def test_view_stays_valid_for_cloudvolume_and_keeps_foreign_content(cloudpath):
    make_volume(cloudpath)
    add_foreign_entries(cloudpath)
    ptb.addmotivation(cloudpath, "why")
    ptb.logprocess(cloudpath, ptb.Process("mesh", {"mip": 2}))
    view.flush()
    prov = CloudVolume(cloudpath).provenance
    prov.validate()
    assert prov["sources"] == ["gs://lab/pinky/image"] and prov["owners"] == ["alice@lab.org"]
    assert IGNEOUS_ENTRY in prov["processing"] and prov["lab_field"] == {"kept": True}
    assert [n["content"] for n in prov["ptb"]["notes"]] == ["why"]
    assert [e["task"] for e in prov["processing"] if view.is_ptb_entry(e)] == ["mesh"]


def test_a_cloudvolume_object_reflects_a_write_at_once(cloudpath):
    vol = make_volume(cloudpath)
    note = ptb.addresult(vol, "found 12 synapses")
    assert vol.provenance["ptb"]["notes"][-1]["id"] == note.id
    ptb.logprocess(vol, ptb.Process("mesh", {"mip": 2}))
    assert vol.provenance["processing"][-1]["task"] == "mesh"
    vol.provenance.validate()


def test_a_stale_writer_loses_view_entries_and_sync_restores_them_exactly(cloudpath):
    make_volume(cloudpath)
    stale = CloudVolume(cloudpath)  # read before ptb writes, committed after: igneous does this
    for i in range(5):
        ptb.addgeneric(cloudpath, f"note {i}")
    view.flush()
    stale.provenance.sources = ["gs://lab/raw"]
    stale.commit_provenance()
    assert "ptb" not in Volume.resolve(cloudpath).read_provenance()
    assert len(ptb.history(cloudpath).notes) == 5  # the journal never lags
    rebuilt = ptb.sync(cloudpath)
    assert [n["content"] for n in rebuilt["ptb"]["notes"]] == [f"note {i}" for i in range(5)]
    assert rebuilt["sources"] == ["gs://lab/raw"]
    assert Volume.resolve(cloudpath).read_provenance() == rebuilt
    assert ptb.sync(cloudpath) == rebuilt  # idempotent


def test_merging_is_idempotent(cloudpath):
    vol = Volume.resolve(cloudpath)
    note = ptb.addgeneric(vol, "once")
    view.flush()
    before = vol.read_provenance()
    view.update(vol, [note], wait=True)
    assert vol.read_provenance() == before
    assert len(before["ptb"]["notes"]) == 1


def test_notes_reach_the_view_in_one_debounced_write(cloudpath, monkeypatch):
    monkeypatch.setattr(view, "DEBOUNCE_SECONDS", 30.0)
    vol = Volume.resolve(cloudpath)
    for i in range(20):
        ptb.addgeneric(vol, f"n{i}")
    assert vol.read_provenance() is None  # no view rewrite per note
    view.flush()
    assert len(vol.read_provenance()["ptb"]["notes"]) == 20


def test_a_corrupt_provenance_file_is_never_overwritten(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.cf.put("provenance", b"{not json")
    with pytest.warns(view.ViewWarning, match="not a JSON object"):
        ptb.addgeneric(vol, "kept in the journal")
        view.flush()
    assert vol.get_text("provenance") == "{not json"
    with pytest.warns(UserWarning, match="not a JSON object"):
        found = ptb.history(vol)
    assert [n.content for n in found.notes] == ["kept in the journal"] and found.problems
    with pytest.raises(ptb.CorruptProvenanceError):
        ptb.sync(vol)
    assert vol.get_text("provenance") == "{not json"


def test_the_view_holds_run_summaries_not_full_runs(cloudpath):
    from ptb.records import RunRecord, new_id, utcnow

    vol = Volume.resolve(cloudpath)
    run_id = new_id()
    start = RunRecord(run_id, "mesh", "k", "running", utcnow())
    end = RunRecord(run_id, "mesh", "k", "failed", start.started, ended=utcnow(), duration=1.0,
                    error={"type": "ValueError", "message": "bad", "traceback": "x" * 5000})
    journal.append(vol, [start, end])
    view.update(vol, [start], wait=True)
    view.update(vol, [end], wait=True)
    view.update(vol, [start], wait=True)  # a late start never hides the end
    runs = vol.read_provenance()["ptb"]["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    assert runs[0]["error"] == "ValueError: bad" and "traceback" not in json.dumps(runs)


def test_a_merge_lost_to_contention_is_repaired_by_the_next_writer(cloudpath):
    from ptb.records import Note, NoteType, utcnow

    vol = Volume.resolve(cloudpath)
    lost = [Note(utcnow(), NoteType.GENERIC, f"lost {i}") for i in range(3)]
    journal.append(vol, lost)  # journalled, but its writer's merge never landed
    ptb.addgeneric(vol, "next writer")
    view.flush()
    assert [n["content"] for n in vol.read_provenance()["ptb"]["notes"]] == ["lost 0", "lost 1", "lost 2",
                                                                               "next writer"]


def test_forked_multiprocessing_children_update_the_view_before_exiting(tmp_path):
    import multiprocessing

    cloudpath = "file://" + str(tmp_path / "vol")
    child = multiprocessing.get_context("fork").Process(target=ptb.addgeneric, args=(cloudpath, "from a child"))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    notes = Volume.resolve(cloudpath).read_provenance()["ptb"]["notes"]
    assert [n["content"] for n in notes] == ["from a child"]


def test_hand_written_processing_that_is_not_a_list_is_kept_whole(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.put_json("provenance", {"description": "", "sources": [], "owners": [], "processing": {"igneous": {"mip": 1}}})
    ptb.addgeneric(vol, "n")
    assert ptb.sync(vol)["processing"] == [{"igneous": {"mip": 1}}]


def test_sync_refuses_a_path_where_nothing_is_recorded(cloudpath):
    with pytest.raises(ptb.VolumeUnavailableError, match="nothing is recorded at .*is the path right"):
        ptb.sync(cloudpath)
    assert Volume.resolve(cloudpath).read_provenance() is None
