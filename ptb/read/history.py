"""Reading a volume's whole history: the journal, plus what others wrote.

``history`` always reads the journal, so it is complete even when the
``provenance`` view lags. It also understands volumes written by
provenance-toolbox 0.1.x (notes packed into ``description``, processes in
``processing``, code-environment files at the volume root) and keeps every
other ``processing`` entry (igneous, hand-written) as foreign.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import CorruptProvenanceError, InvalidInputError, warn
from ..records import (
    LEGACY_FIELD_SEP,
    LEGACY_NOTE_SEP,
    Note,
    NoteType,
    ProcessRecord,
    RunRecord,
    content_hash,
    is_ptb_entry,
    to_utc,
)
from ..store import journal
from ..store.volume import Volume


@dataclasses.dataclass(frozen=True)
class RecordedRun(RunRecord):
    """A run as read back: its record, and the code environments it ran with, resolved.

    ``envfiles`` are the environment files it is answered from: its own
    ``code_envfiles``, or, for a run journalled by a ptb that did not record
    a run's own environment, its process's (``envs_inherited`` says so).
    ``envs`` maps each to its content (None when missing on the volume; empty
    when the history was read ``with_envs=False``).
    """

    envfiles: Tuple[str, ...] = ()
    envs: Dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    envs_inherited: bool = False
    live: str = dataclasses.field(default="", compare=False)
    """``finished``, ``running`` (its worker can still be alive) or ``died``: ``ptb.read.liveness``."""


@dataclasses.dataclass
class History:
    """Everything recorded about one volume."""

    cloudpath: str
    processes: List[ProcessRecord]
    runs: List[RecordedRun]
    notes: List[Note]
    foreign: List[Dict[str, Any]]
    provenance: Dict[str, Any]
    envs: Dict[str, Any]
    problems: List[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        """Each run answers from its own environments (``RecordedRun``), whoever built the history."""
        processes = {p.key: p for p in self.processes}
        runs = [r if isinstance(r, RecordedRun) else _recorded(r, processes, self.envs) for r in self.runs]
        self.runs = _with_liveness(runs)

    @property
    def sources(self) -> List[str]:
        sources = self.provenance.get("sources") or []
        return [sources] if isinstance(sources, str) else list(sources)

    @property
    def owners(self) -> List[str]:
        return list(self.provenance.get("owners") or [])

    @property
    def empty(self) -> bool:
        """True when nothing is recorded (no ``provenance`` file, no process, run or note), as at a mistyped path."""
        return not self.provenance and not self.processes and not self.notes and not self.runs

    def process(self, key_or_id: str) -> Optional[ProcessRecord]:
        return next((p for p in self.processes if key_or_id in (p.key, p.id)), None)

    def run(self, run_id: str) -> Optional[RunRecord]:
        return next((r for r in self.runs if r.id == run_id), None)

    def runs_of(self, process_key: str) -> List[RecordedRun]:
        return [r for r in self.runs if r.process == process_key]

    def envs_of(self, record: Union[ProcessRecord, RunRecord, None]) -> Dict[str, Any]:
        """The code environments a process was logged with, or a run ran with ({file: content})."""
        if record is None:
            return {}
        files = record.envfiles if isinstance(record, RecordedRun) else record.code_envfiles
        return {f: self.envs.get(f) for f in files}

    def notes_of(self, run_id: str) -> List[Note]:
        return [n for n in self.notes if n.run == run_id]


def legacy_notes(description: str, note_sep: str = LEGACY_NOTE_SEP, field_sep: str = LEGACY_FIELD_SEP) -> List[Note]:
    """Notes as 0.1.x packed them: ``timestamp;TYPE;content`` joined by `` \\n ``.

    Content may itself hold ``;`` (split at the first two only). Text that is
    not a note becomes a GENERIC note with no timestamp, as 0.1.x intended.
    The separators are 0.1.x's ``parsenotes`` arguments.
    """
    notes = []
    for index, chunk in enumerate(c for c in (description or "").split(note_sep) if c):
        parts = chunk.split(field_sep, 2)
        ident = f"legacy-{index}-{content_hash(chunk, 8)}"
        try:
            if len(parts) != 3 or parts[1] not in NoteType.__members__:
                raise InvalidInputError("not a packed note")
            notes.append(Note(to_utc(parts[0]), NoteType[parts[1]], parts[2], id=ident))
        except InvalidInputError:
            notes.append(Note(None, NoteType.GENERIC, chunk, id=ident))
    return notes


def _legacy_process(index: int, entry: Dict[str, Any]) -> Optional[ProcessRecord]:
    if not isinstance(entry.get("task"), str) or not isinstance(entry.get("parameters", {}), dict):
        return None
    envfiles = entry.get("code_envfiles") or []
    return ProcessRecord(entry["task"], entry.get("parameters") or {},
                         tuple(f for f in envfiles if isinstance(f, str)), id=f"legacy-{index}")


_PRECEDENCE = {"running": 0, "succeeded": 1, "interrupted": 2, "failed": 3}


def _latest_runs(records: Iterable[Any]) -> List[RunRecord]:
    """The last known state of each run; a final status beats ``running``.

    A run has one final record. Two that differ can only come from a writer
    other than the run's (the journal flags them): a failure then stays
    shown, never hidden by a conflicting success.
    """
    latest: Dict[str, RunRecord] = {}
    for record in records:
        if isinstance(record, RunRecord):
            known = latest.get(record.id)
            if known is None or _PRECEDENCE[record.status] >= _PRECEDENCE[known.status]:
                latest[record.id] = record
    return sorted(latest.values(), key=lambda r: (r.started, r.id))


def _with_liveness(runs: List[RecordedRun]) -> List[RecordedRun]:
    """Each run's liveness, the running ones judged by the p95 duration of their step's finished runs."""
    from .fmt import percentile
    from .liveness import run_liveness

    durations: Dict[str, List[float]] = {}
    for run in runs:
        if run.finished and run.duration is not None:
            durations.setdefault(run.process, []).append(run.duration)
    return [run if run.finished or run.live else
            dataclasses.replace(run, live=run_liveness(run, typical=percentile(durations.get(run.process, []), 0.95)))
            for run in runs]


def _recorded(run: RunRecord, processes: Dict[str, ProcessRecord], envs: Optional[Dict[str, Any]]) -> RecordedRun:
    """``run`` with its own environments; a run that recorded none (older ptb) gets its process's."""
    files, inherited = run.code_envfiles, False
    if not files and run.process in processes:
        files, inherited = processes[run.process].code_envfiles, bool(processes[run.process].code_envfiles)
    fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(RunRecord)}
    return RecordedRun(**fields, envfiles=tuple(files), envs_inherited=inherited,
                       envs={} if envs is None else {f: envs.get(f) for f in files})


def _by_time(record: Any) -> Any:
    """Oldest first; undated (legacy) records before all others."""
    return (record.timestamp is not None, record.timestamp or 0, record.id)


def history(volume: Any, secrets: Any = None, *, with_envs: bool = True, progress: bool = False) -> History:
    """Read everything recorded about ``volume`` (a CloudVolume or a cloudpath).

    ``progress`` shows tqdm bars while a long history is read.
    """
    vol = Volume.resolve(volume, secrets)
    problems: List[str] = []
    try:
        prov = vol.read_provenance() or {}
    except CorruptProvenanceError as exc:
        warn(str(exc), stacklevel=2)
        problems.append(str(exc))
        prov = {}
    records = journal.read(vol, progress)
    return assemble(vol.cloudpath, prov, records, (lambda files: journal.read_envs(vol, files)) if with_envs else None,
                    problems)


def assemble(cloudpath: str, prov: Dict[str, Any], records: Sequence[Any],
             read_envs: Optional[Callable[[List[str]], Dict[str, Any]]], problems: List[str]) -> History:
    """The ``History`` of records already read (oldest first) and a ``provenance`` file already parsed.

    ``read_envs`` gets the code-environment files the records name and returns
    their contents (None: read none). Readers that fetch records their own
    way (the lab's index) build their histories here too, so every reader
    sees one history.
    """
    processes: Dict[str, ProcessRecord] = {}
    notes: List[Note] = [r for r in records if isinstance(r, Note)]
    for record in records:
        if isinstance(record, ProcessRecord):
            processes.setdefault(record.key, record)

    foreign: List[Dict[str, Any]] = []
    processing = prov.get("processing") or []
    for index, entry in enumerate(processing if isinstance(processing, list) else []):
        if is_ptb_entry(entry):
            continue
        legacy = _legacy_process(index, entry) if isinstance(entry, dict) else None
        if legacy is not None:
            processes.setdefault(legacy.key, legacy)
        else:
            foreign.append(entry if isinstance(entry, dict) else {"value": entry})
    description = prov.get("description")
    if isinstance(description, str):
        notes.extend(legacy_notes(description))

    envs: Dict[str, Any] = {}
    if read_envs is not None:
        envfiles = [f for p in processes.values() for f in p.code_envfiles]
        envfiles += [f for r in records if isinstance(r, RunRecord) for f in r.code_envfiles]
        envs = read_envs(envfiles)
    return History(
        cloudpath=cloudpath,
        processes=sorted(processes.values(), key=_by_time),
        runs=[_recorded(r, processes, envs if read_envs is not None else None) for r in _latest_runs(records)],
        notes=sorted(notes, key=_by_time),
        foreign=foreign,
        provenance=prov,
        envs=envs,
        problems=problems,
    )
