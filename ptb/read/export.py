"""A volume's history for others: W3C PROV, a DOT graph, a self-contained HTML page.

PROV goes through the ``prov`` package (the ``prov`` extra, imported only
here, only when asked for): the volume and its sources are entities, runs are
activities, people and code environments are agents, processes are plans.
DOT and HTML are written directly, so neither needs ``prov`` nor the graphviz
binaries; the HTML page and its SVG lineage picture live in ``ptb.read.page``.
``upstream=True`` follows ``sources`` that are themselves volumes and draws
the lineage across layers.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InvalidInputError, MissingDependencyError
from ..records import RunRecord, content_hash
from ..visible import json_text, visible
from . import fmt, timeline
from .history import History
from .lineage import Lineage, lineage, source_key
from .page import cut, process_summary, to_html
from .runsummary import is_problem, status_name

FORMATS = ("prov-json", "prov-n", "dot", "html")
NAMESPACE = "urn:provenance-toolbox:"


# ----------------------------------------------------------------------- PROV
def _load_prov() -> Any:
    try:
        from prov import model
    except ImportError:
        raise MissingDependencyError(
            "PROV export needs the prov package: pip install provenance-toolbox[prov]") from None
    return model


def _code_label(env: Dict[str, Any], path: str) -> str:
    if env.get("image name"):
        return f"{env['image name']}:{env.get('tag') or 'latest'}"
    return str(env.get("name") or path)


def to_prov(lin: Lineage) -> Any:
    """A ``prov.model.ProvDocument`` of every volume in the lineage."""
    model = _load_prov()
    doc = model.ProvDocument()
    doc.add_namespace("ptb", NAMESPACE)
    qn = doc.valid_qualified_name
    made: set = set()

    def node(kind: str, ident: str, attrs: Dict[str, Any], *times: Any) -> str:
        if ident not in made:
            made.add(ident)
            clean = {k: v for k, v in attrs.items() if v is not None}
            getattr(doc, kind)(ident, *times, clean) if times else getattr(doc, kind)(ident, clean)
        return ident

    def entity_of(key: str) -> str:
        return node("entity", f"ptb:volume-{content_hash(key, 12)}",
                    {"prov:label": key, "prov:location": key,
                     "prov:type": qn("ptb:Volume") if key in lin.volumes else None})

    def person(name: str) -> str:
        return node("agent", f"ptb:person-{content_hash(name, 12)}", {"prov:type": model.PROV["Person"],
                                                                       "prov:label": name})

    def code_agent(path: str, found: Any) -> str:
        """The code environment a run ran with (its own file; a run with none, its process's)."""
        env: Dict[str, Any] = found if isinstance(found, dict) else {}
        return node("agent", f"ptb:code-{content_hash([path, env], 12)}", {
            "prov:type": model.PROV["SoftwareAgent"], "prov:label": _code_label(env, path),
            "ptb:file": path, "ptb:codeEnvType": env.get("CodeEnv type"),
            "ptb:commit": env.get("commit hash"), "ptb:image": env.get("image ID")})

    for cloudpath, h in lin.volumes.items():
        vol = entity_of(cloudpath)
        sources = [entity_of(source_key(s)) for s in h.sources if str(s).strip()]
        for src in sources:
            doc.wasDerivedFrom(vol, src)
        for owner in h.owners:
            doc.wasAttributedTo(vol, person(str(owner)))
        runs = {r.id: f"ptb:run-{r.id}" for r in h.runs}
        for p in h.processes:
            plan = node("entity", f"ptb:process-{p.key}", {
                "prov:type": model.PROV["Plan"], "prov:label": p.description, "ptb:key": p.key,
                "ptb:parameters": json.dumps(p.parameters, sort_keys=True, ensure_ascii=False),
                "ptb:origin": fmt.origin_of(p)})
            steps = f"ptb:steps-{content_hash([cloudpath, p.key], 12)}"  # a process with no runs (0.1.x)
            activities: List[Tuple[Optional[RunRecord], str]] = [(r, runs[r.id]) for r in h.runs_of(p.key)]
            for run, ident in activities or [(None, steps)]:
                attrs: Dict[str, Any] = {"prov:label": p.description}
                if run is not None:
                    attrs.update({"ptb:status": run.status, "ptb:duration": run.duration, "ptb:host": run.host,
                                  "ptb:pid": run.pid, "ptb:error": fmt.error_text(run.error),
                                  "ptb:parameters": json.dumps(run.parameters, sort_keys=True, ensure_ascii=False)
                                  if run.parameters else None})      # its own values, as a plan's parameters
                node("activity", ident, attrs, run.started if run else None, run.ended if run else None)
                if run is not None and run.user:
                    doc.wasAssociatedWith(ident, person(run.user), plan)
                code = [code_agent(path, env) for path, env in h.envs_of(run if run is not None else p).items()]
                for agent in code:
                    doc.wasAssociatedWith(ident, agent, plan)
                if not code and (run is None or not run.user):
                    doc.wasAssociatedWith(ident, None, plan)
                for src in sources:
                    doc.used(ident, src)
                doc.wasGeneratedBy(vol, ident)
                if run is not None and run.parent in runs:
                    doc.wasInformedBy(ident, runs[run.parent])
        for index, entry in enumerate(h.foreign):
            row = timeline._foreign_row(index, entry)
            ident = node("activity", f"ptb:foreign-{content_hash([cloudpath, index], 12)}", {
                "prov:label": row.text, "ptb:entry": json.dumps(entry, sort_keys=True, default=str)}, row.time, None)
            if row.user:
                doc.wasAssociatedWith(ident, person(row.user))
            doc.wasGeneratedBy(vol, ident)
        for n in h.notes:
            ident = node("entity", f"ptb:note-{content_hash([cloudpath, n.id], 12)}", {
                "prov:type": qn(f"ptb:{n.note_type.name.title()}"), "prov:value": n.content,
                "ptb:about": qn(vol)})
            if n.run in runs or n.timestamp is not None:
                doc.wasGeneratedBy(ident, runs.get(n.run or ""), n.timestamp)
    return doc


# ------------------------------------------------------------------------ DOT
def _dq(text: str) -> str:
    """A DOT string: control characters from the volume made visible, then quoted."""
    shown = visible(text.replace("\r\n", "\n"))
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_PROBLEMS_SHOWN = 5


def _problems(h: History, key: str) -> str:
    """The failed and never-finished runs of a process for its DOT node, a few of them, with their values."""
    bad = [r for r in h.runs_of(key) if is_problem(r)]
    lines = [f"\n{r.id[:12]} {status_name(r.status)}"
             + (f" {fmt.params_summary(r.parameters, 100, 80)}" if r.parameters else "")
             for r in bad[:_PROBLEMS_SHOWN]]
    return "".join(lines) + (f"\n… and {len(bad) - _PROBLEMS_SHOWN:,} more" if len(bad) > _PROBLEMS_SHOWN else "")


def to_dot(lin: Lineage) -> str:
    """The lineage as Graphviz DOT text, in PROV's colours (entities yellow, activities blue, agents orange)."""
    ids: Dict[str, str] = {}
    lines = ["digraph lineage {", '  graph [rankdir=LR, fontname="Helvetica"];',
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']

    def node(key: str, label: str, attrs: str) -> str:
        if key not in ids:
            ids[key] = f"n{len(ids)}"
            lines.append(f"  {ids[key]} [label={_dq(label)}, {attrs}];")
        return ids[key]

    for cloudpath, h in lin.volumes.items():
        node("v:" + cloudpath, f"{cloudpath}\n{timeline.summary_line(h)}",
             'shape=ellipse, style=filled, fillcolor="#FFFC87"')
    for key, reason in lin.external.items():
        node("v:" + key, f"{key}\n({cut(reason, 60)})" if reason != "source" else key,
             'shape=ellipse, style="filled,dashed", fillcolor="#FFFDE0"')
    for src, dst in dict.fromkeys(lin.edges):
        lines.append(f"  {ids['v:' + src]} -> {ids['v:' + dst]} [label=\"source of\"];")
    for cloudpath, h in lin.volumes.items():
        for p in h.processes:
            pid = node(f"p:{cloudpath}:{p.key}", f"{p.description}\n{process_summary(h, p.key)}{_problems(h, p.key)}",
                       'shape=box, style=filled, fillcolor="#9FB1FC"')
            lines.append(f"  {pid} -> {ids['v:' + cloudpath]} [label=\"generated\"];")
            for user in dict.fromkeys(r.user for r in h.runs_of(p.key) if r.user):
                agent = node("a:" + user, user, 'shape=house, style=filled, fillcolor="#FED37F"')
                lines.append(f"  {agent} -> {pid} [label=\"ran\", style=dashed];")
        for index, entry in enumerate(h.foreign):
            row = timeline._foreign_row(index, entry)
            fid = node(f"f:{cloudpath}:{index}", row.text, 'shape=box, style="filled,dashed", fillcolor="#DCE3FE"')
            lines.append(f"  {fid} -> {ids['v:' + cloudpath]} [label=\"generated\"];")
            if row.user:
                agent = node("a:" + row.user, row.user, 'shape=house, style=filled, fillcolor="#FED37F"')
                lines.append(f"  {agent} -> {fid} [label=\"ran\", style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- export
def export(volume: Any, format: str = "prov-json", upstream: bool = False, *, secrets: Any = None,
           progress: bool = False, any_source: bool = False) -> str:
    """The provenance of ``volume`` as ``prov-json``, ``prov-n``, ``dot`` or ``html`` text.

    ``upstream`` follows ``sources`` that are volumes with provenance, so the
    whole lineage across layers is in one document; only volumes on
    CloudVolume's protocols unless ``any_source`` (see ``lineage``). Text
    from the volumes is escaped for the format: HTML and DOT escape markup
    and make control characters visible, as PROV-N does; PROV-JSON escapes them.
    """
    fmt = format.lower()
    if fmt not in FORMATS:
        raise InvalidInputError(f"export format {format!r} is not one of {', '.join(FORMATS)}")
    if fmt.startswith("prov"):
        _load_prov()  # fail before reading anything
    lin = lineage(volume, upstream, secrets=secrets, progress=progress, any_source=any_source)
    if fmt == "dot":
        return to_dot(lin)
    if fmt == "html":
        return to_html(lin)
    doc = to_prov(lin)
    return json_text(doc.serialize(format="json", indent=2)) if fmt == "prov-json" else visible(doc.get_provn())
