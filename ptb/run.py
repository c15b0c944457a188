"""The engine: one documented run, from its start to its end.

One engine serves the decorator (``decorate``), the block (``documented``)
and the cell magic (``magic``): every entry makes a fresh ``Run``, which
writes its start (process, run ``running``, motivation) before the user's
code runs and its end (final run, result note) after. A volume that cannot be
read or written fails the entry with a ptb error, before anything ran; once
the user's code has run, recording never replaces its result or exception:
storage failures are spooled (``ptb flush``), anything else is a
``RecordingWarning``, and the run's end is journalled before its notes. Entry
costs journal writes only; exit adds one bounded write of the ``provenance``
view, so the view holds the run when the call returns. Neither grows with
the volume's history. All writes go through ``ptb.store.writer``.

Drivers (``runners``, the fronts) use the public protocol: ``start``,
``activate``/``deactivate`` around the user's code, ``returned`` with its
value, ``finish`` with its exception, and ``ending`` to say how it ended.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import getpass
import os
import socket
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .arguments import check_texts, names
from .capture import usage
from .capture.errortext import MAX_MESSAGE, MAX_NOTE, clean, error_of, type_name
from .errors import BUGS, InvalidInputError, ProvenanceError, warn
from .read.fmt import fmt_duration
from .records import Note, NoteType, ProcessRecord, RunRecord, new_id, process_key, utcnow
from .store import writer
from .store.view import Entry
from .store.volume import Volume

__all__ = ["Run", "RecordingWarning", "current_run", "recording_warning", "MAX_NOTE"]

_current: contextvars.ContextVar[Optional[Run]] = contextvars.ContextVar("ptb_current_run", default=None)
_processes_written: Dict[Tuple[str, str], Entry] = {}  # (cloudpath, process key) -> as journalled by this OS process
_INTERRUPTS: Tuple[type, ...] = (KeyboardInterrupt, SystemExit)


class RecordingWarning(UserWarning):
    """A run could not be recorded completely; the user's call was not affected."""


def recording_warning(message: str) -> None:
    """Warn (``RecordingWarning``) about what could not be recorded; never raises, even when warnings are errors."""
    warn(message, RecordingWarning, stacklevel=3)


def current_run() -> Optional[Run]:
    """The run being documented in this thread or task, to add notes from inside it."""
    return _current.get()


@functools.cache
def _whoami() -> Tuple[Optional[str], Optional[str]]:
    try:
        user: Optional[str] = getpass.getuser()
    except Exception:   # no passwd entry in some containers
        user = os.environ.get("USER")
    return user, socket.gethostname()


class Run:
    """One documented execution; a fresh one per call, block or cell (never reused).

    Used as a context manager. Inside it, ``note`` adds a note linked to the
    run and ``result`` sets the result note. The parameters known at entry
    name the run's process, except the ``per_run`` ones, which are this run's
    own (the chunk it works on); values added to ``parameters`` inside the
    block are this run's own too: what turns up while working is not the step. Drivers that
    cannot use ``with`` (coroutines, generators) call ``start``, ``activate``
    and ``deactivate``, ``returned`` and ``finish`` themselves.
    """

    def __init__(self, volumes: Sequence[Volume], description: str, parameters: Optional[Dict[str, Any]] = None,
                 *, motivation: Optional[str] = None, result: Union[str, Callable[[Any], Any], None] = None,
                 redact: Sequence[str] = (), exclude: Sequence[str] = (), source_file: Optional[str] = None,
                 func: Optional[Callable] = None, sources: Sequence[Any] = (), per_run: Sequence[str] = ()):
        check_texts(description, motivation, result)
        if not volumes:
            raise InvalidInputError(f"run {description!r} has no volume to log to")
        self.id = new_id()
        self.volumes = list({vol.cloudpath: vol for vol in volumes}.values())
        self.description = description
        self.parameters: Dict[str, Any] = dict(parameters or {})
        self.motivation = motivation
        self.parent: Optional[str] = None
        self.status = "new"
        self.duration: Optional[float] = None
        self._result = result
        self._redact, self._exclude, self._per_run = tuple(redact), tuple(exclude), names(per_run, "per_run")
        self._source_file, self._func, self._sources = source_file, func, list(sources)
        self._results: List[Note] = []
        self._known: Tuple[str, ...] = ()     # the secret values among the parameters, scrubbed from every text
        self._value_text: Optional[str] = None
        self.ending: Optional[str] = None     # how it ended, for the default result note ("3 items")
        self._parent_run: Optional[Run] = None

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.description!r} {self.status}>"

    @property
    def cloudpaths(self) -> List[str]:
        return [vol.cloudpath for vol in self.volumes]

    @property
    def secret_values(self) -> Tuple[str, ...]:
        """The secret values among this run's parameters: no text stored while it runs may hold them."""
        return self._known

    # ----------------------------------------------------------- user API
    def note(self, text: str, note_type: Union[NoteType, int, str] = NoteType.GENERIC) -> Note:
        """Record a note now, linked to this run (one journal write; the view gets it when the run ends).

        A text over ``MAX_NOTE`` characters is cut, with a ``RecordingWarning``.
        """
        if self.status == "new":
            raise ProvenanceError("enter the run (`with ptb.documented(...) as run:`) before adding notes")
        note = Note(utcnow(), NoteType.parse(note_type), self._text(text, "note"), run=self.id)
        for vol in self.volumes:
            self._journalled[vol.cloudpath] += writer.append(vol, [note])
        return note

    def result(self, text: str) -> None:
        """Set the result note, written when the run ends (replaces the default one); bounded like ``note``."""
        self._results.append(Note(utcnow(), NoteType.RESULT, self._text(text, "result"), run=self.id))

    def _text(self, text: Any, what: str, limit: int = MAX_NOTE) -> Any:
        """A text of this run as stored: scrubbed (``clean``: patterns and the run's secret values), bounded."""
        if not isinstance(text, str):
            return text         # Note refuses it, naming its type
        if len(text) > limit:
            recording_warning(f"ptb: the {what} of run {self.id} ({self.description!r}) is {len(text)} characters; "
                  f"only the first {limit} are recorded (large outputs belong in the volume)")
        return clean(text, self._redact, limit, self._known)

    # ------------------------------------------------------------ entry
    def __enter__(self) -> Run:
        self.start()
        self._token = self.activate()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self.deactivate(self._token)
        self.finish(exc)       # returns None: the exception, if any, propagates unchanged

    def activate(self) -> contextvars.Token:
        """Make this the current run (while its code runs); returns the token for ``deactivate``."""
        return _current.set(self)

    def deactivate(self, token: contextvars.Token) -> None:
        """Stop being the current run (the user's code is suspended or done); ``token`` is ``activate``'s."""
        try:
            _current.reset(token)
        except ValueError:      # ended in another context (a generator closed elsewhere)
            _current.set(self._parent_run)

    def start(self) -> None:
        """Write the run's start; raises (a ptb error) before the user's code runs, never after."""
        from .capture.params import prepare_parameters

        if self.status != "new":
            raise ProvenanceError(f"run {self.id} was already entered: each call, block or cell needs its own "
                                  f"ptb.documented(...)")
        self.status = "not started"
        self._parent_run = _current.get()
        self.parent = self._parent_run.id if self._parent_run is not None else None
        for vol in self.volumes:
            vol.check_readable()
        self._no_volume = [vol for vol in self.volumes if not vol.has_info()]
        for vol in self._no_volume:
            recording_warning(f"ptb: {vol.cloudpath} has no info file: no volume is there yet. Fine if "
                              f"{self.description!r} creates it; if the path is mistyped, its records go there")
        self._learn_secrets()
        self.description = self._text(self.description, "description")
        identity = {k: v for k, v in self.parameters.items() if k not in self._per_run}
        self._recorded = prepare_parameters(identity, redact=self._redact, exclude=self._exclude, known=self._known)
        self._param_ids = {k: id(v) for k, v in self.parameters.items()}
        envs = self._capture()
        self._envfiles = tuple(env.filename for env in envs)
        self.started = utcnow()
        self._record = RunRecord(
            id=self.id, description=self.description, process=process_key(self.description, self._recorded),
            status="running", started=self.started, parent=self.parent, user=_whoami()[0],
            host=_whoami()[1], pid=os.getpid(), code_envfiles=self._envfiles,
            parameters=self._run_values(self._per_run))
        motivation = self.motivation or f"run of {self.description!r} (no motivation given)"
        self._motivation = Note(self.started, NoteType.MOTIVATION, self._text(motivation, "motivation"), run=self.id)
        started: List[Volume] = []
        self._journalled: Dict[str, List[Entry]] = {}
        try:
            for vol in self.volumes:
                for env in envs:
                    writer.write_env(vol, env, spool_on_failure=False)
                proc = self._new_process(vol, self._recorded)
                written = writer.append(vol, [*proc, self._record, self._motivation], spool_on_failure=False)
                started.append(vol)
                self._journalled[vol.cloudpath] = written
                self._process_written(vol, written)
        except BaseException as exc:
            self._abandon(started, exc)
            raise
        self.status = "running"
        self._cpu0 = usage.cpu()
        self._t0 = time.perf_counter()

    def _run_values(self, keys: Iterable[str]) -> Dict[str, Any]:
        """This run's own values among ``parameters``, JSON-safe and redacted as the process's are."""
        from .capture.params import prepare_parameters

        wanted = set(keys)
        return prepare_parameters({k: v for k, v in self.parameters.items() if k in wanted},
                                  redact=self._redact, exclude=self._exclude, known=self._known)

    def _capture(self) -> List[Any]:
        try:
            from .capture import env

            envs = list(env.capture(self._source_file, self._func))
        except Exception as exc:
            recording_warning(f"ptb could not capture the code environment of {self.description!r}: {exc!r}")
            envs = []
        from .capture.secretvalues import scrub_env

        return [scrub_env(e, self._known) for e in envs + self._sources]

    def _new_process(self, vol: Volume, recorded: Dict[str, Any]) -> List[ProcessRecord]:
        if (vol.cloudpath, process_key(self.description, recorded)) in _processes_written:
            return []
        return [ProcessRecord(self.description, recorded, self._envfiles, timestamp=utcnow())]

    @staticmethod
    def _process_written(vol: Volume, written: List[Entry]) -> None:
        """Remember journalled processes, so a process is journalled once per OS process."""
        for rid, record in written:
            if isinstance(record, ProcessRecord):
                if len(_processes_written) > 10_000:     # a worker with unique parameters per task
                    _processes_written.clear()
                _processes_written[(vol.cloudpath, record.key)] = (rid, record)

    def _published_with_end(self, vol: Volume, proc_key: str) -> List[Entry]:
        """What the run's end publishes besides itself: its start, its notes, and its process."""
        process = _processes_written.get((vol.cloudpath, proc_key))
        return [*self._journalled.get(vol.cloudpath, []), *([process] if process else [])]

    def _abandon(self, started: List[Volume], exc: BaseException) -> None:
        """Close the run on volumes where it started before another volume failed."""
        if not started:
            return
        try:
            final = dataclasses.replace(self._record, status="failed", ended=utcnow(), duration=0.0, error={
                "type": type_name(exc), "message": clean(f"not started: {exc}", self._redact, MAX_MESSAGE, self._known),
                "traceback": ""})
            for vol in started:
                writer.write(vol, [final], with_entries=self._published_with_end(vol, final.process))
        except Exception as err:
            recording_warning(f"ptb could not close run {self.id} that did not start: {err!r}")

    # ------------------------------------------------------------- exit
    def returned(self, value: Any) -> None:
        """Turn the return value into the result note with the user's callable; never raises."""
        if callable(self._result):
            try:
                self._value_text = clean(str(self._result(value)), self._redact, values=self._known)
            except Exception as exc:
                recording_warning(f"ptb: the result callable of {self.description!r} raised {exc!r}; "
                      f"the default result note is recorded instead")

    def finish(self, exc: Optional[BaseException] = None) -> None:
        """Write the run's end (``exc``: what the user's code raised). Never raises: the user's result or
        exception comes first."""
        if self.status != "running":
            return
        try:
            self.duration = duration = time.perf_counter() - self._t0
            ended = utcnow()
            self._learn_secrets()       # the block may have added some to its parameters
            resources = self._resources()
            if exc is None:
                self.status, error = "succeeded", None
            else:
                self.status = "interrupted" if isinstance(exc, _INTERRUPTS) or _cancelled(exc) else "failed"
                error = error_of(exc, self._redact, self._known)
            final = dataclasses.replace(self._record, status=self.status, ended=ended, duration=duration,
                                        resources=resources, error=error, parameters=self._final_run_values())
        except Exception as err:
            self.status = "unrecorded"
            recording_warning(f"ptb could not record the end of run {self.id} ({self.description!r}): {err!r}")
            return
        try:
            notes = self._result_notes(ended, duration, error)
        except Exception as err:        # the run's end is still recorded, without its result note
            notes = []
            recording_warning(f"ptb could not record the result note of run {self.id} ({self.description!r}): {err!r}")
        for vol in self.volumes:
            journalled: List[Entry] = []
            try:                          # in order, the run's end first; a storage failure spools the rest
                journalled = writer.append(vol, [final, *notes])
            except InvalidInputError as err:  # a record over the size bound: keep the run's end at least
                recording_warning(f"ptb could not record all of the end of run {self.id} on {vol.cloudpath}: {err}")
                try:
                    journalled = writer.append(vol, [final])
                except Exception as again:
                    recording_warning(f"ptb could not record the end of run {self.id} on {vol.cloudpath}: {again!r}")
            except Exception as err:      # a storage error was spooled above; this is anything else
                recording_warning(f"ptb could not record the end of run {self.id} on {vol.cloudpath}: {err!r}"
                                  + (" (a bug, not a storage failure: please report it)" if isinstance(err, BUGS)
                                     else ""))
            if not any(record is final for _, record in journalled):
                continue                  # spooled: `ptb flush` publishes it with the rest
            writer.publish(vol, self._published_with_end(vol, final.process) + journalled)
        self._check_volumes()

    def _check_volumes(self) -> None:
        """Say where a run was recorded with no volume (a mistyped path, a directory deleted meanwhile)."""
        for vol in self.volumes:
            try:
                if (vol in self._no_volume or vol.protocol == "file") and not vol.has_info():
                    recording_warning(f"ptb recorded run {self.id} ({self.description!r}) at {vol.cloudpath}, "
                                      f"where there is no volume (no info file): is the path right? The "
                                      f"records are under {vol.cloudpath}/ptb/")
            except Exception:     # unreachable now: the writes above said so
                pass

    def _final_run_values(self) -> Dict[str, Any]:
        """The per-run values, with those the block added or replaced (a plain call has none)."""
        if {k: id(v) for k, v in self.parameters.items()} == self._param_ids:
            return self._record.parameters
        changed = [k for k, v in self.parameters.items() if self._param_ids.get(k) != id(v)]
        return self._run_values([*self._per_run, *changed])

    def _resources(self) -> Dict[str, Any]:
        """CPU time of this OS process (all its threads) during the run; its RSS now and its peak RSS so far."""
        now, before = usage.cpu(), self._cpu0
        if now is None or before is None:
            return {}
        user, system = now[0] - before[0], now[1] - before[1]
        rss, peak = usage.memory()
        return {"cpu_time_s": round(user + system, 6), "cpu_user_s": round(user, 6),
                "cpu_system_s": round(system, 6), "memory_bytes": rss, "peak_memory_bytes": peak}

    def _result_notes(self, ended: Any, duration: float, error: Optional[Dict[str, Any]]) -> List[Note]:
        took = fmt_duration(duration)       # as `ptb log` shows durations: one formatter
        if error is not None:
            message = clean(error["message"], (), 500)       # already scrubbed: only bounded
            text = f"{self.status} after {took}: {error['type']}" + (f": {message}" if message else "")
            return [*self._clean_results(), Note(ended, NoteType.RESULT, text, run=self.id)]
        if self._results:
            return self._clean_results()
        if self._value_text is not None:
            text = self._value_text
        elif isinstance(self._result, str):
            text = clean(self._result, self._redact, values=self._known)
        else:
            text = f"succeeded in {took}" + (f" ({self.ending})" if self.ending else "")
        return [Note(ended, NoteType.RESULT, text, run=self.id)]

    def _clean_results(self) -> List[Note]:
        """The result notes set inside the run, scrubbed again of the secret values it knows by now."""
        return [dataclasses.replace(n, content=clean(n.content, self._redact, values=self._known))
                for n in self._results]

    def _learn_secrets(self) -> None:
        from .capture.secretvalues import secret_values

        self._known = secret_values(self.parameters, self._redact)


def _cancelled(exc: BaseException) -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)
