"""Where records go: a volume reached through CloudFiles.

Everything ptb reads or writes on a volume passes through ``Volume``, so that
``file://``, ``mem://``, ``gs://``, ``s3://`` and CloudFiles aliases behave
alike. Added to what CloudFiles gives: a ``file://`` put that a concurrent
reader (or a SIGKILL) can never see half-written, create-only writes for
content-addressed files, and reading as untrusted input: keys stay inside the
volume, compressed objects inflate only up to a bound (``bounded``), and on
``file://`` no link below the volume's root is followed (``localfs``).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Set

from ..errors import BUGS, InvalidInputError, VolumeUnavailableError, warn
from . import localfs, probe
from .bounded import MAX_INFLATED, RefusedWarning, inflate, loads
from .provfile import PROVENANCE, dumps, parse_provenance, read_parsed  # noqa: F401 (also imported from here)

_FORMAT_PREFIXES = ("precomputed://", "graphene://", "n5://", "zarr://", "zarr2://", "zarr3://")


def as_cloudpath(path: str) -> str:
    """A cloudpath as it is; a local directory as an absolute ``file://`` cloudpath (``cloudfiles.paths.normalize``)."""
    if "://" in path:
        return path
    from cloudfiles import paths

    return str(paths.normalize(path))


def is_local_path(text: str) -> bool:
    """A local directory written as one: absolute (``/data/v``) or plainly relative (``./v``, ``../v``,
    ``~/v``). ``v`` or ``data/v`` are not: more often a mistyped parameter name, a source's description or a
    cloudpath missing a slash (``gs:/bucket``) than a directory."""
    return text.startswith(("/", "./", "../", "~", os.sep, "." + os.sep, ".." + os.sep))


class Volume:
    """A volume's storage, resolved once from a CloudVolume or a cloudpath."""

    def __init__(self, cloudpath: str, cloudvolume: Any = None, secrets: Any = None):
        self.cloudpath = cloudpath
        self.cloudvolume = cloudvolume
        self.secrets = secrets
        self._cf: Any = None
        self._root: Optional[str] = None

    @classmethod
    def resolve(cls, target: Any, secrets: Any = None) -> Volume:
        if isinstance(target, Volume):
            return target
        if isinstance(target, str):
            if "://" not in target and is_local_path(target):
                target = as_cloudpath(target)       # as the command line takes it
            if "://" not in target:
                raise InvalidInputError(
                    f"{target!r} is not a cloudpath: a volume is a CloudVolume or a path such as "
                    f"file:///data/layer, gs://bucket/layer, s3://bucket/layer or a local ./layer or /data/layer"
                )
            return cls(_strip_format(target.rstrip("/")), secrets=secrets)
        cloudpath = getattr(target, "cloudpath", None)
        if isinstance(cloudpath, str) and "://" in cloudpath:
            config = getattr(getattr(target, "meta", None), "config", None)
            return cls(_strip_format(cloudpath.rstrip("/")), target, secrets or getattr(config, "secrets", None))
        raise InvalidInputError(
            f"cannot log provenance to a {type(target).__name__}: give a CloudVolume or a cloudpath (str with '://')"
        )

    def __repr__(self) -> str:
        return f"Volume({self.cloudpath!r})"

    @property
    def cf(self) -> Any:
        if self._cf is None:
            from cloudfiles import CloudFiles

            try:
                self._cf = CloudFiles(self.cloudpath, secrets=self.secrets, progress=False)
            except BUGS:
                raise
            except Exception as exc:
                raise VolumeUnavailableError(f"cannot open {self.cloudpath}: {exc}") from exc
        return self._cf

    @property
    def protocol(self) -> str:
        return str(self.cf.protocol)

    @property
    def local_root(self) -> str:
        """The directory of a ``file://`` volume."""
        if self._root is None:
            from cloudfiles import paths

            self._root = str(paths.asfilepath(paths.extract(self.cloudpath)))
        return self._root

    def local_path(self, key: str) -> str:
        """The local file of ``key`` on a ``file://`` volume."""
        return os.path.join(self.local_root, *self.checked(key).split("/"))

    def checked(self, key: str) -> str:
        """``key`` if it names an object inside this volume; ``InvalidInputError`` otherwise.

        Keys come from records and spools that others may have written:
        ``../``, an absolute path or an empty segment would reach outside the
        volume's own tree (on ``file://``, another directory of the machine).
        """
        if not inside(key):
            raise InvalidInputError(f"{key!r} is not a key inside {self.cloudpath} (absolute, with '..' or '.' "
                                    f"or an empty segment): ptb reads and writes only inside a volume")
        return key

    def put_json(self, key: str, obj: Any) -> None:
        """Write whole or not at all."""
        text = obj if isinstance(obj, str) else dumps(obj)
        if self.protocol == "file":
            localfs.write(self.local_root, self.checked(key), text.encode("utf-8"), exclusive=False)
        else:
            self.cf.put(self.checked(key), text.encode("utf-8"), content_type="application/json",
                        cache_control="no-cache", compress=None)

    def put_bytes(self, key: str, data: bytes) -> None:
        """A plain put, for protocols without files (``mem://``)."""
        self.cf.put(self.checked(key), data, content_type="application/json", cache_control="no-cache",
                    compress=None)

    def put_json_if_absent(self, key: str, obj: Any) -> bool:
        """Create-only write; True when this call created the object.

        Only used for content-addressed keys, where two writers racing past the
        check write the same bytes, so a plain put after a read is safe.
        """
        text = obj if isinstance(obj, str) else dumps(obj)
        if self.protocol == "file":
            return localfs.write(self.local_root, self.checked(key), text.encode("utf-8"), exclusive=True)
        if self.get_bytes(key) is not None:
            return False
        self.cf.put(self.checked(key), text.encode("utf-8"), content_type="application/json",
                    cache_control="no-cache", compress=None)
        return True

    def get_bytes(self, key: str, limit: int = MAX_INFLATED) -> Optional[bytes]:
        """The object's bytes, None when absent; ``bounded.Refused`` for one ptb will not read.

        A compressed object (another tool's: ptb never compresses) is inflated
        up to ``limit`` bytes; on ``file://`` a link is not followed.
        """
        self.checked(key)
        try:
            if self.protocol == "file":
                return localfs.read(self.local_root, key, limit)
            found = self.cf.get([key], raw=True)[0]
        except BUGS:
            raise
        except Exception as exc:
            raise VolumeUnavailableError(f"cannot read {self.cloudpath}/{key}: {exc}") from exc
        return None if found["content"] is None else inflate(found["content"], found.get("compress"), limit)

    def get_text(self, key: str) -> Optional[str]:
        data = self.get_bytes(key)
        return None if data is None else data.decode("utf-8", errors="replace")

    def get_json(self, key: str) -> Any:
        """The object parsed, None when absent; ``bounded.Unreadable`` (a ``ValueError``) when ptb will not read it."""
        data = self.get_bytes(key)
        return None if data is None else loads(data)

    def get_many(self, keys: Iterable[str], progress: bool = False,
                 limit: int = MAX_INFLATED) -> Dict[str, Optional[bytes]]:
        """Fetch many objects in parallel; absent ones map to None, refused ones to ``bounded.Refused``."""
        keys = [self.checked(key) for key in keys]
        if not keys:
            return {}
        if self.protocol == "file" or (self.protocol == "mem" and not progress):
            # local reads are fast; CloudFiles' thread pool adds ~0.1 s of polling to any batch
            from tqdm import tqdm

            return {key: self.get_bytes(key, limit) for key in tqdm(keys, desc="Downloading", disable=not progress)}
        try:
            results = self.cf.get(keys, progress=progress, raw=True)
        except BUGS:
            raise
        except Exception as exc:
            raise VolumeUnavailableError(f"cannot read {len(keys)} objects under {self.cloudpath}: {exc}") from exc
        return {item["path"]: (None if item.get("error") or item["content"] is None
                               else inflate(item["content"], item.get("compress"), limit))
                for item in results}

    def list(self, prefix: str) -> List[str]:
        """Keys under ``prefix`` (relative to the volume), temp files left out.

        On ``file://``, a directory reached through a link is not listed (a
        warning names it): ``ptb/journal`` linked to another volume's journal
        must not be read as this one's, nor packed away from it.
        """
        try:
            if self.protocol == "file":
                keys = localfs.listdir(self.local_root, prefix)
            else:
                keys = list(self.cf.list(prefix=prefix, flat=True))
        except localfs.LinkRefused as exc:
            warn(f"not reading {self.cloudpath}/{prefix}: {exc.strerror}", RefusedWarning, stacklevel=3)
            return []
        except FileNotFoundError:  # file:// lists a missing directory by raising
            return []
        except BUGS:
            raise
        except Exception as exc:
            raise VolumeUnavailableError(f"cannot list {self.cloudpath}/{prefix}: {exc}") from exc
        keys = [k for k in keys if k.endswith(".json") and not os.path.basename(k).startswith(".")]
        for key in [k for k in keys if not inside(k)]:
            warn(f"not reading {self.cloudpath}/{key}: not a plain key (absolute, with '..' or '.' or an empty "
                 f"segment)", RefusedWarning, stacklevel=3)
            keys.remove(key)
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        keys = [self.checked(key) for key in keys]
        if not keys:
            return
        if self.protocol == "file":
            for key in keys:
                localfs.delete(self.local_root, key)
            return
        if self.protocol == "gs":
            # CloudFiles deletes on GCS through the batch API, which emulators
            # (and some proxies) do not answer; one request per key works everywhere.
            with self.cf._get_connection() as conn:
                for key in keys:
                    conn.delete_file(key)
            return
        self.cf.delete(keys)

    def sweep(self, prefix: str) -> None:
        """Remove ptb's own temporary files that a killed writer left under ``prefix`` (``file://`` only)."""
        if self.protocol == "file":
            localfs.sweep(self.local_root, prefix)

    def read_provenance(self) -> Optional[Dict[str, Any]]:
        """The ``provenance`` file, None when absent; corrupt (invalid for about a second) raises."""
        return read_parsed(lambda: (self.get_bytes(PROVENANCE), None), self.cloudpath)[0]

    def has_info(self) -> bool:
        """Whether a volume is there: an ``info`` file (or a zarr/n5 one). Raises when unreachable.

        A path without one is mistyped, or a volume its step has yet to
        create. On object stores a volume seen once is not asked again; a
        local one is a stat, so a directory deleted mid-run is noticed.
        """
        if self.protocol == "file":
            return any(os.path.exists(self.local_path(m)) for m in VOLUME_FILES)
        if self.cloudpath in _volumes_seen:
            return True
        try:
            found = any(self.cf.size(m) is not None for m in VOLUME_FILES)   # `exists` batches: emulators refuse
        except BUGS:
            raise
        except Exception as exc:
            raise VolumeUnavailableError(f"cannot reach {self.cloudpath}: {exc}") from exc
        if found:
            if len(_volumes_seen) > 1024:
                _volumes_seen.clear()
            _volumes_seen.add(self.cloudpath)
        return found

    def require_volume(self) -> None:
        """Refuse (``VolumeUnavailableError``) a path where there is no volume, before writing anything."""
        probe.check(self.cloudpath, self.secrets)
        if not self.has_info():
            raise VolumeUnavailableError(f"{self.cloudpath} is not a volume: it has no info file (is the path "
                                         f"right?). Nothing was written.")

    def check_readable(self) -> None:
        """Fail before any user code runs if the volume is unreachable or its provenance corrupt.

        Runs on every documented call, so it must not cost O(view): one size
        request (a ``stat`` on ``file://``), and the file is parsed again only
        when it changed (``stamp``). On object stores, not even that within
        ``TRUSTED_SECONDS`` of this process writing the view itself: a worker's
        next chunk call saves a round trip, and its entry write still fails at
        once if the store is unreachable.
        """
        if self.protocol not in ("file", "mem") and time.monotonic() < _trusted_until.get(self.cloudpath, 0.0):
            return
        probe.check(self.cloudpath, self.secrets)     # once per process: a wrong key, no bucket, fail fast
        try:
            stamp = self.stamp()
        except BUGS:
            raise
        except Exception as exc:
            raise VolumeUnavailableError(f"cannot reach {self.cloudpath}: {exc}") from exc
        if stamp is None or _checked_sizes.get(self.cloudpath) == stamp:
            return
        self.read_provenance()
        if len(_checked_sizes) > 1024:
            _checked_sizes.clear()
        _checked_sizes[self.cloudpath] = stamp

    def stamp(self) -> Any:
        """What tells the ``provenance`` file changed: its size, and on ``file://`` its inode and mtime too.

        A hand edit that keeps the size (a character replaced) is a change on ``file://``;
        on object stores, the size is all one cheap request gives. None when absent.
        """
        if self.protocol != "file":
            return self.cf.size(PROVENANCE)
        try:
            st = os.lstat(self.local_path(PROVENANCE))
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_ino, st.st_mtime_ns)


_checked_sizes: Dict[str, Any] = {}
_volumes_seen: Set[str] = set()
VOLUME_FILES = ("info", "zarr.json", ".zarray", ".zgroup", "attributes.json")


TRUSTED_SECONDS = 1.0
_trusted_until: Dict[str, float] = {}


def trust(vol: Volume, seconds: float) -> None:
    """The view was just seen valid (or another ptb process is publishing it): no need to look for a while."""
    _trusted_until[vol.cloudpath] = max(_trusted_until.get(vol.cloudpath, 0.0), time.monotonic() + seconds)


def remember_valid(vol: Volume, size: int) -> None:
    """ptb just wrote a ``provenance`` of ``size`` bytes: the next ``check_readable`` need not parse it."""
    if len(_checked_sizes) > 1024:
        _checked_sizes.clear()
        _trusted_until.clear()
    if vol.protocol == "file":
        try:
            stamp: Any = vol.stamp()
        except OSError:
            return
    else:
        stamp = size
    _checked_sizes[vol.cloudpath] = stamp
    _trusted_until[vol.cloudpath] = time.monotonic() + TRUSTED_SECONDS


def _fresh_connections_in_child() -> None:
    """After ``fork``, drop the S3/GCS connections CloudFiles pooled in the parent.

    Parent and child would otherwise share sockets and read each other's
    responses (seen as md5 mismatches on empty bodies). mem:// data is kept.
    """
    interfaces = sys.modules.get("cloudfiles.interfaces")
    if interfaces is None:
        return
    from cloudfiles import connectionpools

    saved = dict(connectionpools.MEMORY_DATA)
    interfaces.reset_connection_pools()
    connectionpools.MEMORY_DATA.update(saved)


os.register_at_fork(after_in_child=_fresh_connections_in_child)


def inside(key: str) -> bool:
    """Whether ``key`` names an object inside a volume: relative, no ``..``, ``.`` or empty segment, no NUL."""
    return (isinstance(key, str) and bool(key) and "\0" not in key and "\\" not in key
            and not any(part in ("", ".", "..") for part in key.split("/")))


def _strip_format(cloudpath: str) -> str:
    for prefix in _FORMAT_PREFIXES:
        if cloudpath.startswith(prefix):
            return cloudpath[len(prefix):]
    return cloudpath
