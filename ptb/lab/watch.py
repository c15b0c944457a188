"""``ptb watch``: a volume's running steps, live, from its journal.

``Watcher`` reads the volume's history once, then at each poll lists the
journal and reads only the objects it has not seen (``tail.poll``), so a
poll costs the same at 100 runs as at 100,000. It keeps, per process, the
last state of each run, and reports the runs that failed (or whose worker
is gone) since the last poll. ``follow`` draws it: one tqdm bar per
process, failures printed above the bars as they come, a summary at the end.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime
import math
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from ..errors import InvalidInputError
from ..read.fmt import error_text, fmt_duration, one_line, params_summary, run_duration
from ..read.liveness import RUNNING, run_liveness
from ..records import ProcessRecord, RunRecord, canonical_json
from ..store import journal
from ..store.volume import Volume
from .tail import Known, poll, text_size

TOTAL_KEYS = ("total", "of", "chunks", "num_chunks", "n_chunks", "tasks", "num_tasks", "n_tasks", "task_count")
"""A per-run value (or step parameter) by one of these names, an integer, says how many chunks the step has."""
BATCH_GAP_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class Event:
    """A run that needs attention, seen at this poll: failed, interrupted, or never finished."""

    process: str
    run: RunRecord
    state: str


class Progress:
    """What the current batch of one process's runs came to so far, kept up to date record by record.

    A step re-run later (the same process: same description and parameters)
    starts a new batch, counted from zero: its runs began more than
    ``BATCH_GAP_SECONDS`` (or ten times the step's p95 duration) after the
    last activity of the previous ones. Within a batch, a chunk retried after
    a failure counts once. A poll never recounts: each record updates counts.
    """

    def __init__(self, key: str, description: str, parameters: Dict[str, Any]):
        self.key, self.description, self.parameters = key, description, parameters
        self.durations: List[float] = []        # of finished runs, sorted (all batches: for the p95)
        self.total: Optional[int] = _total(parameters)
        self.reported: Set[Tuple[str, str]] = set()
        self.done_at_start: Optional[int] = None
        self.previous: Optional[datetime.datetime] = None   # the last activity of the previous batch
        self.last_activity: Optional[datetime.datetime] = None
        self._new_batch()

    def _new_batch(self) -> None:
        self.runs: Dict[str, RunRecord] = {}
        self.by_status: Dict[str, int] = {}
        self.running: Set[str] = set()          # runs whose last record says ``running``
        self.done_values: Set[str] = set()      # per-run values of succeeded runs
        self.done_plain = 0                     # succeeded runs without per-run values
        self.new_problems: List[str] = []       # runs that failed or were interrupted since the last look

    def _batch(self, run: RunRecord) -> bool:
        """Whether ``run`` belongs to the current batch (a new batch starts when it begins after a long pause)."""
        if self.previous is not None and run.id not in self.runs and run.started <= self.previous:
            return False                        # a late record of an earlier batch
        gap = max(BATCH_GAP_SECONDS, 10 * (self.p95() or 0.0))
        if self.last_activity is not None and (run.started - self.last_activity).total_seconds() > gap:
            self._new_batch()
            self.previous = self.last_activity
            self.done_at_start = 0 if self.done_at_start is not None else None
        end = run.ended or run.started
        self.last_activity = end if self.last_activity is None else max(self.last_activity, end)
        return True

    def add(self, run: RunRecord) -> bool:
        """Take a run's record; True when it changed the run's state (a final status beats ``running``)."""
        if not self._batch(run):
            return False
        known = self.runs.get(run.id)
        if known is not None and (known == run or (known.finished and not run.finished)):
            return False
        if known is not None:
            self._count(known, -1)
        self.runs[run.id] = run
        self._count(run, +1)
        if self.total is None:
            self.total = _total(run.parameters)
        if run.status in ("failed", "interrupted"):
            self.new_problems.append(run.id)
        return True

    def _count(self, run: RunRecord, sign: int) -> None:
        self.by_status[run.status] = self.by_status.get(run.status, 0) + sign
        if run.status == "running":
            (self.running.add if sign > 0 else self.running.discard)(run.id)
            return
        duration = run_duration(run)
        if duration is not None:
            if sign > 0:
                bisect.insort(self.durations, duration)
            else:
                index = bisect.bisect_left(self.durations, duration)
                if index < len(self.durations) and self.durations[index] == duration:
                    self.durations.pop(index)
        if run.status == "succeeded":
            if run.parameters:
                if sign > 0:
                    self.done_values.add(canonical_json(run.parameters))
            else:
                self.done_plain += sign

    def p95(self) -> Optional[float]:
        """The nearest-rank 95th percentile of finished runs' durations (as ``runsummary.percentile``), in O(1)."""
        if not self.durations:
            return None
        return self.durations[max(math.ceil(0.95 * len(self.durations)) - 1, 0)]

    def alive(self, now: datetime.datetime) -> Set[str]:
        """The runs still at work (the others whose last record says ``running`` never finished)."""
        p95 = self.p95()
        return {rid for rid in self.running if run_liveness(self.runs[rid], now, p95) == RUNNING}

    def done(self) -> int:
        """Chunks done: distinct per-run values among succeeded runs (a retried chunk counts once), plus the
        succeeded runs that have none."""
        return len(self.done_values) + self.done_plain

    def expected(self, given: Optional[int]) -> Optional[int]:
        """How many chunks: ``--expect``, else a per-run value or parameter named in ``TOTAL_KEYS``."""
        return given or self.total

    def counts(self, now: datetime.datetime) -> Dict[str, int]:
        alive = len(self.alive(now))
        out = {"done": self.done(), "succeeded": 0, "failed": 0, "interrupted": 0}
        out.update({s: n for s, n in self.by_status.items() if s != "running"})
        out.update({"running": alive, "never finished": len(self.running) - alive})
        return out


def _total(values: Optional[Dict[str, Any]]) -> Optional[int]:
    for name in TOTAL_KEYS:
        value = (values or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class Watcher:
    """Follows one volume's journal; ``poll()`` reads only what is new."""

    def __init__(self, volume: Any, process: Optional[str] = None, secrets: Any = None):
        self.vol = Volume.resolve(volume, secrets)
        self.wanted = process
        self.objects: Dict[str, Tuple[str, ...]] = {}
        self.sizes: Dict[str, int] = {}
        self.processes: Dict[str, Progress] = {}
        self.watched: List[str] = []
        self.polls = 0
        self.fetched = 0
        self.last_fetched: List[str] = []       # the keys the last poll read
        self.last_record = time.monotonic()

    def _known(self) -> Known:
        return Known(set(self.objects), lambda keys: {k: self.objects[k] for k in keys if k in self.objects},
                     lambda rids: {r: self.sizes[r] for r in rids if r in self.sizes})

    def _progress(self, key: str, description: str = "", parameters: Optional[Dict[str, Any]] = None) -> Progress:
        if key not in self.processes:
            self.processes[key] = Progress(key, description, parameters or {})
        progress = self.processes[key]
        if description and not progress.description:
            progress.description = description
        return progress

    def poll(self, now: Optional[datetime.datetime] = None) -> List[Event]:
        """Read what is new; returns the runs that failed, were interrupted or lost their worker since the last poll."""
        delta = poll(self.vol, self._known())
        self.polls += 1
        self.fetched += len(delta.fetched)
        self.last_fetched = list(delta.fetched)
        for key in delta.gone:
            self.objects.pop(key, None)
        self.objects.update(delta.objects)
        fresh = [e for e in [*delta.journalled, *delta.packed] if e["rid"] not in self.sizes]
        for env in fresh:
            self.sizes[env["rid"]] = text_size(env)
        changed: Set[str] = set()
        for record in journal.records_of(self.vol, fresh):
            if isinstance(record, ProcessRecord):
                self._progress(record.key, record.description, record.parameters)
            elif isinstance(record, RunRecord) and self._progress(record.process, record.description).add(record):
                changed.add(record.process)
        if fresh:
            self.last_record = time.monotonic()
        first = self.polls == 1
        self._choose(changed, first)
        return self._events(now or datetime.datetime.now(datetime.timezone.utc), first)

    def _choose(self, changed: Set[str], first: bool) -> None:
        """The processes to show: the one asked for, else those running at the start or active since."""
        if self.wanted is not None:
            if not self.watched:
                matches = [k for k, p in self.processes.items() if k.startswith(self.wanted)]
                if len(matches) > 1:
                    raise InvalidInputError(f"process {self.wanted!r} is ambiguous on {self.vol.cloudpath}: "
                                            f"{len(matches)} processes start with it")
                if matches:
                    self.watched = matches
                elif first:
                    raise InvalidInputError(f"no process {self.wanted!r} on {self.vol.cloudpath} "
                                            f"(`ptb log {self.vol.cloudpath}` lists them)")
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        for key, progress in self.processes.items():
            if key in self.watched:
                continue
            if (first and progress.alive(now)) or (not first and key in changed):
                self.watched.append(key)
        for key in self.watched:
            if self.processes[key].done_at_start is None:
                self.processes[key].done_at_start = self.processes[key].done()

    def _events(self, now: datetime.datetime, first: bool) -> List[Event]:
        """Runs of the watched processes newly failed or interrupted, and those whose worker is gone."""
        events = []
        for key in self.watched:
            progress = self.processes[key]
            lost = progress.running - progress.alive(now)
            for rid, state in [*((r, progress.runs[r].status) for r in progress.new_problems),
                               *((r, "never finished") for r in sorted(lost))]:
                if (rid, state) not in progress.reported:
                    progress.reported.add((rid, state))
                    if not first:
                        events.append(Event(key, progress.runs[rid], state))
            progress.new_problems.clear()
        for progress in self.processes.values():
            progress.new_problems.clear()
        return sorted(events, key=lambda e: (e.run.ended or e.run.started, e.run.id))

    def running(self, now: Optional[datetime.datetime] = None) -> int:
        """Runs of the watched processes still at work."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return sum(len(self.processes[k].alive(now)) for k in self.watched)


def event_line(event: Event, description: str) -> str:
    """``failed  18ed7af7b8a  threshold (offset=[48, 0, 0]): TimeoutError: ...``, safe for a terminal."""
    what = one_line(description, 40)
    values = f" ({one_line(params_summary(event.run.parameters, 80))})" if event.run.parameters else ""
    why = error_text(event.run.error) if event.state != "never finished" else "its worker is gone"
    return f"{event.state:<14}  {event.run.id[:11]}  {what}{values}: {one_line(why or event.state, 160)}"


def summary_line(progress: Progress, expected: Optional[int], now: datetime.datetime, rate: Optional[float]) -> str:
    """``threshold (dfd74bd7): 980 of 1,000 done, 2 failed, 4 running, 18.5 runs/s, ETA 1 s``."""
    counts = progress.counts(now)
    done = f"{counts['done']:,} of {expected:,} done" if expected else f"{counts['done']:,} done"
    parts = [done] + [f"{counts[s]:,} {s}" for s in ("failed", "interrupted", "running", "never finished")
                      if counts.get(s) or s in ("failed", "running")]
    if rate:
        parts.append(f"{rate:.1f} runs/s")
        if expected and expected > counts["done"] and counts["running"]:
            parts.append(f"ETA {fmt_duration((expected - counts['done']) / rate)}")
    return f"{one_line(progress.description, 50)} ({progress.key[:8]}): {', '.join(parts)}"

