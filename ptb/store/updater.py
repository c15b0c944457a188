"""Keeping the ``provenance`` view current: now when we can, in the background when we must.

``update`` publishes a call's records before the call returns, waiting at
most ``WAIT_SECONDS`` (contention, a rate limit, a slow store). What is left
goes to one background thread per process, which retries, packs the journal
now and then, and heals records that no writer published. It follows the
rules of OpenTelemetry's ``BatchProcessor``: one export lock shared by the
thread and ``flush``, an interruptible wait, a bounded queue that warns when
it drops, ``flush() -> bool``, a bounded shutdown at exit, and a fresh state
after ``fork``. Nothing here raises into a caller: the records are already
in the journal, so the worst case is a stale view, said in a ``ViewWarning``.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any, Dict, List, Sequence, Tuple

from .. import errors
from ..errors import CorruptProvenanceError, VolumeUnavailableError
from ..records import rid_age_seconds
from . import journal, publish
from .view import Entry, counts
from .volume import Volume

WAIT_SECONDS = 5.0          # the most a call waits for its view write before leaving it to the thread
RETRY_SECONDS = 1.0         # the thread's pause between rounds (GCS allows about one write per second)
GIVE_UP_SECONDS = 120.0     # the thread stops retrying a record this old; healing or `ptb sync` take over
HEAL_EVERY_SECONDS = 30.0
HEAL_FOR_SECONDS = 600.0    # how long after its last write to a volume a process keeps healing it
SHUTDOWN_SECONDS = 10.0
MAX_QUEUED = 100_000


class ViewWarning(UserWarning):
    """The ``provenance`` view could not be updated; the journal still holds everything."""


def warn(message: str, category: type = ViewWarning) -> None:
    """Warn, and never raise: warnings turned into errors (``-W error``) must not break a call or the thread."""
    errors.warn(message, category, stacklevel=3)


def _stale(vol: Volume, why: Any) -> None:
    warn(f"the provenance view of {vol.cloudpath} was not updated ({why}); its journal holds every record, "
         f"and `ptb sync {vol.cloudpath}` rebuilds the view")


def view_every() -> float:
    """``PTB_VIEW_EVERY`` (seconds, default 0): how often a worker's chunk runs write the view.

    0, the default, is the contract of ``update``: every run's end is in the
    view on return. S > 0: the end of a chunk run (one with ``per_run``
    values) writes the view only if this process has not written it for S
    seconds, and leaves the others to the background thread's next round
    (within about a second, and at exit). A worker's loop of small chunks
    then pays for a view write about once per S seconds, not per chunk; but a
    worker killed meanwhile (SIGKILL, ``os._exit``) leaves the view without
    its last runs until the next write heals it or ``ptb sync``. The journal
    (``ptb log``, ``ptb.history``) never lags either way.
    """
    try:
        return max(float(os.environ.get("PTB_VIEW_EVERY") or 0.0), 0.0)
    except ValueError:
        return 0.0


_chunk_written: Dict[str, float] = {}     # cloudpath -> when a chunk run's end last wrote its view here


def update(vol: Volume, entries: Sequence[Entry], *, chunk: bool = False) -> bool:
    """Publish ``entries`` now (bounded); True when the view holds them on return.

    ``chunk``: the end of a chunk run, left to the background when
    ``view_every()`` says the view was written recently enough.
    """
    if not entries:
        return True
    every = view_every() if chunk else 0.0
    if every:
        if time.monotonic() - _chunk_written.get(vol.cloudpath, -every) < every:
            _updater().submit(vol, entries, wake=False)
            return False
        _chunk_written[vol.cloudpath] = time.monotonic()
    entries = [*_updater().take(vol.cloudpath), *entries]      # what waits for the thread goes along
    try:
        if publish.publish(vol, entries, WAIT_SECONDS):
            _updater().touched(vol)
            return True
    except CorruptProvenanceError as exc:
        _stale(vol, exc)
        return False
    except Exception:     # cas.Busy, or a storage error of any of the clients: the thread retries
        pass
    _updater().submit(vol, entries)
    return False


def heal_now(vol: Volume) -> None:
    """Publish every journal record the view lacks, however young; for ``ptb flush``, whose writers are gone."""
    try:
        publish.heal(vol, WAIT_SECONDS, min_age=0.0)
    except Exception as exc:
        _stale(vol, exc)


class _Updater:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.export_lock = threading.Lock()          # held by the thread and by flush while they publish
        self.queue_lock = threading.Lock()
        self.wake = threading.Event()
        self.stopped = False
        self.queue: Dict[str, Tuple[Volume, Dict[str, Entry]]] = {}
        self.volumes: Dict[str, Tuple[Volume, float]] = {}   # volumes this process wrote to, and when
        self.healed: Dict[str, float] = {}
        self.thread: Any = None
        self.finalizer = False
        self.dropped = 0

    # ------------------------------------------------------------------ intake
    def touched(self, vol: Volume) -> None:
        with self.queue_lock:
            self.volumes[vol.cloudpath] = (vol, time.monotonic())
            self._start()

    def submit(self, vol: Volume, entries: Sequence[Entry], wake: bool = True) -> None:
        with self.queue_lock:
            self.volumes[vol.cloudpath] = (vol, time.monotonic())
            pending = self.queue.setdefault(vol.cloudpath, (vol, {}))[1]
            room = MAX_QUEUED - sum(len(p) for _, p in self.queue.values())
            for rid, record in entries:
                if room <= 0:
                    self.dropped += 1
                    continue
                room -= rid not in pending
                pending[rid] = (rid, record)
            self._start()
        if self.dropped:
            warn(f"ptb's view queue is full: {self.dropped} record(s) will reach the provenance view only "
                 f"through `ptb sync` (they are in the journal)")
            self.dropped = 0
        if wake:
            self.wake.set()

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="ptb-view", daemon=True)
            self.thread.start()
        if not self.finalizer:
            self.finalizer = _flush_at_exit()

    # ------------------------------------------------------------------ work
    def _run(self) -> None:
        while not self.stopped:
            self.wake.wait(RETRY_SECONDS)
            self.wake.clear()
            if self.stopped:
                break
            try:
                with self.export_lock:
                    self._export(deadline=time.monotonic() + 60.0, heal=True)
            except Exception as exc:     # a ptb bug must not kill the thread silently
                warn(f"ptb's view thread hit an unexpected error (a ptb bug): {exc!r}")

    def take(self, cloudpath: str) -> List[Entry]:
        """What waits for the thread on one volume, taken off the queue (a caller publishes it now)."""
        with self.queue_lock:
            found = self.queue.pop(cloudpath, None)
        return list(found[1].values()) if found else []

    def _take(self) -> Dict[str, Tuple[Volume, Dict[str, Entry]]]:
        with self.queue_lock:
            batch, self.queue = self.queue, {}
        return batch

    def _export(self, deadline: float, heal: bool) -> None:
        """Publish what is queued; what fails goes back on the queue (or is given up, when old)."""
        for vol, pending in self._take().values():
            entries = list(pending.values())
            if not self._publish(vol, entries, deadline):
                fresh = [e for e in entries if rid_age_seconds(e[0]) < GIVE_UP_SECONDS]
                if len(fresh) < len(entries):
                    _stale(vol, f"{len(entries) - len(fresh)} record(s) could not be merged for "
                                f"{GIVE_UP_SECONDS:.0f} s")
                with self.queue_lock:
                    self.queue.setdefault(vol.cloudpath, (vol, {}))[1].update((e[0], e) for e in fresh)
        if heal:
            recent = time.monotonic() - HEAL_FOR_SECONDS
            for vol, last in list(self.volumes.values()):
                if last >= recent:          # an idle worker stops looking after a while
                    self._housekeeping(vol, deadline)

    def _publish(self, vol: Volume, entries: List[Entry], deadline: float) -> bool:
        try:
            return publish.publish(vol, entries, max(deadline - time.monotonic(), 0.1))
        except CorruptProvenanceError as exc:
            _stale(vol, exc)
            return True        # never retried: the file is left alone until someone repairs it
        except Exception:
            return False

    def _housekeeping(self, vol: Volume, deadline: float) -> None:
        """Now and then: pack a long journal (publishing what leaves it) and heal the view."""
        now = time.monotonic()
        if now - self.healed.get(vol.cloudpath, 0.0) < HEAL_EVERY_SECONDS:
            return
        self.healed[vol.cloudpath] = now
        try:
            packed = journal.maybe_pack(vol)
            if packed:
                publish.publish(vol, [(env["rid"], record) for env, record in packed],
                                max(deadline - time.monotonic(), 0.1))
            publish.heal(vol, max(deadline - time.monotonic(), 0.1))
        except Exception:      # housekeeping: the next round, a later writer or `ptb sync` does it
            pass

    def pending(self) -> int:
        with self.queue_lock:
            return sum(len(p) for _, p in self.queue.values())

    def flush(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """Publish everything queued, within ``timeout``; True if nothing is left."""
        deadline = time.monotonic() + timeout
        if not self.export_lock.acquire(timeout=timeout):
            return False
        try:
            self._export(deadline, heal=False)
        finally:
            self.export_lock.release()
        return self.pending() == 0

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        self.stopped = True
        self.wake.set()
        return self.flush(timeout)


_instance = _Updater()


def _updater() -> _Updater:
    global _instance
    if _instance.pid != os.getpid():     # forked: the parent's thread and locks are not ours
        _instance = _Updater()
    return _instance


def flush(timeout: float = SHUTDOWN_SECONDS) -> bool:
    """Publish every pending view update now; True when none is left (also done at exit)."""
    return _updater().flush(timeout)


def _shutdown() -> None:
    try:
        _updater().shutdown()
    except Exception:
        pass


def _flush_at_exit() -> bool:
    """Flush at exit in ``multiprocessing`` children too.

    Those end with ``os._exit``, which skips ``atexit``, but run
    multiprocessing's own finalizers first (registered here on first use in
    the process, after multiprocessing has cleared what the parent left).
    """
    if "multiprocessing.util" not in sys.modules:
        return False
    sys.modules["multiprocessing.util"].Finalize(None, _shutdown, exitpriority=100)
    return True


def sync(volume: Any) -> Dict[str, Any]:
    """Pack the journal into a segment and rebuild the view exactly (``ptb sync``).

    Refuses a location where nothing is recorded, so a mistyped path does
    not gain a new ``provenance`` file. A volume the storage will not let it
    write (read-only, full) is a ``VolumeUnavailableError``.
    """
    vol = Volume.resolve(volume)
    flush()
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


atexit.register(_shutdown)
