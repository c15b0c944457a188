"""Is a run still running? One rule, from the record alone, for every reader.

A run is journalled ``running`` when it starts and again with its final status
when it ends, so a run whose last record is ``running`` is either still going
or its worker died before it could say so (SIGKILL, a lost machine, an
out-of-memory kill). ``liveness`` tells them apart as well as a record allows:

* read on the host that ran it (``host`` is this machine's name), the answer
  is exact: the run is running while its process (``pid``) exists, is not a
  zombie, and started no later than the run did (a reused pid is not the
  worker);
* read anywhere else, the worker cannot be asked, so a run started less than
  ``DEFAULT_ALIVE_HOURS`` ago (24 hours; the ``PTB_ALIVE_HOURS`` environment
  variable changes it) is taken as running, an older one as dead.

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

__all__ = ["DEFAULT_ALIVE_HOURS", "RUNNING", "DIED", "FINISHED", "liveness", "run_liveness", "this_host"]

RUNNING, DIED, FINISHED = "running", "died", "finished"
DEFAULT_ALIVE_HOURS = 24.0
_SLACK = 2.0        # seconds: a process's start time is known to about a clock tick


def _alive_for() -> datetime.timedelta:
    try:
        hours = float(os.environ.get("PTB_ALIVE_HOURS") or DEFAULT_ALIVE_HOURS)
    except ValueError:
        hours = DEFAULT_ALIVE_HOURS
    return datetime.timedelta(hours=max(hours, 0.0))


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
             started: Optional[datetime.datetime], now: Optional[datetime.datetime] = None) -> str:
    """``finished`` (a final status), ``running`` (its worker can still be alive) or ``died`` (it cannot).

    See the module's documentation for the rule; ``now`` is for tests.
    """
    if status != "running":
        return FINISHED
    if host and isinstance(pid, int) and host == this_host():
        return RUNNING if _process_alive(pid, started) else DIED
    if started is None:
        return DIED
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return RUNNING if now - started < _alive_for() else DIED


def run_liveness(run: Any, now: Optional[datetime.datetime] = None) -> str:
    """``liveness`` of a ``RunRecord`` (or anything with ``status``, ``host``, ``pid`` and ``started``)."""
    return liveness(run.status, run.host, run.pid, getattr(run, "started", None), now)
