"""The ``provenance`` file as a small view of the journal: its shape and its merge.

Every tool in the field reads ``provenance`` (each ``CloudVolume(path)`` does),
so the view stays small and valid: one ``processing`` entry per ptb process,
with a digest of its runs (counts by status, first and last run, last
failure, runs not finished), the newest notes up to ``NOTES_KEPT``, and a
pointer to the full history in the journal. Content ptb did not write
(``sources``, ``owners``, ``description``, igneous entries, hand edits) is
kept as it is.

Merging is by journal record id (``rid``). Notes and processes merge by id,
so merging one twice changes nothing. Counting runs is not idempotent, so the
view says which records it holds: every record whose rid is below its
``mark`` (a watermark over the journal's time-ordered keys, which only the
publisher that has just listed the journal moves, and only up to a window
behind its clock, for late arrivals and clock skew), and the rids it lists in
``included`` at or above the mark. An ended run's id is listed there too, so a
start that arrives after its end changes nothing. Only undecided records are
merged, so a run is never counted twice, whoever merges it (its writer, the
publisher, a packer) and in whatever order; and merging every record of the
journal gives exactly what ``rebuilt`` gives. Only a merge that follows a
listing of the journal (``ptb.store.publish.sweep``) moves the mark, so the
list stays near ``INCLUDED_KEPT`` rids; no record is ever taken as held
without having been seen.

This module does no I/O; ``ptb.store.publish`` reads and writes the file.
"""
from __future__ import annotations

import bisect
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..records import SECTION, Note, ProcessRecord, Record, RunRecord, is_ptb_entry

FORMAT = 3          # 3: the watermark ``mark``; a view of format 2 is rebuilt from the journal once
NOTES_KEPT = 50
INCLUDED_KEPT = 2048
WINDOW_SECONDS = 60.0   # how far behind its clock the publisher leaves the mark, for late records and skew
LATE_SECONDS = 10.0     # the least it leaves, behind the newest record, when a fleet fills the list faster
_ERROR_CHARS = 300
FINAL_STATUSES = ("succeeded", "failed", "interrupted")

Entry = Tuple[str, Record]      # (journal rid, record)


def empty_provenance() -> Dict[str, Any]:
    return {"description": "", "sources": [], "owners": [], "processing": []}


def pointer(cloudpath: str) -> str:
    return (f"a summary: the full history (every run and note) is in the ptb journal under "
            f"{cloudpath}/ptb/; read it with `ptb log {cloudpath}`")


def is_current(prov: Optional[Dict[str, Any]]) -> bool:
    """True when ``prov`` has a ptb section of this format, so it can be merged into incrementally."""
    section = (prov or {}).get(SECTION)
    return isinstance(section, dict) and section.get("format") == FORMAT


def foreign_part(prov: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``prov`` without anything ptb wrote: the base a rebuild starts from."""
    base = {k: v for k, v in (prov or {}).items() if k != SECTION}
    processing = base.get("processing") or []
    base["processing"] = [e for e in (processing if isinstance(processing, list) else [processing])
                          if not is_ptb_entry(e)]
    return base


class _Included:
    """What the view holds: every rid below ``mark``, and the listed rids at or above it."""

    _last: Tuple[str, List[str], Set[str]] = ("", [], set())   # the string last made, its rids and their set
    _lock = threading.Lock()

    def __init__(self, rids: Any, mark: Any = "", *, read_only: bool = False):
        """``read_only``: it will not be added to, so what this process wrote last may be shared, not taken."""
        text = rids if isinstance(rids, str) else ""
        self.mark = mark if isinstance(mark, str) else ""
        with _Included._lock:
            last_text, last_rids, last_known = _Included._last
            found = bool(text) and text == last_text
            if found and not read_only:      # what this process wrote last: taken over, not copied (O(1))
                _Included._last = ("", [], set())
        if found:
            self.rids, self.known = last_rids, last_known
        else:
            self.rids = sorted(set(text.split()))
            self.known = set(self.rids)

    def text(self) -> str:
        """The space-separated form the view stores (remembered: the next merge takes it over)."""
        text = " ".join(self.rids)
        with _Included._lock:
            _Included._last = (text, self.rids, self.known)
        return text

    def decided(self, rid: str) -> bool:
        return rid in self.known or rid < self.mark

    def add(self, rid: str) -> None:
        if rid < self.mark or rid in self.known:
            return
        self.known.add(rid)
        bisect.insort(self.rids, rid)

    def settle(self, listed_below: str) -> None:
        """The caller listed the journal and merged all it lacked: let the mark rise, keeping the list short.

        To ``listed_below`` (a window behind the caller's clock) once the list
        is half full; when a fleet writes faster than the window allows, to
        the list's ``INCLUDED_KEPT``-th highest rid, but never closer than
        ``LATE_SECONDS`` to the newest (a record that arrives later than that,
        below the mark, waits for ``ptb sync``).
        """
        if len(self.rids) > INCLUDED_KEPT // 2:
            self.raise_mark(listed_below)
        if len(self.rids) > INCLUDED_KEPT:      # never past the newest listed record less a short lag
            self.raise_mark(min(self.rids[-INCLUDED_KEPT], rid_before(self.rids[-1], LATE_SECONDS)))

    def raise_mark(self, mark: str) -> None:
        """Every rid below ``mark`` is now held (the caller listed the journal and merged what it lacked)."""
        if mark <= self.mark:
            return
        self.mark = mark
        cut = bisect.bisect_left(self.rids, mark)
        for rid in self.rids[:cut]:
            self.known.discard(rid)
        del self.rids[:cut]


def rid_before(rid: str, seconds: float) -> str:
    """The rid-shaped time ``seconds`` before ``rid`` was made."""
    try:
        return f"{max(int(rid[:16], 16) - int(seconds * 1e9), 0):016x}"
    except ValueError:
        return ""


def mark_at(seconds_ago: float) -> str:
    """The rid-shaped watermark for ``seconds_ago`` by this machine's clock (ids are time-ordered)."""
    import time

    return f"{max(time.time_ns() - int(seconds_ago * 1e9), 0):016x}"


def undecided(prov: Optional[Dict[str, Any]], rids: Iterable[str]) -> List[str]:
    """The ``rids`` whose records merging could still change the view (healing fetches only those)."""
    if not is_current(prov):
        return list(rids)
    section = prov[SECTION]  # type: ignore[index]
    included = _Included(section.get("included"), section.get("mark"), read_only=True)
    return [rid for rid in rids if not included.decided(rid)]


def merge_into(prov: Dict[str, Any], entries: Iterable[Entry], cloudpath: str, mark: Optional[str] = None,
               layout: Optional[List[Any]] = None) -> bool:
    """Merge journal records into ``prov`` (in place); True if anything changed.

    ``prov`` must be current (``is_current``) or hold no ptb section at all.
    Notes and processes merge by id, so merging them again changes nothing;
    a run record merges only while undecided, so it is counted once. A run's
    start is left out when its end comes in the same batch: the end says more.
    ``mark``: the caller listed the journal and brings every record that the
    view lacked, so the view's mark may rise (up to ``mark``, see
    ``_Included.settle``). ``layout``: the order ``processing`` keeps (by
    default its own).
    """
    changed = False
    for key, default in empty_provenance().items():
        if prov.get(key) in (None, "") and (key not in prov or prov[key] != default):
            prov[key], changed = default, True   # absent, or CloudVolume's "" default for sources
    if not isinstance(prov["processing"], list):  # hand-written oddity: keep it whole, as one entry
        prov["processing"], changed = [prov["processing"]], True
    section = prov.get(SECTION) if is_current(prov) else None
    changed = changed or section is None or section.get("history") != pointer(cloudpath)
    included = _Included((section or {}).get("included"), (section or {}).get("mark"))
    notes = {n.get("id"): n for n in (section or {}).get("notes", []) if isinstance(n, dict)}
    processes = {e[SECTION].get("key"): e for e in prov["processing"] if is_ptb_entry(e)}
    entries = sorted(entries, key=lambda e: e[0])
    ended = {r.id for _, r in entries if isinstance(r, RunRecord) and r.finished}
    for rid, record in entries:
        if included.decided(rid):
            continue
        if isinstance(record, RunRecord):
            if record.finished:
                if record.id not in included.known:      # one end per run, even if journalled twice
                    _merge_run(processes, record)
                included.add(record.id)          # its run has ended: a start merged later adds nothing
            elif record.id not in ended and not included.decided(record.id):
                _merge_run(processes, record)
        elif isinstance(record, Note):
            notes[record.id] = _note_entry(record)
        elif isinstance(record, ProcessRecord):
            _merge_process(processes, record)
        included.add(rid)
        changed = True          # a record not merged before: its rid at least is new (no deep copy to compare)
    kept = sorted(notes.values(), key=lambda n: (n.get("timestamp") or "", n.get("id") or ""))[-NOTES_KEPT:]
    if mark is not None:
        before = included.mark
        included.settle(mark)
        changed = changed or included.mark != before
    prov[SECTION] = {"format": FORMAT, "history": pointer(cloudpath), "notes": kept,
                     "mark": included.mark, "included": included.text()}
    prov["processing"] = _arranged(processes, layout if layout is not None else prov["processing"])
    return changed


def _arranged(processes: Dict[str, Dict[str, Any]], layout: List[Any]) -> List[Any]:
    """``layout``'s order kept (others' entries and ptb's, as a tool that appends left them); new ptb
    entries last, by id. So a rebuild of a view in any order gives that view, not a reordering."""
    out, placed = [], set()
    for entry in layout:
        if not is_ptb_entry(entry):
            out.append(entry)
            continue
        key = entry[SECTION].get("key")
        if key in processes and key not in placed:
            out.append(processes[key])
            placed.add(key)
    return out + sorted((e for k, e in processes.items() if k not in placed),
                        key=lambda e: (e[SECTION].get("id") or ""))



def _note_entry(record: Note) -> Dict[str, Any]:
    data = record.to_json()
    del data["kind"]
    return data


def _process_entry(record: ProcessRecord) -> Dict[str, Any]:
    data = record.to_json()
    return {"task": data["task"], "parameters": data["parameters"], "code_envfiles": data["code_envfiles"],
            SECTION: {"id": data["id"], "key": data["key"], "timestamp": data["timestamp"], "runs": _no_runs()}}


def _no_runs() -> Dict[str, Any]:
    return {"count": 0, **{s: 0 for s in FINAL_STATUSES}, "running": [], "first": None, "last": None,
            "last_failure": None}


def _merge_process(processes: Dict[str, Dict[str, Any]], record: ProcessRecord) -> None:
    """One entry per process key; the first journalled record names it, whoever merged first."""
    known = processes.get(record.key)
    if known is None:
        processes[record.key] = _process_entry(record)
    elif (known[SECTION].get("id") or "") > record.id or known[SECTION].get("stub"):
        runs = known[SECTION].get("runs") or _no_runs()
        processes[record.key] = entry = _process_entry(record)
        entry[SECTION]["runs"] = runs


def _runs_of(processes: Dict[str, Dict[str, Any]], record: RunRecord) -> Dict[str, Any]:
    entry = processes.get(record.process)
    if entry is None:  # its process record is not merged (yet): a placeholder until it is
        entry = processes[record.process] = {
            "task": record.description, "parameters": {}, "code_envfiles": list(record.code_envfiles),
            SECTION: {"id": "~" + record.id, "key": record.process, "timestamp": None, "stub": True,
                      "runs": _no_runs()}}
    elif entry[SECTION].get("stub") and "~" + record.id < entry[SECTION]["id"]:
        entry[SECTION]["id"] = "~" + record.id       # named by its first run, whichever merged first
    runs: Dict[str, Any] = entry[SECTION].setdefault("runs", _no_runs())
    return runs


def _merge_run(processes: Dict[str, Dict[str, Any]], record: RunRecord) -> None:
    if not record.finished:
        runs = _runs_of(processes, record)
        if record.id not in runs["running"]:
            bisect.insort(runs["running"], record.id)
            runs["count"] += 1
            _first_last(runs, record)
        return
    for entry in processes.values():  # its start may sit under another process (parameters added later)
        running = entry[SECTION].get("runs", {}).get("running", [])
        if record.id in running:
            running.remove(record.id)
            entry[SECTION]["runs"]["count"] -= 1
    runs = _runs_of(processes, record)
    runs["count"] += 1
    runs[record.status] = runs.get(record.status, 0) + 1
    _first_last(runs, record)
    if record.status == "failed":
        failure = {"id": record.id, "ended": _iso(record.ended), "host": record.host, "error": _error_line(record)}
        if runs["last_failure"] is None or (failure["ended"] or "", record.id) > (
                runs["last_failure"].get("ended") or "", runs["last_failure"].get("id") or ""):
            runs["last_failure"] = failure


def _first_last(runs: Dict[str, Any], record: RunRecord) -> None:
    summary = {"id": record.id, "started": _iso(record.started), "status": record.status, "host": record.host}
    order = (summary["started"] or "", record.id)
    first, last = runs.get("first"), runs.get("last")
    if first is None or order <= ((first.get("started") or ""), first.get("id") or ""):
        runs["first"] = summary
    if last is None or order >= ((last.get("started") or ""), last.get("id") or ""):
        runs["last"] = {**summary, "ended": _iso(record.ended)}


def _error_line(record: RunRecord) -> Optional[str]:
    if not record.error:
        return None
    return f"{record.error.get('type')}: {record.error.get('message', '')}"[:_ERROR_CHARS]


def _iso(value: Any) -> Optional[str]:
    return None if value is None else value.isoformat()


def merge_foreign(base: Optional[Dict[str, Any]], theirs: Optional[Dict[str, Any]],
                  current: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """``current`` with what another tool changed from ``base`` to ``theirs`` (a three-way merge).

    For a foreign write that a rename put aside: what it added to ``processing``
    is appended, text it appended (0.1.x's notes in ``description``) is
    appended, other changed values are taken unless ``current`` changed them too.
    """
    if theirs is None or current is None or base is None:
        return current if current is not None else theirs
    return _merge_value(base, theirs, current)


def _merge_value(base: Any, theirs: Any, current: Any) -> Any:
    if theirs == base or theirs == current:
        return current
    if current == base:
        return theirs
    if isinstance(theirs, dict) and isinstance(current, dict) and isinstance(base, dict):
        merged = dict(current)
        for key in theirs.keys() | base.keys():
            if key == SECTION:
                continue                          # ptb's own section: ours is the newer
            if key not in theirs:
                merged.pop(key, None) if base.get(key) == current.get(key) else None
            else:
                merged[key] = _merge_value(base.get(key), theirs[key], current.get(key))
        return merged
    if isinstance(theirs, list) and isinstance(current, list) and isinstance(base, list):
        return current + [x for x in theirs if x not in base and x not in current and not is_ptb_entry(x)]
    if isinstance(theirs, str) and isinstance(current, str) and isinstance(base, str) and \
            theirs.startswith(base) and current.startswith(base):
        return current + theirs[len(base):]
    return current


def counts(prov: Dict[str, Any]) -> Dict[str, int]:
    """What a view holds, for people: processes, runs (by their digests), notes kept, others' entries."""
    processing: List[Any] = prov["processing"] if isinstance(prov.get("processing"), list) else []
    ours = [e for e in processing if is_ptb_entry(e)]
    section: Dict[str, Any] = prov[SECTION] if isinstance(prov.get(SECTION), dict) else {}
    return {"processes": len(ours), "runs": sum(int((e[SECTION].get("runs") or {}).get("count", 0)) for e in ours),
            "notes": len(section.get("notes") or []), "other_entries": len(processing) - len(ours)}


def rebuilt(prov: Optional[Dict[str, Any]], entries: Sequence[Entry], cloudpath: str,
            mark: Optional[str] = None) -> Dict[str, Any]:
    """The exact view of ``entries`` (a whole journal) over the foreign part of ``prov``.

    Its mark is ``prov``'s (so a rebuild of a converged view is that view), or ``mark``.
    """
    base = foreign_part(prov)
    kept = prov[SECTION].get("mark") if is_current(prov) else None   # type: ignore[index]
    layout = (prov or {}).get("processing")
    merge_into(base, entries, cloudpath, mark=kept if isinstance(kept, str) else mark,
               layout=layout if isinstance(layout, list) else None)
    return base
