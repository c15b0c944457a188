"""``ptb.export``: PROV that loads back with ``prov``, DOT that parses, a valid self-contained HTML page,
and lineage followed upstream across volumes."""
from __future__ import annotations

import html.parser
import json
import re
import sys
import xml.etree.ElementTree as ET

import pytest
import volumes
from prov.model import PROV, ProvActivity, ProvAgent, ProvDocument, ProvEntity
from test_report import SOURCE, documented_volume

import ptb
from ptb.errors import MissingDependencyError
from ptb.read import timeline
from ptb.read.export import FORMATS, export
from ptb.read.history import history
from ptb.read.lineage import lineage

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class WellFormed(html.parser.HTMLParser):
    """Fails on any unclosed, stray or mis-nested tag; collects timeline rows and external references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list = []
        self.errors: list = []
        self.rows: list = []
        self.doctype = False
        self.external: list = []
        self.tags: set = set()
        self._row = None
        self._cell = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        for name in ("src", "href"):
            if name in attrs and not str(attrs[name]).startswith("#"):
                self.external.append((tag, attrs[name]))
        if tag == "link" or (tag == "script" and "src" in attrs):
            self.external.append((tag, attrs))
        if tag == "tr" and "row" in (attrs.get("class") or "").split():
            self._row = {"class": attrs["class"], "cells": {}}
        if tag == "td" and self._row is not None:
            self._cell = attrs.get("class")
            self._row["cells"][self._cell] = ""
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._row is not None and self._cell is not None:
            self._row["cells"][self._cell] += data


def parse_html(text: str) -> WellFormed:
    checker = WellFormed()
    checker.feed(text)
    checker.close()
    assert checker.doctype, "no <!DOCTYPE html>"
    assert not checker.errors, checker.errors
    assert checker.stack == [], f"unclosed: {checker.stack}"
    assert checker.external == [], f"not self-contained: {checker.external}"
    assert "script" not in checker.tags
    svg = text[text.index("<svg"):text.index("</svg>") + len("</svg>")]
    ET.fromstring(svg)      # the picture is well-formed XML too
    try:
        import html5lib
    except ImportError:
        pass
    else:
        html5lib.HTMLParser(strict=True).parse(text)
    return checker


def records(doc: ProvDocument, kind: type) -> list:
    return [r for r in doc.get_records() if isinstance(r, kind)]


def label(record) -> str:
    return str(next(iter(record.get_attribute("prov:label"))))


@pytest.fixture
def ptb_volume(tmp_path, git_repo):
    path = f"file://{tmp_path / 'meshes'}"
    process, ids = documented_volume(path, repo=git_repo)
    ptb.addgeneric(path, 'odd "quotes", a back\\slash and <script>alert("x")</script>')
    return path, process, ids


# ------------------------------------------------------------------------ PROV
def test_prov_json_loads_back(ptb_volume):
    path, process, ids = ptb_volume
    text = export(path, "prov-json")
    doc = ProvDocument.deserialize(content=text, format="json")
    assert doc == ProvDocument.deserialize(content=export(path, "prov-json"), format="json")
    activities = records(doc, ProvActivity)
    assert sorted(str(a.identifier) for a in activities) == sorted(f"ptb:run-{i}" for i in ids)
    failed = next(a for a in activities if str(a.identifier) == f"ptb:run-{ids[1]}")
    assert list(failed.get_attribute("ptb:status")) == ["failed"]
    assert list(failed.get_attribute("ptb:error")) == ["ValueError: mip 7 does not exist"]
    entities = {label(e): e for e in records(doc, ProvEntity) if e.get_attribute("prov:label")}
    assert path in entities and SOURCE in entities
    plan = entities["meshing at 16x16x40"]
    assert PROV["Plan"] in plan.get_attribute("prov:type")
    assert json.loads(next(iter(plan.get_attribute("ptb:parameters")))) == {"mip": 2, "simplification": 40}
    agents = {label(a) for a in records(doc, ProvAgent)}
    assert {"alice", "lab/mesher:v1", "https://github.com/lab/pipeline.git"} <= agents
    data = json.loads(text)
    assert len(data["wasGeneratedBy"]) >= len(ids) and len(data["wasDerivedFrom"]) == 1
    assert len(data["wasAssociatedWith"]) == 3 * len(ids)        # alice and two code environments, per run
    notes = [e for e in records(doc, ProvEntity) if e.get_attribute("prov:value")]
    assert len(notes) == len(history(path).notes)


def test_prov_n(ptb_volume):
    path, _, ids = ptb_volume
    text = export(path, "prov-n")
    assert text.startswith("document") and text.rstrip().endswith("endDocument")
    assert f"activity(ptb:run-{ids[0]}, 2024-05-01T12:00:00+00:00" in text
    assert "wasDerivedFrom(" in text and "prefix ptb <urn:provenance-toolbox:>" in text


def test_prov_of_legacy_and_foreign_volumes(tmp_path):
    path = f"file://{tmp_path / 'foreign'}"
    volumes.make_legacy_volume(path)
    volumes.add_foreign_entries(path)
    doc = ProvDocument.deserialize(content=export(path, "prov-json"), format="json")
    labels = sorted(label(a) for a in records(doc, ProvActivity))
    assert labels == ["DownsampleTask (mip=0, num_mips=2)", "watershed segmentation", '{"note": "hand-fixed slab 3"}']
    agents = {label(a) for a in records(doc, ProvAgent)}
    assert {"alice@lab.org", "bob", "lab/segmenter:v3", "https://github.com/lab/pipeline.git"} <= agents
    notes = sorted(next(iter(e.get_attribute("prov:value"))) for e in records(doc, ProvEntity)
                   if e.get_attribute("prov:value"))
    assert notes == sorted(text for _, _, text in volumes.LEGACY_NOTES)


def test_a_missing_prov_package_says_which_extra_to_install(ptb_volume, monkeypatch):
    path, _, _ = ptb_volume
    monkeypatch.setitem(sys.modules, "prov", None)       # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install provenance-toolbox\[prov\]") as info:
        export(path, "prov-json")
    assert isinstance(info.value, ptb.ProvenanceError) and isinstance(info.value, ImportError)
    assert export(path, "dot").startswith("digraph")         # dot and html need no prov
    parse_html(export(path, "html"))


def test_unknown_format():
    with pytest.raises(ptb.InvalidInputError, match="prov-json, prov-n, dot, html"):
        export("mem://x/y", "pdf")
    assert FORMATS == ("prov-json", "prov-n", "dot", "html")


# ------------------------------------------------------------------------- DOT
def test_dot_parses_and_escapes(ptb_volume, tmp_path):
    import pydot

    path, process, _ = ptb_volume
    ptb.logprocess(path, ptb.Process('say "hi" \\ bye', {"a": 1}))
    text = export(path, "dot")
    (graph,) = pydot.graph_from_dot_data(text)
    labels = [n.get_label() for n in graph.get_nodes() if n.get_label()]
    assert any(path in lbl for lbl in labels) and any(SOURCE in lbl for lbl in labels)
    assert any('say \\"hi\\" \\\\ bye' in lbl for lbl in labels)
    assert any("3 runs: 1 succeeded, 1 failed, 1 never finished" in lbl for lbl in labels)
    assert len(graph.get_edges()) == 4          # source, two processes, alice


# ------------------------------------------------------------------------ HTML
def test_html_is_valid_self_contained_and_shows_the_timeline(ptb_volume):
    path, process, ids = ptb_volume
    text = export(path, "html")
    page = parse_html(text)
    h = history(path)
    rows = timeline.timeline(h)
    assert len(page.rows) == len(rows)
    assert [r["cells"]["text"].split("\n")[0] for r in page.rows] == [r.text.split("\n")[0] for r in rows]
    failed = next(r for r in page.rows if "status-failed" in r["class"])
    assert failed["cells"]["status"] == "failed after 3.2 min" and "ValueError" in failed["cells"]["text"]
    assert any(r["cells"]["status"] == "never finished (worker died?)" for r in page.rows)
    assert '<script>alert("x")</script>' not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "properly documented" in text and f"process-{process.key}" in text
    assert "<svg" in text and "meshing at 16x16x40" in text[text.index("<svg"):text.index("</svg>")]


def test_html_reads_cleanly(ptb_volume):
    """Timestamps on one line, labelled parameters, booleans spelled as the CLI spells them."""
    path, process, _ = ptb_volume
    text = export(path, "html")
    css = text[text.index("<style>"):text.index("</style>")]
    assert re.search(r"td\.time[^{]*\{[^}]*white-space:nowrap", css)
    article = text[text.index(f'id="process-{process.key}"'):]
    assert re.search(r'<p class="label">Parameters</p><pre>\{\s+&quot;mip&quot;: 2', article)
    assert "dirty: false" in article and "False" not in article


def test_html_of_legacy_and_foreign_volumes(tmp_path):
    path = f"file://{tmp_path / 'legacy'}"
    volumes.make_legacy_volume(path)
    page = parse_html(export(path, "html"))
    assert len(page.rows) == 4
    assert "incompletely documented" in export(path, "html")       # no sources yet
    volumes.add_foreign_entries(path)
    text = export(path, "html")
    page = parse_html(text)
    assert len(page.rows) == 6 and sum("kind-foreign" in r["class"] for r in page.rows) == 2
    assert "DownsampleTask" in text and "alice@lab.org" in text and "[0.1.x]" in text


def test_html_on_every_protocol(cloudpath):
    documented_volume(cloudpath)
    page = parse_html(export(cloudpath, "html"))
    assert len(page.rows) == len(timeline.timeline(history(cloudpath)))


# -------------------------------------------------------------------- upstream
@pytest.fixture
def layers(tmp_path):
    """raw <- seg <- mesh, mesh also straight from raw, plus a cycle, free text and a missing volume."""
    paths = {name: f"file://{tmp_path / name}" for name in ("raw", "seg", "mesh", "nothing")}
    sources = {"raw": ["acquired on the Zeiss, 2021", paths["mesh"]],           # a (wrong) cycle
               "seg": [f"precomputed://{paths['raw']}"],
               "mesh": [paths["seg"], paths["raw"], paths["nothing"]]}
    for name in ("raw", "seg", "mesh"):
        documented_volume(paths[name], sources=sources[name], runs=name != "raw")
    return paths


def test_lineage_follows_sources_that_are_volumes(layers):
    lin = lineage(layers["mesh"], upstream=True)
    assert list(lin.volumes) == [layers["mesh"], layers["seg"], layers["raw"]]
    assert lin.external == {layers["nothing"]: "not followed: a local directory that holds no volume (--any-source "
                                               "follows it)", "acquired on the Zeiss, 2021": "not a cloudpath"}
    assert lineage(layers["mesh"], upstream=True, any_source=True).external == {
        layers["nothing"]: "no provenance found", "acquired on the Zeiss, 2021": "not a cloudpath"}
    assert (layers["raw"], layers["seg"]) in lin.edges and (layers["mesh"], layers["raw"]) in lin.edges
    depths = lin.depths()
    assert depths[layers["mesh"]] == 0 and depths[layers["seg"]] == 1 and depths[layers["raw"]] == 2
    alone = lineage(layers["mesh"])             # not following: every source is just named
    assert list(alone.volumes) == [layers["mesh"]]
    assert alone.external == {layers[name]: "source" for name in ("seg", "raw", "nothing")}


def test_upstream_prov_connects_the_layers(layers):
    doc = ProvDocument.deserialize(content=export(layers["mesh"], "prov-json", upstream=True), format="json")
    volumes_seen = {label(e) for e in records(doc, ProvEntity)
                    if e.get_attribute("prov:type") and "ptb:Volume" in {str(t) for t in e.get_attribute("prov:type")}}
    assert volumes_seen == {layers["mesh"], layers["seg"], layers["raw"]}
    derived = json.loads(export(layers["mesh"], "prov-json", upstream=True))["wasDerivedFrom"]
    assert len(derived) == 6


def test_upstream_dot_and_html(layers):
    import pydot

    (graph,) = pydot.graph_from_dot_data(export(layers["mesh"], "dot", upstream=True))
    assert sum("source of" in str(e.get_label()) for e in graph.get_edges()) == 6
    text = export(layers["mesh"], "html", upstream=True)
    parse_html(text)
    assert text.count('<section class="upstream">') == 2
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert svg.count('<g class="node') == 5 and svg.count('class="edge"') == 6
    for path in (layers["seg"], layers["raw"], layers["nothing"]):
        assert f"<title>{path}</title>" in svg


def test_reading_a_lineage_shows_progress_when_asked(layers, capsys):
    lineage(layers["mesh"], upstream=True, progress=True)
    err = capsys.readouterr().err
    assert "Reading lineage" in err and "3/3" in err     # "nothing" holds no volume: not read
    lineage(layers["mesh"], upstream=True)
    assert capsys.readouterr().err == ""
