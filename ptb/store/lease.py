"""Who publishes a volume's ``provenance`` view now: a short lease, itself one object of the volume.

Under contention one writer per volume publishes, at the store's pace, and
the others only journal (DESIGN §4, "One publisher at a time"). The lease is
``ptb/view.lease``: who holds it and until when (seconds since the epoch, by
the holder's clock). It is taken by compare-and-swap (``ptb.store.cas``):
created when absent, written over when it has expired or is already ours.
A holder that dies leaves it to expire (``TTL_SECONDS``); one that stops
publishing gives it back. Clocks that disagree by more than the TTL only make
two publishers for a while: the view's own compare-and-swap keeps that safe.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

from . import cas
from .volume import Volume

LEASE = "ptb/view.lease"
TTL_SECONDS = 5.0       # shorter than a worker's bounded exit, so an exiting worker can take over a dead holder's


@dataclass
class Seen:
    """The lease as last read: held by us, held by another until ``until``, or free."""

    ours: bool
    until: float        # time.time() at which it expires; 0 when free


_me = ("", 0)


def _holder() -> str:
    """This process, on this host (a random part: pids repeat across containers and restarts)."""
    global _me
    if _me[1] != os.getpid():
        _me = (f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}", os.getpid())
    return _me[0]


def _parse(data: Optional[bytes]) -> Any:
    try:
        found = json.loads(data or b"null")
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def take(vol: Volume, timeout: float = 2.0) -> Seen:
    """Hold the lease for ``TTL_SECONDS`` more, if it is free, expired or ours; else say who holds it until when.

    Raises ``cas.Busy`` when the store rate-limits, and storage errors as they come.
    """
    obj = cas.versioned(vol, LEASE)
    with obj.exclusive(timeout):
        data, token = obj.read()
        theirs = _another_holds_until(data)
        if theirs:
            return Seen(False, theirs)
        mine = time.time() + TTL_SECONDS
        if obj.write(json.dumps({"holder": _holder(), "until": round(mine, 3)}).encode(), token):
            return Seen(True, mine)
        return Seen(False, time.time() + 1.0)   # someone took it between our read and write: theirs for now


def held_by_another(vol: Volume) -> bool:
    """Does another process hold the lease now (a look, nothing written)?"""
    return bool(_another_holds_until(cas.versioned(vol, LEASE).read()[0]))


def _another_holds_until(data: Any) -> float:
    """Until when another process holds the lease whose bytes are ``data``; 0 if nobody does.

    An expiry further ahead than twice the TTL is a fast clock's: as expired.
    """
    found = _parse(data) if isinstance(data, bytes) else None
    if not found or found.get("holder") == _holder():
        return 0.0
    until, now = found.get("until"), time.time()
    return float(until) if isinstance(until, (int, float)) and now < until <= now + 2 * TTL_SECONDS else 0.0


def give_back(vol: Volume, timeout: float = 2.0) -> None:
    """Let the next publisher take over now, not when the lease expires (only if it is still ours)."""
    obj = cas.versioned(vol, LEASE)
    with obj.exclusive(timeout):
        data, token = obj.read()
        found = _parse(data) if isinstance(data, bytes) else None
        if found and found.get("holder") == _holder():
            obj.write(json.dumps({"holder": _holder(), "until": 0}).encode(), token)
