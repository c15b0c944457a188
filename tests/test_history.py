"""Reading everything back, including volumes written by provenance-toolbox 0.1.x."""
from __future__ import annotations

import datetime

from volumes import (
    IGNEOUS_ENTRY,
    LEGACY_DOCKER_FILE,
    LEGACY_ENV_FILE,
    LEGACY_NOTES,
    LEGACY_PROCESS,
    add_foreign_entries,
    make_legacy_volume,
    make_volume,
)

import ptb
from ptb.read.history import legacy_notes
from ptb.records import NoteType


def test_legacy_notes_are_parsed_including_semicolons_in_content(cloudpath):
    vol = make_legacy_volume(cloudpath)
    notes = ptb.parsenotes(vol)
    assert [(n.note_type.name, n.content) for n in notes] == [(t, c) for _, t, c in LEGACY_NOTES]
    assert notes[0].timestamp.tzinfo is not None
    assert not ptb.note_absent(vol, "threshold; chosen by eye")
    assert not ptb.note_absent(vol, "threshold; chosen by eye", NoteType.GENERIC)
    assert ptb.note_absent(vol, "threshold; chosen by eye", NoteType.RESULT)


def test_legacy_processes_and_their_root_env_files_are_read(cloudpath):
    vol = make_legacy_volume(cloudpath)
    found = ptb.history(vol)
    assert [p.description for p in found.processes] == [LEGACY_PROCESS["task"]]
    assert found.processes[0].parameters == LEGACY_PROCESS["parameters"]
    assert found.envs[LEGACY_ENV_FILE]["CodeEnv type"] == "PythonGithub"
    assert found.envs[LEGACY_DOCKER_FILE]["image ID"] == "sha256:abcdef"
    same = ptb.Process(LEGACY_PROCESS["task"], dict(LEGACY_PROCESS["parameters"]))
    assert not ptb.process_absent(vol, same)


def test_new_records_join_legacy_ones_in_time_order(cloudpath):
    vol = make_legacy_volume(cloudpath)
    ptb.addresult(vol, "re-checked in 2026")
    notes = ptb.parsenotes(vol)
    assert [n.content for n in notes][-1] == "re-checked in 2026"
    assert len(notes) == len(LEGACY_NOTES) + 1


def test_foreign_entries_sources_and_owners(cloudpath):
    make_volume(cloudpath)
    add_foreign_entries(cloudpath)
    found = ptb.history(cloudpath)
    assert IGNEOUS_ENTRY in found.foreign and {"note": "hand-fixed slab 3", "by": "bob"} in found.foreign
    assert found.sources == ["gs://lab/pinky/image"] and found.owners == ["alice@lab.org"]
    assert found.processes == [] and found.notes == []


def test_a_description_that_is_not_a_note_is_a_generic_note_without_date():
    notes = legacy_notes("Segmentation of pinky100 \n 2022-07-01 12:00:00;RESULT;ok;fine")
    assert notes[0].timestamp is None and notes[0].note_type is NoteType.GENERIC
    assert notes[1].content == "ok;fine" and notes[1].timestamp.year == 2022
    assert legacy_notes("") == []


def test_history_of_an_empty_volume(cloudpath):
    found = ptb.history(cloudpath)
    assert (found.processes, found.runs, found.notes, found.foreign) == ([], [], [], [])
    assert found.cloudpath == cloudpath


def test_lookups_by_id(cloudpath):
    note = ptb.addgeneric(cloudpath, "n", timestamp=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    record = ptb.logprocess(cloudpath, ptb.Process("mesh", {"mip": 1}))
    found = ptb.history(cloudpath)
    assert found.process(record.key) == record == found.process(record.id)
    assert found.notes == [note] and found.run("nope") is None
