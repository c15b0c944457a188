"""Is a volume "properly documented"? The rules behind ``ptb check``.

A volume is properly documented when someone reading it later can tell where
it came from and why, and can redo every step: it names its sources, holds at
least one motivation, and every process records its parameters and at least
one code environment that can still be read. 0.1.x processes are judged by
the same rules; foreign (igneous, hand-written) entries are not processes ptb
can judge and are left alone.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Dict, List

from ..errors import VolumeUnavailableError
from ..records import NoteType, ProcessRecord
from .history import History, history


@dataclasses.dataclass
class CheckReport:
    """What ``check`` found on one volume; ``ok`` when nothing is missing."""

    cloudpath: str
    problems: List[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def to_json(self) -> Dict[str, Any]:
        return {"volume": self.cloudpath, "ok": self.ok, "problems": list(self.problems)}


def _name(process: ProcessRecord) -> str:
    ident = process.id if process.id.startswith("legacy-") else process.key[:8]
    return f"process {process.description!r} ({ident})"


def _process_problems(h: History, process: ProcessRecord) -> List[str]:
    problems = []
    if not process.parameters:
        problems.append(f"{_name(process)} records no parameters")
    if not process.code_envfiles:
        problems.append(f"{_name(process)} records no code environment")
    runs = h.runs_of(process.key)
    used: Dict[str, int] = {}
    for run in runs:          # each run is answered from its own environment: each must be readable too
        for path in run.code_envfiles:
            used[path] = used.get(path, 0) + 1
    for path in dict.fromkeys([*process.code_envfiles, *used]):
        content = h.envs.get(path)
        whose = f" (the environment of {used[path]:,} of its {len(runs):,} runs)" if path in used else ""
        if content is None:
            problems.append(f"{_name(process)}: code environment file {path} is missing from the volume{whose}")
        elif isinstance(content, dict) and isinstance(content.get("refused"), str):
            problems.append(f"{_name(process)}: code environment file {path} cannot be used: "
                            f"{content['refused']}{whose}")
        elif not isinstance(content, dict) or not content or "unreadable" in content:
            problems.append(f"{_name(process)}: code environment file {path} is empty or not JSON{whose}")
    return problems


def check_history(h: History) -> CheckReport:
    """Judge an already-read history (what ``export`` uses for its HTML page)."""
    problems = list(h.problems)
    if h.empty:
        problems.append("no provenance recorded: no `provenance` file and an empty journal")
        return CheckReport(h.cloudpath, problems)
    if not [s for s in h.sources if isinstance(s, str) and s.strip()]:
        problems.append("names no sources: list what it was made from in the `sources` of its provenance "
                        "(CloudVolume(path).provenance.sources = [...]; .commit_provenance())")
    if not any(n.note_type is NoteType.MOTIVATION for n in h.notes):
        problems.append(f"holds no motivation note: say why it exists with "
                        f"`ptb note {h.cloudpath} --motivation TEXT`")
    for process in h.processes:
        problems.extend(_process_problems(h, process))
    return CheckReport(h.cloudpath, problems)


def check(volume: Any, secrets: Any = None) -> CheckReport:
    """Check that ``volume`` (a CloudVolume or a cloudpath) is properly documented.

    An unreachable volume, a corrupt ``provenance`` file and journal records
    that cannot be read are reported as problems, so that checking many
    volumes goes on past a bad one. A path that is not a cloudpath raises
    ``InvalidInputError``.
    """
    from ..store.volume import Volume

    vol = Volume.resolve(volume, secrets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            h = history(vol)
        except VolumeUnavailableError as exc:
            return CheckReport(vol.cloudpath, [f"cannot be read: {exc}"])
    report = check_history(h)
    for warning in caught:
        message = str(warning.message)
        if message not in report.problems:
            report.problems.insert(0, message)
    return report
