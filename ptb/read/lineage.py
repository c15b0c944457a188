"""A volume's lineage: its history and, ``upstream``, the histories of the volumes it was made from.

Each volume in ``sources`` that is itself a volume with provenance is read in
turn (breadth first, each once), so ``export`` and the HTML page can draw the
lineage across layers.

A source is whatever address the volume's writer put there, and reading it
is a request to that address with the reader's credentials. So only volumes
are followed: on ``gs://``, ``s3://`` (AWS, or an endpoint the user
registered as a CloudFiles alias), ``mem://``, and ``file://`` directories
that hold a volume (an ``info`` file). A plain ``http(s)://`` address, an S3
endpoint named in the source itself, or a local directory that is not a
volume is drawn but not read, unless the caller opts in (``any_source``).
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Dict, Iterator, List, Set, Tuple

from ..errors import InvalidInputError, ProvenanceError
from ..store.volume import Volume
from .history import History, history

__all__ = ["Lineage", "lineage", "source_key"]


@dataclasses.dataclass
class Lineage:
    """The volumes read (root first), the sources not read (with why), and source -> volume edges."""

    root: str
    volumes: Dict[str, History]
    external: Dict[str, str]
    edges: List[Tuple[str, str]]

    def depths(self) -> Dict[str, int]:
        """Each node's layer: its longest distance from the root along source edges, cycles broken."""
        sources_of: Dict[str, List[str]] = {}
        for src, dst in dict.fromkeys(self.edges):
            sources_of.setdefault(dst, []).append(src)
        back: Set[Tuple[str, str]] = set()
        order: List[str] = []
        state = {self.root: 1}
        stack: List[Tuple[str, Iterator[str]]] = [(self.root, iter(sources_of.get(self.root, ())))]
        while stack:     # depth-first: an edge to a node still on the stack closes a cycle
            node, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[node] = 2
                order.append(node)
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((nxt, node))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sources_of.get(nxt, ()))))
        depth = {self.root: 0}
        for node in reversed(order):      # reverse post-order: every target before its sources
            for src in sources_of.get(node, ()):
                if (src, node) not in back:
                    depth[src] = max(depth.get(src, 0), depth[node] + 1)
        return depth


def source_key(source: Any) -> str:
    """A source as a node name: cloudpaths normalised as ``Volume`` does, anything else as text."""
    text = str(source).strip()
    if "://" in text:
        try:
            return Volume.resolve(text).cloudpath
        except InvalidInputError:
            pass
    return text


FOLLOWED = ("gs", "s3", "mem", "file")


def unfollowed(key: str) -> str:
    """Why ``upstream`` does not read the source ``key`` unless asked to ('' when it is a volume to follow)."""
    from cloudfiles import paths

    try:
        where = paths.extract(key)
    except Exception:
        return "not a cloudpath"
    if where.protocol not in FOLLOWED or (where.host and not where.alias):
        return (f"not followed: {where.protocol}:// at an address the volume names is not a volume protocol "
                f"(--any-source follows it)")
    if where.protocol == "file" and not Volume.resolve(key).has_info():
        return "not followed: a local directory that holds no volume (--any-source follows it)"
    return ""


def lineage(volume: Any, upstream: bool = False, *, secrets: Any = None, progress: bool = False,
            any_source: bool = False) -> Lineage:
    """Read ``volume`` and, with ``upstream``, every source that is a volume with provenance, recursively.

    Sources that are not volumes on CloudVolume's protocols (see above) are
    not read unless ``any_source``.
    """
    from tqdm import tqdm

    root = history(volume, secrets)
    lin = Lineage(root.cloudpath, {root.cloudpath: root}, {}, [])
    queue = deque([root])
    with tqdm(total=1, desc="Reading lineage", unit="volume", disable=not progress) as bar:
        bar.update(1)
        while queue:
            h = queue.popleft()
            for key in dict.fromkeys(source_key(s) for s in h.sources if str(s).strip()):
                lin.edges.append((key, h.cloudpath))
                if key in lin.volumes or key in lin.external:
                    continue
                if not upstream:
                    lin.external[key] = "source"
                    continue
                if "://" not in key:
                    lin.external[key] = "not a cloudpath"
                    continue
                refused = "" if any_source else unfollowed(key)
                if refused:
                    lin.external[key] = refused
                    continue
                bar.total += 1
                bar.refresh()
                try:
                    upper = history(key, secrets)
                except ProvenanceError as exc:
                    lin.external[key] = f"unreadable: {exc}"
                else:
                    if upper.provenance or upper.processes or upper.notes or upper.runs:
                        lin.volumes[key] = upper
                        queue.append(upper)
                    else:
                        lin.external[key] = "no provenance found"
                bar.update(1)
    return lin
