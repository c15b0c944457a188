"""The ``provenance`` file as a view of the journal, for CloudVolume readers.

The view is merged (read, merge by id, write) and never trusted: the journal
is the truth, ``rebuild`` recomputes the view from it exactly, and content
that ptb did not write (sources, owners, igneous entries, hand edits) is
always carried over. Notes reach the view from a background thread at most
once per ``DEBOUNCE_SECONDS``, so a note costs one small write however long the
history is; process and run records are merged at once.
"""
from __future__ import annotations

import atexit
import os
import random
import sys
import threading
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import journal
from .errors import VolumeUnavailableError
from .records import FORMAT_VERSION, Note, ProcessRecord, Record, RunRecord
from .storage import PROVENANCE, Volume

DEBOUNCE_SECONDS = 1.0
HEAL_WINDOW_NS = 5 * 10**9
HEAL_LIMIT = 32
_MERGE_ATTEMPTS = 4
SECTION = "ptb"


class ViewWarning(UserWarning):
    """The ``provenance`` view could not be updated; the journal still holds everything."""


def empty_provenance() -> Dict[str, Any]:
    return {"description": "", "sources": [], "owners": [], "processing": []}


def is_ptb_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get(SECTION), dict)


def _process_entry(record: ProcessRecord) -> Dict[str, Any]:
    data = record.to_json()
    return {
        "task": data["task"],
        "parameters": data["parameters"],
        "code_envfiles": data["code_envfiles"],
        SECTION: {"id": data["id"], "key": data["key"], "timestamp": data["timestamp"]},
    }


def _note_entry(record: Note) -> Dict[str, Any]:
    data = record.to_json()
    del data["kind"]
    return data


def _run_summary(record: RunRecord) -> Dict[str, Any]:
    data = record.to_json()
    summary = {k: data[k] for k in ("id", "task", "process", "status", "started", "ended", "duration",
                                     "parent", "user", "host")}
    if record.error:
        summary["error"] = f"{record.error.get('type')}: {record.error.get('message', '')}"[:300]
    return summary


def merge_into(prov: Dict[str, Any], records: Sequence[Record], *, fresh_notes: bool = False) -> Dict[str, Any]:
    """Merge records into ``prov`` in place, by id; returns ``prov``.

    ``fresh_notes`` skips the duplicate check for notes known to be new, so
    that keeping an in-memory CloudVolume current costs O(1) per note.
    """
    for key, default in empty_provenance().items():
        if prov.get(key) in (None, ""):  # absent, or CloudVolume's "" default for sources
            prov[key] = default
    if not isinstance(prov["processing"], list):  # hand-written oddity: keep it whole, as one entry
        prov["processing"] = [prov["processing"]]
    section = prov.get(SECTION)
    if not isinstance(section, dict):
        section = prov[SECTION] = {}
    section["format"] = FORMAT_VERSION
    notes: List[Dict[str, Any]] = section.setdefault("notes", [])
    runs: List[Dict[str, Any]] = section.setdefault("runs", [])
    processing: List[Any] = prov["processing"]
    note_ids = None if fresh_notes else {n.get("id") for n in notes}
    run_index = {r.get("id"): i for i, r in enumerate(runs)} if any(isinstance(r, RunRecord) for r in records) else {}
    process_keys = ({e[SECTION].get("key") for e in processing if is_ptb_entry(e)}
                    if any(isinstance(r, ProcessRecord) for r in records) else set())
    for record in records:
        if isinstance(record, Note):
            if note_ids is None or record.id not in note_ids:
                notes.append(_note_entry(record))
                if note_ids is not None:
                    note_ids.add(record.id)
        elif isinstance(record, RunRecord):
            summary = _run_summary(record)
            index = run_index.get(record.id)
            if index is None:
                run_index[record.id] = len(runs)
                runs.append(summary)
            elif record.finished or runs[index].get("status") == "running":
                runs[index] = summary
        elif isinstance(record, ProcessRecord) and record.key not in process_keys:
            process_keys.add(record.key)
            processing.append(_process_entry(record))
    if not fresh_notes:
        notes.sort(key=lambda n: (n.get("timestamp") or "", n.get("id") or ""))
    return prov


def _contains(prov: Optional[Dict[str, Any]], records: Sequence[Record]) -> bool:
    if not prov or not isinstance(prov.get(SECTION), dict):
        return not records
    section = prov[SECTION]
    notes = {n.get("id") for n in section.get("notes", [])}
    runs = {r.get("id"): r.get("status") for r in section.get("runs", [])}
    keys = {e[SECTION].get("key") for e in prov.get("processing", []) if is_ptb_entry(e)}
    for record in records:
        if isinstance(record, Note) and record.id not in notes:
            return False
        if isinstance(record, RunRecord) and (
                record.id not in runs or (record.finished and runs[record.id] == "running")):
            return False
        if isinstance(record, ProcessRecord) and record.key not in keys:
            return False
    return True


def _show_in_memory(vol: Volume, records: Sequence[Record]) -> None:
    """Keep a CloudVolume object's ``.provenance`` in step with what was written."""
    prov = getattr(vol.cloudvolume, "provenance", None)
    if isinstance(prov, dict):
        merge_into(prov, records, fresh_notes=all(isinstance(r, Note) for r in records))


def _mark(prov: Dict[str, Any]) -> str:
    section = prov.get(SECTION)
    mark = section.get("mark") if isinstance(section, dict) else None
    return mark if isinstance(mark, str) else ""


def _minus_window(mark: str) -> str:
    """The mark moved back by ``HEAL_WINDOW_NS``: rids start with 16 hex digits of nanoseconds."""
    try:
        return f"{max(int(mark[:16], 16) - HEAL_WINDOW_NS, 0):016x}"
    except ValueError:
        return ""


def merge_now(vol: Volume, records: Sequence[Record]) -> None:
    """Read, merge, write, and read back until the view holds ``records``.

    Under contention another writer can overwrite our merge; the read-back
    notices and tries again a few times. Each merge also takes in the journal
    records written since the view's ``mark`` (less a window for slow
    writers), so a merge lost to contention is repaired by the next writer;
    ``ptb sync`` restores everything at any time.
    """
    healed: List[Record] = []
    mark = ""
    for attempt in range(_MERGE_ATTEMPTS):
        prov = vol.read_provenance() or {}
        if attempt == 0:
            healed, mark = journal.read_since(vol, _minus_window(_mark(prov)), HEAL_LIMIT)
        todo = [*records, *healed]
        if prov and _contains(prov, todo):
            return
        merge_into(prov, todo)
        prov[SECTION]["mark"] = max(mark, _mark(prov))
        vol.put_json(PROVENANCE, prov)
        if _contains(vol.read_provenance(), records):
            return
        time.sleep(random.uniform(0.02, 0.2) * (attempt + 1))


def update(vol: Volume, records: Sequence[Record], *, wait: bool = True) -> None:
    """Bring ``records`` into the view: now (``wait``), or soon from a background thread.

    Never raises for a storage problem: the records are already journalled.
    """
    if not records:
        return
    _show_in_memory(vol, records)
    if not wait:
        _updater.submit(vol, records)
        return
    try:
        merge_now(vol, records)
    except Exception as exc:
        _warn_stale(vol, exc)


def _warn_stale(vol: Volume, exc: Exception) -> None:
    warnings.warn(f"the provenance view of {vol.cloudpath} was not updated ({exc}); its journal holds every "
                  f"record, and `ptb sync {vol.cloudpath}` rebuilds the view", ViewWarning, stacklevel=3)


def rebuild(vol: Volume) -> Dict[str, Any]:
    """The exact view from the journal, with all foreign content kept; written and returned."""
    base = vol.read_provenance() or empty_provenance()
    base = {k: v for k, v in base.items() if k != SECTION}
    processing = base.get("processing") or []
    base["processing"] = [e for e in (processing if isinstance(processing, list) else [processing])
                          if not is_ptb_entry(e)]
    envelopes = journal.read_envelopes(vol)
    merged = merge_into(base, journal.read(vol, envelopes=envelopes))
    merged[SECTION]["mark"] = max(envelopes, default="")
    vol.put_json(PROVENANCE, merged)
    if isinstance(getattr(vol.cloudvolume, "provenance", None), dict):
        vol.cloudvolume.provenance.clear()
        vol.cloudvolume.provenance.update(merged)
    return merged


def sync(volume: Any) -> Dict[str, Any]:
    """Pack the journal into a segment and rebuild the view exactly (``ptb sync``).

    Refuses a location where nothing is recorded, so a mistyped path does
    not gain a new ``provenance`` file.
    """
    vol = Volume.resolve(volume)
    flush()
    if vol.read_provenance() is None and not vol.list(journal.JOURNAL) and not vol.list(journal.SEGMENTS):
        raise VolumeUnavailableError(f"nothing is recorded at {vol.cloudpath}: no provenance file and no ptb "
                                     f"journal (is the path right?)")
    journal.pack(vol)
    return rebuild(vol)


class _Updater:
    """One background thread that merges pending records into views, debounced."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: Dict[str, Tuple[Volume, List[Record]]] = {}
        self.busy = False
        self.thread: Optional[threading.Thread] = None

    def submit(self, vol: Volume, records: Sequence[Record]) -> None:
        with self.cond:
            self.pending.setdefault(vol.cloudpath, (vol, []))[1].extend(records)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="ptb-view", daemon=True)
                self.thread.start()
                _flush_at_exit()
            self.cond.notify_all()

    def _take(self) -> Dict[str, Tuple[Volume, List[Record]]]:
        batch, self.pending = self.pending, {}
        self.busy = bool(batch)
        return batch

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
            time.sleep(DEBOUNCE_SECONDS)
            with self.cond:
                batch = self._take()
            self._merge(batch)

    def _merge(self, batch: Dict[str, Tuple[Volume, List[Record]]]) -> None:
        try:
            for vol, records in batch.values():
                try:
                    merge_now(vol, records)
                except Exception as exc:
                    _warn_stale(vol, exc)
                packed = journal.maybe_pack(vol)
                if packed:  # they leave the journal, where merges look for missed records
                    try:
                        merge_now(vol, packed)
                    except Exception as exc:
                        _warn_stale(vol, exc)
        finally:
            with self.cond:
                self.busy = False
                self.cond.notify_all()

    def flush(self, timeout: float = 60.0) -> None:
        with self.cond:
            self.cond.wait_for(lambda: not self.busy, timeout=timeout)
            batch = self._take()
        self._merge(batch)


_updater = _Updater()


def flush() -> None:
    """Write every pending view update now (also done at interpreter exit)."""
    _updater.flush()


def _after_fork_in_child() -> None:
    global _updater
    _updater = _Updater()  # the parent flushes what it had pending


def _flush_at_exit() -> None:
    """Flush at exit, including in ``multiprocessing`` children.

    Those end with ``os._exit``, which skips ``atexit``, but run
    multiprocessing's own finalizers first (registered here on first use in
    the process, after multiprocessing has cleared what the parent left).
    """
    if "multiprocessing.util" in sys.modules:
        sys.modules["multiprocessing.util"].Finalize(None, flush, exitpriority=100)


atexit.register(flush)
os.register_at_fork(after_in_child=_after_fork_in_child)
