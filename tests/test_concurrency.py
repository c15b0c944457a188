"""Many real writer processes on one volume: nothing lost, nothing torn."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudvolume import CloudVolume
from volumes import make_volume

import ptb

WORKERS = Path(__file__).with_name("workers.py")


def start(*args):
    return subprocess.Popen([sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_eight_writers_lose_nothing_and_readers_never_see_a_torn_view(tmp_path):
    cloudpath = "file://" + str(tmp_path / "vol")
    make_volume(cloudpath)
    ptb.logprocess(cloudpath, ptb.Process("segmentation", {"mip": 1}))
    stop = tmp_path / "stop"
    watcher = start("watch", cloudpath, str(stop))
    try:
        writers = [start("notes", cloudpath, "25", f"w{w}") for w in range(8)]
        for writer in writers:
            _, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, err
    finally:
        stop.touch()
        seen = json.loads(watcher.communicate(timeout=60)[0])
    assert seen["reads"] > 10 and seen["invalid"] == 0

    notes = ptb.history(cloudpath).notes
    assert {n.content for n in notes} == {f"w{w}-{i}" for w in range(8) for i in range(25)}
    prov = CloudVolume(cloudpath).provenance
    prov.validate()
    assert prov["processing"][-1]["task"] == "segmentation"
    newest = sorted(notes, key=lambda n: (n.timestamp, n.id))[-ptb.store.view.NOTES_KEPT:]
    assert [n["id"] for n in prov["ptb"]["notes"]] == [n.id for n in newest]     # current, without a sync
    assert ptb.sync(cloudpath) == json.loads(json.dumps(prov))
    CloudVolume(cloudpath).provenance.validate()


def test_a_writer_killed_mid_write_leaves_no_torn_file(tmp_path):
    cloudpath = "file://" + str(tmp_path / "vol")
    make_volume(cloudpath)
    writer = start("spin", cloudpath)
    assert writer.stdout.readline().strip() == "started"
    journal_dir = tmp_path / "vol" / "ptb" / "journal"
    deadline = time.time() + 60
    while time.time() < deadline and len(os.listdir(journal_dir) if journal_dir.exists() else []) < 5:
        time.sleep(0.01)
    time.sleep(0.137)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    for path in [tmp_path / "vol" / "provenance", *journal_dir.glob("*.json")]:
        json.loads(path.read_text())  # every visible file is whole
    notes = ptb.history(cloudpath).notes
    assert len(notes) >= 5 and all(n.content.startswith("spin-") for n in notes)
    CloudVolume(cloudpath).provenance.validate()
