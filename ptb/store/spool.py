"""A local spool for records that could not reach their volume.

Once a user's code has run, losing its record is as bad as crashing it. So a
failed write lands here instead, with a warning that says where, and
``ptb flush`` (or ``ptb.flush()``) uploads it when the volume is back. This
module only keeps files: it knows no journal; ``ptb.store.writer`` spools and
replays.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets as _secrets
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import quote, unquote

from ..errors import warn

VOLUME_FILE = "volume.json"


class SpoolWarning(UserWarning):
    """Records were kept locally because the volume could not be written."""


def spool_dir() -> Path:
    """``$PTB_SPOOL_DIR``, else ``~/.cache/ptb/spool``."""
    configured = os.environ.get("PTB_SPOOL_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptb" / "spool"


def _volume_dir(cloudpath: str) -> Path:
    return spool_dir() / hashlib.sha256(cloudpath.encode("utf-8")).hexdigest()[:16]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{_secrets.token_hex(6)}")
    try:    # removed whatever fails, the write itself included (a full disk)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def spool(cloudpath: str, objects: Dict[str, Any], reason: str) -> Path:
    """Keep ``objects`` (volume-relative key -> JSON value) for a later flush."""
    directory = _volume_dir(cloudpath)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / VOLUME_FILE
    if not marker.exists():
        _atomic_write(marker, json.dumps({"cloudpath": cloudpath}))
    for key, obj in objects.items():
        _atomic_write(directory / quote(key, safe=""), json.dumps(obj, ensure_ascii=False))
    warn(
        f"ptb could not write {sum(map(records_in, objects.values()))} record(s) to {cloudpath} ({reason}). "
        f"They are kept in {directory}; run `ptb flush` when the volume is reachable again.",
        SpoolWarning,
        stacklevel=3,
    )
    return directory


def records_in(obj: Any) -> int:
    """How many records a spooled object holds (a batch of a run's start or end holds several)."""
    return len(obj["records"]) if isinstance(obj, dict) and isinstance(obj.get("records"), list) else 1


def records_in_file(path: Path) -> int:
    try:
        return records_in(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):   # unreadable: flush reports it; it still counts as something kept
        return 1


def pending() -> List[Tuple[str, int]]:
    """(cloudpath, number of spooled records) for every volume with something spooled."""
    root = spool_dir()
    if not root.is_dir():
        return []
    found = []
    for directory in sorted(root.iterdir()):
        marker = directory / VOLUME_FILE
        if marker.is_file():
            count = sum(records_in_file(p) for p in directory.iterdir() if _is_object(p))
            found.append((json.loads(marker.read_text())["cloudpath"], count))
    return found


def _is_object(path: Path) -> bool:
    return path.name != VOLUME_FILE and not path.name.startswith(".")


def volumes() -> List[Tuple[str, Path]]:
    """(cloudpath, directory) of every volume with a spool directory, in a stable order."""
    root = spool_dir()
    directories = [d for d in sorted(root.iterdir()) if (d / VOLUME_FILE).is_file()] if root.is_dir() else []
    return [(json.loads((d / VOLUME_FILE).read_text())["cloudpath"], d) for d in directories]


def objects(directory: Path) -> List[Path]:
    """The spooled objects of one volume, oldest key first (journal keys sort in the order they were written)."""
    return sorted(p for p in directory.iterdir() if _is_object(p))


def load(path: Path) -> Tuple[str, Any]:
    """(volume-relative key, JSON value) of one spooled object."""
    return unquote(path.name), json.loads(path.read_text(encoding="utf-8"))


def release(directory: Path) -> None:
    """Forget a volume whose every object was uploaded."""
    (directory / VOLUME_FILE).unlink()
    try:
        directory.rmdir()
    except OSError:
        pass
