"""The lab rows (issue 21): ``ptb find`` over many volumes against ``ptb log`` over the same, and ``ptb watch``.

``run.py`` calls ``bench_lab`` (measurements, each in a fresh OS process started
through ``Bench``) and ``rows`` (its lines of the table). As a probe::

    python lab.py ptb KIND JSON-ARGS      # KIND: seed, queries, worker, watcher

* find vs log: a tree of volumes (``--quick``: 20 x 10 runs; else 200 x 50), each
  journalled as documented calls journal it, 4/5 of its runs packed by ``ptb sync``
  and the rest left in the journal, as writers leave them. One process times
  ``ptb log`` on every volume one after another, then ``ptb find`` with an empty
  index, then again with the index it made (in-process: no interpreter start-ups).
  On S3 the second query's requests are counted (botocore's API calls).
* watch: 4 worker processes making documented calls at 5 a second each (20 runs/s)
  on a volume with a short history, then on one with a long one; a watcher polls
  every second and records, per poll, its time and CPU time (the time swings with the
  machine's load; the CPU time is what the poll itself costs), and how long after each
  journal object it read was written (the time in the object's name) it had read it.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
OLD, NEW = "0ff1ce0" * 5 + "0ff1c", "3f2a9c1" * 5 + "3f2a9"


# ------------------------------------------------------------------ from run.py
def bench_lab(bench: Any, protocols: List[str]) -> Dict[str, Any]:
    volumes, runs, rounds = (20, 10, 1) if bench.quick else (200, 50, 3)
    out: Dict[str, Any] = {"volumes": volumes, "runs": runs}
    root = f"{bench.roots['file']}/lab"
    bench.probe("ptb", "seed", {"root": root, "volumes": volumes, "runs": runs}, Path(__file__))
    out["file"] = bench.probe("ptb", "queries", {"root": root, "rounds": rounds,
                                                 "cache": str(bench.root / "lab-cache")}, Path(__file__))
    if "s3" in protocols:
        s3 = f"{bench.roots['s3']}/lab"
        small = max(volumes // 10, 5)
        bench.probe("ptb", "seed", {"root": s3, "volumes": small, "runs": runs}, Path(__file__))
        out["s3"] = bench.probe("ptb", "queries", {"root": s3, "rounds": 1, "log": False, "count": True,
                                                   "cache": str(bench.root / "lab-cache-s3")}, Path(__file__))
        out["s3"]["volumes"] = small
    seconds, histories = (4.0, (200, 2000)) if bench.quick else (15.0, (1000, 20_000))
    out["watch"] = {"seconds": seconds}
    for history in histories:
        path = f"{bench.roots['file']}/watch-{history}"
        bench.probe("ptb", "seed", {"root": path, "volumes": 1, "runs": history, "single": True}, Path(__file__))
        go = bench.root / f"go-watch-{history}"
        watcher = bench.start("ptb", "watcher", {"cloudpath": path, "seconds": seconds + 3, "gofile": str(go)},
                              Path(__file__))
        workers = [bench.start("ptb", "worker", {"cloudpath": path, "repo": str(bench.repo), "rate": 5.0,
                                                 "seconds": seconds, "gofile": str(go), "tag": w}, Path(__file__))
                   for w in range(4)]
        for proc in [watcher, *workers]:               # imports done, the watcher's first look taken
            _ready(bench, proc)
        go.touch()
        done = [bench.result(p, "lab worker") for p in workers]
        out["watch"][str(history)] = {**bench.result(watcher, "lab watcher"),
                                      "runs_per_s": sum(d["runs"] for d in done) / seconds}
    return out


def _ready(bench: Any, proc: Any) -> None:
    """Wait for a probe's ``ready`` line (it then waits for the go file)."""
    for line in proc.stdout:
        if line.strip() == "ready":
            return
    bench.result(proc, "a lab probe that did not start")


def rows(lab: Dict[str, Any], rows: List[Tuple[str, ...]], goals: List[str]) -> None:
    """The lab's rows of the table, and its goals."""
    from tables import ms, ratio

    n, r = lab["volumes"], lab["runs"]
    f = lab["file"]
    rows.append((f"ptb log on {n} volumes x {r} runs one after another (file://)", ms(f["log_s"]), "", ""))
    rows.append(("ptb find over the same, empty index / its ratio to the logs", ms(f["cold_s"]),
                 "", ratio(f["cold_s"], f["log_s"])))
    rows.append(("ptb find again, from the index / first over second", ms(f["warm_s"]), "",
                 ratio(f["cold_s"], f["warm_s"])))
    cold, warm = f["cold_s"] / f["log_s"], f["cold_s"] / f["warm_s"]
    goals.append(f"first ptb find over {n} volumes costs {cold:.2f}x ptb log on each "
                 f"({'within' if cold <= 3 else 'NOT within'} 3x); a second, cached one is {warm:.1f}x faster "
                 f"({'at least' if warm >= 5 else 'NOT'} 5x)")
    if "s3" in lab:
        s3 = lab["s3"]
        ops = ", ".join(f"{k} {v}" for k, v in sorted(s3["warm_ops"].items()))
        rows.append((f"requests of a cached ptb find over {s3['volumes']} unchanged S3 volumes", ops, "", ""))
        gets = s3["warm_ops"].get("GetObject", 0)
        goals.append(f"a cached ptb find on S3 makes {gets} GET of an unchanged object (goal: none)")
    watch = lab["watch"]
    small, large = sorted((k for k in watch if k.isdigit()), key=int)
    for key in (small, large):
        w = watch[key]
        rows.append((f"ptb watch at {w['runs_per_s']:.0f} runs/s from 4 workers, {int(key):,} earlier runs: "
                     f"lag p95 / max; a poll's median time, CPU", f"{w['lag_p95']:.2f} s / {w['lag_max']:.2f} s; "
                     f"{ms(w['poll_median'])}, {ms(w['poll_cpu_median'])}", "", ""))
    growth = watch[large]["poll_cpu_median"] / watch[small]["poll_cpu_median"]
    lag = max(watch[k]["lag_max"] for k in (small, large))
    goals.append(f"ptb watch shows a run at most {lag:.2f} s after it ended ({'within' if lag <= 2 else 'NOT within'} "
                 f"2 s); a poll at {int(large):,} earlier runs costs {growth:.2f}x the CPU of one at {int(small):,} "
                 f"({'does not grow' if growth <= 1.5 else 'GROWS'} with the history)")


# ------------------------------------------------------------------- the probes
def seed(args: Dict[str, Any]) -> Dict[str, Any]:
    """Volumes of ``runs`` runs each, as documented calls leave them: most packed, the newest in the journal.

    ``single``: one volume whose whole history is packed (written in large batches, then ``ptb sync``):
    the history a watched volume has when its writers' packing has caught up.
    """
    sys.path.insert(0, str(TESTS))
    import labvolumes as lab

    from ptb.store import updater

    packages = [[f"package-{i}", f"1.{i}.0"] for i in range(150)] + [["igneous-pipeline", "4.36.0"]]
    if args.get("single"):
        lab.make_volume(args["root"])
        _bulk(args["root"], args["runs"], lab.git_env(NEW, packages))
        updater.sync(args["root"])
        return {"volumes": 1}
    for v in range(args["volumes"]):
        path = f"{args['root']}/dataset-{v // 20}/layer-{v}"
        lab.make_volume(path)
        env = lab.git_env(OLD if v % 2 else NEW, packages)
        packed = args["runs"] * 4 // 5
        for start, stop in ((0, packed), (packed, args["runs"])):
            lab.step(path, "downsample", {"mip": v % 3}, [lab.run("failed" if i % 25 == 7 else "succeeded", [env],
                                                                  {"chunk": i}) for i in range(start, stop)])
            if start == 0:
                updater.sync(path)
    updater.flush()
    return {"volumes": args["volumes"]}


def _bulk(path: str, runs: int, env: Any) -> None:
    """``runs`` finished runs of one step, journalled 500 runs to an object (only ever packed, not read so)."""
    from ptb.records import Note, NoteType, ProcessRecord, RunRecord, new_id, utcnow
    from ptb.store import journal, writer
    from ptb.store.volume import Volume

    vol = Volume.resolve(path)
    files = (writer.write_env(vol, env),)
    process = ProcessRecord("downsample", {"dst": path}, files, timestamp=utcnow())
    records: List[Any] = [process]
    for i in range(runs):
        rid, began = new_id(), utcnow()
        common = dict(host="node1", pid=1000 + i % 7, user="alice", code_envfiles=files, parameters={"x": i})
        records += [RunRecord(rid, "downsample", process.key, "running", began, **common),
                    Note(began, NoteType.MOTIVATION, "mips for the viewer", run=rid),
                    RunRecord(rid, "downsample", process.key, "succeeded", began, began, 0.01, **common),
                    Note(began, NoteType.RESULT, "succeeded in 10 ms", run=rid)]
        if len(records) >= 2000 or i == runs - 1:
            journal.append(vol, records)
            records = []


def queries(args: Dict[str, Any]) -> Dict[str, Any]:
    """``ptb log`` on every volume, then ``ptb find`` twice (empty index, then the index it made)."""
    sys.path.insert(0, str(TESTS))
    from ptb.cli import main
    from ptb.lab.discover import discover

    def cli(*argv: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(list(argv), standalone_mode=False)

    volumes = [f.cloudpath for f in discover(args["root"])]
    out: Dict[str, Any] = {"volumes": len(volumes)}
    logs, colds, warms = [], [], []
    for r in range(args["rounds"]):
        if args.get("log", True):
            t0 = time.perf_counter()
            for path in volumes:
                cli("log", path)
            logs.append(time.perf_counter() - t0)
        os.environ["PTB_CACHE_DIR"] = f"{args['cache']}-{r}"
        t0 = time.perf_counter()
        cli("find", args["root"], "--commit", OLD[:7], "--json", "--no-progress")
        colds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        if args.get("count"):
            import labvolumes as lab

            with lab.counting() as seen:
                cli("find", args["root"], "--commit", OLD[:7], "--json", "--no-progress")
            out["warm_ops"] = seen.s3_ops()
        else:
            cli("find", args["root"], "--commit", OLD[:7], "--json", "--no-progress")
        warms.append(time.perf_counter() - t0)
    out.update(cold_s=min(colds), warm_s=min(warms), log_s=min(logs) if logs else None)
    return out


def _wait(gofile: str) -> None:
    print("ready", flush=True)
    while not os.path.exists(gofile):
        time.sleep(0.01)


def worker(args: Dict[str, Any]) -> Dict[str, Any]:
    """Documented calls at ``rate`` a second for ``seconds``, as a chunk worker makes them."""
    sys.path.insert(0, args["repo"])
    import pipeline

    import ptb

    step = ptb.provenance("dst", "downsample", per_run=["x"])(pipeline.step)
    step(-1 - args["tag"], dst=args["cloudpath"])          # warm: the environment captured
    _wait(args["gofile"])
    start, n = time.monotonic(), 0
    while time.monotonic() - start < args["seconds"]:
        step(args["tag"] * 1_000_000 + n, dst=args["cloudpath"])
        n += 1
        time.sleep(max(start + n / args["rate"] - time.monotonic(), 0))
    ptb.store.updater.flush()
    return {"runs": n}


def watcher(args: Dict[str, Any]) -> Dict[str, Any]:
    """Poll every second (``ptb watch``'s default); per poll its cost, and how long after each journal
    object was written (the time in its name) the poll that read it ended."""
    from ptb.lab.watch import Watcher
    from ptb.store.journal import JOURNAL

    w = Watcher(args["cloudpath"])
    w.poll()
    _wait(args["gofile"])
    polls, cpus, lags = [], [], []
    start, went = time.monotonic(), time.time_ns()
    while time.monotonic() - start < args["seconds"]:
        t0, c0 = time.perf_counter(), time.process_time()
        w.poll()
        polls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        now = time.time_ns()
        written = [int(k[len(JOURNAL):][:16], 16) for k in w.last_fetched if k.startswith(JOURNAL)]
        lags += [(now - t) / 1e9 for t in written if t >= went]     # not the workers' warm-up calls

        time.sleep(max(1.0 - (time.perf_counter() - t0), 0))
    lags.sort()
    return {"polls": len(polls), "poll_median": statistics.median(polls), "poll_max": max(polls),
            "poll_cpu_median": statistics.median(cpus),
            "objects_seen": len(lags), "lag_p95": lags[int(0.95 * (len(lags) - 1))] if lags else 0.0,
            "lag_max": lags[-1] if lags else 0.0}


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from probe import main as probe_main

    probe_main({"seed": seed, "queries": queries, "worker": worker, "watcher": watcher})
