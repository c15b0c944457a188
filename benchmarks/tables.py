"""The table ``run.py`` prints: figures, ratios, and the goals met or missed, from the raw results.

reStructuredText, so that it pastes into docs/benchmarks.rst. Ratios are ptb / 0.1.5 in one run, on one
machine: the meaningful part when the machine is busy.
"""
from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional, Tuple

SIDES = ("ptb", "baseline")


def ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1000:.2f} ms" if seconds < 10 else f"{seconds:.0f} s"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.3f}" if a / b < 0.1 else f"{a / b:.2f}"


def rst_table(rows: List[Tuple[str, ...]], header: Tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([rule, line(header), rule, *map(line, rows), rule])


def table(results: Dict[str, Any]) -> Tuple[str, List[str]]:
    rows: List[Tuple[str, ...]] = []
    goals: List[str] = []
    get = lambda d, *keys: _dig(d, keys)  # noqa: E731

    call = results["call"]
    earlier = get(call, "ptb", "earlier")
    for volume, label in (("fresh", "a new volume"), ("seeded", f"{earlier:,} earlier runs")):
        p, b = get(call, "ptb", volume, "overhead_s"), get(call, "baseline", volume, "overhead_s")
        rows.append((f"documented call over the bare call, {label} (file://, warm env)", ms(p),
                     ms(b) if b is not None else "n/a", ratio(p, b)))
        p, b = get(call, "ptb", volume, "cpu_s"), get(call, "baseline", volume, "cpu_s")
        rows.append(("the same call, CPU time of the process per call", ms(p), ms(b) if b is not None else "n/a",
                     ratio(p, b)))
    for protocol in [k.split("/")[1] for k in results if k.startswith("call/")]:
        other = results[f"call/{protocol}"]
        for volume, label in (("fresh", "a new volume"), ("seeded", f"{earlier:,} earlier runs")):
            p, b = get(other, "ptb", volume, "overhead_s"), get(other, "baseline", volume, "overhead_s")
            rows.append((f"documented call over the bare call, {label} ({protocol}://, SeaweedFS)", ms(p),
                         ms(b) if b is not None else "n/a", ratio(p, b)))
        fresh, seeded = (ratio(get(other, "ptb", v, "overhead_s"), get(other, "baseline", v, "overhead_s"))
                         for v in ("fresh", "seeded"))
        goals.append(f"{protocol}://: a documented call costs {fresh}x 0.1.5's hand-written equivalent on a new "
                     f"volume, {seeded}x at {earlier:,} earlier runs (goal: at most 1.0x)")
    fresh, seeded = (ratio(get(call, "ptb", v, "overhead_s"), get(call, "baseline", v, "overhead_s"))
                     for v in ("fresh", "seeded"))
    goals.append(f"file://: a documented call costs {fresh}x 0.1.5's hand-written equivalent on a new volume, "
                 f"{seeded}x at {earlier:,} earlier runs (goal: at most 1.0x)")
    p = max(get(call, "ptb", "fresh", "overhead_s"), get(call, "ptb", "seeded", "overhead_s"))
    goals.append(f"a decorated call on file:// costs at most {ms(p)} more than the bare call "
                 f"(which takes {ms(get(call, 'ptb', 'bare_s'))}): {'within' if p < 0.005 else 'NOT within'} "
                 f"a few milliseconds")

    note = results["note"]
    small, large = (str(s) for s in note["sizes"])
    for size in (small, large):
        p, b = get(note, "ptb", size, "mean"), get(note, "baseline", size, "mean")
        rows.append((f"one note after {int(size):,} earlier notes (mean)", ms(p), ms(b) if b else "n/a",
                     ratio(p, b)))
    pr = ratio(get(note, "ptb", large, "mean"), get(note, "ptb", small, "mean"))
    br = ratio(get(note, "baseline", large, "mean"), get(note, "baseline", small, "mean"))
    rows.append((f"note at {int(large):,} / note at {int(small):,} earlier notes", pr, br, ""))
    goals.append(f"a note at {int(large):,} earlier notes costs {pr}x its cost at {int(small):,} "
                 f"({'within' if pr != 'n/a' and float(pr) <= 1.5 else 'NOT within'} 1.5x)")
    rows.append((f"of which the view write, after {int(small):,} / {int(large):,} earlier notes (every note)",
                 f"{ms(get(note, 'ptb', small, 'view_write_s'))} / {ms(get(note, 'ptb', large, 'view_write_s'))}",
                 "", ""))

    writers = results["writers"]
    total = writers["writers"] * writers["notes"]
    for key in sorted(k for k in writers if "/" in k and k.endswith("/ptb")):
        protocol = key.split("/")[0]
        p, b = writers[key], writers.get(f"{protocol}/baseline")
        cell = lambda r: (f"{r['found']}/{total}" + (", file corrupt" if r["corrupt"] else "")  # noqa: E731
                          + (f", {r['writer_errors']} writer errors" if r["writer_errors"] else ""))
        rows.append((f"notes surviving {writers['writers']} writers x {writers['notes']} ({protocol}://)", cell(p),
                     cell(b) if b else "n/a", ratio(p["found"], b["found"]) if b and b["found"] else "-"))
        rows.append((f"the view those writers left = what ptb sync writes ({protocol}://)",
                     f"converged: {'yes' if p['converged'] else 'no'}", "", ""))
        goals.append(f"{protocol}://: {total - p['found']} of {total} notes lost by ptb at {writers['writers']} "
                     f"writers; the view they left {'equals' if p['converged'] else 'DIFFERS from'} what ptb sync "
                     f"writes (view {p['view']}, sync {p['synced']})"
                     + (f"; 0.1.5 lost {total - b['found']}" + (" and corrupted its file" if b["corrupt"] else "")
                        if b else ""))

    view_rows(results, rows, goals)

    imp = results["import"]
    p, b = get(imp, "ptb", "import_s"), get(imp, "baseline", "import_s")
    rows.append(("import ptb / import provenancetoolbox", ms(p), ms(b) if b else "n/a", ratio(p, b)))
    heavy = get(imp, "ptb", "heavy_modules") or []
    goals.append(f"import ptb loads {', '.join(heavy) if heavy else 'none of cloudvolume, cloudfiles, git, numpy'}"
                 f"{'' if 'cloudvolume' in heavy else ' (not cloudvolume)'}; provenancetoolbox loads "
                 f"{', '.join(get(imp, 'baseline', 'heavy_modules') or []) or 'n/a'}")

    env = results["env"]
    for key, label in (("cold_s", "first in the process"), ("warm_s", "again, checkout unchanged")):
        p, b = get(env, "ptb", key), get(env, "baseline", key)
        rows.append((f"environment capture, {label}", ms(p), ms(b) if b else "n/a", ratio(p, b)))
    scrub = results["scrub"]["ptb"]
    rows.append(("scrubbing secrets from a 256 KiB diff / the worst of 9 adversarial 256 KiB texts",
                 f"{ms(scrub['diff_s'])} / {ms(scrub['adversarial_s'])}", "", ""))
    goals.append(f"scrubbing a 256 KiB diff takes {ms(scrub['diff_s'])} "
                 f"({'within' if scrub['diff_s'] < 0.05 else 'NOT within'} 50 ms); the worst adversarial text "
                 f"{ms(scrub['adversarial_s'])} "
                 f"({'within' if scrub['adversarial_s'] < 1 else 'NOT within'} 1 s: linear)")
    if "igneous" in results:            # benchmarks/igneous.py; its last column is documented / bare
        more, said = _igneous().rows(results["igneous"])
        rows, goals = rows + more, goals + said
    if "hostile" in results:
        from hostile import rows as hostile_rows

        hostile_rows(results, rows, goals)
    if "lab" in results:
        from lab import rows as lab_rows

        lab_rows(results["lab"], rows, goals)
    return rst_table(rows, ("measure", "ptb", "0.1.5", "ptb / 0.1.5")), goals


def _igneous() -> Any:
    """benchmarks/igneous.py, loaded by its path: ``import igneous`` is the pipeline's package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ptb_bench_igneous", Path(__file__).with_name("igneous.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _current(found: List[Dict[str, Any]]) -> str:
    """How many fresh readers saw the call at their first read, and when all of them did."""
    trials, current = sum(f["trials"] for f in found), sum(f["current"] for f in found)
    held, until = sum(f["held"] for f in found), max(f["until_s"] for f in found)
    return f"{current}/{trials} at +0 s, " + (f"all by {until:.1f} s" if held == trials else f"{held} within 10 s")


def view_rows(results: Dict[str, Any], rows: List[Tuple[str, ...]], goals: List[str]) -> None:
    """The rows of what other tools see: the ``provenance`` file (``view.py``'s probes)."""
    stale = results["stale"]
    protocols = [k.split("/")[0] for k in stale if k.endswith("/ptb")]
    for kind, label in (("call", "a decorated call"), ("block", "a ptb.documented block"),
                        ("note", "addgeneric")):
        p = [stale[f"{pr}/ptb"][kind] for pr in protocols]
        b = [stale[f"{pr}/baseline"][kind] for pr in protocols
             if kind in stale.get(f"{pr}/baseline", {})]
        rows.append((f"view current after {label} returns ({', '.join(protocols)}; reader in another process)",
                     _current(p), _current(b) if b else "n/a", ""))
        for pr, found in zip(protocols, p):
            if found["current"] < found["trials"]:
                goals.append(f"{pr}://: after {label}, {found['current']} of {found['trials']} fresh readers saw "
                             f"it at once (NOT all); all that did took up to {found['until_s']:.2f} s")
    gaps = [stale[k][kind]["gap_s"] for k in stale for kind in stale[k]]
    goals.append(f"the view's staleness: the reader's first read starts a median of {ms(statistics.median(gaps))} "
                 f"after the call returned (IPC), at most {ms(max(gaps))}")

    writes = results["writes"]
    count = writes["ptb"]["count"]
    for kind, label in (("call", f"{count} decorated calls of one process"), ("note", f"{count} notes")):
        p, b = (_dig(writes, (side, kind, "writes")) for side in SIDES)
        rows.append((f"whole-file writes of provenance per run, {label} (inotify)", f"{p / count:.2f}",
                     f"{b / count:.2f}" if b is not None else "n/a", ratio(p, b)))
        if p > count:
            goals.append(f"{kind}: {p} writes of provenance for {count} (NOT at most one per run end / note)")
        p, b = (_dig(writes, (side, kind, "objects")) for side in SIDES)
        rows.append((f"objects written per {kind} (journal and provenance, inotify)", f"{p / count:.2f}",
                     f"{b / count:.2f}" if b is not None else "n/a", ratio(p, b)))
        p, b = (_dig(writes, (side, kind, "created")) for side in SIDES)
        rows.append((f"files created per {kind} (temporary ones too, inotify)", f"{p / count:.2f}",
                     f"{b / count:.2f}" if b is not None else "n/a", ""))
        p, b = (_dig(writes, (side, kind, "bytes")) for side in SIDES)
        rows.append((f"bytes written per {kind} (write(2), /proc/self/io)", f"{p / count / 1024:.1f} KiB",
                     f"{b / count / 1024:.1f} KiB" if b is not None else "n/a", ratio(p, b)))

    rows.append(("creating one small file on this machine (each created file above costs this)",
                 ms(writes["ptb"]["file_creation_s"]), "", ""))

    opened = results["open"]
    sizes = [str(s) for s in opened["sizes"]]
    for size in sizes:
        p, b = (_dig(opened, (side, size, "open_s")) for side in SIDES)
        rows.append((f"CloudVolume(path) open, {int(size):,} notes (file://, median of {opened['repeat']})", ms(p),
                     ms(b) if b is not None else "n/a", ratio(p, b)))
    mid, low, high = sizes[min(2, len(sizes) - 1)], sizes[0], sizes[-1]
    p, b = (ratio(_dig(opened, (side, mid, "open_s")), _dig(opened, (side, low, "open_s"))) for side in SIDES)
    rows.append((f"open at {int(mid):,} / open at {int(low):,} notes", p, b, ""))
    goals.append(f"CloudVolume(path) at {int(mid):,} notes costs {p}x its cost at {int(low):,} "
                 f"({'within' if p != 'n/a' and float(p) <= 1.5 else 'NOT within'} 1.5x)")
    kib = lambda n: "n/a" if n is None else f"{n / 1024:,.0f} KiB"  # noqa: E731
    p, b = ([_dig(opened, (side, size, "bytes")) for size in sizes] for side in SIDES)
    rows.append((f"provenance file size at {' / '.join(f'{int(s):,}' for s in sizes)} notes",
                 " / ".join(map(kib, p)), " / ".join(map(kib, b)), ratio(p[-1], b[-1])))
    goals.append(f"the provenance file at {int(high):,} notes is {kib(p[-1])} "
                 f"({'under' if p[-1] < 256 * 1024 else 'NOT under'} 256 KiB)")

    native = results["native"]
    n, runs, rivals = native["entries"], native["runs"], native["rivals"]

    def kept(r: Optional[Dict[str, Any]]) -> str:
        if r is None:
            return "n/a"
        return f"{r['kept']}/{r['total']}" + (f", file corrupt ({r['corrupt']} of {runs} runs)" if r["corrupt"] else "")

    for protocol in [k.split("/")[0] for k in native if k.endswith("/ptb")]:
        p, b, c = (native.get(f"{protocol}/{name}") for name in ("ptb", "baseline", "native"))
        rows.append((f"native writer's entries kept, racing {rivals} writers, {runs} x {n} ({protocol}://)", kept(p),
                     kept(b), ratio(p["kept"], b["kept"]) if b and b["kept"] else "-"))
        rows.append((f"the field's baseline: two native writers, {runs} x {n} each ({protocol}://)", "", kept(c), ""))
        for name, r in (("ptb", p), ("0.1.5", b), ("two native writers", c)):
            if r is None:
                continue
            took = r["rival_call_s"]
            goals.append(f"{protocol}:// {name}: the native writer took up to {ms(r['native_s'])} for its {n} entries"
                         + (f"; its rivals made {len(took)} calls, median {ms(statistics.median(took))}, "
                            f"longest {ms(max(took))}" if took else "")
                         + (f"; errors: {r['native_errors']} in native writers, {r['rival_errors']} in rivals, "
                            f"the first: {r['first_error']}" if r["first_error"] else ""))


def _dig(data: Any, keys: Tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data
