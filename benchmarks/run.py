"""ptb against provenance-toolbox 0.1.5, side by side, in one run.

    python benchmarks/run.py            # the full run (a few minutes; starts local S3 and GCS servers)
    python benchmarks/run.py --quick    # small sizes, file:// only, well under a minute

Installs 0.1.5 into ``~/.cache/ptb-bench/baseline`` the first time (see ``baseline.py``).
Every measurement runs in a fresh OS process (``probe.py``), one side at a time, on volumes
in a temporary directory; the concurrent writers are real OS processes started together.
Prints one table of figures and ratios (reStructuredText, so it pastes into README.rst).
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
        self.env = {**os.environ, "PTB_SPOOL_DIR": str(self.root / "spool"), "CLOUD_FILES_DIR": str(home),
                    "CLOUD_VOLUME_DIR": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
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
        (repo / "pipeline.py").write_text("def step(x, dst=None):\n    return x + 1\n")
        for args in (["init", "-q"], ["add", "pipeline.py"], ["commit", "-q", "-m", "first step"],
                     ["remote", "add", "origin", "https://github.com/lab/pipeline.git"]):
            subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org",
                            "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                           cwd=repo, check=True, capture_output=True)
        return repo

    def _start_servers(self, protocols: List[str], home: Path) -> None:
        sys.path.insert(0, str(TESTS))
        from servers import FakeGCS, SeaweedS3  # the test suite's own local servers

        if "s3" in protocols:
            s3 = SeaweedS3().start(self.root / "seaweedfs")
            self.servers.append(s3)
            (home / "aliases.json").write_text(json.dumps({S3_ALIAS: {"host": f"s3://{s3.endpoint}/"}}))
            self.env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
                            AWS_SESSION_TOKEN="", AWS_DEFAULT_REGION=s3.region)
            self.roots["s3"] = f"{S3_ALIAS}://{s3.bucket}"
        if "gs" in protocols:
            gcs = FakeGCS().start(self.root / "fake-gcs")
            self.servers.append(gcs)
            self.env["STORAGE_EMULATOR_HOST"] = gcs.endpoint
            self.roots["gs"] = f"gs://{gcs.bucket}"

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def volume(self, protocol: str = "file") -> str:
        self.counter += 1
        return f"{self.roots[protocol]}/vol-{os.getpid()}-{self.counter}"

    # -------------------------------------------------------------------- probes
    def start(self, side: str, kind: str, args: Dict[str, Any]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(PROBE), side, kind, json.dumps(args)], cwd=self.root,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, proc: subprocess.Popen, what: str, timeout: float = 1800) -> Dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("PTB-BENCH ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{err[-3000:]}")
        return json.loads(lines[-1][len("PTB-BENCH "):])

    def probe(self, side: str, kind: str, args: Dict[str, Any]) -> Dict[str, Any]:
        t0 = time.monotonic()
        found = self.result(self.start(side, kind, args), f"{side} {kind}")
        if self.verbose:
            print(f"  {side} {kind}: {time.monotonic() - t0:.1f}s {json.dumps(found)[:300]}", file=sys.stderr)
        return found

    def sides(self) -> Tuple[str, ...]:
        return SIDES if self.baseline is not None else ("ptb",)


# ------------------------------------------------------------------------ benchmarks
def bench_call(bench: Bench) -> Dict[str, Any]:
    calls, earlier, rounds = (10, 1000, 1) if bench.quick else (100, 10_000, 3)
    return {side: bench.probe(side, "call", {"repo": str(bench.repo), "cloudpath": bench.volume(), "calls": calls,
                                             "earlier": earlier, "rounds": rounds})
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
    for protocol in protocols:
        for side in bench.sides():
            path = bench.volume(protocol)
            bench.probe(side, "makevol", {"cloudpath": path})
            t0 = time.monotonic()
            procs = [bench.start(side, "writer", {"cloudpath": path, "notes": notes, "tag": f"w{w}"})
                     for w in range(writers)]
            results = [bench.result(p, f"{side} writer") for p in procs]
            elapsed = time.monotonic() - t0
            counted = bench.probe(side, "count", {"cloudpath": path, "expected": expected})
            out[f"{protocol}/{side}"] = {**counted, "expected": len(expected), "seconds": elapsed,
                                         "writer_errors": sum(r["errors"] for r in results),
                                         "first_error": next((r["first_error"] for r in results if r["errors"]), None)}
    return out


def bench_import(bench: Bench) -> Dict[str, Any]:
    runs = 2 if bench.quick else 7
    out = {}
    for side in bench.sides():
        samples = [bench.probe(side, "import", {}) for _ in range(runs)]
        out[side] = {"import_s": statistics.median(s["import_s"] for s in samples),
                     "heavy_modules": samples[-1]["heavy_modules"]}
    return out


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

    started, load_before = time.monotonic(), os.getloadavg()[0]
    bench = Bench(args.quick, baseline_dir, protocols, args.verbose)
    try:
        results = {"quick": args.quick, "protocols": protocols}
        for name, run in (("import", bench_import), ("env", bench_env), ("call", bench_call),
                          ("note", bench_note), ("writers", lambda b: bench_writers(b, protocols))):
            print(f"benchmark: {name} ...", file=sys.stderr, flush=True)
            results[name] = run(bench)
    finally:
        bench.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    from tables import table

    text, goals = table(results)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"ptb {_version()} vs provenance-toolbox 0.1.5{' (quick)' if args.quick else ''}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {time.monotonic() - started:.0f} s, {load}\n")
    print(text)
    print()
    for goal in goals:
        print(f"* {goal}")
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("provenance-toolbox")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
