"""The journal: records in immutable objects under the volume.

Object stores have no append and CloudFiles no conditional write, so instead
of rewriting one shared file, records are written once at a key no other
writer can produce (``ptb/journal/<rid>.json``). Nothing is ever overwritten,
so nothing is lost however many writers there are. Records written together
(a run's start with its process and motivation, its end with its result
note) share one object, a batch named by its last record's rid: one round
trip each, and a killed run is still seen as started. ``pack`` folds journal
objects into segments (also immutable, uniquely named) so that reading a long
history takes a handful of requests.
"""
from __future__ import annotations

import random
import time
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from ..errors import BUGS, InvalidInputError, VolumeUnavailableError, warn
from ..records import FORMAT_VERSION, Record, canonical_json, envelope, new_id, record_from_json, rid_age_seconds
from .bounded import Refused, TooDeep, Unreadable, loads
from .volume import Volume, inside

JOURNAL = "ptb/journal/"
SEGMENTS = "ptb/segments/"
ENV = "ptb/env/"
MAX_RECORD_BYTES = 1024 * 1024
MAX_ENV_BYTES = 16 * MAX_RECORD_BYTES     # a code-environment file ptb reads: more than any it writes
MAX_SEGMENTS = 8
_SEGMENT_RETRIES = 5


class RecordWarning(UserWarning):
    """A journal object could not be read as a ptb record and was skipped."""


class WriteFailed(VolumeUnavailableError):
    """A storage failure stopped a journal write: ``unwritten`` (key -> object) is what did not reach the volume.

    One object per call is written whole or not at all, so nothing of it is journalled.
    """

    def __init__(self, message: str, unwritten: Dict[str, Any]):
        super().__init__(message)
        self.unwritten = unwritten


def append(vol: Volume, records: Sequence[Record]) -> List[Tuple[str, Record]]:
    """Journal ``records`` in one object; returns (rid, record) for each.

    A record over ``MAX_RECORD_BYTES`` is refused before anything is written.
    Lone surrogates in a record's texts are stored escaped (``\\udcff``), and
    the record returned is the one stored.
    A storage failure raises ``WriteFailed``, which says what was not
    written (``ptb.store.writer`` spools that part): all of it, one object.
    """
    if not records:
        return []
    envs = [envelope(record) for record in records]
    records = list(records)
    texts = [canonical_json(env) for env in envs]
    for i, (env, text) in enumerate(zip(envs, texts)):
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:      # lone surrogates: stored escaped, and returned as stored
            envs[i] = env = _storable(env)
            texts[i] = text = canonical_json(env)
            records[i] = record_from_json(env)
            size = len(text.encode("utf-8"))
        if size > MAX_RECORD_BYTES:
            raise InvalidInputError(
                f"{env['kind']} record {env['rid']} for {vol.cloudpath} is {size} bytes, over the "
                f"{MAX_RECORD_BYTES}-byte bound: shorten it (large outputs belong in the volume, not its provenance)"
            )
    key = f"{JOURNAL}{envs[-1]['rid']}.json"
    batch = {"batch": envs[-1]["rid"], "records": envs, "v": FORMAT_VERSION}
    obj, text = (envs[0], texts[0]) if len(envs) == 1 else (batch, _batch_text(batch, texts))
    try:
        vol.put_json(key, text)
    except BUGS:
        raise
    except Exception as exc:
        raise WriteFailed(f"cannot write to {vol.cloudpath}: {exc}", {key: obj}) from exc
    return [(env["rid"], record) for env, record in zip(envs, records)]


def _batch_text(batch: Dict[str, Any], texts: List[str]) -> str:
    """``canonical_json(batch)``, made from its records' texts already encoded (not encoded twice)."""
    return (f'{{"batch":{canonical_json(batch["batch"])},"records":[{",".join(texts)}],'
            f'"v":{canonical_json(batch["v"])}}}')


def _storable(value: Any) -> Any:
    """``value`` with lone surrogates in its strings escaped (``\\udcff`` as text), so it encodes as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value


def envelopes_of(obj: Any) -> List[Dict[str, Any]]:
    """The record envelopes a journal object or segment holds (a batch or segment many, a record one)."""
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        return [env for env in obj["records"] if _is_envelope(env)]
    return [obj] if _is_envelope(obj) else []


def entries_of(obj: Any) -> List[Tuple[str, Record]]:
    """(rid, record) for every record of a journal object; raises ``InvalidInputError`` for a bad one."""
    return [(env["rid"], record_from_json(env)) for env in envelopes_of(obj)]


def _journal_object(vol: Volume, key: str, data: bytes) -> Tuple[List[Dict[str, Any]], str]:
    """(the envelopes of one journal object ptb reads, why some or all were not read: '' when none)."""
    try:
        envs = envelopes_of(loads(data))
    except Unreadable as exc:
        return [], str(exc)
    if not envs:
        return [], "it is JSON of another shape"
    if len(data) > MAX_RECORD_BYTES:         # only a large object can hold a record over the bound
        big = [env["rid"] for env in envs if _size(env) > MAX_RECORD_BYTES]
        if big:
            return ([env for env in envs if env["rid"] not in big],
                    f"record(s) {', '.join(big[:3])} over the {MAX_RECORD_BYTES:,}-byte bound ptb writes are "
                    f"not read")
    return envs, ""


def _size(env: Dict[str, Any]) -> int:
    return len(canonical_json(env).encode("utf-8", "surrogatepass"))


class _Found:
    """Envelopes by rid; a record whose id another, different record claims is kept too, and flagged.

    A journal key is unique to its writer, but anyone who can write to the
    volume can write a record reusing an id (a failed run's end, rewritten as
    succeeded). Neither body is trusted over the other: both are kept (the
    second under ``rid#n``) and read, and packing keeps both.
    """

    def __init__(self) -> None:
        self.envs: Dict[str, Dict[str, Any]] = {}
        self.where: Dict[str, str] = {}
        self.twins: List[str] = []

    def add(self, env: Dict[str, Any], key: str) -> None:
        rid = env["rid"]
        known = self.envs.get(rid)
        if known is None:
            self.envs[rid], self.where[rid] = env, key
            return
        slot, n = rid, 1
        while known is not None:
            if known == env:
                return
            slot, n = f"{rid}#{n}", n + 1
            known = self.envs.get(slot)
        self.envs[slot] = env
        self.twins.append(f"{rid} ({self.where[rid]} and {key})")

    def flag(self, vol: Volume) -> None:
        if self.twins:
            shown = "; ".join(self.twins[:5]) + (f"; and {len(self.twins) - 5} more" if len(self.twins) > 5 else "")
            warn(f"{vol.cloudpath}: two different records claim one id, a twin only someone other than its "
                 f"writer makes ({len(self.twins)}): {shown}. Both are kept and shown; a run's failure is never "
                 f"hidden by a conflicting success", RecordWarning, stacklevel=4)


def read_envelopes(vol: Volume, progress: bool = False) -> Dict[str, Dict[str, Any]]:
    """Every journalled object by rid, from the journal and the segments (differing twins as ``rid#n``).

    The journal is listed before the segments: a packer deletes a journal
    object only after the segment holding it is durable, so whatever vanishes
    from the first listing is found by the second. A segment that vanishes
    between listing and reading was merged into a newer one: list again.
    """
    found = _Found()
    for key, data in vol.get_many(vol.list(JOURNAL), progress=progress).items():
        envs, why = _journal_object(vol, key, data) if data is not None else ([], "")
        if why:
            warn(f"{vol.cloudpath}/{key}: {why}" if envs else f"skipping {vol.cloudpath}/{key}: not a ptb record "
                 f"({why})", RecordWarning, stacklevel=3)
        for env in envs:
            found.add(env, key)
    for attempt in range(_SEGMENT_RETRIES):
        blobs = vol.get_many(vol.list(SEGMENTS), progress=progress)
        if all(data is not None for data in blobs.values()):
            break
        time.sleep(0.05 * 2 ** attempt)
    else:
        raise VolumeUnavailableError(f"segments of {vol.cloudpath} kept vanishing while being read "
                                     f"(packers racing?); try again")
    for key, data in blobs.items():
        held, why = _segment_envelopes(data)
        if held is None:
            warn(f"skipping {vol.cloudpath}/{key}: not a readable segment ({why}; the records it held are not "
                 f"shown)", RecordWarning, stacklevel=3)
        for env in held or ():
            found.add(env, key)
    found.flag(vol)
    return found.envs


def _entries(envs: Iterable[Dict[str, Any]], vol: Volume) -> List[Tuple[Dict[str, Any], Record]]:
    entries = []
    for env in sorted(envs, key=lambda e: e["rid"]):
        try:
            entries.append((env, record_from_json(env)))
        except InvalidInputError as exc:
            warn(f"skipping journal record {env['rid']} of {vol.cloudpath}: {exc}", RecordWarning,
                          stacklevel=3)
    return entries


def records_of(vol: Volume, envs: Iterable[Dict[str, Any]]) -> List[Record]:
    """The records of envelopes a reader fetched itself (the lab's index), in the order they were written.

    A bad one is skipped with a ``RecordWarning``, as ``read`` skips it.
    """
    return [record for _, record in _entries(envs, vol)]


def read(vol: Volume, progress: bool = False) -> List[Record]:
    """Every record on the volume, deduplicated, in the order they were written."""
    return [record for _, record in read_entries(vol, progress)]


def read_entries(vol: Volume, progress: bool = False) -> List[Tuple[Dict[str, Any], Record]]:
    """Every (envelope, record) on the volume, deduplicated, in the order they were written."""
    return _entries(read_envelopes(vol, progress).values(), vol)


def _is_envelope(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("rid"), str)


def _pack(vol: Volume, min_age: float = 0.0) -> List[Dict[str, Any]]:
    """Fold journal objects (and, past ``MAX_SEGMENTS``, all segments) into one new segment.

    Only journal objects at least ``min_age`` seconds old are packed. Returns
    the journal envelopes it packed. Safe to run from many processes
    at once: objects are deleted only after the segment holding them is
    written, and records packed twice are deduplicated on read. Objects that
    are not ptb records stay where they are, for a human to look at.
    """
    for prefix in (JOURNAL, SEGMENTS, ENV):     # what writers killed mid-write left (file:// only)
        vol.sweep(prefix)
    keys = [k for k in vol.list(JOURNAL) if rid_age_seconds(k[len(JOURNAL):-len(".json")]) >= min_age]
    journal_blobs = {k: v for k, v in vol.get_many(keys).items() if v is not None}
    segment_keys = vol.list(SEGMENTS)
    merge = len(segment_keys) > MAX_SEGMENTS
    if not journal_blobs and not merge:
        return []
    found = _Found()            # every distinct body of every rid goes into the new segment: twins are kept
    merged_keys: List[str] = []
    if merge:
        for key, data in vol.get_many(segment_keys).items():
            held, why = _segment_envelopes(data)
            if held is None:
                if data is not None:     # vanished ones were merged by another packer
                    warn(f"{vol.cloudpath}/{key} is not a readable segment ({why}); left in place (not merged, "
                         f"not deleted) for a human to look at", RecordWarning, stacklevel=3)
                continue
            for env in held:
                found.add(env, key)
            merged_keys.append(key)
    packed_keys, packed = [], []
    for key, data in journal_blobs.items():
        held, why = _journal_object(vol, key, data)
        if why:
            warn(f"{vol.cloudpath}/{key} is left in the journal, unpacked: {why}" if held else
                 f"{vol.cloudpath}/{key} is not a ptb record ({why}); left in place", RecordWarning, stacklevel=3)
            continue
        unusable = _unusable(held)
        if unusable:
            warn(f"{vol.cloudpath}/{key} is left in the journal, unpacked: {unusable}", RecordWarning,
                 stacklevel=3)
            continue
        for env in held:
            found.add(env, key)
        packed_keys.append(key)
        packed.extend(held)
    if not packed_keys and not merged_keys:
        return []
    found.flag(vol)
    segment = {"v": 1, "records": [found.envs[slot] for slot in sorted(found.envs)]}
    vol.put_json(f"{SEGMENTS}{new_id()}.json", canonical_json(segment))
    vol.delete(packed_keys + merged_keys)
    return packed


def _segment_envelopes(data: Any) -> Tuple[Any, str]:
    """(the envelopes of a segment's bytes, '') or (None, why) when they are not a readable segment."""
    if data is None:
        return None, "it vanished"
    try:
        segment = loads(data)
    except Unreadable as exc:
        return None, str(exc)
    if not isinstance(segment, dict) or not isinstance(segment.get("records"), list):
        return None, "it is JSON, but not a ptb segment"
    return envelopes_of(segment), ""


def _unusable(envs: List[Dict[str, Any]]) -> str:
    """Why one of ``envs`` cannot be read by this ptb ('' when all can): such objects are never packed."""
    for env in envs:
        try:
            record_from_json(env)
        except InvalidInputError as exc:
            return str(exc)
    return ""


def pack(vol: Volume) -> int:
    """Pack the journal into a segment (see ``_pack``); returns how many objects were packed."""
    return len(_pack(vol))


def maybe_pack(vol: Volume, chance: float = 0.05, threshold: int = 256,
               min_age: float = 60.0) -> List[Tuple[Dict[str, Any], Record]]:
    """Writers pack now and then (off the hot path), so no one has to remember ``ptb sync``.

    Only records older than ``min_age`` seconds: younger ones stay in the
    journal, where healing finds those their writers did not publish. Returns
    the (envelope, record) pairs packed, for the caller to publish too.
    """
    if random.random() >= chance:
        return []
    try:
        if len(vol.list(JOURNAL)) < threshold:
            return []
        return _entries(_pack(vol, min_age), vol)
    except Exception as exc:  # packing is housekeeping; it never fails a caller
        warn(f"packing the journal of {vol.cloudpath} failed: {exc}", RecordWarning, stacklevel=2)
        return []


def read_envs(vol: Volume, keys: Iterable[str]) -> Dict[str, Any]:
    """The code-environment files named by processes (ptb's and 0.1.x's); absent ones left out.

    The paths are data from the volume: one that leaves the volume's tree
    (``../``, absolute) is not read, with a warning naming it. A file that
    ptb will not read (a link, a bomb, nested too deep) or that is not a code
    environment (``info``) is not shown: it maps to ``{"refused": why}``; one
    that is not JSON, to ``{"unreadable": its start}``.
    """
    wanted = sorted(set(keys))
    for key in [k for k in wanted if not inside(k)]:
        warn(f"not reading the code environment {key!r} that a record of {vol.cloudpath} names: it is not a "
             f"path inside the volume", RecordWarning, stacklevel=3)
    out: Dict[str, Any] = {}
    for key, data in vol.get_many([k for k in wanted if inside(k)], limit=MAX_ENV_BYTES).items():
        if data is None:
            continue
        try:
            content = loads(data)
        except (TooDeep, Unreadable) as exc:
            refused = isinstance(exc, TooDeep) or isinstance(data, Refused)
            out[key] = {"refused": str(exc)} if refused else {"unreadable": data[:200].decode("utf-8", "replace")}
            continue
        is_env = isinstance(content, dict) and isinstance(content.get("CodeEnv type"), str)
        out[key] = content if is_env else {"refused": "it is not a code environment (a JSON object with a "
                                                      "'CodeEnv type')"}
    return out
