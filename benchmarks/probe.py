"""One measurement, for one side, in a fresh OS process; prints one JSON line.

    python probe.py SIDE KIND JSON-ARGS

SIDE is ``ptb`` or ``baseline`` (provenance-toolbox 0.1.5, imported from the directory
named by ``$PTB_BENCH_BASELINE``; both distributions are called provenance-toolbox, so the
baseline never shares an interpreter with ptb). KIND is one of ``call``, ``note``, ``writer``,
``import``, ``env``, ``makevol``, ``count``. ``run.py`` starts these; the view's probes
(``view.py``) import the helpers here, and nothing else is meant to import this.
"""
from __future__ import annotations

import datetime
import gc
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

SIDE = sys.argv[1] if len(sys.argv) > 2 and sys.argv[1] in ("ptb", "baseline") else "ptb"  # probe.py SIDE KIND
if SIDE == "baseline":
    sys.path.insert(0, os.environ["PTB_BENCH_BASELINE"])


def timed(func: Callable[..., Any], *args: Any) -> float:
    t0 = time.perf_counter()
    func(*args)
    return time.perf_counter() - t0


def make_volume(cloudpath: str) -> Any:
    """A small image volume with CloudVolume's default provenance file (not timed)."""
    from cloudvolume import CloudVolume

    info = CloudVolume.create_new_info(1, "image", "uint8", "raw", [4, 4, 40], [0, 0, 0], [64, 64, 16])
    vol = CloudVolume(cloudpath, info=info, progress=False)
    vol.commit_info()
    vol.commit_provenance()
    return vol


def summary(rounds: List[List[float]]) -> Dict[str, float]:
    """The mean of the best round (as timeit does: a busy machine only ever slows a round down)."""
    every = [x for r in rounds for x in r]
    return {"mean": min(statistics.fmean(r) for r in rounds), "mean_all": statistics.fmean(every),
            "median": statistics.median(every), "n": len(every), "rounds": len(rounds)}


# ------------------------------------------------------------------ a documented call
def call(args: Dict[str, Any]) -> Dict[str, Any]:
    """A decorated call vs the bare call, on file://, with a warm environment.

    Measured on a fresh volume and on one that already holds ``earlier`` runs of the same
    process (a chunked step's history: a motivation and a result note each), each as the
    best of a few rounds of ``calls`` calls, the volumes in alternation. ptb: ``@ptb.provenance("dst", "step")`` on a
    function in a git checkout; every call journals its run and notes, captures (cached) its
    environment, and writes the ``provenance`` view before it returns (all in the time; a
    flush after the round, ``view_flush_s``, finds nothing left unless a write was deferred).
    0.1.5 has no decorator; the same record is what its users write by hand around the
    call: ``process_absent`` / ``logprocess`` with a ``PythonGithubEnv``, then
    ``addmotivation``, the call, ``addresult``.
    """
    sys.path.insert(0, args["repo"])
    import pipeline  # the function lives in the git checkout, as a pipeline's would

    bare, count = pipeline.step, args["calls"]
    paths = {"fresh": args["cloudpath"] + "-fresh", "seeded": args["cloudpath"] + "-seeded"}
    for name, path in paths.items():
        make_volume(path)
        if name == "seeded":
            (seed_ptb_runs if SIDE == "ptb" else seed_baseline_runs)(path, args["earlier"])
    if SIDE == "ptb":
        import ptb

        decorate = getattr(ptb, "provenance", None)
        if decorate is None:
            from ptb.decorate import provenance as decorate
        documented = decorate("dst", "step", motivation="benchmark")(bare)
        finish: Callable[[], None] = ptb.store.updater.flush
        targets: Dict[str, Any] = paths
    else:
        from cloudvolume import CloudVolume

        import provenancetoolbox as pt

        env = pt.PythonGithubEnv(args["repo"])
        targets = {name: CloudVolume(path) for name, path in paths.items()}

        def documented(x: int, dst: Any) -> int:
            process = pt.Process("step", {"x": x}, env)
            if pt.process_absent(dst, process):
                pt.logprocess(dst, process)
            pt.addmotivation(dst, "benchmark")
            value = bare(x, dst)
            pt.addresult(dst, f"step returned {value}")
            return value

        def finish() -> None:
            pass

    for target in targets.values():
        documented(1, target)            # warm: environment captured, process recorded
    finish()
    bare_s = min(timed(lambda: [bare(1, None) for _ in range(10_000)]) for _ in range(3)) / 10_000

    def loop(target: Any) -> None:
        for _ in range(count):
            documented(1, target)

    rounds = args.get("rounds", 3)
    out: Dict[str, Any] = {"bare_s": bare_s, "calls": count, "earlier": args["earlier"], "rounds": rounds}
    totals: Dict[str, List[float]] = {name: [] for name in targets}
    cpus: Dict[str, List[float]] = {name: [] for name in targets}
    flushes: Dict[str, List[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():     # in alternation, so a busy spell slows both volumes alike
            cpu = time.process_time()
            totals[name].append(timed(loop, target))
            cpus[name].append(time.process_time() - cpu)   # this process's CPU, background thread included
            flushes[name].append(timed(finish))  # what was left to the background, if anything
    for name in targets:
        best = min(totals[name]) / count         # timeit's rule: a busy machine only slows a round down
        out[name] = {"call_s": best, "overhead_s": best - bare_s, "cpu_s": min(cpus[name]) / count,
                     "view_flush_s": min(flushes[name])}
    return out


# ------------------------------------------------------- one note after K earlier ones
def seed_ptb(path: str, earlier: int) -> None:
    import ptb
    from ptb.records import Note, NoteType
    from ptb.store import journal
    from ptb.store.volume import Volume

    vol = Volume.resolve(path)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    notes = [Note(start + datetime.timedelta(seconds=i), NoteType.GENERIC, f"earlier note {i}") for i in range(earlier)]
    journal.append(vol, notes)
    ptb.sync(path)                       # packed into a segment; the view holds them all


def seed_ptb_runs(path: str, earlier: int) -> None:
    """``earlier`` finished runs of the benchmark's process, each with its motivation and result note."""
    import ptb
    from ptb.records import Note, NoteType, ProcessRecord, RunRecord
    from ptb.store import journal
    from ptb.store.volume import Volume

    vol = Volume.resolve(path)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    process = ProcessRecord("step", {"x": 1}, timestamp=start)
    records: List[Any] = [process]
    for i in range(earlier):
        at = start + datetime.timedelta(seconds=i)
        run = RunRecord(f"earlier-run-{i:06d}", "step", process.key, "succeeded", at, ended=at, duration=0.001)
        records += [Note(at, NoteType.MOTIVATION, "benchmark", run=run.id), run,
                    Note(at, NoteType.RESULT, "succeeded in 1 ms", run=run.id)]
    journal.append(vol, records)
    ptb.sync(path)                       # packed into a segment; the view holds them all


def seed_baseline_runs(path: str, earlier: int) -> None:
    """The same for 0.1.5: its process once, and a motivation and a result note per earlier run."""
    from cloudvolume import CloudVolume

    vol = CloudVolume(path)
    start = datetime.datetime(2024, 1, 1)
    vol.provenance.description = " \n ".join(
        f"{start + datetime.timedelta(seconds=i)};{kind};{text}" for i in range(earlier)
        for kind, text in (("MOTIVATION", "benchmark"), ("RESULT", "step returned 2")))
    vol.provenance.processing.append({"task": "step", "parameters": {"x": 1}, "code_envfiles": []})
    vol.commit_provenance()


def seed_baseline(path: str, earlier: int) -> None:
    from cloudvolume import CloudVolume

    vol = CloudVolume(path)
    start = datetime.datetime(2024, 1, 1)
    vol.provenance.description = " \n ".join(
        f"{start + datetime.timedelta(seconds=i)};GENERIC;earlier note {i}" for i in range(earlier))
    vol.commit_provenance()


def note(args: Dict[str, Any]) -> Dict[str, Any]:
    """Mean cost of one ``addgeneric`` on volumes holding each of ``sizes`` earlier notes.

    The volumes are measured in alternation (a note on each in turn), so a busy machine
    slows every size alike; of several rounds of ``notes`` notes, the best round counts.
    ptb: the note's journal write, then its compare-and-swap write of the ``provenance`` view,
    both before ``addgeneric`` returns; ``view_write_s`` is the second part alone (the mean of
    ``notes`` publishes of one journalled note each). 0.1.5: parse the description, append,
    rewrite the whole ``provenance`` file.
    """
    sizes, count, warm = args["sizes"], args["notes"], 3
    paths = {size: f"{args['cloudpath']}-{size}" for size in sizes}
    if SIDE == "ptb":
        import ptb
        from ptb.store.volume import Volume

        for size, path in paths.items():
            make_volume(path)
            seed_ptb(path, size)

        def add(size: int, text: str) -> None:
            ptb.addgeneric(paths[size], text)
    else:
        from cloudvolume import CloudVolume

        import provenancetoolbox as pt

        vols = {}
        for size, path in paths.items():
            make_volume(path)
            seed_baseline(path, size)
            vols[size] = CloudVolume(path)

        def add(size: int, text: str) -> None:
            pt.addgeneric(vols[size], text)

    for i in range(warm):
        for size in sizes:
            add(size, f"warm-up {i}")
    if SIDE == "ptb":
        ptb.store.updater.flush()
    rounds = args.get("rounds", 3)
    samples: Dict[int, List[List[float]]] = {size: [] for size in sizes}
    for r in range(rounds):
        gc.collect()
        for size in sizes:
            samples[size].append([])
        for i in range(count):
            for size in sizes:
                samples[size][-1].append(timed(add, size, f"measured note {r}-{i}"))
        if SIDE == "ptb":
            ptb.store.updater.flush()             # the rewrite happens between rounds, not inside one
    out: Dict[str, Any] = {str(size): summary(s) for size, s in samples.items()}
    if SIDE == "ptb":
        ptb.store.updater.flush()
        from ptb.records import Note, NoteType
        from ptb.store import journal, publish

        for size, path in paths.items():
            vol = Volume.resolve(path)
            publishes = []
            for i in range(count):
                extra = journal.append(vol, [Note(None, NoteType.GENERIC, f"one more {i}")])
                publishes.append(timed(publish.publish, vol, extra, 60.0))
            out[str(size)]["view_write_s"] = statistics.fmean(publishes)
            history = ptb.history(path)
            out[str(size)]["recorded"] = len(history.notes)
    else:
        for size, path in paths.items():
            out[str(size)]["recorded"] = len(pt.parsenotes(CloudVolume(path)))
    return out


# --------------------------------------------------------------- one concurrent writer
def writer(args: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``notes`` notes as fast as possible, as one of many concurrent OS processes.

    0.1.5 is given its best chance: a fresh ``CloudVolume`` (so a fresh read of the
    ``provenance`` file) before every note. An exception (a torn file read) is counted and
    the writer goes on, as a worker loop that logs and continues would.
    """
    path, tag, errors = args["cloudpath"], args["tag"], []
    if SIDE == "ptb":
        import ptb

        for i in range(args["notes"]):
            ptb.addgeneric(path, f"{tag}-{i}")
    else:
        from cloudvolume import CloudVolume

        import provenancetoolbox as pt

        for i in range(args["notes"]):
            try:
                pt.addgeneric(CloudVolume(path), f"{tag}-{i}")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:100]}")
    return {"errors": len(errors), "first_error": errors[0] if errors else None}


# ----------------------------------------------------------------------------- import
def import_(args: Dict[str, Any]) -> Dict[str, Any]:
    """Time of the first ``import`` in a fresh interpreter, and what it pulled in."""
    name = "ptb" if SIDE == "ptb" else "provenancetoolbox"
    t0 = time.perf_counter()
    module = __import__(name)
    elapsed = time.perf_counter() - t0
    heavy = [m for m in ("cloudvolume", "cloudfiles", "git", "docker", "numpy", "pkg_resources", "psutil")
             if m in sys.modules]
    return {"import_s": elapsed, "heavy_modules": heavy, "file": module.__file__, "version": module.__version__}


# -------------------------------------------------------------------------- environment
def env(args: Dict[str, Any]) -> Dict[str, Any]:
    """Capturing a git checkout's environment: first in the process (cold), then again (warm).

    ptb: ``ptb.capture.env.capture`` (git state, diff, untracked files, installed distributions,
    Python, platform), cached while the checkout is unchanged. 0.1.5: ``PythonGithubEnv``
    and its ``log()`` (url, commit, diff, ``pkg_resources`` package list), as ``logprocess``
    calls it, every time.
    """
    repo, source = args["repo"], os.path.join(args["repo"], "pipeline.py")
    if SIDE == "ptb":
        from ptb.capture import env as ptbenv

        def capture() -> Any:
            return [e.filename for e in ptbenv.capture(source)]
    else:
        import provenancetoolbox as pt

        def capture() -> Any:
            return pt.PythonGithubEnv(repo).log()

    cold = timed(capture)
    warm = [timed(capture) for _ in range(args.get("repeat", 5))]
    return {"cold_s": cold, "warm_s": statistics.median(warm)}


# ------------------------------------------------------------ volumes for the writers
def makevol(args: Dict[str, Any]) -> Dict[str, Any]:
    for path in args["cloudpaths"]:
        make_volume(path)
    return {}


def count(args: Dict[str, Any]) -> Dict[str, Any]:
    """Which of the expected notes a reader finds afterwards, and whether the file still parses.

    ptb: ``ptb.history`` (the journal), and whether the view the writers left is exactly what
    ``ptb.sync`` writes right after (``converged``; the view keeps the newest notes only, so
    it is compared whole, not counted). 0.1.5: the notes packed in the ``provenance`` file's
    description, read without either library's help (so a corrupt file counts as what a
    CloudVolume user can read from it: nothing).
    """
    from cloudfiles import CloudFiles

    path, expected = args["cloudpath"], set(args["expected"])
    raw = CloudFiles(path).get("provenance")
    try:
        prov = json.loads(raw) if raw is not None else {}
        corrupt = False
    except ValueError:
        prov, corrupt = {}, True
    out: Dict[str, Any] = {"corrupt": corrupt}
    if SIDE == "ptb":
        import ptb
        from ptb.store.view import counts

        out["found"] = len(expected & {n.content for n in ptb.history(path).notes})
        synced = json.loads(json.dumps(ptb.sync(path)))
        out["converged"] = prov == synced
        out["view"], out["synced"] = counts(prov) if prov else {}, counts(synced)
    else:
        chunks = str(prov.get("description") or "").split(" \n ")
        out["found"] = len(expected & {c.split(";", 2)[-1] for c in chunks})
    return out


# ------------------------------------------------------------------ scrubbing secrets from texts
def scrub(args: Dict[str, Any]) -> Dict[str, Any]:
    """``scrub_text`` (every text ptb stores goes through it) on a 256 KiB diff with secrets in it,
    and the slowest of a set of adversarial 256 KiB inputs (it must stay linear). ptb only."""
    from ptb.capture.redact import scrub_text

    lines, i = [], 0
    while sum(map(len, lines)) < 256 * 1024:
        lines += [f"@@ -{i},7 +{i},7 @@ def step_{i}(src, dst, *, mip=0, keys=None):\n",
                  f"-    vol = CloudVolume(f'gs://bucket/layer{i}', mip=mip, progress=False)\n",
                  f"+    vol = CloudVolume(f'precomputed://https://h/layer{i}', mip=mip)  # key: value\n",
                  "     for key, token in zip(keys, tokens):  data[key] = token.strip()\n",
                  f"+password = S3CR3T{i}\n" if i % 50 == 0 else f"+retries = {i}\n",
                  '     log.info("done %s", {"n": 3, "path": "/tmp/x"})\n']
        i += 1
    bad = ["a" * 262144, "key " * 65536, "token=a " * 32768, "password: " + "x" * 262144, '"' * 262144,
           "-----BEGIN RSA PRIVATE KEY-----" * 8000, "https://a@" * 26000, "\\" * 262144,
           "x" * 200000 + "password=abc"]
    best = lambda text: min(timed(scrub_text, text) for _ in range(3))  # noqa: E731
    return {"diff_s": best("".join(lines)), "adversarial_s": max(best(text) for text in bad)}


PROBES = {"scrub": scrub, "call": call, "note": note, "writer": writer, "import": import_, "env": env,
          "makevol": makevol, "count": count}


def main(probes: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]]) -> None:
    result = probes[sys.argv[2]](json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
    sys.stdout.flush()
    print("PTB-BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(PROBES)
