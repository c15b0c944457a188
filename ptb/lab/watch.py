"""``ptb watch``: a volume's running steps, live, from its journal.

``Watcher`` reads the volume's history once, then at each poll lists the
journal and reads only the objects it has not seen (``tail.poll``), so a
poll costs the same at 100 runs as at 100,000. It keeps, per process, the
last state of each run, and reports the runs that failed (or whose worker
is gone) since the last poll. ``follow`` draws it: one tqdm bar per
process, failures printed above the bars as they come, a summary at the end.
"""
from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from ..errors import InvalidInputError
from ..read.fmt import error_text, fmt_duration, params_summary, run_duration
from ..read.runsummary import percentile
from ..records import ProcessRecord, RunRecord, canonical_json
from ..store import journal
from ..store.volume import Volume
from . import liveness
from .table import visible
from .tail import Known, poll, text_size

TOTAL_KEYS = ("total", "of", "chunks", "num_chunks", "n_chunks", "tasks", "num_tasks", "n_tasks", "task_count")
"""A per-run value (or step parameter) by one of these names, an integer, says how many chunks the step has."""


@dataclasses.dataclass(frozen=True)
class Event:
    """A run that needs attention, seen at this poll: failed, interrupted, or never finished."""

    process: str
    run: RunRecord
    state: str


class Progress:
    """What one process's runs came to so far."""

    def __init__(self, key: str, description: str, parameters: Dict[str, Any]):
        self.key, self.description, self.parameters = key, description, parameters
        self.runs: Dict[str, RunRecord] = {}
        self.reported: Set[str] = set()
        self.first_new: Optional[float] = None      # monotonic time of the first run finished while watched
        self.done_at_start: Optional[int] = None

    def add(self, run: RunRecord) -> bool:
        """Take a run's record; True when it changed the run's state (a final status beats ``running``)."""
        known = self.runs.get(run.id)
        if known is not None and known.finished and not run.finished:
            return False
        self.runs[run.id] = run
        return known is None or known.status != run.status

    def p95(self) -> Optional[float]:
        return percentile([d for d in map(run_duration, self.runs.values()) if d is not None], 0.95)

    def states(self, now: datetime.datetime) -> Dict[str, str]:
        p95 = self.p95()
        return {rid: liveness.state(run, now, p95) for rid, run in self.runs.items()}

    def done(self) -> int:
        """Chunks done: distinct per-run values among succeeded runs (a retried chunk counts once), else runs."""
        good = [r for r in self.runs.values() if r.status == "succeeded"]
        if good and all(r.parameters for r in good):
            return len({canonical_json(r.parameters) for r in good})
        return len(good)

    def expected(self, given: Optional[int]) -> Optional[int]:
        """How many chunks: ``--expect``, else a per-run value or parameter named in ``TOTAL_KEYS``."""
        if given:
            return given
        for values in [self.parameters, *(r.parameters for r in self.runs.values())]:
            for name in TOTAL_KEYS:
                value = (values or {}).get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
        return None

    def counts(self, now: datetime.datetime) -> Dict[str, int]:
        out = {"done": self.done(), "succeeded": 0, "failed": 0, "interrupted": 0, "running": 0,
               "never finished": 0}
        for state in self.states(now).values():
            out[state] = out.get(state, 0) + 1
        return out


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
            if (first and "running" in progress.states(now).values()) or (not first and key in changed):
                self.watched.append(key)
        for key in self.watched:
            if self.processes[key].done_at_start is None:
                self.processes[key].done_at_start = self.processes[key].done()

    def _events(self, now: datetime.datetime, first: bool) -> List[Event]:
        events = []
        for key in self.watched:
            progress = self.processes[key]
            for rid, state in progress.states(now).items():
                if state in ("failed", "interrupted", "never finished") and rid not in progress.reported:
                    progress.reported.add(rid)
                    if not first:
                        events.append(Event(key, progress.runs[rid], state))
        return sorted(events, key=lambda e: (e.run.ended or e.run.started, e.run.id))

    def running(self, now: Optional[datetime.datetime] = None) -> int:
        """Runs of the watched processes still at work."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return sum(self.processes[k].counts(now)["running"] for k in self.watched)


def event_line(event: Event, description: str) -> str:
    """``failed  18ed7af7b8a  threshold (offset=[48, 0, 0]): TimeoutError: ...``, safe for a terminal."""
    what = visible(description, 40)
    values = f" ({visible(params_summary(event.run.parameters, 80))})" if event.run.parameters else ""
    why = error_text(event.run.error) if event.state != "never finished" else "its worker is gone"
    return f"{event.state:<14}  {event.run.id[:11]}  {what}{values}: {visible(why or event.state, 160)}"


def summary_line(progress: Progress, expected: Optional[int], now: datetime.datetime, rate: Optional[float]) -> str:
    """``threshold (dfd74bd7): 980 of 1,000 done, 2 failed, 4 running, 18.5 runs/s, ETA 1 s``."""
    counts = progress.counts(now)
    done = f"{counts['done']:,} of {expected:,} done" if expected else f"{counts['done']:,} done"
    parts = [done] + [f"{counts[s]:,} {s}" for s in ("failed", "interrupted", "running", "never finished")
                      if counts.get(s) or s in ("failed", "running")]
    if rate:
        parts.append(f"{rate:.1f} runs/s")
        if expected and expected > counts["done"]:
            parts.append(f"ETA {fmt_duration((expected - counts['done']) / rate)}")
    return f"{visible(progress.description, 50)} ({progress.key[:8]}): {', '.join(parts)}"

