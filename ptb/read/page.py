"""The self-contained HTML page of a lineage, with its inline SVG picture and CSS.

Written by hand so the page needs neither ``prov`` nor graphviz and can be
published as one file next to a dataset.
"""
from __future__ import annotations

import html
import json
from typing import Dict, List, Tuple

from ..visible import visible
from . import fmt, timeline
from .envspread import spread as envspread
from .envspread import spread_lines
from .history import History
from .lineage import Lineage
from .runsummary import count, grouped, summarise


def _h(text: str) -> str:
    """Text from a volume on the page: markup escaped, control characters made visible (never raw in the file)."""
    return html.escape(visible(text))


def process_summary(h: History, key: str) -> str:
    """``3 runs: 2 succeeded, 1 failed``, for a process's box here and its node in DOT."""
    summary = summarise(key, "", h.runs_of(key))
    return f"{count(summary.total, 'run')}: {summary.counts_text()}" if summary.total else summary.counts_text()


def cut(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_W, _GAP_X, _GAP_Y, _LINE, _PAD, _MAX_LINES = 340, 70, 24, 16, 10, 12


def _box_lines(lin: Lineage, key: str) -> List[Tuple[str, str]]:
    """(css class, text) lines of one box of the lineage picture."""
    h = lin.volumes.get(key)
    if h is None:
        reason = lin.external.get(key, "")
        return [("title", key)] + ([("muted", reason.split(": ")[0] if reason.startswith("unreadable") else reason)]
                                   if reason and reason != "source" else [])
    lines = [("title", key)]
    for p in h.processes:
        lines += [("step", f"• {p.description}"), ("muted", f"   {process_summary(h, p.key)}")]
    lines += [("step", f"• {timeline._foreign_row(i, e).text} [foreign]") for i, e in enumerate(h.foreign)]
    if len(lines) > _MAX_LINES:
        lines = lines[: _MAX_LINES - 1] + [("muted", f"… and {len(lines) - _MAX_LINES + 1} more")]
    return lines if len(lines) > 1 else lines + [("muted", "no processes recorded")]


_BOX_STYLE = {"root": ("#fffc87", "#b8a900", ""), "volume": ("#fffde0", "#b8a900", ""),
              "external": ("#f4f4f4", "#999999", ' stroke-dasharray="4 3"')}
_FONT = 'font-family="Helvetica, Arial, sans-serif" font-size="12"'
_TEXT_STYLE = {"title": f'{_FONT} font-weight="bold" fill="#222222"', "step": f'{_FONT} fill="#222222"',
               "muted": f'{_FONT} font-style="italic" fill="#666666"'}


def lineage_svg(lin: Lineage) -> str:
    """An SVG picture of the lineage: one column per layer, sources on the left, the volume on the right."""
    depths = lin.depths()
    keys = list(lin.volumes) + [k for k in lin.external if k not in lin.volumes]
    deepest = max(depths.values(), default=0)
    columns: Dict[int, List[str]] = {}
    for key in keys:
        columns.setdefault(deepest - depths.get(key, deepest), []).append(key)
    boxes: Dict[str, Tuple[int, int, int]] = {}
    for col, members in columns.items():
        y = _GAP_Y
        for key in members:
            height = _PAD * 2 + _LINE * len(_box_lines(lin, key))
            boxes[key] = (_GAP_X // 2 + col * (_W + _GAP_X), y, height)
            y += height + _GAP_Y
    column_of = {key: col for col, members in columns.items() for key in members}
    bottoms = {col: float(max(boxes[k][1] + boxes[k][2] for k in members)) for col, members in columns.items()}
    paths = []
    for src, dst in dict.fromkeys(lin.edges):
        (x1, y1, h1), (x2, y2, h2) = boxes[src], boxes[dst]
        sx, sy, ex, ey = x1 + _W, y1 + h1 / 2, x2, y2 + h2 / 2
        between = [bottoms[c] for c in range(column_of[src] + 1, column_of[dst])]
        look = 'stroke="#555555"'
        if column_of[src] >= column_of[dst]:   # a cycle in the sources: back under everything, dashed
            lane = max(bottoms.values()) + _GAP_Y / 2
            q = _GAP_X / 2
            d = (f"M {sx} {sy} C {sx + q} {sy}, {sx + q} {lane}, {sx} {lane} L {ex} {lane} "
                 f"C {ex - q} {lane}, {ex - q} {ey}, {ex} {ey}")
            bottoms = {c: lane for c in bottoms}
            look = 'stroke="#b00020" stroke-dasharray="6 4"'
        elif between:  # around the boxes in the columns it crosses, not through them
            lane = max(between) + _GAP_Y / 2
            q = _GAP_X / 2
            d = (f"M {sx} {sy} C {sx + q} {sy}, {sx + q} {lane}, {sx + _GAP_X} {lane} L {ex - _GAP_X} {lane} "
                 f"C {ex - q} {lane}, {ex - q} {ey}, {ex} {ey}")
            bottoms.update({c: lane for c in range(column_of[src] + 1, column_of[dst])})
        else:
            mid = (sx + ex) / 2
            d = f"M {sx} {sy} C {mid} {sy}, {mid} {ey}, {ex} {ey}"
        paths.append(f'<path class="edge" d="{d}" fill="none" {look} stroke-width="1.5" marker-end="url(#arrow)"/>')
    width = _GAP_X + (deepest + 1) * (_W + _GAP_X) - _GAP_X
    height = int(max(bottoms.values(), default=0) + _GAP_Y)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555555"/></marker></defs>', *paths]
    for key in keys:
        x, y, h = boxes[key]
        kind = "root" if key == lin.root else "volume" if key in lin.volumes else "external"
        fill, stroke, dash = _BOX_STYLE[kind]
        out.append(f'<g class="node {kind}"><title>{_h(key)}</title>'
                   f'<rect x="{x}" y="{y}" width="{_W}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}"{dash}/>')
        for i, (cls, text) in enumerate(_box_lines(lin, key)):
            look = _TEXT_STYLE[cls]
            out.append(f'<text class="{cls}" x="{x + _PAD}" y="{y + _PAD + _LINE * (i + 1) - 4}" {look}>'
                       f'{_h(cut(text))}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:2em}
code,pre,.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}pre{background:#f6f6f6;padding:.6em;
overflow-x:auto;white-space:pre-wrap}table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}th{background:#f0f0f0}
td.text{white-space:pre-wrap;word-break:break-word}.status-failed,.status-running,.status-interrupted{color:#b00020;
font-weight:600}.status-succeeded{color:#1b7f3b}.kind-foreign{color:#555}.badge{display:inline-block;padding:.2em .6em;
border-radius:4px;font-weight:600}.ok{background:#d9f2e1;color:#1b7f3b}.fail{background:#fde0e3;color:#b00020}
svg.lineage{max-width:100%;height:auto;border:1px solid #eee}dl.facts dt{font-weight:600}
dl.facts dd{margin:0 0 .4em 1.2em}td.time,td.id,td.kind{white-space:nowrap}p.label{margin:.6em 0 .2em;font-weight:600}
"""


def _table(h: History) -> str:
    rows = grouped(h, timeline.timeline(h))        # a process of thousands of runs is one row
    lengths = timeline.id_lengths(h)
    out = ['<table class="timeline"><thead><tr><th>Time (UTC)</th><th>Kind</th><th>ID</th><th>Status</th>'
           '<th>Who</th><th>What</th></tr></thead><tbody>']
    for row in rows:
        status = fmt.state_text(row.status, row.duration, row.live) if row.kind == "run" else ""
        values = f" ({fmt.params_summary(row.parameters, 160, 80)})" if row.kind == "run" and row.parameters else ""
        code = f" at {row.code}" if row.code else ""          # a run's commit, when its process's runs differ
        text = row.text + values + code + "".join(f"\n{line}" for line in row.spread or ()) + (
            f"\n{row.error}" if row.error else "")
        text += f" [{row.origin}]" if row.origin != "ptb" else ""
        cells = [fmt.fmt_time(row.time), row.label, timeline.short_id(row, lengths), status,
                 fmt.who(row), text]
        classes = f"row kind-{row.kind}" + (f" status-{row.status}" if row.status else "")
        out.append(f'<tr class="{classes}">' + "".join(
            f'<td class="{name}"' + (f' title="{_h(row.id)}"' if name == "id" and c else "")
            + f">{_h(c)}</td>"
            for name, c in zip(("time", "kind", "id", "status", "who", "text"), cells)) + "</tr>")
    if not rows:
        out.append('<tr><td colspan="6">nothing recorded</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


_FAILURES_SHOWN = 100


def _runs(h: History, key: str) -> str:
    """A process's runs summed up (status, hosts, durations) and its failures listed, with their values."""
    s = summarise(key, "", h.runs_of(key))
    if not s.total:
        return "<p>no runs recorded</p>"
    facts = [("runs", s.line().split(": ", 1)[1]), ("by host", ", ".join(f"{k} {n:,}" for k, n in
                                                                           list(s.by_host.items())[:8]) or "-"),
             ("duration", s.durations_text())]
    out = ['<dl class="facts runs">' + "".join(f"<dt>{k}</dt><dd>{_h(v)}</dd>" for k, v in facts) + "</dl>"]
    if s.problems:
        items = [f'<li class="status-{r.status}"><span class="id">{_h(r.id)}</span> '
                 f"{_h(fmt.run_state(r))}, {_h(fmt.who(r) or 'unknown')}"
                 + (f" — {_h(fmt.params_summary(r.parameters, 200, 100))}" if r.parameters else "")
                 + (f"<br>{_h(fmt.error_text(r.error) or '')}" if r.error else "") + "</li>"
                 for r in s.problems[:_FAILURES_SHOWN]]
        more = len(s.problems) - _FAILURES_SHOWN
        if more > 0:
            items.append(f"<li>… and {count(more, 'more run')}</li>")
        out.append(f'<p>Failed or never finished ({len(s.problems):,}):</p><ul class="failures">{"".join(items)}</ul>')
    return "".join(out)


def _processes(h: History) -> str:
    out = []
    for p in h.processes:
        envs = []
        for path in p.code_envfiles:
            env = h.envs.get(path)
            if not isinstance(env, dict) or isinstance(env.get("refused"), str):
                why = f"not shown: {env['refused']}" if isinstance(env, dict) else "missing"
                envs.append(f"<li><code>{_h(path)}</code>: {_h(why)}</li>")
                continue
            facts = [f"{k}: {fmt.compact(env[k], 200)}" for k in ("CodeEnv type", "name", "commit hash", "branch",
                                                                   "dirty", "image name", "tag", "image ID", "sha256")
                     if env.get(k) not in (None, "")]      # compact: JSON's true/false, as the CLI prints them
            envs.append(f"<li><code>{_h(path)}</code> — {_h('; '.join(map(str, facts)))}</li>")
        spread = "".join(f"<p>{_h(line)}</p>" for line in spread_lines(envspread(h.runs_of(p.key))))
        out.append(f'<article class="process" id="process-{_h(p.key)}"><h3>{_h(p.description)}'
                   f' <span class="id">{_h(p.key)}</span></h3>{_runs(h, p.key)}'
                   f'<p class="label">Parameters</p>'
                   f"<pre>{_h(json.dumps(p.parameters, indent=2, sort_keys=True, ensure_ascii=False))}</pre>"
                   f"<p>Code environment, as first logged:</p>"
                   f"<ul>{''.join(envs) or '<li>no code environment recorded</li>'}</ul>{spread}</article>")
    return "\n".join(out) or "<p>No processes recorded.</p>"


def _volume_section(h: History) -> str:
    from .check import check_history

    verdict = check_history(h)
    badge = ('<span class="badge ok">properly documented</span>' if verdict.ok else
             '<span class="badge fail">incompletely documented</span><ul class="problems">'
             + "".join(f"<li>{_h(p)}</li>" for p in verdict.problems) + "</ul>")
    facts = [("Sources", ", ".join(map(str, h.sources)) or "none named"),
             ("Owners", ", ".join(map(str, h.owners)) or "none named"), ("Recorded", timeline.summary_line(h))]
    return "\n".join(['<dl class="facts">' + "".join(
        f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in facts) + "</dl>", badge,
        "<h3>Timeline</h3>", _table(h), "<h3>Processes</h3>", _processes(h)])


def to_html(lin: Lineage) -> str:
    """One self-contained page: summary, lineage picture, timeline and processes of each volume."""
    from .._version import __version__
    from ..records import utcnow

    root = lin.volumes[lin.root]
    title = f"Provenance of {lin.root}"
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f'<meta name="generator" content="ptb {_h(__version__)}">',
             f"<title>{_h(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<header><h1>{_h(title)}</h1><p>Generated by ptb {_h(__version__)} on "
             f"{fmt.fmt_time(utcnow())}.</p></header>",
             '<section id="lineage"><h2>Lineage</h2>', lineage_svg(lin), "</section>",
             '<section id="volume">', f"<h2>Volume: {_h(lin.root)}</h2>", _volume_section(root), "</section>"]
    for cloudpath, h in lin.volumes.items():
        if cloudpath != lin.root:
            parts += ['<section class="upstream"><details>', f"<summary>Upstream: {_h(cloudpath)}</summary>",
                      _volume_section(h), "</details></section>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
