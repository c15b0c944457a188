"""Volume resolution and the storage primitives, on every protocol."""
from __future__ import annotations

import os

import pytest
from volumes import make_volume

from ptb.errors import CorruptProvenanceError, InvalidInputError
from ptb.store.volume import Volume


def test_resolves_cloudvolumes_and_cloudpaths(cloudpath):
    vol = make_volume(cloudpath)
    resolved = Volume.resolve(vol)
    assert resolved.cloudpath == vol.cloudpath.rstrip("/")
    assert resolved.cloudvolume is vol
    assert Volume.resolve(resolved) is resolved
    assert Volume.resolve("precomputed://" + cloudpath + "/").cloudpath == cloudpath


@pytest.mark.parametrize("bad, message", [
    ("dst", "not a cloudpath"),
    (42, "cannot log provenance to a int"),
    (None, "cannot log provenance to a NoneType"),
])
def test_refuses_what_is_not_a_volume(bad, message):
    with pytest.raises(InvalidInputError, match=message):
        Volume.resolve(bad)


def test_put_get_list_delete(cloudpath):
    vol = Volume.resolve(cloudpath)
    assert vol.get_json("ptb/journal/a.json") is None
    vol.put_json("ptb/journal/a.json", {"x": "ü;\n"})
    vol.put_json("ptb/journal/b.json", '{"y": 2}')
    assert vol.get_json("ptb/journal/a.json") == {"x": "ü;\n"}
    assert vol.list("ptb/journal/") == ["ptb/journal/a.json", "ptb/journal/b.json"]
    assert vol.get_many(["ptb/journal/b.json", "ptb/journal/zz.json"]) == {
        "ptb/journal/b.json": b'{"y": 2}', "ptb/journal/zz.json": None}
    vol.delete(["ptb/journal/a.json"])
    assert vol.list("ptb/journal/") == ["ptb/journal/b.json"]
    assert vol.list("ptb/nothing-here/") == []


def test_create_only_writes_never_replace(cloudpath):
    vol = Volume.resolve(cloudpath)
    assert vol.put_json_if_absent("ptb/env/e.json", {"v": 1}) is True
    assert vol.put_json_if_absent("ptb/env/e.json", {"v": 2}) is False
    assert vol.get_json("ptb/env/e.json") == {"v": 1}


def test_file_writes_leave_no_temp_files_and_listing_skips_stray_ones(tmp_path):
    vol = Volume.resolve("file://" + str(tmp_path))
    vol.put_json("ptb/journal/a.json", {"x": 1})
    vol.put_json_if_absent("ptb/journal/a.json", {"x": 2})
    assert sorted(os.listdir(tmp_path / "ptb" / "journal")) == ["a.json"]
    (tmp_path / "ptb" / "journal" / ".b.json.tmp-123").write_text('{"half": ')
    assert vol.list("ptb/journal/") == ["ptb/journal/a.json"]


def test_corrupt_provenance_is_a_clear_error(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.cf.put("provenance", b'{"description": "half-writ')
    with pytest.raises(CorruptProvenanceError, match="provenance is not a JSON object.*ptb sync"):
        vol.check_readable()


def test_provenance_in_json5_is_read_as_cloudvolume_does(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.cf.put("provenance", b"{description: 'x', sources: [], owners: [], processing: [],}")
    assert vol.read_provenance()["description"] == "x"


def test_the_entry_check_notices_a_provenance_file_that_became_corrupt(cloudpath):
    vol = Volume.resolve(cloudpath)
    vol.put_json("provenance", {"description": "", "sources": [], "owners": [], "processing": []})
    vol.check_readable()
    vol.check_readable()  # cached: one size request
    vol.cf.put("provenance", b"{truncated")
    with pytest.raises(CorruptProvenanceError):
        vol.check_readable()
