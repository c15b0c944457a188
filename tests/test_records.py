"""Records: ids, timestamps, JSON round-trips."""
from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptb.errors import InvalidInputError
from ptb.records import (
    FORMAT_VERSION,
    Note,
    NoteType,
    ProcessRecord,
    RunRecord,
    envelope,
    new_id,
    record_from_json,
    to_utc,
)

UTC = datetime.timezone.utc


def test_ids_sort_in_creation_order_within_one_clock_tick():
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


def test_timestamps_become_timezone_aware_utc():
    assert to_utc("2024-05-01T12:00:00Z") == datetime.datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert to_utc("2024-05-01T14:00:00+02:00") == datetime.datetime(2024, 5, 1, 12, tzinfo=UTC)
    naive = datetime.datetime(2024, 5, 1, 12)
    assert to_utc(naive) == naive.astimezone(UTC)
    with pytest.raises(InvalidInputError, match="not ISO 8601"):
        to_utc("yesterday")


def test_note_keeps_the_0_1_signature_and_packed_form():
    note = Note("2022-07-01 12:00:00", "RESULT", "done")
    assert note.note_type is NoteType.RESULT
    assert note.timestamp.tzinfo is not None
    assert str(note).endswith(";RESULT;done")
    assert Note(None, 3, "x").note_type is NoteType.GENERIC
    with pytest.raises(InvalidInputError, match="MOTIVATION, RESULT, GENERIC"):
        Note(None, "OPINION", "x")


contents = st.text()  # any unicode, including ";", " \n " and lone surrogates' neighbours
moments = st.datetimes(timezones=st.just(UTC))


@given(moments, st.sampled_from(list(NoteType)), contents, st.one_of(st.none(), st.text(min_size=1)))
def test_notes_round_trip_through_json(timestamp, note_type, content, run):
    note = Note(timestamp, note_type, content, run=run)
    data = json.loads(json.dumps(envelope(note)))
    assert data["v"] == FORMAT_VERSION and data["rid"] == note.id
    assert record_from_json(data) == note


@given(st.text(), st.dictionaries(st.text(), st.one_of(st.integers(), st.text(), st.none())))
def test_processes_round_trip_and_key_on_description_and_parameters(description, parameters):
    record = ProcessRecord(description, parameters, ("ptb/env/a.json",), timestamp="2024-01-01T00:00:00+00:00")
    back = record_from_json(json.loads(json.dumps(envelope(record))))
    assert back == record
    assert back.key == ProcessRecord(description, dict(parameters)).key


def test_runs_round_trip_and_get_a_fresh_rid_per_write():
    run = RunRecord(new_id(), "mesh", "abc", "failed", "2024-01-01T00:00:00Z", ended="2024-01-01T00:00:02Z",
                    duration=2.0, pid=7, resources={"cpu_time": 1.5}, error={"type": "ValueError", "message": "m"})
    first, second = envelope(run), envelope(run)
    assert first["rid"] != second["rid"]
    assert record_from_json(first) == run
    with pytest.raises(InvalidInputError, match="run status"):
        RunRecord("x", "d", "p", "exploded", "2024-01-01T00:00:00Z")


def test_unknown_or_newer_records_are_refused_clearly():
    with pytest.raises(InvalidInputError, match="not a ptb record"):
        record_from_json({"hello": 1})
    with pytest.raises(InvalidInputError, match="upgrade provenance-toolbox"):
        record_from_json({"kind": "note", "v": FORMAT_VERSION + 1, "rid": "x"})
