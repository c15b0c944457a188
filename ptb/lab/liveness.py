"""Running or never finished: the rule for a run whose last record says ``running``.

A run is journalled ``running`` at its start and again with its outcome at its
end; a worker that was killed never writes the second record. ``ptb status``,
``ptb find --status`` and ``ptb watch`` tell a run still at work from one whose
worker is gone with ``still_running``; everything else in ptb (``ptb log``,
``ptb show``) still calls every such run "never finished".
"""
from __future__ import annotations

import datetime
import socket
from typing import Any, Optional

HORIZON_SECONDS = 24 * 3600.0   # a run on another machine, of a step with no finished run, is given this long
MIN_HORIZON_SECONDS = 600.0     # ... and never less than this, however short the step's other runs were
HORIZON_FACTOR = 4.0            # ... or this many times the slowest 5 % of the step's finished runs
PID_CLOCK_SLACK = 5.0           # seconds: Linux gives a process's start time from a whole-second boot time

_HOST = socket.gethostname()


def horizon(p95: Optional[float]) -> float:
    """How long after its start a run on another machine may still be at work, given its step's p95 duration."""
    if p95 is None:
        return HORIZON_SECONDS
    return max(MIN_HORIZON_SECONDS, HORIZON_FACTOR * p95)


def _pid_alive(pid: int, started: Optional[datetime.datetime]) -> bool:
    """Whether OS process ``pid`` exists here and is old enough to have started the run (pids are reused)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    return started is None or created <= started.timestamp() + PID_CLOCK_SLACK


def still_running(run: Any, now: Optional[datetime.datetime] = None, p95: Optional[float] = None) -> bool:
    """The rule for running vs never finished: is the worker of ``run`` (status ``running``) possibly still alive?

    A run ran here (same host name) with a known pid: alive while that OS
    process exists and is older than the run. A run elsewhere cannot be
    asked: alive while it is younger than ``horizon(p95)``, where ``p95`` is
    its step's 95th-percentile duration of finished runs (None when there is
    none: 24 hours). A run whose last record is final is never running.

    ``run`` is anything with ``status``, ``started``, ``host`` and ``pid``
    (a ``RunRecord``). This is the one place that says it: replace it here.
    """
    if run.status != "running":
        return False
    if run.host == _HOST and run.pid is not None:
        return _pid_alive(run.pid, run.started)
    if run.started is None:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (now - run.started).total_seconds() < horizon(p95)


def state(run: Any, now: Optional[datetime.datetime] = None, p95: Optional[float] = None) -> str:
    """A run's status with ``running`` split: ``running`` or ``never finished``; final statuses as they are."""
    if run.status != "running":
        return str(run.status)
    return "running" if still_running(run, now, p95) else "never finished"
