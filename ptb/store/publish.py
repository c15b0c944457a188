"""Bringing journal records into the ``provenance`` view, by compare-and-swap.

Data flows one way: records are journalled first, then published here; this
module reads the journal (to rebuild or heal) and never writes it. Every
write goes over the version it merged (``ptb.store.cas``), so nothing another tool
wrote in between is lost, and a file that does not parse is read again for
about a second before it is called corrupt, and then never written.
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import VolumeUnavailableError
from ..records import SECTION, rid_age_seconds
from . import cas, journal, view
from .bounded import Refused
from .view import (
    INCLUDED_KEPT,
    WINDOW_SECONDS,
    Entry,
    is_current,
    mark_at,
    merge_foreign,
    merge_into,
    rebuilt,
    rid_before,
    undecided,
)
from .volume import PROVENANCE, Volume, dumps, read_parsed, remember_valid

HEAL_MIN_AGE = 10.0      # seconds: younger records are still being published by their own writers
SWEEP_LIMIT = 20_000     # journal objects read in one sweep (a long backlog takes several rounds)


def read_current(obj: cas.VersionedObject) -> Tuple[Optional[Dict[str, Any]], cas.Token]:
    """The view and its version (a torn file is read again, see ``storage.read_parsed``)."""
    return read_parsed(obj.read, obj.vol.cloudpath)


def publish(vol: Volume, entries: Sequence[Entry], timeout: float, writes: Optional[int] = None) -> bool:
    """Merge ``entries`` into the view within about ``timeout`` seconds; False if that was not enough.

    Writes nothing when the view already holds them. ``writes``: the most
    write attempts over a version read from the store (a call makes one, so
    it never waits on a crowd). Raises ``CorruptProvenanceError`` for a file
    that stays invalid, ``cas.Busy`` when the store rate-limits, and storage
    errors as they come.
    """
    return _swap(vol, lambda prov: _merged(vol, prov, entries), timeout, keep=True, writes=writes)


def _merged(vol: Volume, prov: Optional[Dict[str, Any]], entries: Sequence[Entry]) -> Optional[Dict[str, Any]]:
    if prov is not None and not is_current(prov) and has_history(vol):
        # a view of another format, or one a stale writer put back without ptb's section: start over exactly
        return rebuilt(prov, _journal_entries(vol), vol.cloudpath, mark=mark_at(WINDOW_SECONDS))
    prov = dict(prov or {})
    return prov if merge_into(prov, entries, vol.cloudpath) else None


def _swap(vol: Volume, change: Any, timeout: float, keep: bool = False, writes: Optional[int] = None,
          guess_ok: bool = True) -> bool:
    """Read, change, write over the version read; again on a conflict, until ``timeout``.

    The first try starts from the view as this process last wrote it, when it
    wrote one: a lone writer (a worker's loop of chunk calls) then writes
    without reading first, one round trip. ``keep``: the view written is
    kept parsed too (only ``publish``'s, which no caller sees), so the next
    try does not parse it again: its cost does not grow with the view. A
    conflict, or nothing to add, sends it back to what the store holds now.
    ``writes`` bounds the attempts over what was read from the store (a try
    over this process's own last version is free: it is one round trip).
    ``guess_ok=False`` reads first: a publisher in a fleet is seldom the last
    writer, and under a rate limit a write refused for being stale still
    spends the object's second.
    """
    obj = cas.versioned(vol, PROVENANCE)
    deadline = time.monotonic() + timeout
    with obj.exclusive(timeout):
        guess = _last_written.pop(vol.cloudpath, None) if guess_ok else None
        for attempt in range(1000):
            if guess is not None:
                prov, token = (guess[2] if guess[2] is not None else _parsed(guess[1])), guess[0]
            else:
                prov, token = read_current(obj)
            for base, theirs in obj.displaced:       # foreign writes our last rename put aside: merge them back
                prov = merge_foreign(_parsed(base), _parsed(theirs), prov)
            new = change(prov)
            if new is None:
                if guess is not None:                 # "already there" must be seen in the store, not in memory
                    guess = None
                    continue
                if not obj.displaced or prov is None:
                    return True
                new = prov                            # nothing of ours to add, but theirs to put back
            data = dumps(new).encode("utf-8")
            if obj.write(data, token):
                _show_in_memory(vol, data)
                remember_valid(vol, len(data))
                if obj.written is not None and not obj.displaced:
                    _remember(vol.cloudpath, (obj.written, data, new if keep else None))
                return True
            if guess is not None:                     # someone else wrote since: read what they left
                guess = None
                continue
            if writes is not None:
                writes -= 1
                if writes <= 0 and not obj.displaced:
                    return False
            if time.monotonic() > deadline and not obj.displaced:   # what was put aside is never given up
                return False
            time.sleep(random.uniform(0.005, 0.05) * min(attempt + 1, 8))
    return False


# cloudpath -> (version, bytes, the same parsed or None) this process wrote last
_last_written: Dict[str, Tuple[cas.Token, bytes, Optional[Dict[str, Any]]]] = {}


def _remember(cloudpath: str, written: Tuple[cas.Token, bytes, Optional[Dict[str, Any]]]) -> None:
    if len(_last_written) > 256:
        _last_written.clear()
    _last_written[cloudpath] = written


def _forget_written() -> None:
    _last_written.clear()        # a forked child starts from the store, not from its parent's memory


os.register_at_fork(after_in_child=_forget_written)


def _parsed(data: bytes) -> Optional[Dict[str, Any]]:
    try:
        found = json.loads(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _show_in_memory(vol: Volume, data: bytes) -> None:
    """Keep the CloudVolume object the user gave in step with what was written."""
    current = getattr(vol.cloudvolume, "provenance", None)
    if isinstance(current, dict):
        current.clear()
        current.update(json.loads(data))


def has_history(vol: Volume) -> bool:
    return bool(vol.list(journal.JOURNAL) or vol.list(journal.SEGMENTS))


def _journal_entries(vol: Volume) -> List[Entry]:
    return [(env["rid"], record) for env, record in journal.read_entries(vol)]


def rebuild(vol: Volume, timeout: float = 60.0) -> Dict[str, Any]:
    """Write the exact view of the whole journal (foreign content kept) and return it."""
    result: Dict[str, Any] = {}

    def change(prov: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        result["view"] = new = rebuilt(prov, _journal_entries(vol), vol.cloudpath)
        return None if new == prov else new

    if not _swap(vol, change, timeout):
        raise VolumeUnavailableError(f"{vol.cloudpath}/provenance kept changing while ptb rebuilt it; try again")
    return result["view"]


def heal(vol: Volume, timeout: float, min_age: Optional[float] = None) -> int:
    """Publish journal records that no writer brought into the view (it died, or gave up); returns how many.

    Records younger than ``min_age`` (``HEAL_MIN_AGE``) are left to their
    writers, which are about to publish them.
    """
    return sweep(vol, [], timeout, min_age=HEAL_MIN_AGE if min_age is None else min_age) or 0


def lacking(vol: Volume, rids: Sequence[str], before: Optional[str] = None) -> List[str]:
    """What the view has not decided: of ``rids``, and (with ``before``) the journal's keys below that rid.

    One read of the view, and one listing of the journal when ``before`` is given.
    """
    prov, _ = read_current(cas.versioned(vol, PROVENANCE))
    found = undecided(prov, rids) if rids else []
    if before is not None:
        keys = _listed(vol, 0.0, before)
        found += [keys[rid] for rid in undecided(prov, sorted(keys))]
        if overfull(prov):
            found.append(OVERFULL)
    return found


OVERFULL = "(the view's list of merged ids is over its bound: a sweep lets its mark rise)"


def overfull(prov: Optional[Dict[str, Any]]) -> bool:
    """Would a sweep shorten the view's list of merged ids (over its bound, and not all of the last seconds)?"""
    section = (prov or {}).get(SECTION)
    included = section.get("included") if isinstance(section, dict) else None
    if not isinstance(included, str) or included.count(" ") < INCLUDED_KEPT:
        return False
    rids = included.split()
    return min(rids) < rid_before(max(rids), view.LATE_SECONDS)


def _listed(vol: Volume, min_age: float, before: Optional[str] = None) -> Dict[str, str]:
    """rid -> journal key, for records at least ``min_age`` old (and below ``before``)."""
    found = {}
    for key in vol.list(journal.JOURNAL):
        rid = _rid(key)
        if (before is None or rid < before) and (not min_age or rid_age_seconds(rid) >= min_age):
            found[rid] = key
    return found


_records_read: Dict[Tuple[str, str], List[Entry]] = {}     # (cloudpath, journal key) -> its records


def _read_records(vol: Volume, keys: List[str]) -> Tuple[List[Entry], List[str]]:
    """The records of journal objects, and the keys that could not be read.

    Remembered, since journal objects never change (a lost write sweeps
    again, and a sweep outside the lock reads ahead of the one inside).
    """
    wanted = [key for key in keys if (vol.cloudpath, key) not in _records_read]
    if len(_records_read) + len(wanted) > 50_000:
        _records_read.clear()
        wanted = keys
    for key, data in (vol.get_many(wanted) if wanted else {}).items():
        if data is None or isinstance(data, Refused):
            continue            # listed, but not read: the next sweep looks again
        try:
            _records_read[(vol.cloudpath, key)] = journal.entries_of(json.loads(data))
        except Exception:   # not a record: reading skips it with a warning, the sweep leaves it
            _records_read[(vol.cloudpath, key)] = []
    unread = [key for key in keys if (vol.cloudpath, key) not in _records_read]
    return [entry for key in keys for entry in _records_read.get((vol.cloudpath, key), [])], unread


def sweep(vol: Volume, entries: Sequence[Entry], timeout: float, *, min_age: float = 0.0,
          writes: Optional[int] = None) -> Optional[int]:
    """Publish ``entries`` with every journal record the view lacks, in one write; how many records that was.

    The publisher's round (and healing): the journal is listed, what the
    view has not decided is read (at most ``SWEEP_LIMIT`` objects), merged
    with ``entries``, and the view's watermark rises to ``WINDOW_SECONDS``
    behind this clock (never past a record it did not read). None when the
    write was lost to another writer (``writes`` used up) or ``timeout``
    passed; raises as ``publish`` does.
    """
    merged = {"count": 0}

    def change(prov: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if prov is not None and not is_current(prov):
            return _merged(vol, prov, entries)             # rebuilt from the whole journal
        listed = _listed(vol, min_age)
        if not listed:
            mark = ""           # nothing listed, nothing learnt: the mark stays
        else:                   # a window behind this clock, and behind the newest record (a fast clock)
            mark = min(mark_at(max(WINDOW_SECONDS, min_age)), rid_before(max(listed), WINDOW_SECONDS))
        missing = undecided(prov, sorted(listed))
        if len(missing) > SWEEP_LIMIT:
            missing, mark = missing[:SWEEP_LIMIT], min(mark, missing[SWEEP_LIMIT])
        found: List[Entry] = list(entries)
        records, unread = _read_records(vol, [listed[rid] for rid in missing])
        found.extend(records)
        if unread:              # listed but not read (a refusal, a race with packing): the mark stays below
            mark = min(mark, _rid(min(unread)))
        new = dict(prov or {})
        merged["count"] = len(found) - len(entries)
        return new if merge_into(new, found, vol.cloudpath, mark=mark) else None

    if vol.protocol == "file":      # read ahead, outside the lock that direct writers wait on
        prov, _ = read_current(cas.versioned(vol, PROVENANCE))
        listed = _listed(vol, min_age)
        _read_records(vol, [listed[rid] for rid in undecided(prov, sorted(listed))[:SWEEP_LIMIT]])
    if not _swap(vol, change, timeout, keep=True, writes=writes, guess_ok=writes is None):
        return None
    return merged["count"]


def _rid(key: str) -> str:
    return key[len(journal.JOURNAL):-len(".json")]
