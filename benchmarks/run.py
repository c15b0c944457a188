"""ptb against provenance-toolbox 0.1.5, side by side, in one run.

    python benchmarks/run.py            # the full run (a few minutes; starts local S3 and GCS servers;
                                        # then a fleet of 4, 16 and 48 workers on a rate-limited store)
    python benchmarks/run.py --quick    # small sizes, file:// only, well under a minute

Installs 0.1.5 into ``~/.cache/ptb-bench/baseline`` the first time (see ``baseline.py``).
Every measurement runs in a fresh OS process (``probe.py``, and ``view.py`` for what other tools
see of the ``provenance`` file), one side at a time, on volumes in a temporary directory; the
concurrent writers are real OS processes started together.
Prints one table of figures and ratios (reStructuredText, so it pastes into docs/benchmarks.rst).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
PROBE = HERE / "probe.py"
VIEW = HERE / "view.py"
TESTS = HERE.parent / "tests"
S3_ALIAS = "labs3"
SIDES = ("ptb", "baseline")


class Bench:
    """The workspace of one run: a temporary directory, a git checkout, servers, the probe environment."""

    def __init__(self, quick: bool, baseline_dir: Optional[Path], protocols: List[str], verbose: bool) -> None:
        self.quick, self.verbose = quick, verbose
        self.root = Path(tempfile.mkdtemp(prefix="ptb-bench-"))
        self.repo = self._git_checkout()
        home = self.root / "cloud-home"
        (home / "secrets").mkdir(parents=True)
        pythonpath = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
        self.env = {**os.environ, "PTB_SPOOL_DIR": str(self.root / "spool"), "CLOUD_FILES_DIR": str(home),
                    "CLOUD_VOLUME_DIR": str(home), "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": pythonpath}     # the ptb of this checkout, whatever is installed
        self.baseline = baseline_dir
        if baseline_dir is not None:
            self.env["PTB_BENCH_BASELINE"] = str(baseline_dir)
        self.servers: List[Any] = []
        self.roots = {"file": f"file://{self.root / 'volumes'}"}
        if "s3" in protocols or "gs" in protocols:
            self._start_servers(protocols, home)
        self.counter = 0

    # ----------------------------------------------------------------- workspace
    def _git_checkout(self) -> Path:
        repo = self.root / "pipeline"
        repo.mkdir()
        (repo / "pipeline.py").write_text("def step(x, dst=None):\n    return x + 1\n\n\n"
                                          "def fail(x, dst=None):\n    raise ValueError(f'chunk {x} failed')\n")
        for args in (["init", "-q"], ["add", "pipeline.py"], ["commit", "-q", "-m", "first step"],
                     ["remote", "add", "origin", "https://github.com/lab/pipeline.git"]):
            subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org",
                            "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                           cwd=repo, check=True, capture_output=True)
        return repo

    def _start_servers(self, protocols: List[str], home: Path) -> None:
        sys.path.insert(0, str(TESTS))
        from servers import FakeGCS, SeaweedS3  # the test suite's own local servers

        tmp = self.root / "server-tmp"
        tmp.mkdir()
        if "s3" in protocols:
            s3 = _with_tmpdir(SeaweedS3, tmp)().start(self.root / "seaweedfs")
            self.servers.append(s3)
            (home / "aliases.json").write_text(json.dumps({S3_ALIAS: {"host": f"s3://{s3.endpoint}/"}}))
            self.env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
                            AWS_SESSION_TOKEN="", AWS_DEFAULT_REGION=s3.region)
            self.roots["s3"] = f"{S3_ALIAS}://{s3.bucket}"
        if "gs" in protocols:
            gcs = _with_tmpdir(FakeGCS, tmp)().start(self.root / "fake-gcs")
            self.servers.append(gcs)
            self.env["STORAGE_EMULATOR_HOST"] = gcs.endpoint
            self.roots["gs"] = f"gs://{gcs.bucket}"

    def close(self) -> None:
        for server in self.servers:
            server.stop()
            for port in getattr(server, "ports", {}).values():     # `weed mini` puts these in /tmp, always
                for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                    sock.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def volume(self, protocol: str = "file") -> str:
        self.counter += 1
        return f"{self.roots[protocol]}/vol-{os.getpid()}-{self.counter}"

    # -------------------------------------------------------------------- probes
    def start(self, side: str, kind: str, args: Dict[str, Any], script: Path = PROBE) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), side, kind, json.dumps(args)], cwd=self.root,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, proc: subprocess.Popen, what: str, timeout: float = 1800) -> Dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("PTB-BENCH ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{err[-3000:]}")
        return json.loads(lines[-1][len("PTB-BENCH "):])

    def probe(self, side: str, kind: str, args: Dict[str, Any], script: Path = PROBE) -> Dict[str, Any]:
        t0 = time.monotonic()
        found = self.result(self.start(side, kind, args, script), f"{side} {kind}")
        if self.verbose:
            print(f"  {side} {kind}: {time.monotonic() - t0:.1f}s {json.dumps(found)[:300]}", file=sys.stderr)
        return found

    def together(self, jobs: Dict[str, Tuple[str, str, Dict[str, Any]]], script: Path) -> Dict[str, Any]:
        """Probes that measure no time, run at once: {name: (side, kind, args)} -> {name: result}."""
        procs = {name: self.start(side, kind, args, script) for name, (side, kind, args) in jobs.items()}
        found = {name: self.result(proc, f"{jobs[name][0]} {jobs[name][1]}") for name, proc in procs.items()}
        if self.verbose:
            for name, result in found.items():
                print(f"  {name}: {json.dumps(result)[:300]}", file=sys.stderr)
        return found

    def sides(self) -> Tuple[str, ...]:
        return SIDES if self.baseline is not None else ("ptb",)


def _with_tmpdir(server: type, tmp: Path) -> type:
    """A test-suite server class whose process keeps its temporary files (Go's logs) in ``tmp``."""

    class Server(server):  # type: ignore[valid-type, misc]
        def _env(self) -> Dict[str, str]:
            return {**super()._env(), "TMPDIR": str(tmp)}

    return Server


# ------------------------------------------------------------------------ benchmarks
def bench_call(bench: Bench, protocol: str = "file") -> Dict[str, Any]:
    calls, earlier, rounds = (10, 1000, 1) if bench.quick else (100, 10_000, 3)
    if protocol != "file":
        calls = max(calls // 4, 10)      # a round trip each write: fewer calls say as much
    return {side: bench.probe(side, "call", {"repo": str(bench.repo), "cloudpath": bench.volume(protocol),
                                             "calls": calls, "earlier": earlier, "rounds": rounds})
            for side in bench.sides()}


def bench_note(bench: Bench) -> Dict[str, Any]:
    sizes = [10, 1000] if bench.quick else [10, 10_000]
    notes, rounds = (10, 1) if bench.quick else (50, 3)
    return {side: bench.probe(side, "note", {"cloudpath": bench.volume(), "sizes": sizes, "notes": notes,
                                             "rounds": rounds})
            for side in bench.sides()} | {"sizes": sizes}


def bench_writers(bench: Bench, protocols: List[str]) -> Dict[str, Any]:
    writers, notes = (4, 5) if bench.quick else (16, 50)
    expected = [f"w{w}-{i}" for w in range(writers) for i in range(notes)]
    out: Dict[str, Any] = {"writers": writers, "notes": notes}
    paths = {f"{protocol}/{side}": bench.volume(protocol) for protocol in protocols for side in bench.sides()}
    bench.probe("ptb", "makevol", {"cloudpaths": list(paths.values())})
    for name, path in paths.items():
        side = name.split("/")[1]
        t0 = time.monotonic()
        procs = [bench.start(side, "writer", {"cloudpath": path, "notes": notes, "tag": f"w{w}"})
                 for w in range(writers)]
        results = [bench.result(p, f"{side} writer") for p in procs]
        out[name] = {"expected": len(expected), "seconds": time.monotonic() - t0,
                     "writer_errors": sum(r["errors"] for r in results),
                     "first_error": next((r["first_error"] for r in results if r["errors"]), None)}
    counted = bench.together({name: (name.split("/")[1], "count", {"cloudpath": path, "expected": expected})
                              for name, path in paths.items()}, PROBE)
    return {**out, **{name: {**out[name], **counted[name]} for name in paths}}


def bench_stale(bench: Bench, protocols: List[str]) -> Dict[str, Any]:
    trials = 4 if bench.quick else 20
    return bench.together({f"{protocol}/{side}": (side, "stale", {"repo": str(bench.repo), "trials": trials,
                                                                  "cloudpath": bench.volume(protocol)})
                           for protocol in protocols for side in bench.sides()}, VIEW)


def bench_writes(bench: Bench) -> Dict[str, Any]:
    count = 10 if bench.quick else 50
    return bench.together({side: (side, "writes", {"repo": str(bench.repo), "count": count,
                                                   "cloudpath": bench.volume()}) for side in bench.sides()}, VIEW)


def bench_open(bench: Bench) -> Dict[str, Any]:
    sizes, repeat = ([100, 10_000], 9) if bench.quick else ([100, 10_000, 20_000, 30_000], 31)
    return {side: bench.probe(side, "opentime", {"sizes": sizes, "repeat": repeat, "cloudpath": bench.volume()},
                              VIEW) for side in bench.sides()} | {"sizes": sizes, "repeat": repeat}


def _ready(bench: Bench, procs: List[subprocess.Popen]) -> None:
    """Wait until every process has said it is ready (imports done, waiting for the go file)."""
    for proc in procs:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        else:
            bench.result(proc, "a writer that did not start")


def bench_native(bench: Bench, protocols: List[str]) -> Dict[str, Any]:
    """One CloudVolume-native writer racing 4 ptb writers, 4 0.1.5 writers (2 with --quick), or one more."""
    entries, runs, rivals = (20, 1, 2) if bench.quick else (50, 3, 4)
    out: Dict[str, Any] = {"entries": entries, "runs": runs, "rivals": rivals}
    for protocol in protocols:
        for name, side in (("ptb", "ptb"), ("baseline", "baseline"), ("native", "ptb")):
            if side in bench.sides():
                out[f"{protocol}/{name}"] = _race(bench, protocol, name, side, entries, runs, rivals)
    return out


def _race(bench: Bench, protocol: str, name: str, side: str, entries: int, runs: int, rivals: int) -> Dict[str, Any]:
    tally: Dict[str, Any] = {"kept": 0, "total": 0, "corrupt": 0, "native_errors": 0, "native_s": 0.0,
                             "rival_call_s": [], "rival_errors": 0, "first_error": None}
    for _ in range(runs):
        path = bench.volume(protocol)
        go, stop = bench.root / f"go-{bench.counter}", bench.root / f"stop-{bench.counter}"
        common = {"cloudpath": path, "gofile": str(go), "entries": entries}
        started = [] if name == "native" else [f"{go}.w{w}" for w in range(rivals)]
        procs = [bench.start("ptb", "native", {**common, "tag": "measured", "make": True, "started": started,
                                               "stopfile": str(stop)}, VIEW)]
        if name == "native":
            procs.append(bench.start("ptb", "native", {**common, "tag": "other"}, VIEW))
        else:
            procs += [bench.start(side, "contender", {**common, "stopfile": str(stop), "started": started[w],
                                                      "tag": f"w{w}", "repo": str(bench.repo)}, VIEW)
                      for w in range(rivals)]
        _ready(bench, procs)             # imports done, warm, and the volume made: all go at once
        go.touch()
        results = [bench.result(p, f"{name} writer") for p in procs]
        if protocol == "file":
            text = Path(path[len("file://"):], "provenance").read_text(errors="replace")
        else:
            text = bench.probe("ptb", "rawprov", {"cloudpath": path}, VIEW)["text"]
        try:
            found = [e for e in json.loads(text)["processing"] if isinstance(e, dict) and e.get("by") == "igneous"]
        except (ValueError, KeyError, TypeError):
            tally["corrupt"] += 1
            found = []
        tags = {"measured", "other"} if name == "native" else {"measured"}
        tally["kept"] += len({(e["method"]["tag"], e["method"]["i"]) for e in found if e["method"].get("tag") in tags})
        tally["total"] += entries * len(tags)
        tally["native_errors"] += sum(r["errors"] for r in results if "seconds" in r)
        tally["native_s"] = max([tally["native_s"], *(r["seconds"] for r in results if "seconds" in r)])
        tally["rival_call_s"] += [t for r in results for t in r.get("call_s", [])]
        tally["rival_errors"] += sum(r["errors"] for r in results if "calls" in r)
        tally["first_error"] = tally["first_error"] or next((r["first_error"] for r in results if r["errors"]), None)
    return tally


def bench_import(bench: Bench) -> Dict[str, Any]:
    runs = 2 if bench.quick else 7
    out = {}
    for side in bench.sides():
        samples = [bench.probe(side, "import", {}) for _ in range(runs)]
        out[side] = {"import_s": statistics.median(s["import_s"] for s in samples),
                     **{k: samples[-1][k] for k in ("heavy_modules", "file", "version")}}
    return out


def bench_scrub(bench: Bench) -> Dict[str, Any]:
    return {"ptb": bench.probe("ptb", "scrub", {})}


def bench_env(bench: Bench) -> Dict[str, Any]:
    runs = 1 if bench.quick else 3
    out = {}
    for side in bench.sides():
        samples = [bench.probe(side, "env", {"repo": str(bench.repo), "repeat": 3 if bench.quick else 5})
                   for _ in range(runs)]
        out[side] = {k: statistics.median(s[k] for s in samples) for k in ("cold_s", "warm_s")}
    return out


# ------------------------------------------------------------------------------ main
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, file:// only (for tests)")
    parser.add_argument("--protocols", default=None,
                        help="comma-separated, of file,s3,gs (default: all three; file with --quick)")
    parser.add_argument("--baseline-dir", type=Path, default=None,
                        help="where provenance-toolbox 0.1.5 is (installed there if absent)")
    parser.add_argument("--no-baseline", action="store_true", help="measure ptb only")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each probe's result as it comes")
    args = parser.parse_args(argv)
    protocols = (args.protocols or ("file" if args.quick else "file,s3,gs")).split(",")

    baseline_dir = None
    if not args.no_baseline:
        from baseline import ensure

        try:
            baseline_dir = ensure(args.baseline_dir)
        except RuntimeError as exc:
            print(f"warning: measuring ptb only: {exc}", file=sys.stderr)

    import hostile
    from lab import bench_lab

    started, loads = time.monotonic(), [os.getloadavg()[0]]
    bench = Bench(args.quick, baseline_dir, protocols, args.verbose)
    try:
        results: Dict[str, Any] = {"quick": args.quick, "protocols": protocols, "loads": loads}
        calls_on = [(f"call/{p}", lambda b, p=p: bench_call(b, p)) for p in protocols if p in ("s3",)]
        for name, run in (("import", bench_import), ("env", bench_env), ("scrub", bench_scrub),
                          ("call", bench_call), *calls_on,
                          ("note", bench_note), ("writers", lambda b: bench_writers(b, protocols)),
                          ("stale", lambda b: bench_stale(b, protocols)), ("writes", bench_writes),
                          ("open", bench_open), ("native", lambda b: bench_native(b, protocols)),
                          ("igneous", lambda b: b.probe("ptb", "igneous", {"quick": b.quick, "cloudpath": b.volume(),
                                                                          "repo": str(b.repo)}, HERE / "igneous.py")),
                          ("hostile", hostile.bench_hostile), ("lab", lambda b: bench_lab(b, protocols))):
            print(f"benchmark: {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            results[name] = run(bench)
            loads.append(os.getloadavg()[0])
            print(f"benchmark: {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        bench.close()
    fleet_protocols = [p for p in protocols if p in ("s3", "gs")]
    if not args.quick and fleet_protocols:       # its own servers and processes: after the rest, alone
        import fleet

        print("benchmark: fleet ...", file=sys.stderr, flush=True)
        results["fleet"] = fleet.bench_fleet([4, 16, 48], fleet_protocols, tasks=20)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    from tables import table

    text, goals = table(results)
    load = f"1-minute load average {loads[0]:.1f} at the start, {min(loads):.1f} to {max(loads):.1f} during the run"
    where = Path(results["import"]["ptb"]["file"]).parent.parent
    print(f"ptb {results['import']['ptb']['version']} (from {where}) vs provenance-toolbox 0.1.5"
          f"{' (quick)' if args.quick else ''}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.monotonic() - started:.0f} s, {load}\n")
    print(text)
    print()
    for goal in goals:
        print(f"* {goal}")
    if "fleet" in results:
        import fleet

        print(f"\nA fleet on a rate-limited store ({results['fleet']['tasks']} tasks per worker):\n")
        print(fleet.table(results["fleet"]))
        print()
        print(fleet.estimate(results["fleet"]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
