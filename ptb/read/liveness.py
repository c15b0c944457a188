"""Is a run still running? One rule, from the record alone, for every reader.

A run is journalled ``running`` when it starts and again with its final status
when it ends, so a run whose last record is ``running`` is either still going
or its worker died before it could say so (SIGKILL, a lost machine, an
out-of-memory kill). ``liveness`` tells them apart as well as a record allows:

* read on the host that ran it (``host`` is this machine's name), the answer
  is exact: the run is running while its process (``pid``) exists, is not a
  zombie, and started no later than the run did (a reused pid is not the
  worker);
* read anywhere else, the worker cannot be asked, so a run is taken as running
  while it is younger than its step allows: ``HORIZON_FACTOR`` times the 95th
  percentile duration of the step's finished runs, at least
  ``MIN_HORIZON_SECONDS`` (a chunk of 2 s started 15 minutes ago is not coming
  back), and ``DEFAULT_ALIVE_HOURS`` (24 hours) for a step with no finished
  run. The ``PTB_ALIVE_HOURS`` environment variable sets one horizon for
  every step instead.

``ptb.history`` works each running run's answer out once, with its step's
durations (``RecordedRun.live``), so readers that only see the run agree.

``ptb log``, ``ptb show``, the HTML page, the run summaries (and ``ptb status``)
all ask here, so they agree. A worker in another PID namespace on a host of
the same name (a container sharing the host's network name) is the one case
the first rule gets wrong: it looks dead.
"""
from __future__ import annotations

import datetime
import functools
import os
import socket
from typing import Any, Optional

__all__ = ["DEFAULT_ALIVE_HOURS", "RUNNING", "DIED", "FINISHED", "horizon", "liveness", "run_liveness",
           "run_state_name", "this_host"]

RUNNING, DIED, FINISHED = "running", "died", "finished"
DEFAULT_ALIVE_HOURS = 24.0
MIN_HORIZON_SECONDS = 600.0     # a run elsewhere is never given less than this, however short its step's runs
HORIZON_FACTOR = 4.0            # ... and this many times its step's p95 duration
_SLACK = 2.0        # seconds: a process's start time is known to about a clock tick


def horizon(typical: Optional[float] = None) -> datetime.timedelta:
    """How long after its start a run elsewhere may still be at work; ``typical``: its step's p95 duration."""
    configured = os.environ.get("PTB_ALIVE_HOURS")
    if configured:
        try:
            return datetime.timedelta(hours=max(float(configured), 0.0))
        except ValueError:
            pass
    if typical is None:
        return datetime.timedelta(hours=DEFAULT_ALIVE_HOURS)
    seconds = min(max(MIN_HORIZON_SECONDS, HORIZON_FACTOR * typical), DEFAULT_ALIVE_HOURS * 3600)
    return datetime.timedelta(seconds=seconds)


@functools.lru_cache(maxsize=1)
def this_host() -> str:
    """This machine's name, as runs record theirs (``socket.gethostname()``)."""
    return socket.gethostname()


def _process_alive(pid: int, started: Optional[datetime.datetime]) -> bool:
    """Whether process ``pid`` of this machine exists, is not a zombie, and is not younger than the run."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or proc.create_time() <= started.timestamp() + _SLACK
    except ImportError:         # psutil is a dependency; without it, ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    except Exception as exc:    # NoSuchProcess: gone; AccessDenied: someone else's, but there
        return type(exc).__name__ == "AccessDenied"


def liveness(status: Optional[str], host: Optional[str], pid: Optional[int],
             started: Optional[datetime.datetime], now: Optional[datetime.datetime] = None,
             typical: Optional[float] = None) -> str:
    """``finished`` (a final status), ``running`` (its worker can still be alive) or ``died`` (it cannot).

    See the module's documentation for the rule; ``typical`` is the p95
    duration of the step's finished runs (None: unknown); ``now`` is for tests.
    """
    if status != "running":
        return FINISHED
    if host and isinstance(pid, int) and host == this_host():
        return RUNNING if _process_alive(pid, started) else DIED
    if started is None:
        return DIED
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return RUNNING if now - started < horizon(typical) else DIED


def run_liveness(run: Any, now: Optional[datetime.datetime] = None, typical: Optional[float] = None) -> str:
    """``liveness`` of a ``RunRecord`` (or anything with ``status``, ``host``, ``pid`` and ``started``).

    A run read by ``ptb.history`` (``RecordedRun``) carries its answer, worked
    out with its step's durations: that one is given, so every reader agrees.
    """
    known = getattr(run, "live", None)
    if known and now is None:
        return str(known)
    return liveness(run.status, run.host, run.pid, getattr(run, "started", None), now, typical)


def run_state_name(run: Any, now: Optional[datetime.datetime] = None, typical: Optional[float] = None) -> str:
    """A run's status with ``running`` split in two: ``running`` or ``never finished``; final ones as they are."""
    if run.status != "running":
        return str(run.status)
    return RUNNING if run_liveness(run, now, typical) == RUNNING else "never finished"
