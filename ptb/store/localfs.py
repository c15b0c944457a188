"""file:// volumes as directories that others write to: no link followed, modes kept, temp files swept.

On a shared filesystem anyone with write access to a volume can put a symbolic
link where ptb reads or writes: a ``provenance`` link to a private file (which
a merge would copy into the volume), a ``ptb/journal`` link to another
volume's journal (which packing would empty), a ``ptb/view.lock`` link (which
opening would create). So every file of a ``file://`` volume is reached here,
one directory at a time from the volume's root, with ``O_NOFOLLOW``: a link
below the root is never followed, for reading or writing (the root itself is
the user's own path, links and all). Files are replaced by renaming a whole
new file into place, which keeps the mode (and group) of the file it
replaces, and ptb's own temporary files, left by a writer that was killed,
are swept once they are old.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from typing import Iterator, List, Optional, Tuple

from .bounded import MAX_INFLATED, Refused, inflate

# the suffixes CloudFiles gives compressed objects on file://, in the order it looks for them
EXTENSIONS: Tuple[Tuple[str, Optional[str]], ...] = (
    ("", None), (".gz", "gzip"), (".br", "br"), (".zstd", "zstd"), (".xz", "xz"), (".bz2", "bz2"))
TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{12}$")      # ptb's temporary files (``temp_name``), and nothing else
TEMP_MAX_AGE = 60.0                                 # seconds: older ones were left by a writer that died
_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW


class LinkRefused(OSError):
    """A symbolic link below a volume's root, where ptb reads or writes: ptb does not follow it."""

    def __init__(self, root: str, parts: List[str]) -> None:
        where = "/".join(parts)
        super().__init__(errno.ELOOP, f"{where} is a symbolic link (or not a plain file or directory) inside "
                                      f"the volume; ptb does not follow links it did not make",
                         os.path.join(root, *parts))


def temp_name(name: str) -> str:
    """A fresh temporary name beside ``name`` (a hidden file that listings skip)."""
    return f".{name}.tmp-{secrets.token_hex(6)}"


@contextlib.contextmanager
def directory(root: str, parts: List[str], create: bool = False) -> Iterator[int]:
    """An open descriptor of the directory ``parts`` below ``root``, no link followed; ``create`` makes it.

    Raises ``FileNotFoundError`` when it is absent (and not ``create``),
    ``LinkRefused`` for a link on the way, and what the filesystem says otherwise.
    """
    if create:
        os.makedirs(root, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for depth, part in enumerate(parts):
            try:
                inner = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                inner = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK) or _is_link(fd, part):
                    raise LinkRefused(root, parts[:depth + 1]) from None
                raise
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _is_link(fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _split(key: str) -> Tuple[List[str], str]:
    parts = key.split("/")
    return parts[:-1], parts[-1]


def open_file(root: str, key: str) -> Optional[int]:
    """A read-only descriptor of ``key`` itself (no compressed variant), None when absent; links refused."""
    parts, name = _split(key)
    try:
        with directory(root, parts) as fd:
            return _open_plain(fd, name, root, key)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _open_plain(fd: int, name: str, root: str, key: str) -> Optional[int]:
    try:
        found = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP or _is_link(fd, name):
            raise LinkRefused(root, key.split("/")) from None
        raise
    if not stat.S_ISREG(os.fstat(found).st_mode):    # a directory, a FIFO, a device
        os.close(found)
        raise LinkRefused(root, key.split("/"))
    return found


def read(root: str, key: str, limit: int = MAX_INFLATED) -> Optional[bytes]:
    """The bytes of ``key`` (or of its compressed variant, inflated with a bound); None when absent.

    ``Refused`` for a link or a bomb: the object is there, and ptb will not read it.
    """
    parts, name = _split(key)
    try:
        with directory(root, parts) as fd:
            for suffix, encoding in EXTENSIONS:
                found = _open_plain(fd, name + suffix, root, key + suffix)
                if found is not None:
                    with os.fdopen(found, "rb") as handle:
                        data = handle.read()
                    return inflate(data, encoding, limit)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except LinkRefused as exc:
        return Refused(exc.strerror or str(exc))
    return None


def write(root: str, key: str, data: bytes, exclusive: bool) -> bool:
    """Write whole or not at all (a temporary file renamed into place); True when written.

    ``exclusive``: create-only, False when the file exists. Otherwise an
    existing file is replaced, keeping its mode and group; a link there is
    refused (``LinkRefused``), never replaced or written through.
    """
    parts, name = _split(key)
    with directory(root, parts, create=True) as fd:
        tmp = temp_name(name)
        try:    # the temporary file is removed whatever fails, the write itself included (a full disk)
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                if not exclusive:
                    keep_mode(fd, name, out.fileno(), root, key)
            if not exclusive:
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
                return True
            try:
                os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)    # fails if the name exists: create-only
                return True
            except FileExistsError:
                return False
            except OSError:         # no hard links on this filesystem (some NFS and FUSE mounts)
                return _create_exclusive(fd, name, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=fd)


def keep_mode(fd: int, name: str, new: int, root: str, key: str) -> None:
    """Give the new file ``new`` the mode and group of the file ``name`` it will replace; refuse a link there.

    A file made group-writable for a lab stays so whatever the umask of the
    writer replacing it; the group is kept where the filesystem lets us.
    """
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise LinkRefused(root, key.split("/"))
    os.fchmod(new, stat.S_IMODE(st.st_mode))
    if os.fstat(new).st_gid != st.st_gid:
        with contextlib.suppress(OSError):    # not a member of that group
            os.fchown(new, -1, st.st_gid)


def _create_exclusive(fd: int, name: str, data: bytes) -> bool:
    """Create-only without a hard link: an exclusive create, removed again if the write fails.

    Used only for content-addressed files, where a reader that sees the file
    half-written (which the rename spares everyone else) reads it again later.
    """
    try:
        handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd)
    except FileExistsError:
        return False
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=fd)
        raise
    return True


def listdir(root: str, prefix: str) -> List[str]:
    """Keys of the files directly under the directory ``prefix`` (``ptb/journal/``), compression suffixes cut.

    Links are listed (reading one is refused by name); directories are not.
    A link on the way to ``prefix`` raises ``LinkRefused``; a file where a
    directory should be, ``NotADirectoryError`` (a damaged volume, said, never
    read as an empty one).
    """
    parts = [p for p in prefix.split("/") if p]
    try:
        with directory(root, parts) as fd:
            names = [entry.name for entry in os.scandir(fd) if not entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    base = "".join(p + "/" for p in parts)
    return sorted({base + _without_suffix(name) for name in names})


def _without_suffix(name: str) -> str:
    for suffix, _ in EXTENSIONS[1:]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def delete(root: str, key: str) -> None:
    """Remove ``key`` (or its compressed variant) if there; a link to it is removed, never what it points to."""
    parts, name = _split(key)
    try:
        with directory(root, parts) as fd:
            for suffix, _ in EXTENSIONS:
                try:
                    os.unlink(name + suffix, dir_fd=fd)
                    return
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return


def sweep(root: str, prefix: str, max_age: float = TEMP_MAX_AGE) -> int:
    """Remove ptb's own temporary files under ``prefix`` older than ``max_age`` seconds; returns how many.

    A writer killed between creating its temporary file and renaming it
    leaves one behind; nothing else ever would remove it.
    """
    parts = [p for p in prefix.split("/") if p]
    removed = 0
    try:
        with directory(root, parts) as fd:
            old = time.time() - max_age
            for entry in os.scandir(fd):
                if TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < old:
                            os.unlink(entry.name, dir_fd=fd)
                            removed += 1
    except OSError:          # absent, unreadable, a link: nothing of ours to sweep there
        return removed
    return removed


def open_lock(root: str, key: str) -> int:
    """A descriptor of the lock file ``key`` for ``flock``, created if absent; a link there is refused."""
    parts, name = _split(key)
    with directory(root, parts, create=True) as fd:
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP or _is_link(fd, name):
                raise LinkRefused(root, key.split("/")) from None
            raise
