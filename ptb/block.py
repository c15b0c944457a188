"""The documented block: ``with ptb.documented(vol, "what") as run: ...`` documents the block as a run."""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .arguments import targets
from .errors import InvalidInputError
from .run import Run
from .store.volume import Volume

__all__ = ["documented"]


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

    from .capture.redact import scrubbed
    from .capture.source import SourceEnv

    lines = linecache.getlines(filename)
    return None, ([SourceEnv("cell", scrubbed("".join(lines), redact), filename)] if lines else [])


def documented(volume: Any, description: str, *, parameters: Any = None, motivation: Optional[str] = None,
               result: Optional[str] = None, exclude: Sequence[str] = (), redact: Sequence[str] = (),
               secrets: Any = None, per_run: Union[str, Sequence[str]] = ()) -> Run:
    """A block documented as a run: ``with ptb.documented(vol, "what") as run: ...``.

    ``parameters`` is a dict (or namespace, ConfigParser, dataclass), or names
    of variables at the call site (``["mip", "thr"]`` or ``"mip, thr"``)
    whose values are taken as they are, so notebook users need not retype them.
    ``per_run`` names those that belong to this run, not to the step (see ``provenance``).
    """
    from .capture.params import parameters_from

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
    vols = [Volume.resolve(t, secrets) for t in targets(volume)]
    return Run(vols, description, raw, motivation=motivation, result=result, redact=redact, exclude=exclude,
               source_file=source_file, sources=sources, per_run=per_run)
