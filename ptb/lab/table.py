"""Text tables for the lab's commands, with volume text made safe for a terminal.

Descriptions, hosts and errors come from volumes other people wrote: control
characters (ESC, BEL, a bare CR) are shown as escapes, never sent to the
terminal raw. ``--json`` keeps them exact.
"""
from __future__ import annotations

import re
from typing import List, Sequence

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: object, limit: int = 0) -> str:
    """``text`` on one line with control characters escaped (``\\x1b``), cut at ``limit`` characters (0: not cut)."""
    out = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
    return out if not limit or len(out) <= limit else out[: limit - 1] + "…"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> List[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in [header, *rows]]


def plural(n: int, word: str, many: str = "") -> str:
    """``1 volume``, ``2,000 volumes``, ``3 processes``."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
