"""0.1.x's processes and code environments (``provenancetoolbox.process``), served by ptb.

The classes keep 0.1.x's attributes and nothing more; each holds (or builds)
the ptb object that does the work. So a ``PythonGithubEnv`` here is ptb's
snapshot of the checkout (remote URL without credentials, diff bounded and
scrubbed, no crash outside a repository), stored once under
``ptb/env/<kind>-<name>-<hash>.json``; ``logprocess`` journals the process
and brings it into the ``provenance`` view, where 0.1.x still finds it.
A code environment of your own, written for 0.1.x (a ``CodeEnv`` subclass
with ``filename`` and ``contents`` JSON text), is stored the same way.
"""
from __future__ import annotations

import abc as _abc
import inspect as _inspect
import json as _json
import typing as _typing

import ptb as _ptb
from ptb.capture import codeenv as _codeenv
from ptb.capture import docker as _docker
from ptb.capture import git as _git
from ptb.capture import params as _params
from ptb.errors import InvalidInputError as _InvalidInputError
from ptb.store.volume import Volume as _Volume

from . import utils

if _typing.TYPE_CHECKING:
    from configparser import ConfigParser
    from types import SimpleNamespace
    from typing import Union

    import cloudvolume as cv


__all__ = ['Process', 'PythonGithubEnv', 'DockerEnv',
           'logprocess', 'process_absent']


class CodeEnv(_abc.ABC):
    """A code environment: ``log()`` gives the file that describes it, ``(filename, contents)``.

    Subclasses say what ``filename`` and ``contents`` (JSON text) are, as in 0.1.x.
    """

    def __init__(self, codeptr: str):
        self.codeptr = codeptr

    def log(self) -> tuple[str, str]:
        return self.filename, self.contents

    @property
    @_abc.abstractmethod
    def filename(self) -> str:
        """The file's name, relative to the volume."""

    @property
    @_abc.abstractmethod
    def contents(self) -> str:
        """The file's JSON text."""

    def _ptb_env(self) -> _codeenv.CodeEnv:
        return _Foreign(self)


class _Foreign(_codeenv.CodeEnv):
    """An environment class written for 0.1.x, stored the ptb way (once, content-addressed)."""

    def __init__(self, legacy: _typing.Any):
        self.legacy = legacy
        self.kind = type(legacy).__name__

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.legacy.log()[0])

    def contents(self) -> _typing.Dict[str, _typing.Any]:
        text = self.legacy.log()[1]
        data = _json.loads(text) if isinstance(text, (str, bytes)) else text
        return data if isinstance(data, dict) else {"contents": data}


def _ptb_env(env: _typing.Any) -> _codeenv.CodeEnv:
    """The ptb environment that stores ``env``; 0.1.x took anything with a ``log()``."""
    if isinstance(env, CodeEnv):
        return env._ptb_env()
    if isinstance(env, _codeenv.CodeEnv) and callable(_inspect.getattr_static(type(env), "contents", None)):
        return env
    if callable(getattr(env, "log", None)):
        return _Foreign(env)
    raise _InvalidInputError(f"code environments must be PythonGithubEnv, DockerEnv or another CodeEnv "
                             f"(with a log() method), not {type(env).__name__} ({env!r:.60})")


class PythonGithubEnv(CodeEnv):
    """The git checkout holding ``codeptr`` and the installed Python packages, taken now.

    ``url`` carries no credentials, and a directory outside git is recorded as
    such rather than raising.
    """

    def __init__(self, codeptr: str):
        self.codeptr = codeptr
        self._env = _git.PythonGithubEnv(codeptr)

    @property
    def repo(self) -> _typing.Any:
        """The checkout as a GitPython ``Repo`` (imported only when asked for)."""
        import git

        return git.Repo(self._env.path or self.codeptr)

    @property
    def url(self) -> str:
        return self._env.url  # type: ignore[return-value]

    @property
    def repo_name(self) -> str:
        return self._env.repo_name

    @property
    def commithash(self) -> str:
        return self._env.commithash  # type: ignore[return-value]

    @property
    def diff(self) -> str:
        return self._env.diff  # type: ignore[return-value]

    @property
    def packagelist(self) -> list[tuple[str, str]]:
        return self._env.packagelist

    @property
    def filename(self) -> str:
        return self._env.filename

    @property
    def contents(self) -> str:
        return self._env.log()[1]

    def _ptb_env(self) -> _codeenv.CodeEnv:
        return self._env


def repo_name_from_url(repo_url: str) -> str:
    """``https://host/lab/pipe.git`` and ``git@host:lab/pipe.git`` -> ``pipe``."""
    return _git.repo_name_from_url(repo_url)


class DockerEnv(CodeEnv):
    """A Docker image: name, tag and image ID, and the Python packages when ``include_packages``."""

    def __init__(self,
                 imagename: str,
                 tag: str,
                 imageID: str,
                 include_packages: bool = False):
        self.imagename = imagename
        self.tag = tag
        self.imageID = imageID
        self.include_packages = include_packages

    def _ptb_env(self) -> _codeenv.CodeEnv:
        return _docker.DockerEnv(self.imagename, self.tag, self.imageID, self.include_packages)

    @property
    def filename(self) -> str:
        return self._ptb_env().filename

    @property
    def contents(self) -> str:
        return self._ptb_env().log()[1]

    @property
    def packagelist(self) -> list[tuple[str, str]]:
        return _codeenv.installed_packages()


class Process:
    """A processing step that affects a volume: description, parameters, code environments.

    Parameters may also be an ``argparse.Namespace`` or a dataclass; they are
    stored JSON-safe with secrets redacted (``ptb.capture.params``), and
    ``logparams()`` returns them as stored.
    """

    def __init__(self,
                 description: str,
                 parameters: Union[dict, SimpleNamespace, ConfigParser],
                 *code_envs: list[CodeEnv]):
        self.description = description
        self.parameters = parameters
        self.code_envs = code_envs
        self._process = _ptb.Process(description, parameters, *(_ptb_env(e) for e in code_envs))

    def log(self) -> tuple[dict[str, str], list[str]]:
        """The ``processing`` entry and the code environment files' contents, as logged."""
        return self._process.log()  # type: ignore[return-value]

    def logparams(self) -> dict:
        return self._process.logparams()


def _served(process: _typing.Any) -> _typing.Any:
    return process._process if isinstance(process, Process) else process


def logprocess(cloudvolume: cv.CloudVolume,
               process: Process,
               duplicate: bool = False
               ) -> None:
    """Logs a process and stores its code environments.

    Raises:
        AssertionError: (``ptb.DuplicateProcessError``) the process is already
            logged and ``duplicate`` is False.
    """
    _ptb.logprocess(cloudvolume, _served(process), duplicate)


def process_absent(cloudvolume: cv.CloudVolume, process: Process) -> bool:
    """True when no process with the same description and parameters is recorded (ptb's or 0.1.x's)."""
    return _ptb.process_absent(cloudvolume, _served(process))


def jsonify(parameters: dict) -> dict:
    """The parameters as they are recorded: JSON-safe, secrets redacted."""
    return _params.prepare_parameters(parameters)


def logcodefiles(cloudvolume: cv.CloudVolume,
                 filenames: list[str],
                 filecontents: list[str]
                 ) -> None:
    """Stores the code environment files that are not on the volume yet (never overwrites one)."""
    vol = _Volume.resolve(cloudvolume)
    for filename, filecontent in zip(filenames, filecontents):
        vol.put_json_if_absent(filename, _json.loads(filecontent))


def codefile_absent(cloudvolume: cv.CloudVolume, filename: str) -> bool:
    """True when no recorded process (or run) names this code environment file."""
    found = _ptb.history(cloudvolume, with_envs=False)
    named = {f for record in [*found.processes, *found.runs] for f in record.code_envfiles}
    return filename not in named


def logjsonfiles(cloudvolume: cv.CloudVolume,
                 filenames: list[str],
                 filecontents: list[str]
                 ) -> None:
    """Stores JSON files beside the ``provenance`` file (pretty-printed, as 0.1.x did)."""
    for filename, filecontent in zip(filenames, filecontents):
        utils.sendjsonfile(cloudvolume, filename, filecontent)
