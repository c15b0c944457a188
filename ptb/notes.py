"""Notes on a volume: why it was made, what came of it, anything else.

The 0.1.x API, kept as people write it. A note costs one small journal write
and one bounded write of the ``provenance`` view, whatever the length of the
history, and the view holds it when the call returns; ``parsenotes`` and
``note_absent`` read the journal.
"""
from __future__ import annotations

from typing import Any, List, Optional, Union

from .read.history import history
from .records import Note, NoteType, Timestamp, to_utc, utcnow
from .run import current_run
from .store import writer
from .store.volume import Volume


def addnote(volume: Any, note_type: Union[NoteType, int, str], content: str,
            timestamp: Timestamp = None, *, run: Optional[str] = None) -> Note:
    """Record a note of any type; returns it (with its id).

    Inside a documented run that logs to this volume, the note is linked to
    that run unless ``run`` says otherwise. The content is stored scrubbed
    (``ptb.capture.redact.scrubbed``), as a run's own notes are: secret-looking
    assignments (``password=...``), URL credentials and tokens, and, inside a
    documented run, the secret values among its parameters. A path where
    there is no volume (no ``info``) is refused with ``VolumeUnavailableError``.
    """
    from .capture.redact import scrubbed

    vol = Volume.resolve(volume)
    current = current_run()
    if run is None:
        run = current.id if current is not None and vol.cloudpath in current.cloudpaths else None
    if isinstance(content, str):
        content = scrubbed(content, values=current.secret_values if current is not None else ())
    note = Note(to_utc(timestamp) if timestamp is not None else utcnow(), NoteType.parse(note_type), content, run=run)
    vol.require_volume()        # a mistyped path is refused, not given a provenance file
    writer.write(vol, [note])
    return note


def addmotivation(volume: Any, content: str, timestamp: Timestamp = None) -> Note:
    """Why the volume (or this step) exists."""
    return addnote(volume, NoteType.MOTIVATION, content, timestamp)


def addresult(volume: Any, content: str, timestamp: Timestamp = None) -> Note:
    """What came out of it."""
    return addnote(volume, NoteType.RESULT, content, timestamp)


def addgeneric(volume: Any, content: str, timestamp: Timestamp = None) -> Note:
    """Anything else worth remembering."""
    return addnote(volume, NoteType.GENERIC, content, timestamp)


def parsenotes(volume: Any) -> List[Note]:
    """Every note on the volume, ptb's and 0.1.x's, oldest first."""
    return history(volume, with_envs=False).notes


def note_absent(volume: Any, content: str, note_type: Union[NoteType, int, str, None] = None) -> bool:
    """True when no note with this content (and type, if given) is recorded."""
    wanted = None if note_type is None else NoteType.parse(note_type)
    return not any(n.content == content and wanted in (None, n.note_type) for n in parsenotes(volume))
