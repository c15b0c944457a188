"""provenance-toolbox 0.1.x's import name, kept so that 0.1.x scripts run unchanged; new code: ``import ptb``.

Every function and class here has its 0.1.x name and signature and is served
by ``ptb``: notes and processes go to the volume's journal, and the
``provenance`` file stays readable by 0.1.x itself. Nothing is added under
this name; what is new is only in ``ptb``. Importing it warns once.
"""
# No `from __future__ import annotations` here: there are no annotations, and it would add the
# name `annotations` to a namespace that holds 0.1.x's names only (as 0.1.x's __init__ had none).
import warnings as _warnings

from ptb import __version__ as __version__

from . import notebook as notebook
from . import process as process
from . import utils as utils
from .notebook import NoteType as NoteType
from .notebook import addgeneric as addgeneric
from .notebook import addmotivation as addmotivation
from .notebook import addresult as addresult
from .notebook import note_absent as note_absent
from .notebook import parsenotes as parsenotes
from .process import DockerEnv as DockerEnv
from .process import Process as Process
from .process import PythonGithubEnv as PythonGithubEnv
from .process import logprocess as logprocess
from .process import process_absent as process_absent
from .utils import dockerimageID as dockerimageID

# stacklevel 2 skips importlib's frames: the warning names the line that imported us
_warnings.warn(
    "provenancetoolbox is the 0.1.x name of ptb and keeps working, but write `import ptb` instead: "
    "the same functions under the same names, and more (see docs/upgrading.rst in ptb's documentation)",
    DeprecationWarning, stacklevel=2,
)
