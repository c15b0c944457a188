"""The igneous row: one 64³ ``DownsampleTask`` chunk on file://, bare and documented, in one run.

    python benchmarks/igneous.py [--quick]      # on its own: prints its figures
    python benchmarks/run.py                    # the whole table: run.py starts this as a probe

A lab documents igneous' task as ``ptb.provenance("layer_path", "downsample",
per_run="shape offset")(DownsampleTask)``. Measured here, in one process:
the bare task and the documented one called with the same arguments (a
64x64x64 chunk of a uint8 image: read, downsampled to mip 1, written), in
alternating rounds (the best round counts, as ``timeit`` does), first on a
fresh journal, then again after the documented calls have left more than a
thousand journal objects (the trial that found the cost saw it grow there),
and last with ``PTB_VIEW_EVERY=1`` (a chunk run's end writes the view at most
once a second: ``ptb.store.updater.view_every``).
Wall time and this process's CPU time (the part that does not depend on how
busy the machine is) per call.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":          # `import igneous` is the pipeline, not this file
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))


def _volume(cloudpath: str) -> None:
    import numpy as np
    from cloudvolume import CloudVolume

    data = np.random.default_rng(64).integers(0, 255, (128, 128, 64), dtype=np.uint8)
    CloudVolume.from_numpy(data, vol_path=cloudpath, resolution=(4, 4, 40), chunk_size=(32, 32, 64),
                           layer_type="image", progress=False)


def _per_call(func: Callable[[], Any], calls: int) -> Dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        func()
    return {"wall_s": (time.perf_counter() - wall) / calls, "cpu_s": (time.process_time() - cpu) / calls}


def _measure(bare: Callable[[], Any], documented: Callable[[], Any], calls: int, rounds: int) -> Dict[str, Any]:
    """Alternating rounds of ``calls`` calls; the best round of each kind, per call."""
    seen: Dict[str, List[Dict[str, float]]] = {"bare": [], "documented": []}
    for _ in range(rounds):
        seen["bare"].append(_per_call(bare, calls))
        seen["documented"].append(_per_call(documented, calls))
    best = {kind: {k: min(r[k] for r in found) for k in ("wall_s", "cpu_s")} for kind, found in seen.items()}
    return {**best, "overhead_s": best["documented"]["wall_s"] - best["bare"]["wall_s"],
            "cpu_overhead_s": best["documented"]["cpu_s"] - best["bare"]["cpu_s"],
            "ratio": best["documented"]["wall_s"] / best["bare"]["wall_s"]}


def igneous(args: Dict[str, Any]) -> Dict[str, Any]:
    """The probe: {"cloudpath", "quick", "repo" (a git checkout to work in, optional)}."""
    import igneous.task_creation as tc
    from igneous.tasks import DownsampleTask

    import ptb
    from ptb.store import updater

    if args.get("repo"):
        os.chdir(args["repo"])          # the environment a lab's worker has: its pipeline's checkout
    cloudpath, quick = args["cloudpath"], args.get("quick", False)
    calls, rounds, grown = (10, 3, 200) if quick else (40, 5, 1100)
    _volume(cloudpath)
    (task, *_) = tc.create_downsampling_tasks(cloudpath, mip=0, num_mips=1, memory_target=262144)
    kwargs = dict(task.keywords)        # igneous' own binding: Vec shape and offset, an IntEnum method
    documented_task = ptb.provenance("layer_path", "downsample", per_run="shape offset")(DownsampleTask)

    def bare() -> None:
        DownsampleTask(**kwargs)

    def documented() -> None:
        documented_task(**kwargs)

    for _ in range(3):
        bare()
        documented()
    journal = Path(cloudpath[len("file://"):], "ptb", "journal")
    out: Dict[str, Any] = {"shape": [int(n) for n in kwargs["shape"]], "calls": calls, "rounds": rounds}
    out["fresh"] = {"objects": len(os.listdir(journal)), **_measure(bare, documented, calls, rounds)}
    while len(os.listdir(journal)) < grown:
        for _ in range(50):
            documented()
    out["grown"] = {"objects": len(os.listdir(journal)), **_measure(bare, documented, calls, rounds)}
    os.environ["PTB_VIEW_EVERY"] = "1"       # the chunk runs' view written once a second (updater.view_every)
    out["batched"] = {"objects": len(os.listdir(journal)), **_measure(bare, documented, calls, rounds)}
    del os.environ["PTB_VIEW_EVERY"]
    updater.flush()
    out["runs"] = len(ptb.history(cloudpath, with_envs=False).runs)
    return out


def rows(result: Dict[str, Any]) -> Any:
    """The table's rows and the goal line for ``tables.py``: (rows, goals)."""
    from tables import ms

    found, goals = [], []
    for key in ("fresh", "grown"):
        r = result[key]
        found.append((f"igneous 64³ DownsampleTask, documented over bare ({r['objects']:,} journal objects; "
                      f"bare {ms(r['bare']['wall_s'])})", f"+{ms(r['overhead_s'])}", "n/a", f"{r['ratio']:.2f}"))
        found.append(("the same, CPU time of the process per call", f"+{ms(r['cpu_overhead_s'])}", "n/a", ""))
    r = result["batched"]
    found.append((f"the same with PTB_VIEW_EVERY=1 (the view written once a second; {r['objects']:,} objects)",
                  f"+{ms(r['overhead_s'])} (CPU +{ms(r['cpu_overhead_s'])})", "n/a", f"{r['ratio']:.2f}"))
    fresh, grown = result["fresh"]["overhead_s"], result["grown"]["overhead_s"]
    goals.append(f"igneous 64³ chunk on file://: +{ms(fresh)} at {result['fresh']['objects']:,} journal objects, "
                 f"+{ms(grown)} at {result['grown']['objects']:,} (goal: at most +1 ms, and no growth): "
                 f"{'met' if max(fresh, grown) <= 0.001 else 'NOT met'}")
    return found, goals


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "igneous":          # run.py's probe: igneous.py SIDE KIND JSON
        result = igneous(json.loads(sys.argv[3]))
        print("PTB-BENCH " + json.dumps(result), flush=True)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="ptb-bench-igneous-") as tmp:
            os.environ.setdefault("PTB_SPOOL_DIR", os.path.join(tmp, "spool"))
            result = igneous({"cloudpath": f"file://{tmp}/vol", "quick": "--quick" in sys.argv})
        sys.path.insert(0, str(HERE))     # for tables.py, now that igneous is imported
        table, goals = rows(result)
        for row in table:
            print("  ".join(row))
        print("\n".join(goals))
