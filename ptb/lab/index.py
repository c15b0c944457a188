"""The local index: what ptb has read of each volume, so a second query costs only listings.

SQLite, from the standard library: one file, no server, safe for several
``ptb`` commands at once (WAL, a busy timeout), transactions so that a killed
query leaves the last good state. Per volume it remembers the objects read
(journal objects and segments, and the record ids each held), the records,
the code-environment files, the ``provenance`` view with its version, and
the digest that ``ptb status`` and ``ptb find`` answer from.

It lives in ``$PTB_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptb``, else
``~/.cache/ptb``. A file that is not an index of this version, or that SQLite
finds corrupt, is deleted and rebuilt, never trusted; a cache directory that
cannot be written leaves ptb reading every volume in full (a warning says so).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..errors import ProvenanceError, warn
from .tail import Delta, Known

SCHEMA_VERSION = 1          # bump when the tables or the digest change: older files are rebuilt
APPLICATION_ID = 0x70746221  # "ptb!": a SQLite file of someone else's is not ours to read
FILENAME = "index.sqlite"
BUSY_SECONDS = 30.0         # how long a query waits for another ptb command to let go of the index

_TABLES = """
CREATE TABLE volumes (cloudpath TEXT PRIMARY KEY, view_token TEXT, view TEXT, digest TEXT);
CREATE TABLE objects (cloudpath TEXT, key TEXT, rids TEXT, problem TEXT, PRIMARY KEY (cloudpath, key)) WITHOUT ROWID;
CREATE TABLE records (cloudpath TEXT, rid TEXT, text TEXT, PRIMARY KEY (cloudpath, rid)) WITHOUT ROWID;
CREATE TABLE envs (cloudpath TEXT, key TEXT, text TEXT, view_token TEXT, PRIMARY KEY (cloudpath, key)) WITHOUT ROWID;
"""


class IndexBusyError(ProvenanceError):
    """Another ptb command held the index longer than the wait: try again, or read without it (``--no-cache``)."""


class IndexWarning(UserWarning):
    """The index could not be used as it was (rebuilt, or bypassed): the answer is still complete."""


def cache_dir() -> Path:
    """``$PTB_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptb``, else ``~/.cache/ptb``."""
    configured = os.environ.get("PTB_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptb"


def _corrupt(exc: sqlite3.DatabaseError) -> bool:
    """A damaged or foreign file, as opposed to another ptb holding the lock too long."""
    text = str(exc).lower()
    return not (isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text))


class Index:
    """One SQLite connection, shared by the threads of one query under a lock.

    ``Index(None)`` keeps everything in memory (``--no-cache``): the same
    code path, nothing read from or left on disk.
    """

    def __init__(self, path: Optional[Path]):
        self.path = path
        self.lock = threading.RLock()
        self.rebuilt = False
        self.db = self._open()

    @classmethod
    def open(cls, cache: bool = True) -> Index:
        """The index in the cache directory (or in memory when ``cache`` is False or the directory is unusable)."""
        if not cache:
            return cls(None)
        directory = cache_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            return cls(directory / FILENAME)
        except (OSError, sqlite3.Error) as exc:
            warn(f"cannot use the index in {directory} ({exc}); reading every volume in full", IndexWarning)
            return cls(None)

    # ------------------------------------------------------------------ the file
    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None and not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)   # private, whatever the umask
            os.close(fd)
        db = sqlite3.connect(target, timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _open(self) -> sqlite3.Connection:
        """Connect; a file of another version or application, or a damaged one, is rebuilt."""
        why = ""
        try:
            db = self._connect()
            app, version = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version"))
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if app == APPLICATION_ID and version == SCHEMA_VERSION:
                db.execute("SELECT count(*) FROM volumes").fetchone()
                return db
            if app == 0 and version == 0 and not tables:
                return self._create(db)
            why = f"it is of another version ({version}; this ptb writes {SCHEMA_VERSION})"
            db.close()
        except sqlite3.DatabaseError as exc:
            if not _corrupt(exc):
                raise
            why = f"SQLite says: {exc}"
        return self._recreate(why)

    def _create(self, db: sqlite3.Connection) -> sqlite3.Connection:
        db.executescript(f"BEGIN; {_TABLES} PRAGMA application_id={APPLICATION_ID}; "
                         f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        return db

    def _recreate(self, why: str) -> sqlite3.Connection:
        assert self.path is not None
        warn(f"rebuilding the index {self.path}: {why}", IndexWarning)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")
        self.rebuilt = True
        return self._create(self._connect())

    def _do(self, func: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``func`` under the lock; an index found corrupt on the way is rebuilt and ``func`` run on it."""
        with self.lock:
            try:
                return func(self.db)
            except sqlite3.DatabaseError as exc:
                if not _corrupt(exc):
                    raise IndexBusyError(f"the index {self.path} stayed locked by another ptb command for "
                                         f"{BUSY_SECONDS:.0f} s; try again, or use --no-cache") from exc
                if self.path is None:
                    raise
                with contextlib.suppress(sqlite3.Error):
                    self.db.close()
                self.db = self._recreate(f"SQLite says: {exc}")
                return func(self.db)

    def close(self) -> None:
        with self.lock, contextlib.suppress(sqlite3.Error):
            self.db.close()

    # ------------------------------------------------------------------ reading
    def state(self, cloudpath: str) -> Tuple[Optional[str], Optional[str]]:
        """(view token, digest) remembered for ``cloudpath``."""
        row = self._do(lambda db: db.execute("SELECT view_token, digest FROM volumes WHERE cloudpath=?",
                                             (cloudpath,)).fetchone())
        return (row[0], row[1]) if row else (None, None)

    def known(self, cloudpath: str) -> Known:
        """The objects read of ``cloudpath``; the rids each held and the records' sizes are asked lazily."""
        keys = self._do(lambda db: {r[0] for r in db.execute("SELECT key FROM objects WHERE cloudpath=?",
                                                             (cloudpath,))})
        return Known(keys, lambda wanted: self.rids(cloudpath, wanted), lambda rids: self.sizes(cloudpath, rids))

    def _chunked(self, sql: str, cloudpath: str, values: List[str]) -> List[Tuple[Any, ...]]:
        rows: List[Tuple[Any, ...]] = []
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            rows += self._do(functools.partial(_select, sql.format(marks=",".join("?" * len(chunk))),
                                               (cloudpath, *chunk)))
        return rows

    def rids(self, cloudpath: str, keys: List[str]) -> Dict[str, Tuple[str, ...]]:
        out = {}
        for key, rids in self._chunked("SELECT key, rids FROM objects WHERE cloudpath=? AND key IN ({marks})",
                                       cloudpath, keys):
            with contextlib.suppress(ValueError):
                out[key] = tuple(json.loads(rids))
        return out

    def sizes(self, cloudpath: str, rids: List[str]) -> Dict[str, int]:
        return {rid: len(text.encode("utf-8", "surrogatepass")) for rid, text in self._chunked(
            "SELECT rid, text FROM records WHERE cloudpath=? AND rid IN ({marks})", cloudpath, rids)}

    def envelopes(self, cloudpath: str) -> List[Dict[str, Any]]:
        """Every record of ``cloudpath`` the index holds, as the envelopes read."""
        rows = self._do(lambda db: db.execute("SELECT text FROM records WHERE cloudpath=?", (cloudpath,)).fetchall())
        out = []
        for (text,) in rows:
            with contextlib.suppress(ValueError):
                out.append(json.loads(text))
        return out

    def problems(self, cloudpath: str) -> Dict[str, str]:
        rows = self._do(lambda db: db.execute("SELECT key, problem FROM objects WHERE cloudpath=? AND problem != ''",
                                              (cloudpath,)).fetchall())
        return dict(rows)

    def view(self, cloudpath: str) -> Optional[str]:
        row = self._do(lambda db: db.execute("SELECT view FROM volumes WHERE cloudpath=?", (cloudpath,)).fetchone())
        return row[0] if row else None

    def envs(self, cloudpath: str, view_token: Optional[str]) -> Dict[str, Any]:
        """Code-environment files read before: ptb's (content-addressed, kept for good), and 0.1.x's
        (at the volume root, kept while the view that names them is unchanged)."""
        rows = self._do(lambda db: db.execute("SELECT key, text, view_token FROM envs WHERE cloudpath=?",
                                              (cloudpath,)).fetchall())
        out = {}
        for key, text, token in rows:
            if token is None or token == view_token:
                with contextlib.suppress(ValueError):
                    out[key] = json.loads(text)
        return out

    # ------------------------------------------------------------------ writing
    def save(self, cloudpath: str, delta: Optional[Delta], view: Optional[Tuple[str, Optional[str]]],
             envs: Dict[str, Tuple[Any, Optional[str]]], digest: Optional[Dict[str, Any]]) -> None:
        """Remember one volume's new state in one transaction.

        ``delta``: the objects now listed and the envelopes read (records no
        listed object holds any more are forgotten); ``view``: (token, text)
        when the view was read again; ``envs``: key -> (content, view token or
        None) of environment files read; ``digest``: what queries answer from
        (None until it is made again: a query killed in between rebuilds it).
        """
        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                if delta is not None:
                    self._save_delta(db, cloudpath, delta)
                if view is not None:
                    db.execute("INSERT INTO volumes (cloudpath, view_token, view) VALUES (?, ?, ?) "
                               "ON CONFLICT(cloudpath) DO UPDATE SET view_token=excluded.view_token, "
                               "view=excluded.view",
                               (cloudpath, view[0], view[1]))
                    db.execute("DELETE FROM envs WHERE cloudpath=? AND view_token IS NOT NULL AND view_token != ?",
                               (cloudpath, view[0]))
                db.executemany("INSERT OR REPLACE INTO envs (cloudpath, key, text, view_token) VALUES (?, ?, ?, ?)",
                               [(cloudpath, k, json.dumps(c), t) for k, (c, t) in envs.items()])
                db.execute("INSERT INTO volumes (cloudpath, digest) VALUES (?, ?) "
                           "ON CONFLICT(cloudpath) DO UPDATE SET digest=excluded.digest",
                           (cloudpath, None if digest is None else json.dumps(digest)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._do(write)

    @staticmethod
    def _save_delta(db: sqlite3.Connection, cloudpath: str, delta: Delta) -> None:
        db.executemany("DELETE FROM objects WHERE cloudpath=? AND key=?", [(cloudpath, k) for k in delta.gone])
        db.executemany("INSERT OR REPLACE INTO objects (cloudpath, key, rids, problem) VALUES (?, ?, ?, ?)",
                       [(cloudpath, k, json.dumps(list(rids)), delta.problems.get(k, ""))
                        for k, rids in delta.objects.items()])
        db.executemany("INSERT OR IGNORE INTO records (cloudpath, rid, text) VALUES (?, ?, ?)",
                       _rows(cloudpath, delta.packed))
        db.executemany("INSERT OR REPLACE INTO records (cloudpath, rid, text) VALUES (?, ?, ?)",
                       _rows(cloudpath, delta.journalled))
        if delta.gone:      # records no listed object holds any more are no longer on the volume
            held = {rid for (rids,) in db.execute("SELECT rids FROM objects WHERE cloudpath=?", (cloudpath,))
                    for rid in json.loads(rids)}
            stored = [r[0] for r in db.execute("SELECT rid FROM records WHERE cloudpath=?", (cloudpath,))]
            db.executemany("DELETE FROM records WHERE cloudpath=? AND rid=?",
                           [(cloudpath, rid) for rid in stored if rid not in held])

    def forget(self, cloudpath: str) -> None:
        """Drop everything about one volume (it will be read in full next time)."""
        def write(db: sqlite3.Connection) -> None:
            for table in ("volumes", "objects", "records", "envs"):
                db.execute(f"DELETE FROM {table} WHERE cloudpath=?", (cloudpath,))
        self._do(write)


def _select(sql: str, args: Tuple[Any, ...], db: sqlite3.Connection) -> List[Tuple[Any, ...]]:
    return db.execute(sql, args).fetchall()


def _rows(cloudpath: str, envs: Iterable[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    from ..records import canonical_json

    return [(cloudpath, env["rid"], canonical_json(env)) for env in envs]
