"""Compare-and-swap on one object of a volume: the ``provenance`` view.

CloudFiles has no conditional write, so a read-modify-write through it can
overwrite what another tool wrote in between (CloudVolume's
``commit_provenance``, igneous, another ptb writer). This module reads the
object together with a version token and writes it back only if that version
is still current:

* ``gs://``: google-cloud-storage with ``if_generation_match``;
* ``s3://`` (and CloudFiles aliases of it): boto3 with ``If-Match`` /
  ``If-None-Match``;
* ``file://``: an ``flock`` that ptb writers share, a check that no one else
  changed the file, then an atomic rename (readers never see it half-written),
  and a look at the replaced file for a foreign in-place write that raced us;
* ``mem://``: a process-wide lock (mem:// lives in one process).

The clients are built with CloudFiles' own conventions (its secrets files,
endpoints and aliases), for this one object only; everything else goes
through CloudFiles.
"""
from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import posixpath
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

from ..errors import CorruptProvenanceError
from . import localfs
from .bounded import Refused
from .volume import Volume

Token = Any        # an opaque version: a generation, an ETag, a stat signature, the bytes themselves
ABSENT = "absent"  # the token of an object that does not exist


class Busy(Exception):
    """The store asked us to slow down (429, SlowDown) or a lock was not had in time; retry later."""


class VersionedObject(abc.ABC):
    """One object of one volume, read with its version and written only over that version."""

    def __init__(self, vol: Volume, key: str):
        self.vol, self.key = vol, key
        self.displaced = []
        self.written: Token = None    # the version the last successful ``write`` made, when the store says

    @abc.abstractmethod
    def read(self) -> Tuple[Optional[bytes], Token]:
        """The object's bytes (None when absent) and its version."""

    @abc.abstractmethod
    def write(self, data: bytes, token: Token) -> bool:
        """Write ``data`` if the object is still at ``token``; False if someone changed it.

        On success, ``written`` is the new version (None where it is not known),
        so the next swap can try it without reading the object first.
        """

    @contextlib.contextmanager
    def exclusive(self, timeout: float) -> Iterator[None]:
        """Held around read-merge-write; only ``file://`` needs more than the token."""
        yield

    #: (what we had read, what a foreign writer wrote over it) for each foreign write our rename displaced
    displaced: List[Tuple[bytes, bytes]]


class _FileObject(VersionedObject):
    """The view on ``file://``: no link followed, its mode kept, temporary files of killed writers swept."""

    def __init__(self, vol: Volume, key: str):
        super().__init__(vol, vol.checked(key))
        self.root = vol.local_root
        self.path = vol.local_path(key)
        self.parts, self.name = key.split("/")[:-1], key.split("/")[-1]

    @contextlib.contextmanager
    def exclusive(self, timeout: float) -> Iterator[None]:
        """The lock ptb writers share; while it is held, temporary files that ptb writers left are swept."""
        lock = "ptb/view.lock"
        try:
            fd = localfs.open_lock(self.root, lock)
        except localfs.LinkRefused as exc:
            raise self._untouchable(exc) from None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Busy(f"another ptb writer held {self.vol.local_path(lock)} for over "
                                   f"{timeout:.0f} s") from None
                    time.sleep(0.002)
            try:
                localfs.sweep(self.root, "/".join(self.parts))
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _untouchable(self, exc: OSError) -> CorruptProvenanceError:
        """Like a corrupt file: said once, never retried, never written through (a link ptb did not make)."""
        return CorruptProvenanceError(f"the provenance view of {self.vol.cloudpath} is left as it is: "
                                      f"{exc.strerror}. Its journal (ptb/journal/) is intact; replace the link "
                                      f"with a plain file (or remove it) and run `ptb sync {self.vol.cloudpath}`")

    def read(self) -> Tuple[Optional[bytes], Token]:
        try:
            fd = localfs.open_file(self.root, self.key)
        except localfs.LinkRefused as exc:
            return Refused(exc.strerror or str(exc)), ABSENT
        if fd is None:
            return None, ABSENT
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            data = handle.read()
        return data, (st.st_ino, st.st_size, st.st_mtime_ns, data)

    def write(self, data: bytes, token: Token) -> bool:
        """Rename a whole new file into place, unless the file changed since it was read.

        ptb writers hold the lock; a foreign writer (CloudVolume) does not, and
        writes in place. So the replaced file stays open: a foreign write that
        lands in it after the last look is seen there, and kept in
        ``displaced`` for the caller to merge into what it writes next. The
        new file gets the old one's mode and group; a link in its place is
        refused (``localfs.LinkRefused``), never replaced or written through.
        """
        try:
            return self._write(data, token)
        except localfs.LinkRefused as exc:
            raise self._untouchable(exc) from None

    def _write(self, data: bytes, token: Token) -> bool:
        with localfs.directory(self.root, self.parts, create=True) as fd:
            tmp = localfs.temp_name(self.name)
            try:
                new = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd)
                with os.fdopen(new, "wb") as handle:
                    handle.write(data)
                    localfs.keep_mode(fd, self.name, handle.fileno(), self.root, self.key)
                old_fd = localfs.open_file(self.root, self.key)
                if old_fd is None:
                    if token != ABSENT:
                        return False
                    # a writer racing a creation is out of our reach here
                    os.replace(tmp, self.name, src_dir_fd=fd, dst_dir_fd=fd)
                    return True
                with os.fdopen(old_fd, "rb", buffering=0) as old:     # unbuffered: each look sees the file now
                    if token == ABSENT or _state(old) != token:
                        return False
                    os.replace(tmp, self.name, src_dir_fd=fd, dst_dir_fd=fd)
                    self.displaced.clear()            # the caller merged them into what was just written
                    if _changed_after_rename(old, token):
                        self.displaced.append((token[3], _settled(old)))
                        return False
                st = os.stat(self.name, dir_fd=fd, follow_symlinks=False)
                self.written = (st.st_ino, st.st_size, st.st_mtime_ns, data)
                return True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=fd)


def _state(handle: Any) -> Token:
    """The version of an open file: its stat and its bytes (mtimes are too coarse alone)."""
    st = os.fstat(handle.fileno())
    return (st.st_ino, st.st_size, st.st_mtime_ns, os.pread(handle.fileno(), st.st_size + 1, 0))


def _changed_after_rename(handle: Any, token: Token) -> bool:
    """Did a foreign write land in the file we just replaced?

    A writer whose ``open`` looked the path up just before our rename may
    truncate and write a moment after it (it waits on the inode lock the
    rename held), so keep looking for a moment. Spinning, not sleeping: a
    sleep on a busy machine gives the core away for milliseconds, on every
    call, while the racing writer runs on another core anyway.
    """
    deadline = time.perf_counter() + 0.0002
    while time.perf_counter() < deadline:      # a stat a turn; the bytes once, at the end
        st = os.fstat(handle.fileno())
        if (st.st_ino, st.st_size, st.st_mtime_ns) != token[:3]:
            return True
    return _state(handle) != token


def _settled(handle: Any, seconds: float = 1.0) -> bytes:
    """What a foreign writer left in ``handle`` once it is whole JSON (or after ``seconds``)."""
    import json

    deadline = time.monotonic() + seconds
    while True:
        data = os.pread(handle.fileno(), os.fstat(handle.fileno()).st_size + 1, 0)
        try:
            json.loads(data)
            return data
        except ValueError:
            if time.monotonic() > deadline:
                return data
            time.sleep(0.01)


_mem_lock = threading.Lock()


class _MemObject(VersionedObject):
    def read(self) -> Tuple[Optional[bytes], Token]:
        data = self.vol.get_bytes(self.key)
        return data, (ABSENT if data is None else data)

    def write(self, data: bytes, token: Token) -> bool:
        with _mem_lock:
            current = self.vol.get_bytes(self.key)
            if (ABSENT if current is None else current) != token:
                return False
            self.vol.put_bytes(self.key, data)
            self.written = data
            return True


_clients: Dict[Tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def _client(kind: str, *key: Any, make: Any) -> Any:
    with _clients_lock:
        if (kind, *key) not in _clients:
            if len(_clients) > 64:
                _clients.clear()
            _clients[(kind, *key)] = make()
        return _clients[(kind, *key)]


def _forget_clients() -> None:
    global _clients_lock
    _clients.clear()           # a forked child must not share its parent's connections
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_clients)


class _S3Object(VersionedObject):
    def __init__(self, vol: Volume, key: str):
        super().__init__(vol, key)
        from cloudfiles import paths

        path = paths.extract(vol.cloudpath)
        self.bucket = path.bucket
        self.name = posixpath.join(path.path, key)
        self.client = _client("s3", path.alias, path.host, path.bucket, repr(vol.secrets),
                              make=lambda: _make_s3(path, vol.secrets))

    def read(self) -> Tuple[Optional[bytes], Token]:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.name)
        except ClientError as exc:
            if _s3_code(exc) in ("NoSuchKey", "404"):
                return None, ABSENT
            _raise_if_busy(exc)
            raise
        return response["Body"].read(), response["ETag"]

    def write(self, data: bytes, token: Token) -> bool:
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": "*"} if token == ABSENT else {"IfMatch": token}
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self.name, Body=data,
                                              ContentType="application/json", CacheControl="no-cache", **condition)
        except ClientError as exc:
            if _s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            _raise_if_busy(exc)
            raise
        self.written = response.get("ETag")
        return True


def _make_s3(path: Any, secrets: Any) -> Any:
    """A boto3 client as CloudFiles makes one: same credentials lookup, same endpoint handling."""
    import json

    import boto3
    from botocore.config import Config
    from cloudfiles.secrets import aws_credentials

    creds = secrets if secrets is not None else aws_credentials(path.bucket, path.alias or "s3")
    if isinstance(creds, str):
        creds = json.loads(creds)
    # one attempt: a SlowDown goes back to ptb's publisher, which keeps the store's pace (botocore's own
    # retry loop would hold a caller for seconds); the view is written at most about once a second anyway
    options: Dict[str, Any] = {"retries": {"total_max_attempts": 1, "mode": "standard"},
                               "connect_timeout": 5, "read_timeout": 10}
    extra: Dict[str, Any] = {}
    if path.host:
        extra["endpoint_url"] = path.host
        options["request_checksum_calculation"] = "when_required"
    return boto3.client(
        "s3", aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"), aws_session_token=creds.get("AWS_SESSION_TOKEN"),
        region_name=creds.get("AWS_DEFAULT_REGION", "us-east-1"), config=Config(**options), **extra)


def _s3_code(exc: Any) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code") or getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _raise_if_busy(exc: Any) -> None:
    if _s3_code(exc) in ("SlowDown", "503", "429", "TooManyRequests", "RequestLimitExceeded"):
        raise Busy(f"the store asked to slow down ({_s3_code(exc)})") from exc


class _GCSObject(VersionedObject):
    def __init__(self, vol: Volume, key: str):
        super().__init__(vol, key)
        from cloudfiles import paths

        path = paths.extract(vol.cloudpath)
        self.name = posixpath.join(path.path, key)
        self.bucket = _client("gs", path.bucket, repr(vol.secrets), make=lambda: _make_gcs(path.bucket, vol.secrets))

    def read(self) -> Tuple[Optional[bytes], Token]:
        from google.api_core import exceptions

        blob = self.bucket.blob(self.name)
        try:
            data = blob.download_as_bytes(retry=_gcs_read_retry(), timeout=10)
        except exceptions.NotFound:
            return None, ABSENT
        except exceptions.TooManyRequests as exc:
            raise Busy("GCS rate limit (429)") from exc
        return data, blob.generation

    def write(self, data: bytes, token: Token) -> bool:
        from google.api_core import exceptions

        blob = self.bucket.blob(self.name)
        blob.cache_control = "no-cache"
        try:
            # retry=None: google-cloud-storage would retry a 429 for up to 120 s before ptb sees it
            blob.upload_from_string(data, content_type="application/json", retry=None, timeout=10,
                                    if_generation_match=0 if token == ABSENT else token)
        except exceptions.PreconditionFailed:
            return False
        except exceptions.TooManyRequests as exc:
            raise Busy("GCS rate limit (429): about one write per second per object") from exc
        self.written = blob.generation
        return True


def _gcs_read_retry() -> Any:
    """Reads retry a dropped connection, for 5 s at most (the client's default waits up to 120 s)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(5.0)


def _make_gcs(bucket: str, secrets: Any) -> Any:
    """A google-cloud-storage bucket handle as CloudFiles makes one (its secrets lookup)."""
    import json

    from cloudfiles.secrets import google_credentials
    from google.cloud.storage import Client

    project, creds = google_credentials(bucket)
    if secrets is not None:
        creds = secrets
    if isinstance(creds, str):
        creds = json.loads(creds)
    if isinstance(creds, dict):
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_info(creds)
    return Client(credentials=creds, project=project).bucket(bucket)


_BACKENDS: Dict[str, Type[VersionedObject]] = {
    "file": _FileObject, "mem": _MemObject, "s3": _S3Object, "gs": _GCSObject}


def versioned(vol: Volume, key: str) -> VersionedObject:
    """The compare-and-swap handle of ``key`` on ``vol``."""
    backend = _BACKENDS.get(vol.protocol)
    if backend is None:
        from ..errors import VolumeUnavailableError

        raise VolumeUnavailableError(f"ptb cannot update {vol.cloudpath}/{key} safely: the {vol.protocol}:// "
                                     f"protocol has no conditional write (file, mem, s3 and gs do)")
    return backend(vol, key)
