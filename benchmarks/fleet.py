"""A fleet on a rate-limited store: what a call waits, how fast the fleet goes, what the view costs.

    python benchmarks/fleet.py [--workers 4,16,48] [--protocols s3,gs] [--tasks 20] [--json FILE]

Also part of ``benchmarks/run.py``'s full run. Each case starts N worker
processes (``tests/fleetworker.py``: chunk tasks of one documented step, each a
0.2-0.5 s sleep) against the suite's own SeaweedFS (S3) or fake-gcs-server
(GCS), through ``tests/ratelimit.py``: with the limit on, one write a second per
object name (429 for GCS, 503 SlowDown for S3), as GCS allows; with it off, the
same proxy only counts. Per case it prints the latency ptb adds to a call
(median, p95, max; a process's first call, which also captures its code
environment, apart), fleet throughput (and its ratio to the same fleet with no
limit, measured in the same run), requests per call (writes and reads apart),
successful view writes per second, the seconds from the last record to a view
that holds every run (no ``ptb sync``), the slowest worker exit, and records
lost. Then an estimate for 500 workers at one chunk a second.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
SLOW = "benchslow"


def _quantile(values: List[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


def run_case(server: Any, protocol: str, workers: int, tasks: int, limit: bool, env: Dict[str, str],
             home: Path, counter: List[int]) -> Dict[str, Any]:
    """One fleet: N workers through a fresh proxy (limiting or counting) on a new volume."""
    import cloudfiles.paths
    from fleetworker import run_fleet
    from ratelimit import RateLimitProxy

    import ptb
    from ptb.store.view import counts
    from ptb.store.volume import Volume

    counter[0] += 1
    name = f"fleet-{counter[0]}"
    proxy = RateLimitProxy(server.endpoint, "s3" if protocol == "s3" else "gcs", 1.0 if limit else None).start()
    env = dict(env)
    if protocol == "s3":
        cloudfiles.paths.add_alias(SLOW, f"s3://{proxy.endpoint}/")
        (home / "aliases.json").write_text(json.dumps({SLOW: {"host": f"s3://{proxy.endpoint}/"},
                                                       "labs3": {"host": f"s3://{server.endpoint}/"}}))
        path, direct = f"{SLOW}://{server.bucket}/{name}", f"labs3://{server.bucket}/{name}"
    else:
        env["STORAGE_EMULATOR_HOST"] = proxy.endpoint
        path = direct = f"gs://{server.bucket}/{name}"
    try:
        from cloudfiles import CloudFiles

        CloudFiles(direct).put_json("info", {"type": "image", "data_type": "uint8", "num_channels": 1,
                                             "scales": []})
        fleet = run_fleet(path, workers, tasks, env, timeout=900)
        runs = len(ptb.history(direct).runs)
        current = None
        while time.time() - fleet["last_record"] < 120:
            prov = Volume.resolve(direct).read_provenance() or {}
            if prov.get("processing") is not None and counts(prov)["runs"] == runs:
                current = time.time() - fleet["last_record"]
                break
            time.sleep(0.1)
        calls = fleet["calls"]
        span = calls / max(fleet["throughput"], 1e-9)          # first start to last task's end
        added = fleet["added"]
        return {
            "protocol": protocol, "workers": workers, "limit": limit, "calls": calls,
            "added_median": statistics.median(added), "added_p95": _quantile(added, 0.95), "added_max": added[-1],
            "first_median": statistics.median(fleet["first"]), "first_max": fleet["first"][-1],
            "throughput": fleet["throughput"],
            "writes_per_call": (proxy.counts["write"] + proxy.counts["limited"]) / calls,
            "refused_per_call": proxy.counts["limited"] / calls,
            "reads_per_call": (proxy.counts["read"] + proxy.counts["list"]) / calls,
            "view_writes": proxy.writes_to("/provenance"),
            "view_writes_per_s": proxy.writes_to("/provenance") / max(span + (current or 0.0), 1e-9),
            "current_after_s": current, "exit_max_s": max(fleet["exit_seconds"]),
            "lost": workers * tasks - runs, "failed": fleet["failed"], "problems": fleet["problems"][:3],
        }
    finally:
        proxy.stop()
        if protocol == "s3":
            cloudfiles.paths.remove_alias(SLOW)


def bench_fleet(workers: List[int], protocols: List[str], tasks: int, verbose: bool = False) -> Dict[str, Any]:
    sys.path.insert(0, str(TESTS))
    from servers import FakeGCS, SeaweedS3

    root = Path(tempfile.mkdtemp(prefix="ptb-fleet-bench-"))
    home = root / "home"
    (home / "secrets").mkdir(parents=True)
    saved = dict(os.environ)
    os.environ.update(CLOUD_FILES_DIR=str(home), CLOUD_VOLUME_DIR=str(home), PTB_SPOOL_DIR=str(root / "spool"),
                      TMPDIR=str(root))
    tempfile.tempdir = None
    import cloudfiles.paths

    cloudfiles.paths.ALIAS_FILE = str(home / "aliases.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    rows: List[Dict[str, Any]] = []
    counter = [0]
    try:
        for protocol in protocols:
            if protocol == "s3":
                server = SeaweedS3().start(root / "seaweedfs")
                creds = dict(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
                             AWS_SESSION_TOKEN="", AWS_DEFAULT_REGION=server.region)
                os.environ.update(creds)
                env.update(creds)
                cloudfiles.paths.add_alias("labs3", f"s3://{server.endpoint}/")
            else:
                server = FakeGCS().start(root / "fake-gcs")
                os.environ["STORAGE_EMULATOR_HOST"] = server.endpoint
            try:
                for n in workers:
                    for limit in (False, True):
                        print(f"fleet: {protocol}, {n} workers, limit {'on' if limit else 'off'} ...",
                              file=sys.stderr, flush=True)
                        row = run_case(server, protocol, n, tasks, limit, env, home, counter)
                        rows.append(row)
                        if verbose:
                            print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                server.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = None
        shutil.rmtree(root, ignore_errors=True)
    return {"tasks": tasks, "rows": rows}


def table(results: Dict[str, Any]) -> str:
    rows = results["rows"]
    free = {(r["protocol"], r["workers"]): r["throughput"] for r in rows if not r["limit"]}
    lines = ["| store | workers | limit | added per call, median / p95 / max | first call, median / max | "
             "calls/s (vs no limit) | writes / refused / reads per call | view writes/s | view current after "
             "| slowest exit | lost / failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["throughput"] / free[(r["protocol"], r["workers"])] if free.get((r["protocol"], r["workers"])) \
            else float("nan")
        current = "never (120 s)" if r["current_after_s"] is None else f"{r['current_after_s']:.1f} s"
        lines.append(
            f"| {'GCS' if r['protocol'] == 'gs' else 'S3'} | {r['workers']} | {'1 write/s' if r['limit'] else 'off'} "
            f"| {r['added_median'] * 1000:.0f} ms / {r['added_p95'] * 1000:.0f} ms / {r['added_max']:.2f} s "
            f"| {r['first_median']:.2f} / {r['first_max']:.2f} s | {r['throughput']:.1f} ({ratio:.2f}x) "
            f"| {r['writes_per_call']:.2f} / {r['refused_per_call']:.2f} / {r['reads_per_call']:.2f} "
            f"| {r['view_writes_per_s']:.2f} | {current} | {r['exit_max_s']:.1f} s | {r['lost']} / {r['failed']} |")
    return "\n".join(lines)


def estimate(results: Dict[str, Any]) -> str:
    """500 workers x 1 chunk/s, from the largest limited fleet measured."""
    limited = [r for r in results["rows"] if r["limit"]]
    if not limited:
        return ""
    big = max(limited, key=lambda r: (r["workers"], r["protocol"] == "gs"))
    per_million_writes = big["writes_per_call"] * 1e6
    per_million_reads = big["reads_per_call"] * 1e6
    return (f"500 workers x 1 chunk/s (from the {big['workers']}-worker {big['protocol']} run): a call adds "
            f"{big['added_median'] * 1000:.0f} ms (median), {big['added_p95'] * 1000:.0f} ms (p95); the view is "
            f"written about once a second whatever the fleet, so it trails the journal by about "
            f"{big['current_after_s'] or float('nan'):.0f} s; requests per million tasks: "
            f"{per_million_writes / 1e6:.2f} M writes and {per_million_reads / 1e6:.2f} M reads "
            f"(GCS class A at $0.005 per 1,000: ${per_million_writes * 0.005 / 1000:,.0f}; class B at "
            f"$0.0004 per 1,000: ${per_million_reads * 0.0004 / 1000:,.0f}).")


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="4,16,48")
    parser.add_argument("--protocols", default="s3,gs")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    results = bench_fleet([int(w) for w in args.workers.split(",")], args.protocols.split(","), args.tasks,
                          args.verbose)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(table(results))
    print()
    print(estimate(results))


if __name__ == "__main__":
    main()
