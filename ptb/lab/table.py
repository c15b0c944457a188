"""Text tables for the lab's commands, with volume text made safe for a terminal.

Descriptions, hosts and errors come from volumes other people wrote: control
characters (ESC, BEL, a bare CR) are shown as escapes, never sent to the
terminal raw. ``--json`` keeps them exact.
"""
from __future__ import annotations

from typing import List, Sequence


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> List[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in [header, *rows]]


