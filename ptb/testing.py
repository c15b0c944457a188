"""Helpers for your own tests: a throw-away volume, and assertions on what was documented.

::

    import ptb.testing

    def test_meshing_is_documented():
        vol = ptb.testing.volume()                 # a small real CloudVolume on mem://
        mesh(vol.cloudpath, mip=2)                  # your @ptb.provenance-decorated step
        run = ptb.testing.assert_documented(vol, "meshing", parameters={"mip": 2})
        assert run.duration is not None

Everything here reads the volume back with ``ptb.history``, so what it checks
is what ``ptb log`` would show.
"""
from __future__ import annotations

import atexit
import tempfile
from typing import Any, Mapping, Optional, Sequence

from .read.fmt import count as fmt_count
from .read.history import History, history
from .records import NoteType, RunRecord, new_id
from .store.volume import as_cloudpath

__all__ = ["volume", "records", "assert_documented"]

_made: list = []     # the temporary directories of file:// volumes, removed at exit


def _remove_made() -> None:
    import shutil

    for directory in _made:
        shutil.rmtree(directory, ignore_errors=True)


def volume(protocol: str = "mem", path: Optional[str] = None, shape: Sequence[int] = (8, 8, 8),
           dtype: str = "uint8") -> Any:
    """A small, real CloudVolume of zeros to document runs on.

    Args:
        protocol: ``"mem"`` (in this process's memory, nothing to clean up) or
            ``"file"`` (a new temporary directory, visible to subprocesses,
            removed when this process exits).
        path: A cloudpath or a local directory to use instead.
    """
    import numpy as np
    from cloudvolume import CloudVolume

    if path is not None:
        cloudpath = as_cloudpath(str(path))
    elif protocol == "mem":
        cloudpath = f"mem://ptb-testing/{new_id()}"
    elif protocol == "file":
        directory = tempfile.mkdtemp(prefix="ptb-testing-")
        if not _made:
            atexit.register(_remove_made)
        _made.append(directory)
        cloudpath = "file://" + directory
    else:
        raise ValueError(f"protocol must be 'mem' or 'file', not {protocol!r}")
    return CloudVolume.from_numpy(np.zeros(tuple(shape), dtype=dtype), vol_path=cloudpath, resolution=(1, 1, 1))


def records(vol: Any) -> History:
    """Everything documented on ``vol`` (a CloudVolume or a cloudpath), read from its journal."""
    return history(vol)


def _describe(hist: History) -> str:
    lines = []
    for run in hist.runs:
        proc = hist.process(run.process)
        params = proc.parameters if proc is not None else "?"
        lines.append(f"  {run.description!r} [{run.status}] parameters={params}")
    return "\n".join(lines) or "  (no runs)"


def assert_documented(vol: Any, description: Optional[str] = None, *, status: Optional[str] = "succeeded",
                      parameters: Optional[Mapping[str, Any]] = None, motivation: Optional[str] = None,
                      result: Optional[str] = None, count: Optional[int] = None) -> RunRecord:
    """Assert that a run matching everything given was documented on ``vol``; returns the latest one.

    Args:
        description: The run's description (any when None).
        status: ``succeeded`` (the default), ``failed``, ``interrupted``, ``running``, or None for any.
        parameters: Values the run's process must hold (others may be there too),
            compared after ptb's JSON conversion (tuples become lists, Paths strings...).
        motivation, result: Text that the run's motivation / result note must contain.
        count: How many runs must match exactly (at least one when None).

    Raises:
        AssertionError: listing what was documented instead.
    """
    from .capture.params import to_jsonable

    hist = history(vol)
    expected = {k: to_jsonable(v) for k, v in (parameters or {}).items()}

    def matches(run: RunRecord) -> bool:
        if description is not None and run.description != description:
            return False
        if status is not None and run.status != status:
            return False
        proc = hist.process(run.process)
        if expected and (proc is None or any(proc.parameters.get(k, object()) != v for k, v in expected.items())):
            return False
        notes = hist.notes_of(run.id)
        for text, kind in ((motivation, NoteType.MOTIVATION), (result, NoteType.RESULT)):
            if text is not None and not any(n.note_type is kind and text in n.content for n in notes):
                return False
        return True

    found = [run for run in hist.runs if matches(run)]
    if (count is None and not found) or (count is not None and len(found) != count):
        wanted = ", ".join(f"{k}={v!r}" for k, v in (("description", description), ("status", status),
                                                     ("parameters", parameters), ("motivation", motivation),
                                                     ("result", result)) if v is not None)
        runs = "a run" if count is None else fmt_count(count, "run")
        raise AssertionError(f"expected {runs} with {wanted or 'anything'} "
                             f"on {hist.cloudpath}, found {len(found)}; documented:\n{_describe(hist)}")
    return found[-1] if found else None  # type: ignore[return-value]
