"""A volume's lineage: its history and, ``upstream``, the histories of the volumes it was made from.

Each volume in ``sources`` that is itself a volume with provenance is read in
turn (breadth first, each once), so ``export`` and the HTML page can draw the
lineage across layers.
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


def lineage(volume: Any, upstream: bool = False, *, secrets: Any = None, progress: bool = False) -> Lineage:
    """Read ``volume`` and, with ``upstream``, every source that is a volume with provenance, recursively."""
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
