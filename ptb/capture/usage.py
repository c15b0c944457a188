"""What a run used of its OS process: CPU time (one system call) and memory."""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Optional, Tuple


def cpu() -> Optional[Tuple[float, float]]:
    """(user, system) CPU seconds of this OS process, all threads; None if unknown. One system call."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime, usage.ru_stime
    except Exception:       # no resource module (Windows)
        try:
            times = _this_process().cpu_times()
            return times.user, times.system
        except Exception:
            return None


def memory() -> Tuple[Optional[int], Optional[int]]:
    """(RSS now, peak RSS so far) in bytes, None where unknown; the peak is never below the RSS now."""
    try:
        rss: Optional[int] = _this_process().memory_info().rss
    except Exception:
        rss = None
    try:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak: Optional[int] = maxrss if sys.platform == "darwin" else maxrss * 1024    # KiB except on macOS
    except Exception:
        peak = None
    if rss is not None and peak is not None:    # the kernel's high-water mark lags its RSS counters a little
        peak = max(peak, rss)
    return rss, peak


@functools.lru_cache(maxsize=1)
def _psutil_process(pid: int) -> Any:
    import psutil

    return psutil.Process(pid)


def _this_process() -> Any:
    """psutil's handle on this OS process, made once per pid (a fork gets its own)."""
    return _psutil_process(os.getpid())
