"""Text from a volume, made safe to show: control characters visible, never executed.

Anyone who can write to a volume chooses the notes, descriptions, parameter
names, user names and object keys that ptb prints. An escape sequence among
them would be run by the reader's terminal (OSC 52 writes the clipboard, OSC 0
the window title, CSI 2J clears the screen, a bare CR overwrites a line). So
every text ptb shows on a terminal or in a warning goes through ``visible``,
which spells such characters out (``\\x1b``) instead. Machine output keeps the
exact value: ``json_text`` only writes those characters as JSON escapes.
"""
from __future__ import annotations

import re

__all__ = ["visible", "json_text"]

# C0 controls but tab and newline, a CR not followed by LF, DEL, C1 controls (8-bit CSI, OSC, ...),
# and the Unicode controls that reorder or hide text (bidirectional overrides, line separators)
_HIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_HIDDEN}]|\r(?!\n)")
_JSON_CONTROL = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _spelled(match: re.Match) -> str:
    code = ord(match.group())
    if code == 0x0D:
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character spelled out (``\\x1b``, ``\\r``, ``\\u202e``); tabs and newlines kept."""
    if not isinstance(text, str):
        text = str(text)
    return _CONTROL.sub(_spelled, text) if _CONTROL.search(text) else text


def json_text(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL, C1 and bidi controls as ``\\u`` escapes.

    JSON already escapes the other controls. These characters can only occur
    inside JSON strings, where the escape stands for the same character, so
    the value a script reads back is exact.
    """
    return _JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
