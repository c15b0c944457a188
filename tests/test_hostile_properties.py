"""Properties, with hypothesis: records survive the journal whatever their text (lone surrogates
included), and a secret given as a parameter never appears anywhere under the volume, whatever
the function does with it.
"""
from __future__ import annotations

import datetime
import json
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from volumes import make_volume

import ptb
from ptb.records import Note, NoteType, ProcessRecord, RunRecord
from ptb.store import journal
from ptb.store.volume import Volume

try:
    from ptb import documented, provenance
except ImportError:     # until ptb/__init__.py exports them
    from ptb.block import documented
    from ptb.decorate import provenance

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.text(alphabet=st.one_of(st.characters(), SURROGATES), max_size=60)
STAMP = st.datetimes(min_value=datetime.datetime(1990, 1, 1), max_value=datetime.datetime(2100, 1, 1),
                     timezones=st.just(datetime.timezone.utc))
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-2**60, 2**60) | TEXT,
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                       max_leaves=12)


def escaped(value):
    """What the journal stores for a text: lone surrogates escaped, the rest as it is."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _lone(value) else value
    if isinstance(value, dict):
        return {escaped(k): escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escaped(v) for v in value]
    return value


def _lone(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


notes = st.builds(lambda ts, kind, content, run: Note(ts, kind, content, run=run or None),
                  STAMP, st.sampled_from(list(NoteType)), TEXT, st.one_of(st.none(), TEXT))
processes = st.builds(lambda task, params, envs, ts: ProcessRecord(task, params, tuple(envs), timestamp=ts),
                      TEXT, st.dictionaries(TEXT, JSONISH, max_size=4), st.lists(TEXT, max_size=3), STAMP)
runs = st.builds(
    lambda rid, task, status, started, error, params, user: RunRecord(
        id=rid, description=task, process="p", status=status, started=started, user=user,
        error=error, parameters=params, resources={"cpu_time_s": 1.5}),
    TEXT, TEXT, st.sampled_from(["running", "succeeded", "failed", "interrupted"]), STAMP,
    st.one_of(st.none(), st.fixed_dictionaries({"type": TEXT, "message": TEXT, "traceback": TEXT})),
    st.dictionaries(TEXT, JSONISH, max_size=3), st.one_of(st.none(), TEXT))


def _stored(record):
    """The record as the journal gives it back: its JSON, texts escaped, parsed again."""
    data = escaped(record.to_json())
    return type(record).from_json(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(notes, processes, runs), min_size=1, max_size=4))
def test_records_survive_the_journal_whatever_their_text(records):
    vol = Volume.resolve(f"mem://hypothesis-{uuid.uuid4().hex}")
    written = journal.append(vol, records)
    read = journal.read(vol)
    in_order = sorted(zip(written, records), key=lambda pair: pair[0][0])    # the journal reads in rid order
    assert read == [record for (_, record), _ in in_order]
    assert read == [_stored(original) for _, original in in_order]
    for (_, back), original in in_order:
        if not _lone(json.dumps(original.to_json(), ensure_ascii=False)):
            assert back == original       # text that encodes comes back exactly


# ------------------------------------------------------------------------------ the scrubbing rule
SECRETS = st.text(alphabet="ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ#%+,-./@^_~", min_size=8, max_size=24)
NAMES = st.sampled_from(["password", "api_token", "db_secret", "auth", "credentials", "mine"])
ACTIONS = st.lists(st.sampled_from(["raise", "note", "addgeneric", "return", "result", "parameter"]),
                   min_size=1, max_size=4, unique=True)
AROUND = st.text(alphabet="abc =:;/'\"\n", max_size=12)


def _everything_under(root: Path) -> bytes:
    ptb.store.updater.flush()
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRETS, name=NAMES, actions=ACTIONS, before=AROUND, after=AROUND, block=st.booleans())
def test_a_secret_parameter_never_reaches_the_volume(secret, name, actions, before, after, block):
    echoed = f"{before}{secret}{after}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "volume"
        cloudpath = f"file://{root}"
        make_volume(cloudpath)

        def body(run, params):
            value = params[name]
            if "note" in actions:
                run.note(f"{before}{value}{after}")
            if "addgeneric" in actions:
                ptb.addgeneric(cloudpath, f"{before}{value}{after}")
            if "result" in actions:
                run.result(f"{before}{value}{after}")
            if "parameter" in actions:
                run.parameters["derived"] = f"{before}{value}{after}"
            if "raise" in actions:
                raise RuntimeError(f"{before}{value}{after}")
            return f"{before}{value}{after}"

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if block:
                    with documented(cloudpath, "a block", parameters={name: secret}, redact=["mine"]) as run:
                        body(run, run.parameters)
                else:
                    @provenance(cloudpath, "a call", redact=["mine"],
                                result=(lambda v: str(v)) if "return" in actions else None)
                    def call(**kwargs):
                        return body(ptb.current_run(), kwargs)

                    assert call(**{name: secret}) == echoed
            except RuntimeError as exc:
                assert str(exc) == echoed     # the user's exception is untouched
        data = _everything_under(root)
    assert secret.encode() not in data
    assert json.dumps(secret)[1:-1].encode() not in data
