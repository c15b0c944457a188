"""A local spool for records that could not reach their volume.

Once a user's code has run, losing its record is as bad as crashing it. So a
failed write lands here instead, with a warning that says where, and
``ptb flush`` (or ``ptb.flush()``) uploads it when the volume is back. This
module only keeps files: it knows no journal; ``ptb.store.writer`` spools and
replays.

The spool may sit on a filesystem other users share (``PTB_SPOOL_DIR``), and
``ptb flush`` writes what it finds there into volumes. So it is private and
validated: each volume's directory has an unpredictable name, mode 0700 and
files 0600 whatever the umask, and is used only when this user owns it; and
``objects`` offers for upload only journal and code-environment keys under
the volume's ``ptb/`` prefix, in files this user owns. Anything else (a
``provenance`` file, ``../`` in a name, another user's file) is reported and
kept, never uploaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets as _secrets
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote

from ..errors import warn

VOLUME_FILE = "volume.json"
# what flush may upload: a journal object or a code environment, directly under the volume's ptb/
UPLOADABLE = re.compile(r"^ptb/(journal|env)/[A-Za-z0-9][A-Za-z0-9._-]*\.json$")
_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{12}$")       # ``_atomic_write``'s temporary names


class SpoolWarning(UserWarning):
    """Records were kept locally because the volume could not be written."""


def spool_dir() -> Path:
    """``$PTB_SPOOL_DIR``, else ``~/.cache/ptb/spool``."""
    configured = os.environ.get("PTB_SPOOL_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptb" / "spool"


def _mine(path: Path, kind: int) -> bool:
    """Whether ``path`` is a file (``stat.S_IFREG``) or directory of ``kind``, not a link, owned by this user."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.getuid()


def _private(directory: Path) -> bool:
    """A spool directory this user owns, made 0700 if it was looser (one an older ptb made); False otherwise."""
    if not _mine(directory, stat.S_IFDIR):
        return False
    with contextlib.suppress(OSError):
        if os.lstat(directory).st_mode & 0o077:
            os.chmod(directory, 0o700)
    return True


def _cloudpath_of(directory: Path) -> Optional[str]:
    """The volume a spool directory was made for, from its marker; None if it is not one of ours."""
    marker = directory / VOLUME_FILE
    if not _private(directory) or not _mine(marker, stat.S_IFREG):
        return None
    try:
        cloudpath = json.loads(marker.read_text(encoding="utf-8"))["cloudpath"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cloudpath if isinstance(cloudpath, str) and "://" in cloudpath else None


def volumes() -> List[Tuple[str, Path]]:
    """(cloudpath, directory) of every volume with a spool directory of this user's, in a stable order.

    Directories of other users (even at the name this user's would have) are
    not ours to flush: they are left alone.
    """
    root = spool_dir()
    if not root.is_dir():
        return []
    found = [(_cloudpath_of(d), d) for d in sorted(root.iterdir())]
    return [(cloudpath, d) for cloudpath, d in found if cloudpath is not None]


def _volume_dir(cloudpath: str) -> Path:
    """This user's spool directory for ``cloudpath``: the existing one, else a new one (0700, unpredictable name)."""
    for known, directory in volumes():
        if known == cloudpath:
            return directory
    root = spool_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    prefix = hashlib.sha256(cloudpath.encode("utf-8")).hexdigest()[:16] + "-"
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=root))     # O_EXCL: never one someone made before us
    os.chmod(directory, 0o700)                                       # whatever the umask
    _atomic_write(directory / VOLUME_FILE, json.dumps({"cloudpath": cloudpath}))
    return directory


def _atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole, mode 0600 whatever the umask; the temporary file is removed whatever fails."""
    tmp = path.with_name(f".{path.name}.tmp-{_secrets.token_hex(6)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def spool(cloudpath: str, objects: Dict[str, Any], reason: str) -> Path:
    """Keep ``objects`` (volume-relative key -> JSON value) for a later flush."""
    directory = _volume_dir(cloudpath)
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
    """(cloudpath, number of spooled records) for every volume with something spooled (uploadable or kept)."""
    return [(cloudpath, sum(records_in_file(p) for p in _files(directory))) for cloudpath, directory in volumes()]


def _files(directory: Path) -> List[Path]:
    """Every file of a spool directory but its marker and the temporary files of a write under way."""
    return sorted(p for p in directory.iterdir() if p.name != VOLUME_FILE and not _TEMP.match(p.name))


def _refusal(path: Path) -> str:
    """Why ``path`` may not be uploaded ('' when it may)."""
    key = unquote(path.name)
    if not UPLOADABLE.match(key):
        return f"{key!r} is not a journal or code-environment key under the volume's ptb/"
    if not _mine(path, stat.S_IFREG):
        return "it is not a plain file of this user's"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return f"it cannot be read as JSON ({type(exc).__name__})"
    return "" if isinstance(obj, dict) else "it is not a JSON object"


def objects(directory: Path) -> List[Path]:
    """The spooled objects of one volume that ``flush`` may upload, oldest key first.

    Anything else is reported (a ``SpoolWarning`` naming it) and kept where
    it is, for a human to look at: it is never uploaded.
    """
    uploadable = []
    for path in _files(directory):
        why = _refusal(path)
        if why:
            warn(f"{path} is kept in the spool, not uploaded: {why}", SpoolWarning, stacklevel=3)
        else:
            uploadable.append(path)
    return sorted(uploadable, key=lambda p: unquote(p.name))   # journal keys sort in the order they were written


def kept() -> int:
    """How many spooled files ``flush`` will never upload (reported by ``objects``), over every volume."""
    return sum(1 for _, directory in volumes() for path in _files(directory) if _refusal(path))


def load(path: Path) -> Tuple[str, Any]:
    """(volume-relative key, JSON value) of one spooled object."""
    return unquote(path.name), json.loads(path.read_text(encoding="utf-8"))


def release(directory: Path) -> None:
    """Forget a volume whose every uploadable object was uploaded; one holding files kept stays as it is."""
    if _files(directory):
        return
    (directory / VOLUME_FILE).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()
