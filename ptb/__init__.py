"""ptb, the provenance toolbox: document every processing step applied to a volume, inside the volume."""
# No ``from __future__ import annotations`` here: this module only imports, and it would add ``annotations``
# to ``dir(ptb)``.
from ._version import __version__ as __version__
from .block import documented
from .capture import params
from .capture.docker import DockerEnv, dockerimageID
from .capture.git import PythonGithubEnv
from .decorate import provenance
from .errors import (
    CorruptProvenanceError,
    DuplicateProcessError,
    InvalidInputError,
    MissingDependencyError,
    NotPicklableError,
    ProvenanceError,
    VolumeUnavailableError,
)
from .lab.find import find
from .magic import load_ipython_extension
from .notes import addgeneric, addmotivation, addnote, addresult, note_absent, parsenotes
from .process import Process, logprocess, process_absent
from .read.check import CheckReport, check
from .read.export import export
from .read.history import History, history
from .records import Note, NoteType, ProcessRecord, RunRecord
from .run import RecordingWarning, Run, current_run
from .store.spool import SpoolWarning
from .store.updater import ViewWarning, sync
from .store.writer import flush

__all__ = [
    "CheckReport", "CorruptProvenanceError", "DockerEnv", "DuplicateProcessError", "History",
    "InvalidInputError", "MissingDependencyError", "Note", "NoteType", "NotPicklableError", "Process", "ProcessRecord",
    "ProvenanceError", "PythonGithubEnv", "RecordingWarning", "Run", "RunRecord", "SpoolWarning",
    "ViewWarning", "VolumeUnavailableError",
    "addgeneric", "addmotivation", "addnote", "addresult", "check", "current_run",
    "dockerimageID", "documented", "export", "find", "flush", "history", "load_ipython_extension", "logprocess",
    "note_absent", "params", "parsenotes", "process_absent", "provenance", "sync",
]
