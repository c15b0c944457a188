"""One process's part in keeping a volume's ``provenance`` view current, at the store's pace.

A call writes the view itself at most once (``ptb.store.updater``); what it
could not write waits here, as this process's *pending* records. One
background thread per process then plays the publisher of DESIGN §4:

* it takes the volume's lease (``ptb.store.lease``) when nobody holds it,
  and while it holds it, publishes every round (``pace()`` seconds, about one
  write a second) everything journalled since the last publication, anyone's,
  in one write (``publish.sweep``), packing the journal now and then; it gives
  the lease back after a few rounds with nothing new;
* when another process holds the lease, it writes nothing: its records are in
  the journal, where the holder finds them. Now and then it drops the pending
  records the view already holds;
* at exit (``atexit``, multiprocessing's finalizers, and SIGTERM where nobody
  else handles it) it *settles*: within ``SETTLE_SECONDS``, every journal
  record older than the exit, its own and others', is in the view, published
  by the holder or by itself once the lease is free. So the last worker out
  leaves a view equal to what ``ptb sync`` writes.

The thread follows OpenTelemetry's ``BatchProcessor`` rules: an interruptible
wait, one export lock shared by the thread and ``settle``, a bounded queue
that warns when it drops, ``settle() -> bool``, a bounded shutdown, and a
fresh state after ``fork``. Nothing here raises into a caller: the records
are already in the journal, so the worst case is a stale view, said once in a
``ViewWarning`` that names ``ptb sync``.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from .. import errors
from ..errors import BUGS, CorruptProvenanceError
from . import journal, lease, publish
from .view import Entry, mark_at
from .volume import Volume, trust

WAIT_SECONDS = 2.0          # the most a call waits for its one view write (a lock, a slow store)
SETTLE_SECONDS = 8.0        # the most an exiting process waits for its records to reach the view
OTHERS_SECONDS = 6.0        # ... and for others' older ones (longer than a dead holder's lease lasts)
IDLE_ROUNDS = 3             # rounds with nothing new before the publisher gives the lease back
PRUNE_EVERY_SECONDS = 5.0   # how often a process that does not publish drops what the view already holds
PACK_EVERY_SECONDS = 30.0
HEAL_EVERY_SECONDS = 30.0
HEAL_FOR_SECONDS = 600.0    # how long after its last write to a volume a process keeps healing it
MAX_PENDING = 100_000
CROWD_SECONDS = 30.0        # after seeing another publisher, calls leave the view to the lease holder this long


class ViewWarning(UserWarning):
    """The ``provenance`` view could not be updated; the journal still holds everything."""


def warn(message: str, category: type = ViewWarning) -> None:
    """Warn, and never raise: warnings turned into errors (``-W error``) must not break a call or the thread."""
    errors.warn(message, category, stacklevel=3)


def stale(vol: Volume, why: Any) -> None:
    warn(f"the provenance view of {vol.cloudpath} was not updated ({why}); its journal holds every record, "
         f"and `ptb sync {vol.cloudpath}` rebuilds the view")


def pace() -> float:
    """``PTB_VIEW_PACE`` (seconds, default 1): the publisher's least time between two view writes.

    GCS allows about one write a second to one object; a store that allows
    more can be given less, a shared one more.
    """
    try:
        return max(float(os.environ.get("PTB_VIEW_PACE") or 1.0), 0.05)
    except ValueError:
        return 1.0


class _State:
    """What this process knows of one volume's view."""

    def __init__(self, vol: Volume):
        now = time.monotonic()
        self.vol = vol
        self.pending: Dict[str, Entry] = {}
        self.held_until = 0.0       # time.time() until which we hold the lease
        self.other_until = 0.0      # time.time() until which another process holds it, as last read
        self.last_write = -1e9      # monotonic: our last view write (attempt), for the pace
        self.active = now           # monotonic: our last record for this volume
        self.pruned = self.healed = self.packed = now
        self.idle = 0
        self.crowded = -1.0         # monotonic: when we last saw a crowd here (-1: never)

    def holding(self) -> bool:
        return self.held_until > time.time()


class Publisher:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()            # guards ``states``; reentrant: a SIGTERM settles on the main thread
        self.export_lock = threading.Lock()      # one publishing round at a time: the thread's or settle's
        self.wake = threading.Event()
        self.stopped = False
        self.states: Dict[str, _State] = {}
        self.thread: Any = None
        self.hooked = False
        self.dropped = 0

    # ------------------------------------------------------------------ the calls' side
    def _state(self, vol: Volume) -> _State:
        st = self.states.get(vol.cloudpath)
        if st is None:
            st = self.states[vol.cloudpath] = _State(vol)
        return st

    def may_write_now(self, vol: Volume) -> bool:
        """May a call write the view itself? Only where no crowd was seen lately (ours publishes in one write)."""
        st = self.states.get(vol.cloudpath)
        if st is None:
            return True
        if st.holding():
            return False
        if st.crowded < 0:
            return True
        if time.monotonic() - st.crowded > CROWD_SECONDS:     # a crowd seen a while ago: is it still there?
            try:
                crowd = lease.held_by_another(vol)
            except Exception:
                crowd = True
            st.crowded = time.monotonic() if crowd else -1.0
            return not crowd
        return False

    def take(self, vol: Volume) -> List[Entry]:
        """This volume's pending records, handed to a call that writes the view now."""
        with self.lock:
            st = self.states.get(vol.cloudpath)
            if st is None or not st.pending:
                return []
            found, st.pending = list(st.pending.values()), {}
            return found

    def wrote(self, vol: Volume) -> None:
        with self.lock:
            st = self._state(vol)
            st.last_write = st.active = time.monotonic()
        self._start()

    def submit(self, vol: Volume, entries: Sequence[Entry], wake: bool = True, crowded: bool = False) -> None:
        """Leave ``entries`` to the publisher; ``crowded``: a call's own write just lost to a crowd."""
        with self.lock:
            st = self._state(vol)
            st.active = time.monotonic()
            if crowded:
                st.crowded = st.active
            room = MAX_PENDING - sum(len(s.pending) for s in self.states.values())
            for rid, record in entries:
                if room <= 0 and rid not in st.pending:
                    self.dropped += 1
                    continue
                room -= rid not in st.pending
                st.pending[rid] = (rid, record)
        if self.dropped:
            warn(f"ptb's view queue is full: {self.dropped} record(s) will reach the provenance view only "
                 f"through `ptb sync` (they are in the journal)")
            self.dropped = 0
        self._start()
        if wake:
            self.wake.set()

    def pending(self) -> int:
        with self.lock:
            return sum(len(s.pending) for s in self.states.values())

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="ptb-view", daemon=True)
            self.thread.start()
        if not self.hooked:
            self.hooked = True
            _settle_at_exit()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while not self.stopped:
            self.wake.wait(pace() / 2)      # a round every half pace: the writes themselves keep the pace
            self.wake.clear()
            if self.stopped:
                break
            with self.lock:
                states = list(self.states.values())
            for st in states:
                try:
                    with self.export_lock:
                        self._round(st)
                except BUGS as exc:     # a ptb bug must not kill the thread silently
                    warn(f"ptb's view thread hit an unexpected error (a ptb bug): {exc!r}")
                except Exception:       # a storage error: the next round tries again
                    pass

    def _round(self, st: _State) -> None:
        now = time.monotonic()
        holding = st.holding()
        if holding and st.held_until - time.time() < lease.TTL_SECONDS / 2:
            holding = self._hold(st)          # renewed before it lapses, whatever the pace
        heal = (not st.pending and not holding and now - st.active < HEAL_FOR_SECONDS
                and now - st.healed >= HEAL_EVERY_SECONDS)
        if not (st.pending or holding or heal) or now - st.last_write < pace():
            return
        if heal:             # records nobody published (a writer killed), or a view's list to shorten?
            st.healed = now
            if not publish.lacking(st.vol, [], before=mark_at(publish.HEAL_MIN_AGE)):
                return
        if self._hold(st):
            self._publish(st)
        elif st.pending and now - st.pruned >= PRUNE_EVERY_SECONDS:
            self._prune(st)

    def _hold(self, st: _State, look: bool = False) -> bool:
        """True while this process holds the lease (taking it when it is free or has expired).

        ``look``: read the lease even if another held it at the last look (it
        may have given it back: an exiting holder does).
        """
        now = time.time()
        if st.held_until - now > lease.TTL_SECONDS / 2:
            return True
        if st.other_until > now and not look:
            return False
        try:
            seen = lease.take(st.vol, timeout=WAIT_SECONDS)
        except CorruptProvenanceError:      # a link where the lease goes (file://): publish without it
            seen = lease.Seen(True, now + lease.TTL_SECONDS)
        except Exception:                   # rate-limited, or unreachable: look again in a while
            seen = lease.Seen(False, now + pace())
        st.held_until, st.other_until = (seen.until, 0.0) if seen.ours else (0.0, seen.until)
        if not seen.ours and seen.until > now:      # another process publishes the view: calls need not check it
            trust(st.vol, min(seen.until - now, lease.TTL_SECONDS))
            st.crowded = time.monotonic()
        return seen.ours

    def _publish(self, st: _State, timeout: float = WAIT_SECONDS, pack: bool = True) -> bool:
        """One write: our pending records, everything journalled that the view lacks, what packing moved."""
        if pack and time.monotonic() - st.packed >= PACK_EVERY_SECONDS:
            st.packed = time.monotonic()
            packed = [(env["rid"], record) for env, record in journal.maybe_pack(st.vol, chance=1.0)]
            with self.lock:              # no longer listed in the journal: pending until published
                st.pending.update((rid, (rid, record)) for rid, record in packed)
        with self.lock:
            sent = list(st.pending.values())
        st.last_write = time.monotonic()            # an attempt spends the pace, whatever came of it
        try:
            found = publish.sweep(st.vol, sent, min(timeout, WAIT_SECONDS), writes=1)
        except CorruptProvenanceError as exc:
            stale(st.vol, exc)
            found = 0                               # never retried: left alone until someone repairs it
        except Exception:
            found = None
        st.last_write = time.monotonic()            # and the store counts from when the write landed
        if found is None:
            return False
        with self.lock:
            for rid, _ in sent:
                st.pending.pop(rid, None)
        st.idle = 0 if (found or sent) else st.idle + 1
        if st.idle >= IDLE_ROUNDS:
            self._give_back(st)
        return True

    def _prune(self, st: _State) -> None:
        """Drop the pending records the view holds now (another process published them)."""
        st.pruned = time.monotonic()
        with self.lock:
            rids = list(st.pending)
        waiting = set(publish.lacking(st.vol, rids))
        with self.lock:
            for rid in rids:
                if rid not in waiting:
                    st.pending.pop(rid, None)

    def _give_back(self, st: _State) -> None:
        st.held_until, st.idle = 0.0, 0
        try:
            lease.give_back(st.vol, timeout=WAIT_SECONDS)
        except Exception:
            pass          # it expires on its own

    # ------------------------------------------------------------------ exit
    def settle(self, timeout: float = SETTLE_SECONDS, cloudpath: Optional[str] = None) -> bool:
        """Within ``timeout``: every journal record older than now is in the view; True if so.

        For each volume this process wrote to: its own pending records and
        anyone's older records, published by the lease holder, or by this
        process when the lease is free. The lease is given back at the end.
        """
        deadline = time.monotonic() + timeout
        if not self.export_lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            with self.lock:
                states = [s for s in self.states.values()
                          if (cloudpath is None or s.vol.cloudpath == cloudpath)
                          and (s.pending or s.holding() or time.monotonic() - s.active < HEAL_FOR_SECONDS)]
            done = True
            for st in states:
                done = self._settle(st, deadline) and done
            return done
        finally:
            self.export_lock.release()

    def _settle(self, st: _State, deadline: float) -> bool:
        """Our pending records first (one read of the view a look), then anyone's older ones (and a listing)."""
        before = mark_at(0.0)
        others_until = time.monotonic() + OTHERS_SECONDS
        try:
            while True:
                try:
                    with self.lock:
                        rids = list(st.pending)
                    waiting = publish.lacking(st.vol, rids) if rids else []
                    with self.lock:
                        for rid in set(rids) - set(waiting):
                            st.pending.pop(rid, None)
                    if not waiting:
                        waiting = publish.lacking(st.vol, [], before=before)
                    if not waiting:
                        st.active = -HEAL_FOR_SECONDS     # settled: nothing to look at again at exit
                        return True
                    if time.monotonic() - st.last_write >= pace() and self._hold(st, look=True):
                        self._publish(st, timeout=max(deadline - time.monotonic(), 0.1), pack=False)
                        continue
                except CorruptProvenanceError:     # said when it was found; never written, nothing to wait for
                    return True
                except BUGS:
                    raise
                except Exception:
                    if not st.pending:             # unreachable, or gone: nothing of ours to wait for
                        st.active = -HEAL_FOR_SECONDS
                        return True
                if not st.pending and time.monotonic() > others_until:
                    st.active = -HEAL_FOR_SECONDS  # ours are in; others' (a volume we cannot write?) are theirs
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pace() / 2, left))
        finally:
            if st.holding():
                self._give_back(st)

    def shutdown(self, timeout: float = SETTLE_SECONDS, from_signal: bool = False) -> bool:
        self.stopped = True
        if not from_signal:        # Event.set takes a lock the interrupted main thread may hold
            self.wake.set()
        return self.settle(timeout)


_instance = Publisher()


def publisher() -> Publisher:
    global _instance, _exiting
    if _instance.pid != os.getpid():     # forked: the parent's thread and locks are not ours
        _instance, _exiting = Publisher(), False
    return _instance


_exiting = False


def _shutdown(from_signal: bool = False) -> None:
    global _exiting
    if _exiting:           # settled already, or settling now (a SIGTERM during the exit's own settle)
        return
    _exiting = True
    try:
        ok = publisher().shutdown(from_signal=from_signal)
    except Exception:
        return
    if not ok:
        left = publisher().pending()
        warn(f"ptb: the provenance view may lack {left or 'some'} record(s) of this process at exit (the "
             f"store was busy for {SETTLE_SECONDS:.0f} s); the journal holds them, and the next writer or "
             f"`ptb sync` brings them into the view")


def _settle_at_exit() -> None:
    """Settle at exit in ``multiprocessing`` children and on SIGTERM too.

    ``multiprocessing`` children end with ``os._exit``, which skips
    ``atexit``, but run its finalizers first. A pool's ``terminate()`` and
    queue runners send SIGTERM, whose default action skips both: where
    nobody handles SIGTERM (and this is the main thread), ptb settles first,
    then lets the signal do what it would have done.
    """
    if "multiprocessing.util" in sys.modules:
        sys.modules["multiprocessing.util"].Finalize(None, _shutdown, exitpriority=100)
    try:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):      # an embedded interpreter, a thread we cannot tell
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    """Settle on a thread of its own, waited for a bounded time: the interrupted main thread may hold
    any lock (ours, a client's), and a handler that waited on one would never return."""
    if _exiting:           # the exit is settling already: let it finish; the process ends right after
        return
    try:
        settler = threading.Thread(target=_shutdown, kwargs={"from_signal": True}, name="ptb-settle", daemon=True)
        settler.start()
        settler.join(SETTLE_SECONDS + 2.0)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


atexit.register(_shutdown)
