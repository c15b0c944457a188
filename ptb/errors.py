"""The exceptions ptb raises.

Every one is a ``ProvenanceError``; messages name the volume or file involved
and what to do about it. A user's own exceptions never pass through here.
"""
from __future__ import annotations

import pickle
import sys
import warnings

from .visible import visible

# What code raises when it is wrong, not when storage fails: never relabelled as a storage failure,
# never spooled (a spooled bug would be replayed), said as what it is.
BUGS = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError, RecursionError)


def warn(message: str, category: type = UserWarning, stacklevel: int = 2) -> None:
    """Issue one of ptb's warnings; never raises.

    Every warning ptb gives goes through here: a warning turned into an error
    (``python -W error``, ``filterwarnings("error")``) must not break a user's
    call, kill a background thread or dump a traceback at exit, so it is
    printed as one line on stderr instead. Text from a volume in ``message``
    has its control characters made visible (``ptb.visible``).
    """
    message = visible(message)
    try:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
    except Exception:
        try:
            sys.stderr.write(f"ptb: {getattr(category, '__name__', 'Warning')}: {message}\n")
        except Exception:   # no stderr (closed at exit, a pythonw process)
            pass


class ProvenanceError(Exception):
    """Base class of every error ptb raises on its own account."""


class VolumeUnavailableError(ProvenanceError):
    """The volume cannot be read or written (bad path, no access, server down)."""


class CorruptProvenanceError(ProvenanceError):
    """The volume's ``provenance`` file is not valid JSON, or not safe to touch (a link); ptb never overwrites it."""


class DuplicateProcessError(ProvenanceError, AssertionError):
    """``logprocess`` found the same process already logged (``duplicate=False``).

    Also an ``AssertionError``, which is what provenance-toolbox 0.1.x raised.
    """


class InvalidInputError(ProvenanceError, ValueError):
    """An argument given to ptb is not usable; the message says which and why."""


class MissingDependencyError(ProvenanceError, ImportError):
    """An optional dependency (an extra of provenance-toolbox) is not installed; the message names it."""


class NotPicklableError(ProvenanceError, pickle.PicklingError):
    """A decorated function cannot be sent to another process as it is; the message says what to change."""


class NotReproducibleError(ProvenanceError):
    """A run cannot be restored as it was recorded (``ptb reproduce``); the message names what is missing."""
