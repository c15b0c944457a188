"""Documenting runs: the ``@provenance`` decorator and the ``documented`` block.

One engine serves both (and the ``%%provenance`` cell magic): every entry makes
a fresh ``Run``, which writes its start (process, run ``running``, motivation)
before the user's code runs and its end (final run, result note) after. A
volume that cannot be read or written fails the entry with a ptb error, before
anything ran; once the user's code has run, recording never replaces its
result or exception: storage failures are spooled (``ptb flush``), anything
else is a ``RecordingWarning``, and the run's end is journalled before its
notes. Entry costs journal writes only; exit adds one bounded write of the
``provenance`` view (``ptb.updater``), so the view holds the run when the
call returns. Neither grows with the volume's history.
The decorator's machinery (call kinds, drivers, pickling) is ``ptb.runners``.
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
import traceback
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import journal, updater
from .errors import InvalidInputError, ProvenanceError
from .records import Note, NoteType, ProcessRecord, RunRecord, new_id, process_key, utcnow
from .storage import Volume
from .view import Entry

__all__ = ["Run", "RecordingWarning", "current_run", "documented", "provenance"]

MAX_TRACEBACK = 16 * 1024
MAX_MESSAGE = 4096
MAX_NOTE = 16 * 1024        # characters of a note the run writes (result, motivation, run.note)
_current: contextvars.ContextVar[Optional[Run]] = contextvars.ContextVar("ptb_current_run", default=None)
_processes_written: Dict[Tuple[str, str], Entry] = {}  # (cloudpath, process key) -> as journalled by this OS process
_INTERRUPTS: Tuple[type, ...] = (KeyboardInterrupt, SystemExit)


class RecordingWarning(UserWarning):
    """A run could not be recorded completely; the user's call was not affected."""


def _warn(message: str) -> None:
    try:
        warnings.warn(message, RecordingWarning, stacklevel=3)
    except Exception:   # warnings turned into errors must still not break the user's call
        pass


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


def _cpu() -> Optional[Tuple[float, float]]:
    """(user, system) CPU seconds of this OS process, all threads; None if unknown. One system call."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime, usage.ru_stime
    except Exception:       # no resource module (Windows)
        try:
            import psutil

            times = psutil.Process().cpu_times()
            return times.user, times.system
        except Exception:
            return None


@functools.lru_cache(maxsize=1)
def _psutil_process(pid: int) -> Any:
    import psutil

    return psutil.Process(pid)


def _this_process() -> Any:
    """psutil's handle on this OS process, made once per pid (a fork gets its own)."""
    return _psutil_process(os.getpid())


def _memory() -> Tuple[Optional[int], Optional[int]]:
    """(RSS now, peak RSS so far) in bytes, None where unknown."""
    try:
        rss: Optional[int] = _this_process().memory_info().rss
    except Exception:
        rss = None
    try:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak: Optional[int] = maxrss if sys.platform == "darwin" else maxrss * 1024    # KiB except on macOS
    except Exception:
        peak = None
    return rss, peak


def _seconds(duration: float) -> str:
    if duration < 1:
        return f"{duration * 1000:.3g} ms"
    return f"{duration:.3g} s" if duration < 120 else f"{int(duration // 60)} min {duration % 60:.0f} s"


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _bounded(text: str, limit: int, omitted: int = 0) -> str:
    """``text`` cut to at most ``limit`` characters, saying how many were cut."""
    if len(text) <= limit and not omitted:
        return text
    keep = max(limit - 40, 0)
    return text[:keep] + f" ... [truncated {len(text) - keep + omitted} chars]"


def _clean(text: str, redact: Iterable[str] = (), limit: int = MAX_NOTE) -> str:
    """Secrets scrubbed, then bounded: scrubbed before it is cut, so no secret is stored cut in half."""
    from .params import scrub_text

    head = text[:4 * limit]
    return _bounded(scrub_text(head, redact), limit, len(text) - len(head))


def _error(exc: BaseException, redact: Iterable[str] = ()) -> Dict[str, Any]:
    """Type, message and traceback (its first line and last frames, bounded), secrets scrubbed."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    try:
        return {"type": _type_name(exc), "message": _clean(message, redact, MAX_MESSAGE),
                "traceback": _traceback(exc, redact)}
    except Exception as err:        # never store an unscrubbed text, never lose the run's end
        return {"type": _type_name(exc), "message": f"<not recorded: {err!r}>"[:MAX_MESSAGE], "traceback": ""}


def _traceback(exc: BaseException, redact: Iterable[str]) -> str:
    chunks = [_clean(c, redact, 2048).rstrip("\n") + "\n"
              for c in traceback.format_exception(type(exc), exc, exc.__traceback__)]
    text = "".join(chunks)
    if len(text) > MAX_TRACEBACK:     # keep where it started (first frames) and where it failed (last ones)
        head, tail = chunks[:4], []
        budget = MAX_TRACEBACK - 100 - sum(map(len, head))
        for chunk in reversed(chunks[4:]):
            if len(chunk) > budget:
                break
            tail.append(chunk)
            budget -= len(chunk)
        omitted = f"  ... [{len(chunks) - len(head) - len(tail)} frames omitted] ...\n"
        text = "".join(head) + omitted + "".join(reversed(tail))
    return text


class Run:
    """One documented execution; a fresh one per call, block or cell (never reused).

    Used as a context manager. Inside it, ``note`` adds a note linked to the
    run and ``result`` sets the result note. The parameters known at entry
    name the run's process, except the ``per_run`` ones, which are this run's
    own (the chunk it works on); values added to ``parameters`` inside the
    block are this run's own too: what turns up while working is not the step.
    """

    def __init__(self, volumes: Sequence[Volume], description: str, parameters: Optional[Dict[str, Any]] = None,
                 *, motivation: Optional[str] = None, result: Union[str, Callable[[Any], Any], None] = None,
                 redact: Sequence[str] = (), exclude: Sequence[str] = (), source_file: Optional[str] = None,
                 func: Optional[Callable] = None, sources: Sequence[Any] = (), per_run: Sequence[str] = ()):
        _check(description, motivation, result)
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
        self._value_text: Optional[str] = None
        self._ended_early: Optional[str] = None
        self._parent_run: Optional[Run] = None

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.description!r} {self.status}>"

    @property
    def cloudpaths(self) -> List[str]:
        return [vol.cloudpath for vol in self.volumes]

    # ----------------------------------------------------------- user API
    def note(self, text: str, note_type: Union[NoteType, int, str] = NoteType.GENERIC) -> Note:
        """Record a note now, linked to this run (one journal write; the view gets it when the run ends).

        A text over ``MAX_NOTE`` characters is cut, with a ``RecordingWarning``.
        """
        if self.status == "new":
            raise ProvenanceError("enter the run (`with ptb.documented(...) as run:`) before adding notes")
        note = Note(utcnow(), NoteType.parse(note_type), self._cut(text, "note"), run=self.id)
        for vol in self.volumes:
            self._journalled[vol.cloudpath] += journal.append(vol, [note])
        return note

    def result(self, text: str) -> None:
        """Set the result note, written when the run ends (replaces the default one); bounded like ``note``."""
        self._results.append(Note(utcnow(), NoteType.RESULT, self._cut(text, "result"), run=self.id))

    def _cut(self, text: Any, what: str) -> Any:
        if isinstance(text, str) and len(text) > MAX_NOTE:
            _warn(f"ptb: the {what} of run {self.id} ({self.description!r}) is {len(text)} characters; "
                  f"only the first {MAX_NOTE} are recorded (large outputs belong in the volume)")
            return _bounded(text, MAX_NOTE)
        return text

    # ------------------------------------------------------------ entry
    def __enter__(self) -> Run:
        self._start()
        self._token = self._activate()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._deactivate(self._token)
        self._finish(exc)       # returns None: the exception, if any, propagates unchanged

    def _activate(self) -> contextvars.Token:
        """Make this the current run (while its code runs); returns the token for ``_deactivate``."""
        return _current.set(self)

    def _deactivate(self, token: contextvars.Token) -> None:
        try:
            _current.reset(token)
        except ValueError:      # ended in another context (a generator closed elsewhere)
            _current.set(self._parent_run)

    def _start(self) -> None:
        """Write the run's start; raises (a ptb error) before the user's code runs, never after."""
        from .params import prepare_parameters

        if self.status != "new":
            raise ProvenanceError(f"run {self.id} was already entered: each call, block or cell needs its own "
                                  f"ptb.documented(...)")
        self.status = "not started"
        self._parent_run = _current.get()
        self.parent = self._parent_run.id if self._parent_run is not None else None
        for vol in self.volumes:
            vol.check_readable()
        identity = {k: v for k, v in self.parameters.items() if k not in self._per_run}
        self._recorded = prepare_parameters(identity, redact=self._redact, exclude=self._exclude)
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
        self._motivation = Note(self.started, NoteType.MOTIVATION, self._cut(motivation, "motivation"), run=self.id)
        started: List[Volume] = []
        self._journalled: Dict[str, List[Entry]] = {}
        try:
            for vol in self.volumes:
                for env in envs:
                    journal.write_env(vol, env, spool_on_failure=False)
                proc = self._new_process(vol, self._recorded)
                written = journal.append(vol, [*proc, self._record, self._motivation], spool_on_failure=False)
                started.append(vol)
                self._journalled[vol.cloudpath] = written
                self._process_written(vol, written)
        except BaseException as exc:
            self._abandon(started, exc)
            raise
        self.status = "running"
        self._cpu0 = _cpu()
        self._t0 = time.perf_counter()

    def _run_values(self, keys: Iterable[str]) -> Dict[str, Any]:
        """This run's own values among ``parameters``, JSON-safe and redacted as the process's are."""
        from .params import prepare_parameters

        wanted = set(keys)
        return prepare_parameters({k: v for k, v in self.parameters.items() if k in wanted},
                                  redact=self._redact, exclude=self._exclude)

    def _capture(self) -> List[Any]:
        try:
            from . import env

            envs = list(env.capture(self._source_file, self._func))
        except Exception as exc:
            _warn(f"ptb could not capture the code environment of {self.description!r}: {exc!r}")
            envs = []
        return envs + self._sources

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
                "type": _type_name(exc), "message": _clean(f"not started: {exc}", self._redact, MAX_MESSAGE),
                "traceback": ""})
            for vol in started:
                updater.update(vol, self._published_with_end(vol, final.process) + journal.append(vol, [final]))
        except Exception as err:
            _warn(f"ptb could not close run {self.id} that did not start: {err!r}")

    # ------------------------------------------------------------- exit
    def _returned(self, value: Any) -> None:
        """Turn the return value into the result note with the user's callable; never raises."""
        if callable(self._result):
            try:
                self._value_text = _clean(str(self._result(value)), self._redact)
            except Exception as exc:
                _warn(f"ptb: the result callable of {self.description!r} raised {exc!r}; "
                      f"the default result note is recorded instead")

    def _finish(self, exc: Optional[BaseException] = None) -> None:
        """Write the run's end. Never raises: the user's result or exception comes first."""
        if self.status != "running":
            return
        try:
            self.duration = duration = time.perf_counter() - self._t0
            ended = utcnow()
            resources = self._resources()
            if exc is None:
                self.status, error = "succeeded", None
            else:
                self.status = "interrupted" if isinstance(exc, _INTERRUPTS) or _cancelled(exc) else "failed"
                error = _error(exc, self._redact)
            final = dataclasses.replace(self._record, status=self.status, ended=ended, duration=duration,
                                        resources=resources, error=error, parameters=self._final_run_values())
        except Exception as err:
            self.status = "unrecorded"
            _warn(f"ptb could not record the end of run {self.id} ({self.description!r}): {err!r}")
            return
        try:
            notes = self._result_notes(ended, duration, error)
        except Exception as err:        # the run's end is still recorded, without its result note
            notes = []
            _warn(f"ptb could not record the result note of run {self.id} ({self.description!r}): {err!r}")
        for vol in self.volumes:
            journalled: List[Entry] = []
            try:                          # in order, the run's end first; a storage failure spools the rest
                journalled = journal.append(vol, [final, *notes])
            except InvalidInputError as err:  # a record over the size bound: keep the run's end at least
                _warn(f"ptb could not record all of the end of run {self.id} on {vol.cloudpath}: {err}")
                try:
                    journalled = journal.append(vol, [final])
                except Exception as again:
                    _warn(f"ptb could not record the end of run {self.id} on {vol.cloudpath}: {again!r}")
            except Exception as err:
                _warn(f"ptb could not record the end of run {self.id} on {vol.cloudpath}: {err!r}")
            if not any(record is final for _, record in journalled):
                continue                  # spooled: `ptb flush` publishes it with the rest
            updater.update(vol, self._published_with_end(vol, final.process) + journalled)

    def _final_run_values(self) -> Dict[str, Any]:
        """The per-run values, with those the block added or replaced (a plain call has none)."""
        if {k: id(v) for k, v in self.parameters.items()} == self._param_ids:
            return self._record.parameters
        changed = [k for k, v in self.parameters.items() if self._param_ids.get(k) != id(v)]
        return self._run_values([*self._per_run, *changed])

    def _resources(self) -> Dict[str, Any]:
        """CPU time of this OS process (all its threads) during the run; its RSS now and its peak RSS so far."""
        now, before = _cpu(), self._cpu0
        if now is None or before is None:
            return {}
        user, system = now[0] - before[0], now[1] - before[1]
        rss, peak = _memory()
        return {"cpu_time_s": round(user + system, 6), "cpu_user_s": round(user, 6),
                "cpu_system_s": round(system, 6), "memory_bytes": rss, "peak_memory_bytes": peak}

    def _result_notes(self, ended: Any, duration: float, error: Optional[Dict[str, Any]]) -> List[Note]:
        took = _seconds(duration)
        if error is not None:
            message = _bounded(error["message"], 500)       # already scrubbed
            text = f"{self.status} after {took}: {error['type']}" + (f": {message}" if message else "")
            return [*self._clean_results(), Note(ended, NoteType.RESULT, text, run=self.id)]
        if self._results:
            return self._clean_results()
        if self._value_text is not None:
            text = self._value_text
        elif isinstance(self._result, str):
            text = _clean(self._result, self._redact)
        else:
            text = f"succeeded in {took}" + (f" ({self._ended_early})" if self._ended_early else "")
        return [Note(ended, NoteType.RESULT, text, run=self.id)]

    def _clean_results(self) -> List[Note]:
        return [dataclasses.replace(n, content=_clean(n.content, self._redact)) if isinstance(n.content, str) else n
                for n in self._results]


def _check(description: Any, motivation: Any, result: Any) -> None:
    if not isinstance(description, str) or not description.strip():
        raise InvalidInputError("a documented run needs a description (a non-empty str)")
    if motivation is not None and not isinstance(motivation, str):
        raise InvalidInputError(f"motivation must be a str, not {type(motivation).__name__}")
    if result is not None and not (isinstance(result, str) or callable(result)):
        raise InvalidInputError("result must be a str or a callable applied to the return value")


def names(value: Union[str, Sequence[str]], what: str) -> Tuple[str, ...]:
    """Parameter names given as a list or as one string (``"bbox, mip"``)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n for n in items):
        raise InvalidInputError(f"{what} must name parameters (str), not {value!r}")
    return tuple(items)


def _cancelled(exc: BaseException) -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


# ------------------------------------------------------------------ the decorator
def _targets(volume: Any) -> List[Any]:
    items = list(volume) if isinstance(volume, (list, tuple)) else [volume]
    if not items:
        raise InvalidInputError("no volume given: pass a CloudVolume, a cloudpath, a list of them or a parameter name")
    return items


def provenance(volume: Any, description: str, *, motivation: Optional[str] = None,
               result: Union[str, Callable[[Any], Any], None] = None, parameters: Any = None,
               exclude: Sequence[str] = (), redact: Sequence[str] = (), secrets: Any = None,
               per_run: Union[str, Sequence[str]] = ()) -> Callable:
    """Document every call of the decorated function as a run on ``volume``.

    Args:
        volume: A CloudVolume, a cloudpath, a list of them, or the name of one
            of the function's parameters that holds one (or a list).
        description: What the function does; with the parameters, it names the process.
        motivation: Why (the motivation note); a default names the description.
        result: The result note's text, or a callable applied to the return value.
        parameters: Extra values recorded with the call's own (dict, namespace, ConfigParser, dataclass).
        exclude: Parameter names left out. redact: more names whose values are secret.
        secrets: CloudFiles secrets for cloudpaths.
        per_run: Parameter names whose values belong to each run (the chunk a
            task works on: ``bbox``, ``offset``), not to the process: every
            chunk of a step is then one process with many runs.

    Works on functions, methods, class- and staticmethods, coroutine functions
    (the run ends after the ``await``), generators and async generators (the
    run ends when they are exhausted or closed); see ``ptb.runners``. For
    async code, the run's start (environment capture, a few small writes)
    runs synchronously in the event loop on first await. The decorated
    function pickles by reference, as a plain function does, so it can be
    sent to process pools; cloudpickle (Dask, joblib, Ray) sends one it
    cannot import by value, with its decoration. Exception messages,
    tracebacks and the result note are scrubbed of secrets (and of the
    ``redact`` names) before they are stored, and notes are bounded to
    ``MAX_NOTE`` characters.
    """
    from .params import parameters_from
    from .runners import decorator

    targets = _targets(volume)
    parameters_from(parameters)           # an unusable container fails now, not at the first call
    _check(description, motivation, result)
    per_run = names(per_run, "per_run")

    def new_run(vols: List[Volume], raw: Dict[str, Any], source_file: Optional[str], func: Callable) -> Run:
        return Run(vols, description, raw, motivation=motivation, result=result, redact=redact, exclude=exclude,
                   source_file=source_file, func=func, per_run=per_run)

    remake = functools.partial(provenance, volume, description, motivation=motivation, result=result,
                               parameters=parameters, exclude=exclude, redact=redact, secrets=secrets,
                               per_run=per_run)
    return decorator(targets, new_run, parameters=parameters, secrets=secrets, remake=remake)


# ------------------------------------------------------------- the context manager
def _from_caller(names: Union[str, Sequence[str]], frame: Any) -> Dict[str, Any]:
    wanted = names.replace(",", " ").split() if isinstance(names, str) else list(names)
    missing = [n for n in wanted if n not in frame.f_locals and n not in frame.f_globals]
    if missing:
        raise InvalidInputError(f"parameters {', '.join(map(repr, missing))} name no variable where "
                                f"ptb.documented was called; give their values in a dict instead")
    return {n: frame.f_locals[n] if n in frame.f_locals else frame.f_globals[n] for n in wanted}


def _caller_sources(filename: str, redact: Sequence[str]) -> Tuple[Optional[str], List[Any]]:
    """The source file to find the git checkout from, and the cell's source (scrubbed) when there is no file."""
    if os.path.isfile(filename):
        return filename, []
    import linecache

    from .env import SourceEnv
    from .params import scrub_text

    lines = linecache.getlines(filename)
    return None, ([SourceEnv("cell", scrub_text("".join(lines), redact), filename)] if lines else [])


def documented(volume: Any, description: str, *, parameters: Any = None, motivation: Optional[str] = None,
               result: Optional[str] = None, exclude: Sequence[str] = (), redact: Sequence[str] = (),
               secrets: Any = None, per_run: Union[str, Sequence[str]] = ()) -> Run:
    """A block documented as a run: ``with ptb.documented(vol, "what") as run: ...``.

    ``parameters`` is a dict (or namespace, ConfigParser, dataclass), or names
    of variables at the call site (``["mip", "thr"]`` or ``"mip, thr"``)
    whose values are taken as they are, so notebook users need not retype them.
    ``per_run`` names those that belong to this run, not to the step (see ``provenance``).
    """
    from .params import parameters_from

    frame = sys._getframe(1)
    try:
        is_names = isinstance(parameters, str) or (
            isinstance(parameters, (list, tuple)) and all(isinstance(p, str) for p in parameters))
        raw = _from_caller(parameters, frame) if is_names else parameters_from(parameters)
        source_file, sources = _caller_sources(frame.f_code.co_filename, redact)
    finally:
        del frame
    if result is not None and not isinstance(result, str):
        raise InvalidInputError("documented(result=...) is the result note's text; use run.result(text) inside")
    vols = [Volume.resolve(t, secrets) for t in _targets(volume)]
    return Run(vols, description, raw, motivation=motivation, result=result, redact=redact, exclude=exclude,
               source_file=source_file, sources=sources, per_run=per_run)
