"""The record model: notes, processes and runs, and their versioned JSON.

Records are immutable values. Each one written to a volume gets its own
journal object; ``to_json``/``record_from_json`` are the only place that
knows the on-disk shape, and ``FORMAT_VERSION`` says which shape it is.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import os
import secrets
import threading
import time
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .errors import InvalidInputError

FORMAT_VERSION = 1

Timestamp = Union[datetime.datetime, str, None]

_id_lock = threading.Lock()
_last_ns = 0


def _reset_id_lock() -> None:
    global _id_lock
    _id_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_id_lock)


def new_id() -> str:
    """A 26-character id that sorts by creation time.

    16 hex digits of nanoseconds since the epoch, strictly increasing within a
    process (so ids made in one clock tick still sort in creation order),
    followed by 10 random hex digits so that no other writer can produce it.
    """
    global _last_ns
    with _id_lock:
        now = max(time.time_ns(), _last_ns + 1)
        _last_ns = now
    return f"{now:016x}{secrets.token_hex(5)}"


def rid_age_seconds(rid: str) -> float:
    """How long ago an id of ``new_id`` was made, by this machine's clock (0 for a malformed one)."""
    try:
        return max(time.time_ns() - int(rid[:16], 16), 0) / 1e9
    except ValueError:
        return 0.0


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def to_utc(value: Timestamp) -> Optional[datetime.datetime]:
    """Timezone-aware UTC from a datetime or an ISO 8601 string.

    Naive values are taken as local time, which is what ``datetime.now()``
    (and so provenance-toolbox 0.1.x) produced.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInputError(
                f"timestamp {value!r} is not ISO 8601 (e.g. 2024-05-01T12:00:00+00:00)"
            ) from None
    if not isinstance(value, datetime.datetime):
        raise InvalidInputError(f"timestamp must be a datetime or an ISO 8601 string, not {type(value).__name__}")
    return value.astimezone(datetime.timezone.utc)


def _typed(data: Mapping[str, Any], name: str, kinds: Tuple[type, ...], required: bool = False) -> Any:
    """``data[name]`` when it is one of ``kinds`` (None when absent and not ``required``); else ``InvalidInputError``.

    A journal object is data from storage: a field of the wrong type is refused
    here, so a bad record is skipped by name instead of failing a reader later.
    """
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInputError(f"field {name!r} is missing")
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise InvalidInputError(f"field {name!r} is a {type(value).__name__}, not a {wanted}")
    return value


def _names(data: Mapping[str, Any], name: str) -> Tuple[str, ...]:
    items = _typed(data, name, (list, tuple)) or ()
    if not all(isinstance(i, str) for i in items):
        raise InvalidInputError(f"field {name!r} holds something that is not a str")
    return tuple(items)


_NUMBER = (int, float)


def _iso(value: Optional[datetime.datetime]) -> Optional[str]:
    return None if value is None else value.isoformat()


def canonical_json(value: Any) -> str:
    """The one serialisation used for hashing: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()[:length]


class NoteType(enum.Enum):
    """What a note is about; the values match provenance-toolbox 0.1.x."""

    MOTIVATION = 1
    RESULT = 2
    GENERIC = 3

    @classmethod
    def parse(cls, value: Union[NoteType, int, str]) -> NoteType:
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            raise InvalidInputError(f"note type {value!r} is not one of {', '.join(t.name for t in cls)}")
        try:
            if isinstance(value, int):
                return cls(value)
            return cls[str(value).strip().upper()]
        except (KeyError, ValueError):
            names = ", ".join(t.name for t in cls)
            raise InvalidInputError(f"note type {value!r} is not one of {names}") from None


LEGACY_FIELD_SEP = ";"
LEGACY_NOTE_SEP = " \n "
SECTION = "ptb"            # the key of ptb's own part of the `provenance` file and of its processing entries


def is_ptb_entry(entry: Any) -> bool:
    """Whether a `processing` entry of the `provenance` file is one ptb wrote (not 0.1.x's, not another tool's)."""
    return isinstance(entry, dict) and isinstance(entry.get(SECTION), dict)


@dataclasses.dataclass(frozen=True)
class Note:
    """A timestamped, typed note about a volume, linked to a run when made inside one.

    ``Note(timestamp, note_type, content)`` is the 0.1.x signature. Strings
    and naive datetimes are converted to timezone-aware UTC; ``None`` is kept
    for text of unknown date (a legacy description that is not a note).
    """

    timestamp: Optional[datetime.datetime]
    note_type: NoteType
    content: str
    id: str = ""
    run: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", to_utc(self.timestamp))
        object.__setattr__(self, "note_type", NoteType.parse(self.note_type))
        if not isinstance(self.content, str):
            raise InvalidInputError(f"note content must be a string, not {type(self.content).__name__}")
        if not self.id:
            object.__setattr__(self, "id", new_id())

    def __str__(self) -> str:
        """The 0.1.x packed form ``timestamp;TYPE;content``."""
        return f"{self.timestamp}{LEGACY_FIELD_SEP}{self.note_type.name}{LEGACY_FIELD_SEP}{self.content}"

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": "note",
            "id": self.id,
            "timestamp": _iso(self.timestamp),
            "type": self.note_type.name,
            "content": self.content,
            "run": self.run,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Note:
        return cls(_typed(data, "timestamp", (str,)), _typed(data, "type", (str, int), True),
                   _typed(data, "content", (str,), True), id=_typed(data, "id", (str,), True),
                   run=_typed(data, "run", (str,)))


def process_key(description: str, parameters: Mapping[str, Any]) -> str:
    """Same description and parameters, same process (``process_absent`` semantics)."""
    return content_hash([description, parameters])


@dataclasses.dataclass(frozen=True)
class ProcessRecord:
    """A processing step: what it does, with which parameters, in which code.

    ``parameters`` must already be JSON-safe (see ``ptb.capture.params``);
    ``code_envfiles`` are paths relative to the volume.
    """

    description: str
    parameters: Dict[str, Any]
    code_envfiles: Tuple[str, ...] = ()
    id: str = ""
    timestamp: Optional[datetime.datetime] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "code_envfiles", tuple(self.code_envfiles))
        object.__setattr__(self, "timestamp", to_utc(self.timestamp))
        if not self.id:
            object.__setattr__(self, "id", new_id())

    @property
    def key(self) -> str:
        return process_key(self.description, self.parameters)

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": "process",
            "id": self.id,
            "key": self.key,
            "timestamp": _iso(self.timestamp),
            "task": self.description,
            "parameters": self.parameters,
            "code_envfiles": list(self.code_envfiles),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            _typed(data, "task", (str,), True),
            _typed(data, "parameters", (dict,)) or {},
            _names(data, "code_envfiles"),
            id=_typed(data, "id", (str,), True),
            timestamp=_typed(data, "timestamp", (str,)),
        )


RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One execution of a process, as known at one moment.

    A run is journalled twice: once ``running`` on entry and once with its
    final status on exit. A run whose last record is ``running`` never
    finished (the worker died, or is still going). ``code_envfiles`` names
    the environment this run had, which may differ from its process's first.
    ``parameters`` are this run's own values (``per_run``: the chunk it
    worked on), already JSON-safe; its process's parameters name the step.
    ``argv`` is the OS process's ``sys.argv`` (the script and its arguments),
    scrubbed like a parameter; None when unknown (records before issue 20).
    """

    id: str
    description: str
    process: str
    status: str
    started: datetime.datetime
    ended: Optional[datetime.datetime] = None
    duration: Optional[float] = None
    parent: Optional[str] = None
    user: Optional[str] = None
    host: Optional[str] = None
    pid: Optional[int] = None
    resources: Dict[str, Any] = dataclasses.field(default_factory=dict)
    error: Optional[Dict[str, Any]] = None
    code_envfiles: Tuple[str, ...] = ()
    parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
    argv: Optional[Tuple[Any, ...]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "code_envfiles", tuple(self.code_envfiles))
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))
        if self.status not in RUN_STATUSES:
            raise InvalidInputError(f"run status {self.status!r} is not one of {', '.join(RUN_STATUSES)}")
        object.__setattr__(self, "started", to_utc(self.started))
        object.__setattr__(self, "ended", to_utc(self.ended))

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": "run",
            "id": self.id,
            "task": self.description,
            "process": self.process,
            "status": self.status,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "duration": self.duration,
            "parent": self.parent,
            "user": self.user,
            "host": self.host,
            "pid": self.pid,
            "resources": dict(self.resources),
            "error": self.error,
            "code_envfiles": list(self.code_envfiles),
            "parameters": self.parameters,
            "argv": None if self.argv is None else list(self.argv),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            id=_typed(data, "id", (str,), True),
            description=_typed(data, "task", (str,)) or "",
            process=_typed(data, "process", (str,)) or "",
            status=_typed(data, "status", (str,), True),
            started=_typed(data, "started", (str,), True),
            ended=_typed(data, "ended", (str,)),
            duration=_typed(data, "duration", _NUMBER),
            parent=_typed(data, "parent", (str,)),
            user=_typed(data, "user", (str,)),
            host=_typed(data, "host", (str,)),
            pid=_typed(data, "pid", (int,)),
            resources=dict(_typed(data, "resources", (dict,)) or {}),
            error=_typed(data, "error", (dict,)),
            code_envfiles=_names(data, "code_envfiles"),
            parameters=dict(_typed(data, "parameters", (dict,)) or {}),
            argv=_typed(data, "argv", (list, tuple)),
        )


Record = Union[Note, ProcessRecord, RunRecord]

_KINDS = {"note": Note, "process": ProcessRecord, "run": RunRecord}


def envelope(record: Record, rid: Optional[str] = None) -> Dict[str, Any]:
    """The journal object for a record: its JSON plus format version and record id.

    ``rid`` names this one write; a note's or process's rid is its id, while a
    run, journalled at start and end, gets a fresh rid each time.
    """
    data = record.to_json()
    data["v"] = FORMAT_VERSION
    data["rid"] = rid or (record.id if not isinstance(record, RunRecord) else new_id())
    return data


class NewerFormatError(InvalidInputError):
    """A record written by a newer ptb, in a format version this one does not read."""


def record_from_json(data: Mapping[str, Any]) -> Record:
    """Parse one journal object; raises ``InvalidInputError`` for anything else.

    A record of a newer format version raises ``NewerFormatError`` (upgrade
    to read it); one whose fields have the wrong types says which field.
    """
    try:
        version = data.get("v", FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise NewerFormatError(
                f"record {data.get('rid')} was written by a newer ptb (format version {version}; this ptb "
                f"reads up to {FORMAT_VERSION}): upgrade provenance-toolbox to read it")
        if version != FORMAT_VERSION:
            raise InvalidInputError(f"format version {version!r} is not one ptb wrote")
        kind = data["kind"]
        if kind not in _KINDS:
            raise InvalidInputError(f"kind {kind!r} is not one of {', '.join(_KINDS)}")
        return _KINDS[kind].from_json(data)  # type: ignore[attr-defined]
    except NewerFormatError:
        raise
    except (InvalidInputError, KeyError, TypeError, ValueError, AttributeError) as exc:
        why = str(exc) if isinstance(exc, InvalidInputError) else repr(exc)
        raise InvalidInputError(f"not a ptb record ({why}): {str(data)[:200]}") from None
