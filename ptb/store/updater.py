"""Keeping the ``provenance`` view current: now when nobody else is writing it, by the publisher when they are.

``update`` is a call's part: at most one view write attempt, within
``WAIT_SECONDS``, with no retry loop of its own or of the store's client. A
lone writer (a notebook, a script, a quiet volume) so sees its run in the
view on return. Under contention (a rate limit, a lost compare-and-swap,
another process publishing this volume), the records are left to this
process's publisher (``ptb.store.publisher``), which publishes at the store's
pace under a lease, and settles at exit. Nothing here raises into a caller:
the records are already in the journal, so the worst case is a stale view,
said in a ``ViewWarning``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Sequence

from ..errors import CorruptProvenanceError, VolumeUnavailableError
from . import journal, publish
from .publisher import SETTLE_SECONDS, WAIT_SECONDS, ViewWarning, publisher, stale, warn
from .view import Entry, counts
from .volume import Volume

__all__ = ["ViewWarning", "WAIT_SECONDS", "SETTLE_SECONDS", "update", "flush", "rebuild_now", "sync", "sync_summary"]


def view_every() -> float:
    """``PTB_VIEW_EVERY`` (seconds, default 0): how often a worker's chunk runs write the view themselves.

    0, the default: every call tries once (see ``update``). S > 0: the end of
    a chunk run (one with ``per_run`` values) writes the view only if this
    process has not written it for S seconds, and leaves the others to the
    publisher (within about a second, and at exit). A worker killed meanwhile
    (SIGKILL, ``os._exit``) leaves the view without its last runs until the
    next publication heals it or ``ptb sync``. The journal never lags.
    """
    try:
        return max(float(os.environ.get("PTB_VIEW_EVERY") or 0.0), 0.0)
    except ValueError:
        return 0.0


_chunk_written: Dict[str, float] = {}     # cloudpath -> when a chunk run's end last wrote its view here


def update(vol: Volume, entries: Sequence[Entry], *, chunk: bool = False) -> bool:
    """Publish ``entries`` now, in at most one write; True when the view holds them on return.

    ``chunk``: the end of a chunk run, left to the publisher when
    ``view_every()`` says the view was written recently enough. Never raises:
    the records are journalled, and the user's result comes first.
    """
    if not entries:
        return True
    try:
        return _update(vol, entries, chunk)
    except Exception as exc:      # a ptb bug: said, and the call goes on
        warn(f"ptb could not hand the records of {vol.cloudpath} to its view (a ptb bug, please report it): "
             f"{exc!r}; `ptb sync {vol.cloudpath}` rebuilds the view from the journal")
        return False


def _update(vol: Volume, entries: Sequence[Entry], chunk: bool) -> bool:
    pub = publisher()
    every = view_every() if chunk else 0.0
    if every:
        if time.monotonic() - _chunk_written.get(vol.cloudpath, -every) < every:
            pub.submit(vol, entries, wake=False)
            return False
        _chunk_written[vol.cloudpath] = time.monotonic()
    if not pub.may_write_now(vol):        # a crowd was seen here: the lease holder publishes
        pub.submit(vol, entries)
        return False
    entries = [*pub.take(vol), *entries]      # what waits for the publisher goes along
    try:
        if publish.publish(vol, entries, WAIT_SECONDS, writes=1):
            pub.wrote(vol)
            return True
    except CorruptProvenanceError as exc:
        stale(vol, exc)
        return False
    except Exception:     # cas.Busy (a rate limit, a lock), a storage error of any client: the publisher's now
        pass
    pub.submit(vol, entries, crowded=True)
    return False


def flush(timeout: float = SETTLE_SECONDS, volume: Any = None) -> bool:
    """Bring this process's records, and every older one, into the view now; True when done (also at exit).

    ``volume``: only that one (``ptb sync``), not every volume this process wrote to.
    """
    return publisher().settle(timeout, None if volume is None else Volume.resolve(volume).cloudpath)


def rebuild_now(vol: Volume) -> None:
    """Rebuild the view from the whole journal; for ``ptb flush``, whose records may sit below the view's mark."""
    try:
        publish.rebuild(vol)
    except Exception as exc:
        stale(vol, exc)


def sync(volume: Any) -> Dict[str, Any]:
    """Pack the journal into a segment and rebuild the view exactly (``ptb sync``).

    Refuses a location where nothing is recorded, so a mistyped path does
    not gain a new ``provenance`` file. A volume the storage will not let it
    write (read-only, full) is a ``VolumeUnavailableError``.
    """
    vol = Volume.resolve(volume)
    flush(volume=vol)
    if vol.read_provenance() is None and not publish.has_history(vol):
        raise VolumeUnavailableError(f"nothing is recorded at {vol.cloudpath}: no provenance file and no ptb "
                                     f"journal (is the path right?)")
    try:
        journal.pack(vol)
        return publish.rebuild(vol)
    except OSError as exc:      # a read-only volume, a full disk: what the storage said, in one line
        raise VolumeUnavailableError(f"cannot sync {vol.cloudpath}: {exc.strerror or exc}"
                                     f"{f' ({exc.filename})' if exc.filename else ''}; nothing was lost: "
                                     f"the journal is intact") from exc


def sync_summary(volume: Any) -> Dict[str, Any]:
    """``sync``, and what it did: journal records packed, and what the rebuilt view holds (``ptb sync``)."""
    vol = Volume.resolve(volume)
    before = len(vol.list(journal.JOURNAL))
    rebuilt = sync(vol)
    packed = before - len(vol.list(journal.JOURNAL))
    return {"volume": vol.cloudpath, "packed": max(packed, 0), **counts(rebuilt),
            "sources": len(rebuilt.get("sources") or []), "owners": len(rebuilt.get("owners") or [])}

