"""ptb, the provenance toolbox: document every processing step applied to a volume, inside the volume."""
from __future__ import annotations

from .errors import (CorruptProvenanceError, DuplicateProcessError, InvalidInputError, ProvenanceError,
                     VolumeUnavailableError)
from .history import History, history
from .notes import addgeneric, addmotivation, addnote, addresult, note_absent, parsenotes
from .process import Process, logprocess, process_absent
from .records import Note, NoteType, ProcessRecord, RunRecord
from .spool import SpoolWarning, flush
from .view import sync

__version__ = "0.2.0"

__all__ = [
    "CorruptProvenanceError", "DuplicateProcessError", "History", "InvalidInputError", "Note", "NoteType",
    "Process", "ProcessRecord", "ProvenanceError", "RunRecord", "SpoolWarning", "VolumeUnavailableError",
    "addgeneric", "addmotivation", "addnote", "addresult", "flush", "history", "logprocess", "note_absent",
    "parsenotes", "process_absent", "sync",
]
