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
from ..records import rid_age_seconds
from . import cas, journal
from .view import Entry, is_current, merge_foreign, merge_into, rebuilt, undecided
from .volume import PROVENANCE, Volume, dumps, read_parsed, remember_valid

HEAL_MIN_AGE = 10.0      # seconds: younger records are still being published by their own writers
HEAL_LIMIT = 256


def read_current(obj: cas.VersionedObject) -> Tuple[Optional[Dict[str, Any]], cas.Token]:
    """The view and its version (a torn file is read again, see ``storage.read_parsed``)."""
    return read_parsed(obj.read, obj.vol.cloudpath)


def publish(vol: Volume, entries: Sequence[Entry], timeout: float) -> bool:
    """Merge ``entries`` into the view within about ``timeout`` seconds; False if that was not enough.

    Writes nothing when the view already holds them. Raises
    ``CorruptProvenanceError`` for a file that stays invalid, ``cas.Busy``
    when the store rate-limits, and storage errors as they come.
    """
    return _swap(vol, lambda prov: _merged(vol, prov, entries), timeout, keep=True)


def _merged(vol: Volume, prov: Optional[Dict[str, Any]], entries: Sequence[Entry]) -> Optional[Dict[str, Any]]:
    if prov is not None and not is_current(prov) and has_history(vol):
        # a view of another format, or one a stale writer put back without ptb's section: start over exactly
        return rebuilt(prov, _journal_entries(vol), vol.cloudpath)
    prov = dict(prov or {})
    return prov if merge_into(prov, entries, vol.cloudpath) else None


def _swap(vol: Volume, change: Any, timeout: float, keep: bool = False) -> bool:
    """Read, change, write over the version read; again on a conflict, until ``timeout``.

    The first try starts from the view as this process last wrote it, when it
    wrote one: a lone writer (a worker's loop of chunk calls) then writes
    without reading first, one round trip. ``keep``: the view written is
    kept parsed too (only ``publish``'s, which no caller sees), so the next
    try does not parse it again: its cost does not grow with the view. A
    conflict, or nothing to add, sends it back to what the store holds now.
    """
    obj = cas.versioned(vol, PROVENANCE)
    deadline = time.monotonic() + timeout
    with obj.exclusive(timeout):
        guess = _last_written.pop(vol.cloudpath, None)
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

    One listing and a read per missing record, so writers can afford it now
    and then. Records younger than ``min_age`` (``HEAL_MIN_AGE``) are left to
    their writers, which are about to publish them.
    """
    min_age = HEAL_MIN_AGE if min_age is None else min_age
    prov, _ = read_current(cas.versioned(vol, PROVENANCE))
    if prov is None or not is_current(prov):
        return 0
    old_enough = {_rid(key): key for key in vol.list(journal.JOURNAL) if rid_age_seconds(_rid(key)) >= min_age}
    missing = [old_enough[rid] for rid in undecided(prov, old_enough)]
    entries: List[Entry] = []
    for data in vol.get_many(missing[-HEAL_LIMIT:]).values():
        try:
            entries.extend(journal.entries_of(json.loads(data or b"null")))
        except Exception:   # not a record: reading skips it with a warning, healing just leaves it
            continue
    if entries and not publish(vol, entries, timeout):
        return 0
    return len(entries)


def _rid(key: str) -> str:
    return key[len(journal.JOURNAL):-len(".json")]
