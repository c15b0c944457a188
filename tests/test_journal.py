"""The journal: one object per record, packing, spooling, env files."""
from __future__ import annotations

import json
import warnings

import pytest

import ptb
from ptb.capture.source import SourceEnv
from ptb.errors import InvalidInputError, VolumeUnavailableError
from ptb.records import Note, NoteType, utcnow
from ptb.store import journal, writer
from ptb.store.spool import SpoolWarning, pending
from ptb.store.volume import Volume


def notes(n, prefix="n"):
    return [Note(utcnow(), NoteType.GENERIC, f"{prefix}{i}") for i in range(n)]


def test_records_written_together_share_one_object_and_read_back_in_write_order(cloudpath):
    vol = Volume.resolve(cloudpath)
    together, alone = notes(5), notes(2, "alone")
    assert [record for _, record in journal.append(vol, together)] == together
    for note in alone:
        journal.append(vol, [note])
    assert len(vol.list(journal.JOURNAL)) == 3       # one batch, then one object per call
    assert journal.read(vol) == together + alone
    assert journal.pack(vol) == 7 and journal.read(vol) == together + alone


def test_pack_moves_records_into_one_segment_without_losing_any(cloudpath):
    vol = Volume.resolve(cloudpath)
    first, second = notes(30, "a"), notes(20, "b")
    journal.append(vol, first)
    assert journal.pack(vol) == 30
    journal.append(vol, second)
    assert vol.list(journal.JOURNAL) and len(vol.list(journal.SEGMENTS)) == 1
    assert journal.read(vol) == first + second
    assert journal.pack(vol) == 20 and vol.list(journal.JOURNAL) == []
    assert journal.read(vol) == first + second


def test_records_packed_twice_are_read_once(cloudpath):
    """Two packers racing over the same journal objects both write a segment."""
    vol = Volume.resolve(cloudpath)
    written = notes(10)
    journal.append(vol, written)
    twin = {"v": 1, "records": list(journal.read_envelopes(vol).values())}
    vol.put_json(journal.SEGMENTS + "0000-racing-packer.json", twin)
    journal.pack(vol)
    assert len(vol.list(journal.SEGMENTS)) == 2
    assert journal.read(vol) == written


def test_many_segments_are_merged(cloudpath):
    vol = Volume.resolve(cloudpath)
    written = []
    for i in range(journal.MAX_SEGMENTS + 2):
        batch = notes(3, f"s{i}-")
        journal.append(vol, batch)
        journal.pack(vol)
        written += batch
    assert len(vol.list(journal.SEGMENTS)) <= journal.MAX_SEGMENTS
    assert journal.read(vol) == written


def test_a_record_over_the_size_bound_is_refused_and_nothing_is_written(cloudpath):
    vol = Volume.resolve(cloudpath)
    huge = Note(utcnow(), NoteType.GENERIC, "x" * (journal.MAX_RECORD_BYTES + 1))
    with pytest.raises(InvalidInputError, match="over the .*-byte bound"):
        journal.append(vol, notes(1) + [huge])
    assert vol.list(journal.JOURNAL) == []


def test_unreadable_objects_are_skipped_with_a_warning(cloudpath):
    vol = Volume.resolve(cloudpath)
    journal.append(vol, notes(2))
    vol.put_json(journal.JOURNAL + "zzz.json", '{"kind": "alien", "rid": "zzz"}')
    with pytest.warns(journal.RecordWarning, match="zzz"):
        assert len(journal.read(vol)) == 2


def break_journal_dir(tmp_path):
    """Make file:// journal writes fail: a plain file where the directory should be."""
    target = tmp_path / "vol" / "ptb" / "journal"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not a directory")
    return target


def test_a_failed_write_is_spooled_and_flushed_later(tmp_path, spool_dir):
    vol = Volume.resolve("file://" + str(tmp_path / "vol"))
    blocker = break_journal_dir(tmp_path)
    written = notes(3)
    with pytest.warns(SpoolWarning, match="ptb flush"):
        writer.append(vol, written)
    assert pending() == [(vol.cloudpath, 3)]
    with pytest.warns(SpoolWarning, match="still not writable"):
        assert ptb.flush() == (0, 3)
    blocker.unlink()
    assert ptb.flush() == (3, 0)
    assert pending() == []
    assert journal.read(vol) == written
    assert [n["content"] for n in vol.read_provenance()["ptb"]["notes"]] == ["n0", "n1", "n2"]


def test_without_spooling_a_failed_write_raises_a_clear_error(tmp_path):
    vol = Volume.resolve("file://" + str(tmp_path / "vol"))
    break_journal_dir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(VolumeUnavailableError, match="cannot write to file://"):
            writer.append(vol, notes(1), spool_on_failure=False)


def test_env_files_are_content_addressed_and_written_once(cloudpath):
    vol = Volume.resolve(cloudpath)
    one, two = SourceEnv("f", "def f(): pass"), SourceEnv("f", "def f(): return 1")
    key_one, key_two = writer.write_env(vol, one), writer.write_env(vol, two)
    assert key_one != key_two and key_one.startswith(journal.ENV)
    assert writer.write_env(vol, SourceEnv("f", "def f(): pass")) == key_one
    assert journal.read_envs(vol, [key_one, key_two, "missing.json"]) == {
        key_one: one.contents(), key_two: two.contents()}
    assert json.loads(vol.get_text(key_one)) == one.contents()


def test_writers_pack_only_a_long_journal(cloudpath):
    vol = Volume.resolve(cloudpath)
    for note in notes(3):                        # the threshold counts objects: one each
        journal.append(vol, [note])
    journal.maybe_pack(vol, chance=1.0, threshold=4, min_age=0)
    assert vol.list(journal.SEGMENTS) == []
    journal.append(vol, notes(1, "more"))
    assert journal.maybe_pack(vol, chance=1.0, threshold=4) == []     # young records stay for healing
    assert len(journal.maybe_pack(vol, chance=1.0, threshold=4, min_age=0)) == 4
    assert vol.list(journal.JOURNAL) == [] and len(journal.read(vol)) == 4


def test_packing_leaves_objects_that_are_not_records_in_place(cloudpath):
    vol = Volume.resolve(cloudpath)
    journal.append(vol, notes(2))
    vol.put_json(journal.JOURNAL + "stray.json", "[1, 2]")
    with pytest.warns(journal.RecordWarning, match="stray.json is not a ptb record"):
        assert journal.pack(vol) == 2
    assert vol.list(journal.JOURNAL) == [journal.JOURNAL + "stray.json"]
    with pytest.warns(journal.RecordWarning, match="not a ptb record"):
        assert len(journal.read(vol)) == 2


def test_spooled_keys_survive_names_with_double_underscores(tmp_path, spool_dir):
    vol = Volume.resolve("file://" + str(tmp_path / "vol"))
    blocker = tmp_path / "vol" / "ptb"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    env = SourceEnv("__main__.my__step", "def my__step(): pass")
    with pytest.warns(SpoolWarning):
        key = writer.write_env(vol, env)
    assert "__main__" in key
    blocker.unlink()
    assert ptb.flush() == (1, 0)
    assert vol.get_json(key) == env.contents()


def test_the_cache_of_written_env_files_stays_bounded():
    """A long-lived process writing many environments (many volumes, edited code) keeps a bounded memory."""
    vol = Volume.resolve("mem://ptb-test/bounded-envs")
    for i in range(writer.MAX_CACHED + 50):
        writer.write_env(vol, SourceEnv("f", f"def f(): return {i}"))
    assert len(writer._envs_written) <= writer.MAX_CACHED + 1
    vol.delete(vol.list(""))
