"""0.1.x's notes API (``provenancetoolbox.notebook``), served by ptb.

0.1.x packed notes into the ``description`` of the ``provenance`` file and
rewrote the whole file for each one. Here a note is one record in the
volume's journal (``ptb.addnote``), and ``parsenotes`` reads ptb's notes and
the notes 0.1.x packed into ``description`` alike. What a script sees keeps
0.1.x's shape: ``Note`` objects whose ``timestamp`` is a naive local
datetime (what ``datetime.now()`` gave 0.1.x), ``NoteType`` with the same
members and values, functions that return ``None`` where 0.1.x did.
"""
from __future__ import annotations

import datetime as _datetime
import typing as _typing

import ptb as _ptb
from ptb.read.history import _by_time
from ptb.read.history import legacy_notes as _legacy_notes
from ptb.records import NoteType

if _typing.TYPE_CHECKING:
    import datetime
    from typing import Optional, Union

    import cloudvolume as cv

NOTE_SEP = ' \n '
FIELD_SEP = ';'


__all__ = ['parsenotes', 'note_absent',
           'addmotivation', 'addresult', 'addgeneric']


class Note:
    """A note as 0.1.x showed it: ``timestamp``, ``note_type``, ``content``.

    ``str(note)`` is 0.1.x's packed form ``timestamp;TYPE;content``.
    """

    def __init__(self,
                 timestamp: Union[datetime.datetime, str],
                 note_type: Union[NoteType, int],
                 content: str
                 ):
        if timestamp is not None and not isinstance(timestamp, _datetime.datetime):
            timestamp = _datetime.datetime.fromisoformat(timestamp)
        self.timestamp = timestamp
        self.note_type = NoteType.parse(note_type)
        self.content = content

    def __str__(self) -> str:
        return f"{self.timestamp}{FIELD_SEP}{self.note_type.name}{FIELD_SEP}{self.content}"


def _shown(note: _ptb.Note) -> Note:
    """ptb keeps timezone-aware UTC; 0.1.x scripts compare with naive ``datetime.now()``."""
    local = None if note.timestamp is None else note.timestamp.astimezone().replace(tzinfo=None)
    return Note(local, note.note_type, note.content)  # type: ignore[arg-type]


def parsenotes(cloudvolume: cv.CloudVolume,
               note_sep: str = NOTE_SEP,
               field_sep: str = FIELD_SEP
               ) -> list[Note]:
    """Every note on the volume, ptb's and 0.1.x's, oldest first.

    The separators only ever applied to notes packed into ``description``;
    they are used there still.
    """
    found = _ptb.history(cloudvolume, with_envs=False)
    notes = found.notes
    if (note_sep, field_sep) != (NOTE_SEP, FIELD_SEP):
        description = found.provenance.get("description")
        packed = _legacy_notes(description if isinstance(description, str) else "", note_sep, field_sep)
        notes = sorted([n for n in notes if not n.id.startswith("legacy-")] + packed, key=_by_time)
    return [_shown(n) for n in notes]


def addnote(cloudvolume: cv.CloudVolume,
            note_type: NoteType,
            content: str,
            timestamp: Optional[Union[datetime.datetime, str]] = None,
            note_sep: str = NOTE_SEP,
            field_sep: str = FIELD_SEP
            ) -> None:
    """Adds a note of any type (now, unless ``timestamp`` says when).

    The separators are accepted for 0.1.x's sake: a journalled note needs none.
    """
    _ptb.addnote(cloudvolume, note_type, content, timestamp)


def addmotivation(cloudvolume: cv.CloudVolume,
                  content: str,
                  timestamp: Optional[Union[datetime.datetime, str]] = None,
                  note_sep: str = NOTE_SEP,
                  field_sep: str = FIELD_SEP
                  ) -> None:
    """Adds a motivation note: why the volume (or this step) exists."""
    addnote(cloudvolume, NoteType.MOTIVATION, content, timestamp, note_sep, field_sep)


def addresult(cloudvolume: cv.CloudVolume,
              content: str,
              timestamp: Optional[Union[datetime.datetime, str]] = None,
              note_sep: str = NOTE_SEP,
              field_sep: str = FIELD_SEP
              ) -> None:
    """Adds a result note: what came out of it."""
    addnote(cloudvolume, NoteType.RESULT, content, timestamp, note_sep, field_sep)


def addgeneric(cloudvolume: cv.CloudVolume,
               content: str,
               timestamp: Optional[Union[datetime.datetime, str]] = None,
               note_sep: str = NOTE_SEP,
               field_sep: str = FIELD_SEP
               ) -> None:
    """Adds a generic note: anything else worth remembering."""
    addnote(cloudvolume, NoteType.GENERIC, content, timestamp, note_sep, field_sep)


def note_absent(cloudvolume: cv.CloudVolume,
                content: str,
                note_type: Optional[NoteType] = None
                ) -> bool:
    """True when no note with this content (and this type, if given) is recorded.

    0.1.x returned True whenever ``note_type`` was None, so a script that
    guards a note with it wrote the note again on every run; this does not.
    """
    return _ptb.note_absent(cloudvolume, content, note_type)
