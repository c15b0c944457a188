"""The table ``run.py`` prints: figures, ratios, and the goals met or missed, from the raw results.

reStructuredText, so that it pastes into README.rst. Ratios are ptb / 0.1.5 in one run, on one
machine: the meaningful part when the machine is busy.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple


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
    for volume, label in (("fresh", "a new volume"), ("seeded", f"{earlier:,} earlier notes")):
        p, b = get(call, "ptb", volume, "overhead_s"), get(call, "baseline", volume, "overhead_s")
        rows.append((f"documented call over the bare call, {label} (file://, warm env)", ms(p),
                     ms(b) if b is not None else "n/a", ratio(p, b)))
        p, b = get(call, "ptb", volume, "cpu_s"), get(call, "baseline", volume, "cpu_s")
        rows.append(("the same call, CPU time of the process per call", ms(p), ms(b) if b is not None else "n/a",
                     ratio(p, b)))
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
    return rst_table(rows, ("measure", "ptb", "0.1.5", "ptb / 0.1.5")), goals


def _dig(data: Any, keys: Tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data
