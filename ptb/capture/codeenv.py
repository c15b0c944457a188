"""A code environment and its content address.

An environment is a small JSON document without timestamps, stored once per
volume under a content-addressed name (``ptb/env/<kind>-<name>-<hash>.json``),
so identical environments are shared and different ones never overwrite each
other. The keys and value shapes of provenance-toolbox 0.1.x (``CodeEnv type``,
``name``, ``commit hash``, ``diff``, ``packages``, ``image name``, ``tag``,
``image ID``) are kept; the rest is added. The kinds are in ``git``,
``docker`` and ``source``; ``env.capture`` takes them for a run.
"""
from __future__ import annotations

import abc
import functools
import importlib.metadata
import json
import os
import platform
import re
from typing import Any, Dict, List, Optional, Tuple

from ..records import content_hash

__all__ = ["CodeEnv", "installed_packages", "file_stat", "read_text", "bounded_text", "platform_text", "MAX_TEXT"]

MAX_TEXT = 256 * 1024      # bytes of diff or source kept in one environment file


def bounded_text(data: bytes, total: int, what: str) -> str:
    """``data`` as text, at most ``MAX_TEXT`` bytes of it, saying how much of ``total`` was cut."""
    text = data[:MAX_TEXT].decode("utf-8", "replace")
    if total > MAX_TEXT:
        text += f"\n... [{what} truncated: {total - MAX_TEXT} bytes]"
    return text



def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name or "")[:60] or "unnamed"


@functools.cache
def platform_text() -> str:
    return platform.platform()


@functools.cache
def _packages() -> Tuple[Tuple[str, str], ...]:
    found = set()
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"]
            if name:
                found.add((str(name), str(dist.version or "")))
        except Exception:  # a broken distribution must not break capture
            continue
    return tuple(sorted(found, key=lambda p: (p[0].lower(), p[0], p[1])))


def installed_packages() -> List[Tuple[str, str]]:
    """Installed distributions as sorted ``(name, version)`` pairs, read once per process.

    Uses ``importlib.metadata`` (``pkg_resources`` is deprecated and slow).
    """
    return list(_packages())


class CodeEnv(abc.ABC):
    """A code environment; subclasses say what ``contents()`` holds."""

    kind: str = "CodeEnv"
    name: str = ""

    @abc.abstractmethod
    def contents(self) -> Dict[str, Any]:
        """JSON-safe description, without timestamps: the same environment gives the same dict."""

    @property
    def packagelist(self) -> List[Tuple[str, str]]:
        return installed_packages()

    def _hash(self) -> str:
        return content_hash(self.contents())

    @property
    def filename(self) -> str:
        """Content-addressed path relative to the volume, e.g. ``ptb/env/Docker-img-<hash>.json``."""
        return f"ptb/env/{self.kind}-{_safe_name(self.name)}-{self._hash()}.json"

    def log(self) -> Tuple[str, str]:
        """``(filename, JSON text of contents)``, as 0.1.x returned it."""
        return self.filename, json.dumps(self.contents(), sort_keys=True)



def file_stat(path: str) -> Optional[Tuple[int, int, int]]:
    """(mtime ns, size, inode) of ``path``, ``None`` when it is absent: what changes when a file does."""
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, ValueError):
        return None



def read_text(path: str) -> Optional[str]:
    """A small file's text, stripped; ``None`` when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None
