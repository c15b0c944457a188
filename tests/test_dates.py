"""Foreign dates (igneous', CloudVolume's, people's) read with their zone, and placed right (issue 20).

igneous writes ``strftime('%Y-%m-%d %H:%M %Z')`` in the local zone of the
machine that ran it. ``ptb`` reads the zone (abbreviations, Windows' names,
numeric offsets; ambiguous abbreviations by a documented choice), sorts a
date to the minute at the end of its minute (after the runs of that minute
that could have written it), and ``--since`` keeps what may fall after it.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ptb.cli import main
from ptb.read import fmt, timeline
from ptb.read.history import History
from ptb.records import ProcessRecord, RunRecord, new_id

UTC = datetime.timezone.utc
NOON = datetime.datetime(2026, 12, 5, 12, 42, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    "2026-12-05 07:42 EST", "2026-12-05 13:42 CET", "2026-12-05 18:12 IST", "2026-12-05 04:42 PST",
    "2026-12-05 21:42 JST", "2026-12-05 12:42 UTC", "2026-12-05 12:42 GMT", "2026-12-05 14:42 EET",
    "2026-12-05 07:42 -0500", "2026-12-05 18:12 +05:30", "2026-12-05 09:42 UTC-3", "2026-12-05 13:42 GMT+1",
    "2026-12-05 04:42 Pacific Standard Time", "2026-12-05 13:42 W. Europe Standard Time",
    "2026-12-05T12:42Z", "2026-12-05 12:42 utc", "2026-12-05  7:42  EST",
])
def test_every_zone_igneous_or_a_person_writes_is_read(text):
    assert fmt.parse_stamp(text) == (NOON, 60.0)


def test_summer_zones_seconds_and_ambiguous_choices():
    summer = datetime.datetime(2026, 7, 1, 12, 42, tzinfo=UTC)
    for text in ("2026-07-01 08:42 EDT", "2026-07-01 14:42 CEST", "2026-07-01 05:42 PDT", "2026-07-01 13:42 BST"):
        assert fmt.parse_stamp(text)[0] == summer, text
    assert fmt.parse_stamp("2026-12-05 06:42:30 CST") == (NOON.replace(second=30), 1.0)     # US Central
    assert fmt.parse_stamp("2026-12-05 12:42:00.25+00:00") == (NOON.replace(microsecond=250000), 0.0)
    assert fmt.parse_time("2026-12-05 18:12 IST") == NOON                  # India, not Israel nor Ireland


@pytest.mark.parametrize("text", ["2026-12-05 07:42 XYZ", "2026-12-05 07:42 +1500", "2026-13-05 07:42 EST",
                                  "yesterday", "", "2026-12-05 07:42 EST" + " " * 300, None, 42])
def test_what_cannot_be_read_is_undated_never_an_error(text):
    assert fmt.parse_stamp(text) == (None, 0.0)


def test_a_date_without_a_zone_is_local_time():
    done = subprocess.run([sys.executable, "-c", "from ptb.read.fmt import parse_time; "
                           "print(parse_time('2026-12-05 07:42').isoformat())"],
                          env={**os.environ, "TZ": "EST5EDT"}, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "2026-12-05T12:42:00+00:00", done.stderr


def history_with(entries, runs=()):
    process = ProcessRecord("downsample", {"mip": 0}, timestamp=NOON - datetime.timedelta(hours=1))
    records = [RunRecord(new_id(), "downsample", process.key, "succeeded", start, start + datetime.timedelta(seconds=5),
                         5.0, user="alice", host="elsewhere", pid=1) for start in runs]
    return History("file:///lab/v", [process], records, [], list(entries), {}, {})


def test_a_minute_entry_sorts_after_the_runs_of_its_minute():
    during = NOON + datetime.timedelta(seconds=40)
    h = history_with([{"method": {"task": "DownsampleTask", "mip": 0}, "by": "igneous",
                       "date": "2026-12-05 07:42 EST"}],
                     runs=[during, NOON + datetime.timedelta(seconds=61)])
    rows = timeline.timeline(h)
    kinds = [(r.kind, r.time) for r in rows]
    assert kinds == [("process", NOON - datetime.timedelta(hours=1)), ("run", during), ("foreign", NOON),
                     ("run", NOON + datetime.timedelta(seconds=61))]
    text = timeline.render_log(h, rows)
    line = next(line for line in text.splitlines() if "foreign-0" in line)
    assert line.split()[:3] == ["2026-12-05T12:42Z", "foreign", "foreign-0"]
    assert line.endswith("DownsampleTask (mip=0) by igneous  [foreign]")
    assert "(undated)" not in text


def test_since_keeps_what_may_fall_after_it():
    h = history_with([{"method": {"task": "DownsampleTask"}, "date": "2026-12-05 07:42 EST"},
                      {"method": {"task": "older"}, "date": "2026-12-05 07:40 EST"}])
    rows = timeline.select(timeline.timeline(h), since=NOON + datetime.timedelta(seconds=30))
    assert [r.text for r in rows] == ["DownsampleTask"]
    assert fmt.parse_since("2026-12-05 07:42 EST") == NOON
    with pytest.raises(Exception, match="neither a duration"):
        fmt.parse_since("2026-12-05 07:42 XYZ")


def test_ptb_log_and_show_of_a_volume_with_foreign_dates(foreign_volume):
    from cloudvolume import CloudVolume

    vol = CloudVolume(foreign_volume)
    vol.provenance.processing.append({"method": {"task": "TransferTask", "shape": [64, 64, 64], "mip": 1},
                                      "by": "carol@lab.org", "date": "2026-12-05 18:12 IST"})
    vol.commit_provenance()
    out = CliRunner().invoke(main, ["log", foreign_volume], catch_exceptions=False).stdout
    line = next(line for line in out.splitlines() if "TransferTask" in line)
    assert line.startswith("2026-12-05T12:42Z") and "foreign-" in line
    ident = line.split()[2]
    shown = CliRunner().invoke(main, ["show", foreign_volume, ident], catch_exceptions=False).stdout
    assert f"{ident}  [foreign" in shown and "2026-12-05 18:12 IST = 2026-12-05T12:42Z (to the minute)" in shown
    assert '"shape": [' in shown and "carol@lab.org" in shown
    data = json.loads(CliRunner().invoke(main, ["show", foreign_volume, ident, "--json"]).stdout)
    assert data["kind"] == "foreign" and data["entry"]["method"]["task"] == "TransferTask"
    assert data["date"] == "2026-12-05T12:42:00+00:00" and data["resolution"] == 60.0
    since = CliRunner().invoke(main, ["log", foreign_volume, "--since", "2026-12-05 07:00 EST"]).stdout
    assert "TransferTask" in since
    missing = CliRunner().invoke(main, ["show", foreign_volume, "foreign-99"])
    assert missing.exit_code == 1 and "no process or run" in missing.output
