"""One worker of a simulated fleet: chunk tasks of one documented step, each timed.

    python fleetworker.py CLOUDPATH TASKS OUTFILE [--sleep LOW,HIGH] [--go FILE]

``run_fleet`` starts many of them and gathers what they measured (used by
``tests/test_fleet.py`` and ``benchmarks/fleet.py``).

Each task is a decorated function (``per_run=["chunk"]``) that sleeps between
LOW and HIGH seconds (default 0.2,0.5), as a chunk of real work would. The
worker imports what it needs, writes OUTFILE.ready, waits for the file
``--go`` (so a fleet starts together, warm), runs its tasks, and
writes OUTFILE (JSON): per task the latency ptb added (the call's time minus
the body's), failures, and when it started and ended. The exit, where ptb
settles the view, is timed by whoever waits for the process.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Mapping


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cloudpath")
    parser.add_argument("tasks", type=int)
    parser.add_argument("outfile")
    parser.add_argument("--sleep", default="0.2,0.5")
    parser.add_argument("--go", default="")
    args = parser.parse_args()
    low, high = (float(x) for x in args.sleep.split(","))

    import cloudvolume  # noqa: F401 (what ptb's first call would import)

    import ptb

    body = {}

    @ptb.provenance("dst", "fleet chunk", per_run=["chunk"])
    def chunk(dst: str, chunk: int, mip: int = 0) -> int:
        t0 = time.perf_counter()
        time.sleep(random.uniform(low, high))
        body["seconds"] = time.perf_counter() - t0
        return chunk

    open(args.outfile + ".ready", "w").close()
    while args.go and not os.path.exists(args.go):
        time.sleep(0.01)
    added, failed = [], 0
    started = time.time()
    for i in range(args.tasks):
        t0 = time.perf_counter()
        try:
            chunk(args.cloudpath, os.getpid() * 1000 + i)
        except Exception as exc:   # a task that failed before or after its body: the fleet must have none
            failed += 1
            print(f"task {i} failed: {exc!r}", flush=True)
            continue
        added.append(time.perf_counter() - t0 - body["seconds"])
    with open(args.outfile, "w") as out:
        json.dump({"added": added, "failed": failed, "started": started, "ended": time.time()}, out)


def run_fleet(cloudpath: str, workers: int, tasks: int, env: Mapping[str, str], sleep: str = "0.2,0.5",
              timeout: float = 600.0) -> Dict[str, Any]:
    """``workers`` processes of ``tasks`` chunk calls each, started together; what they measured.

    Returns the added latency of every call, failures, fleet throughput
    (calls per second from the first start to the last task's end), when the
    last record was made and when the last worker had exited (time.time()),
    and each worker's exit time after its last task (the settle).
    """
    with tempfile.TemporaryDirectory(prefix="ptb-fleet-") as tmp:
        go = os.path.join(tmp, "go")
        procs = []
        for i in range(workers):
            out = os.path.join(tmp, f"w{i}")
            with open(out + ".log", "w") as log:
                procs.append((out, subprocess.Popen(
                    [sys.executable, __file__, cloudpath, str(tasks), out + ".json", "--sleep", sleep, "--go", go],
                    env=dict(env), stdout=log, stderr=subprocess.STDOUT)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
                os.path.exists(out + ".json.ready") or proc.poll() is not None for out, proc in procs):
            time.sleep(0.05)
        open(go, "w").close()                            # imports done everywhere: all start at once
        exited: Dict[int, float] = {}
        while len(exited) < len(procs):
            for i, (_, proc) in enumerate(procs):
                if i not in exited and (proc.poll() is not None or time.monotonic() > deadline):
                    if proc.returncode is None:
                        proc.kill()
                        proc.wait()
                    exited[i] = time.time()
            time.sleep(0.02)
        results, exits, problems = [], [], []
        for i, (out, proc) in enumerate(procs):
            log = open(out + ".log").read()
            if proc.returncode != 0 or not os.path.exists(out + ".json"):
                problems.append(f"exit {proc.returncode}: {log[-2000:]}")
                continue
            found = json.load(open(out + ".json"))
            results.append(found)
            exits.append(exited[i] - found["ended"])
            if " failed: " in log or "Traceback" in log or "ViewWarning" in log:
                problems.append(log[-2000:])
    added = sorted(a for r in results for a in r["added"][1:])       # a process's first call also captures
    first = sorted(r["added"][0] for r in results if r["added"])        # its code environment: apart
    began = min((r["started"] for r in results), default=0.0)
    last = max((r["ended"] for r in results), default=0.0)
    calls = len(added) + len(first)
    return {"added": added, "first": first, "calls": calls,
            "failed": sum(r["failed"] for r in results) + len(procs) - len(results),
            "throughput": calls / (last - began) if last > began else 0.0, "last_record": last,
            "exited": time.time(), "exit_seconds": exits, "problems": problems}


if __name__ == "__main__":
    main()
