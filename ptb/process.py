"""Processes: a processing step with its parameters and code environments.

The 0.1.x API, kept as people write it. Parameters are made JSON-safe and
redacted (``ptb.capture.params``); code environments are stored once each,
content-addressed, and named by the process record.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .errors import DuplicateProcessError, InvalidInputError
from .read.history import history
from .records import ProcessRecord, canonical_json, process_key, utcnow
from .store import writer
from .store.volume import Volume


class Process:
    """A processing step that affects a volume.

    Args:
        description: What the step does.
        parameters: dict, SimpleNamespace, ConfigParser, argparse.Namespace or dataclass.
        *code_envs: The code environments (``PythonGithubEnv``, ``DockerEnv``, ...).
    """

    def __init__(self, description: str, parameters: Any, *code_envs: Any):
        from .capture.codeenv import CodeEnv
        from .capture.params import prepare_parameters

        if not isinstance(description, str) or not description.strip():
            raise InvalidInputError(f"a process needs a description (a non-empty string), not {description!r}")
        for env in code_envs:
            if not isinstance(env, CodeEnv):
                raise InvalidInputError(f"code environments must be PythonGithubEnv, DockerEnv or another "
                                        f"ptb.capture.env.CodeEnv, not {type(env).__name__} ({env!r:.60})")
        from .capture.redact import scrubbed

        self.description = scrubbed(description)
        self.parameters = parameters
        self.code_envs = code_envs
        self._params = prepare_parameters(parameters)

    @property
    def key(self) -> str:
        return process_key(self.description, self._params)

    def logparams(self) -> Dict[str, Any]:
        """The parameters as recorded: a JSON-safe dict, secrets redacted (0.1.x's name)."""
        return self._params

    def log(self) -> Tuple[Dict[str, Any], List[str]]:
        """The 0.1.x pair: the ``processing`` entry and the env files' contents."""
        names, contents = [], []
        for env in self.code_envs:
            name, text = env.log()
            names.append(name)
            contents.append(text)
        return {"task": self.description, "parameters": self._params, "code_envfiles": names}, contents

    def record(self, code_envfiles: Tuple[str, ...] = ()) -> ProcessRecord:
        return ProcessRecord(self.description, self._params, tuple(code_envfiles), timestamp=utcnow())

    def __repr__(self) -> str:
        return f"Process({self.description!r}, {canonical_json(self._params)[:80]})"


def _require_process(process: Any) -> None:
    if not isinstance(process, Process):
        raise InvalidInputError(f"expected a ptb.Process(description, parameters, *code_envs), "
                                f"not {type(process).__name__} ({process!r:.60})")


def process_absent(volume: Any, process: Process) -> bool:
    """True when no process with the same description and parameters is recorded."""
    _require_process(process)
    return history(volume, with_envs=False).process(process.key) is None


def logprocess(volume: Any, process: Process, duplicate: bool = False) -> ProcessRecord:
    """Record a process and store its code environments.

    Raises:
        DuplicateProcessError: (an ``AssertionError``) the process is already
            recorded and ``duplicate`` is False.
        VolumeUnavailableError: there is no volume (no ``info``) at ``volume``.
    """
    _require_process(process)
    vol = Volume.resolve(volume)
    vol.require_volume()        # a mistyped path is refused, not given a provenance file
    if not duplicate and not process_absent(vol, process):
        raise DuplicateProcessError(
            f"process {process.description!r} with these parameters is already logged on {vol.cloudpath}; "
            f"pass duplicate=True to log it again"
        )
    envfiles = tuple(writer.write_env(vol, env) for env in process.code_envs)
    record = process.record(envfiles)
    writer.write(vol, [record])
    return record
