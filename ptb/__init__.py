"""ptb, the provenance toolbox: document every processing step applied to a volume, inside the volume."""
from __future__ import annotations

from . import params
from .errors import (CorruptProvenanceError, DuplicateProcessError, InvalidInputError, ProvenanceError,
                     VolumeUnavailableError)
from .history import History, history
from .notes import addgeneric, addmotivation, addnote, addresult, note_absent, parsenotes
from .env import DockerEnv, PythonGithubEnv, dockerimageID
from .process import Process, logprocess, process_absent
from .records import Note, NoteType, ProcessRecord, RunRecord
from .spool import SpoolWarning, flush
from .view import sync

__version__ = "0.2.0"

__all__ = [
    "CorruptProvenanceError", "DockerEnv", "DuplicateProcessError", "PythonGithubEnv", "dockerimageID", "History", "InvalidInputError", "Note", "NoteType",
    "Process", "ProcessRecord", "ProvenanceError", "RunRecord", "SpoolWarning", "VolumeUnavailableError",
    "addgeneric", "addmotivation", "addnote", "addresult", "flush", "history", "logprocess", "note_absent",
    "parsenotes", "process_absent", "sync",
]
