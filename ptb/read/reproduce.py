"""What a recorded run can be turned back into (``ptb reproduce``): pure functions over a ``History``.

``plan`` reads, from the run's own code environments (never its process's
first), the repository and commit, the uncommitted diff and whether it can be
applied exactly (a diff cut at the size bound, scrubbed of secrets or holding
binary changes cannot), the pinned packages and Python, the Docker image, and
the call: a decorated function by module and qualname, a cell's source, or a
command's argv, with the run's parameters (the step's, and the run's own
values over them). Every value that was redacted or summarised when recorded
is named as one the user must supply; it is never made up. ``ptb.reproduce``
does the writing (git, files); the texts it writes are made in ``rerun``.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import Any, Dict, List, Optional, Tuple, Union

from ..capture.params import CYCLE, REDACTED, TOO_DEEP
from ..errors import InvalidInputError
from ..records import ProcessRecord
from ..store.volume import Volume, as_cloudpath
from .fmt import one_line
from .history import History, RecordedRun
from .show import resolve

GIT, DOCKER, SOURCE, COMMAND = "PythonGithub", "Docker", "Source", "Command"
_MARKERS = (CYCLE, TOO_DEEP)
_SUMMARY_KEYS = frozenset({"type", "summary", "sha256", "repr", "shape", "dtype", "length"})
_TRUNCATED = re.compile(r"\n\.\.\. \[(?:diff|source) truncated: (\d+) bytes\]\Z")
_BINARY = re.compile(r"^Binary files (?:a/)?(.+?) and (?:b/)?(.+?) differ$", re.M)
_DIFF_FILE = re.compile(r"^diff --git a/(.+?) b/(.+)$", re.M)
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\Z")

Path = Tuple[Union[str, int], ...]


def dotted(path: Path) -> str:
    """A path into the parameters as the rerun script's ``--set`` takes it: ``config.db.password``."""
    return ".".join(str(p) for p in path)


@dataclasses.dataclass(frozen=True)
class Call:
    """How the run's code is called again: a function by module and qualname, a cell, a command, or not at all."""

    kind: str                          # "function", "cell", "command" or "block"
    module: Optional[str] = None
    qualname: Optional[str] = None
    file: Optional[str] = None         # the function's file, relative to the repository's root
    import_root: Optional[str] = None  # the directory of the repository to import ``module`` from
    source: Optional[str] = None       # a cell's recorded source
    argv: Tuple[str, ...] = ()
    problem: Optional[str] = None      # why it cannot be called again as recorded


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything ``ptb reproduce`` restores for one run, and what it cannot."""

    volume: str
    run: RecordedRun
    process: Optional[ProcessRecord]
    git: Optional[Dict[str, Any]]
    docker: Optional[Dict[str, Any]]
    command_env: Optional[Dict[str, Any]]
    call: Call
    parameters: Dict[str, Any]
    supply: Tuple[Tuple[Path, str], ...]      # (where, why) of each value the user must give
    volume_at: Tuple[Path, ...]               # where the parameters name the run's volume
    objects: Tuple[Path, ...]                 # CloudVolume objects recorded as {cloudpath, mip}
    missing_envs: Tuple[str, ...]

    @property
    def run_id(self) -> str:
        """The run's id as text to show (ptb's ids are hex; one read from a volume may be anything)."""
        return one_line(self.run.id, 100)

    @property
    def commit(self) -> Optional[str]:
        value = (self.git or {}).get("commit hash")
        return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{7,64}", value) else None

    @property
    def remote(self) -> Optional[str]:
        """The recorded remote URL (credentials were stripped when recorded); None when there was none."""
        git = self.git or {}
        url = git.get("name")
        return url if git.get("remote") and isinstance(url, str) and url else None

    @property
    def diff(self) -> Optional[str]:
        """The recorded uncommitted diff, ``""`` for none, None when it is not known."""
        value = (self.git or {}).get("diff")
        return value if isinstance(value, str) else None

    @property
    def untracked(self) -> List[str]:
        names = (self.git or {}).get("untracked")
        return [str(n) for n in names] if isinstance(names, list) else []

    @property
    def python(self) -> Optional[str]:
        value = (self.git or {}).get("python")
        return value if isinstance(value, str) else None

    @property
    def packages(self) -> List[Tuple[str, str]]:
        value = (self.git or {}).get("packages")
        return [(str(p[0]), str(p[1])) for p in value or [] if isinstance(p, (list, tuple)) and len(p) == 2]

    def diff_files(self) -> List[str]:
        return [m.group(2) for m in _DIFF_FILE.finditer(self.diff or "")]

    def diff_problems(self) -> List[str]:
        """Why the recorded diff cannot restore the work tree exactly (empty when it can)."""
        diff = self.diff
        if self.git is None:
            return []
        if diff is None:
            return [f"the uncommitted changes are unknown (git was {one_line(self.git.get('git'), 40)} when the run "
                    f"was recorded)"]
        out = []
        cut = _TRUNCATED.search(diff)
        if cut:
            last = one_line(self.diff_files()[-1], 200) if self.diff_files() else "the last file"
            out.append(f"the recorded diff was cut at the size bound ({cut.group(1)} bytes missing): the changes "
                       f"to {last} and after are unknown")
        scrubbed = secret_files(diff)
        if scrubbed:
            out.append(f"the recorded diff was scrubbed of secrets: {_names(scrubbed)} hold {REDACTED} where "
                       f"a secret was")
        binary = [m.group(2) for m in _BINARY.finditer(diff)]
        if binary:
            out.append(f"the recorded diff does not hold the binary changes to {_names(binary)}")
        return out


def truncated(text: str) -> bool:
    """Whether a recorded diff or source was cut at its size bound (``ptb.capture.codeenv.bounded_text``)."""
    return _TRUNCATED.search(text) is not None


def _names(names: List[str]) -> str:
    return ", ".join(one_line(n, 200) for n in names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def secret_files(diff: str) -> List[str]:
    """The files of a diff with a line holding the redaction marker."""
    found: List[str] = []
    current = None
    for line in diff.splitlines():
        m = _DIFF_FILE.match(line)
        if m:
            current = m.group(2)
        elif REDACTED in line and current and current not in found:
            found.append(current)
    return found


def plan(history: History, ident: str) -> Plan:
    """What ``ptb reproduce`` can restore of the run ``ident`` names (a prefix, as ``ptb show`` takes)."""
    record = resolve(history, ident)
    if isinstance(record, ProcessRecord):
        runs = history.runs_of(record.key)
        if len(runs) != 1:
            raise InvalidInputError(f"{ident!r} names a process of {history.cloudpath} with {len(runs)} runs; give "
                                    f"one run's id (`ptb show {history.cloudpath} {record.key[:12]}` lists them)")
        record = runs[0]
    run = record
    if not isinstance(run, RecordedRun):        # History makes every run one; a hand-made History may not
        raise InvalidInputError(f"{ident!r} is not a run read back with its environments")
    process = history.process(run.process)
    envs = {path: content for path, content in run.envs.items() if isinstance(content, dict)}

    def one(kind: str) -> Optional[Dict[str, Any]]:
        return next((e for e in envs.values() if e.get("CodeEnv type") == kind), None)

    parameters = {**(process.parameters if process else {}), **run.parameters}
    git = one(GIT)
    command_env = one(COMMAND)
    call = _call(one(SOURCE), command_env, parameters, git)
    at: List[Path]
    if call.kind == "command":      # an argv names the volume in an item, or in an option's value
        at = [("command", i) for i, item in enumerate(call.argv) if argv_volume(item, history.cloudpath) is not None]
    else:
        at = volume_paths(parameters, history.cloudpath)
    return Plan(volume=history.cloudpath, run=run, process=process, git=git, docker=one(DOCKER),
                command_env=command_env, call=call, parameters=parameters,
                supply=tuple(to_supply(parameters)),
                volume_at=tuple(at),
                objects=tuple(object_paths(parameters)),
                missing_envs=tuple(p for p, c in run.envs.items() if c is None))


def _call(source: Optional[Dict[str, Any]], command: Optional[Dict[str, Any]], parameters: Dict[str, Any],
          git: Optional[Dict[str, Any]]) -> Call:
    if command is not None:
        argv = parameters.get("command")
        if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
            return Call("command", argv=tuple(argv))
        return Call("command", problem="the run's command line (its parameter 'command') is not recorded")
    if source is None:
        return Call("block", problem="the run recorded no source of its own (a documented block in a file): its "
                                     "code is in source/, where the run's description says")
    name = str(source.get("name") or "")
    if "qualname" not in source and (name == "cell" or name.startswith("cell-")):
        text = source.get("source")
        return Call("cell", source=text if isinstance(text, str) else "",
                    problem=None if isinstance(text, str) else "the cell's source is not recorded")
    module, qualname = source.get("module"), source.get("qualname")
    relfile = _relative(source.get("file"), (git or {}).get("path"))
    if not isinstance(module, str) or not isinstance(qualname, str):        # recorded by an older ptb
        module, qualname = _split(name, relfile)
    if "<locals>" in qualname or "<lambda>" in qualname:
        return Call("function", module, qualname, relfile,
                    problem=f"{qualname} is defined inside another function: it cannot be imported again")
    if not (module == "__main__" or _DOTTED.match(module)) or not _DOTTED.match(qualname):
        return Call("function", module, qualname, relfile, problem=f"{module}.{qualname} is not an importable name")
    return Call("function", module, qualname, relfile, _import_root(module, relfile))


def _relative(file: Any, root: Any) -> Optional[str]:
    """The function's file relative to the repository root, if it is inside it (a path from the volume:
    never absolute, never climbing out)."""
    if not isinstance(file, str) or not isinstance(root, str) or not root:
        return None
    root = root.rstrip("/") + "/"
    if not file.startswith(root):
        return None
    rel = posixpath.normpath(file[len(root):])
    return None if rel.startswith(("../", "/")) or rel in ("..", ".") else rel


def _module_file(module: str) -> Tuple[str, str]:
    base = module.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


def _import_root(module: str, relfile: Optional[str]) -> Optional[str]:
    """The repository directory that ``import module`` must find it in (``""`` for the root, ``src``...)."""
    if relfile is None or module == "__main__":
        return None
    for suffix in _module_file(module):
        if relfile == suffix:
            return ""
        if relfile.endswith("/" + suffix):
            return relfile[: -len(suffix) - 1]
    return None


def _split(name: str, relfile: Optional[str]) -> Tuple[str, str]:
    """``module.qualname`` as an older ptb joined them: split where the module's path matches the file."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        if relfile and _import_root(module, relfile) is not None:
            return module, ".".join(parts[i:])
    return ".".join(parts[:-1]) or "__main__", parts[-1]


# ------------------------------------------------------------------ parameters
def _summary(value: Dict[str, Any]) -> Optional[str]:
    """Why a recorded dict is a summary of a value rather than the value (ptb.capture.params' shapes)."""
    keys = set(value)
    if "type" not in keys or not keys <= _SUMMARY_KEYS or not keys & {"summary", "repr", "shape", "length"}:
        return None
    kind = value.get("type")
    if "repr" in keys:
        return f"a {kind} object, recorded only as its text"
    if "shape" in keys:
        return f"a {kind} of shape {value.get('shape')} and dtype {value.get('dtype')}, recorded as a summary"
    if "length" in keys:
        return f"{kind} of {value.get('length')} bytes, recorded as a hash"
    return f"a {kind}, recorded as a summary ({value.get('summary')})"


def to_supply(params: Any, path: Path = ()) -> List[Tuple[Path, str]]:
    """Where the parameters hold a value that was redacted or summarised, and why: values to supply."""
    out: List[Tuple[Path, str]] = []
    if isinstance(params, str):
        if params == REDACTED:
            out.append((path, "a secret, redacted when recorded"))
        elif REDACTED in params:
            out.append((path, f"holds a secret, redacted when recorded: {params[:120]}"))
        elif params in _MARKERS:
            out.append((path, f"not recorded ({params})"))
    elif isinstance(params, dict):
        why = _summary(params) if path else None
        if why:
            out.append((path, why))
        else:
            for key, value in params.items():
                out += to_supply(value, (*path, key))
    elif isinstance(params, list):
        for i, value in enumerate(params):
            out += to_supply(value, (*path, i))
    return out


def _normal(text: str) -> Optional[str]:
    """A parameter's text as a volume's cloudpath, when it can be one."""
    text = text.strip()
    if not text or "\n" in text:
        return None
    if "://" not in text:
        if not text.startswith("/"):        # relative to a working directory we do not know
            return None
        text = as_cloudpath(text)
    try:
        return Volume.resolve(text).cloudpath
    except InvalidInputError:
        return None


def volume_paths(params: Any, cloudpath: str, path: Path = ()) -> List[Path]:
    """Where the parameters name the run's volume: a cloudpath, or a CloudVolume recorded as {cloudpath, mip}."""
    out: List[Path] = []
    if isinstance(params, str):
        if _normal(params) == cloudpath:
            out.append(path)
    elif isinstance(params, dict):
        if set(params) == {"cloudpath", "mip"} and isinstance(params["cloudpath"], str):
            if _normal(params["cloudpath"]) == cloudpath:
                out.append(path)
        else:
            for key, value in params.items():
                out += volume_paths(value, cloudpath, (*path, key))
    elif isinstance(params, list):
        for i, value in enumerate(params):
            out += volume_paths(value, cloudpath, (*path, i))
    return out


def argv_volume(item: str, cloudpath: str) -> Optional[str]:
    """What precedes the run's volume in an argv item: ``""`` for the whole item, ``--dst=`` for an
    option's value; None when the item does not name it."""
    if _normal(item) == cloudpath:
        return ""
    prefix, eq, value = item.partition("=")
    if item.startswith("-") and eq and _normal(value) == cloudpath:
        return prefix + eq
    return None


def object_paths(params: Any, path: Path = ()) -> List[Path]:
    """Where a CloudVolume object was recorded as {cloudpath, mip}: rebuilt when the run is called again."""
    if isinstance(params, dict):
        if set(params) == {"cloudpath", "mip"} and isinstance(params["cloudpath"], str):
            return [path]
        return [p for key, value in params.items() for p in object_paths(value, (*path, key))]
    if isinstance(params, list):
        return [p for i, value in enumerate(params) for p in object_paths(value, (*path, i))]
    return []


# ------------------------------------------------------------------ --check
_INDEX = re.compile(r"^index [0-9a-f]+\.\.[0-9a-f]+", re.M)


def comparable(git: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The fields of a git environment that say "the same code": commit, diff, packages, Python version.

    The diff's ``index`` lines lose their abbreviated blob hashes, whose length
    depends on how many objects a clone holds, not on the code.
    """
    git = git or {}
    diff = git.get("diff")
    python = git.get("python")
    packages = git.get("packages")
    return {"commit hash": git.get("commit hash"),
            "diff": _INDEX.sub("index", diff) if isinstance(diff, str) else diff,
            "python": python.split()[0] if isinstance(python, str) and python else python,
            "packages": {str(p[0]): p[1] for p in packages or [] if isinstance(p, (list, tuple)) and len(p) == 2}}


def check(plan_: Plan, checkout: Dict[str, Any], where: str) -> Dict[str, Any]:
    """The run's code beside a checkout's (``checkout``: a git environment's contents), as ``ptb diff`` shows
    environments; ``same`` says whether nothing differs."""
    from .diff import env_rows

    if plan_.git is None:
        raise InvalidInputError(f"run {plan_.run_id} of {plan_.volume} recorded no git environment: there is "
                                f"nothing to compare a checkout with")
    rows: List[Dict[str, Any]] = []
    texts: List[Dict[str, Any]] = []
    ours = comparable(plan_.git)
    env_rows(f"env.{GIT}", ours, comparable(checkout), rows, texts)
    commit = str(ours["commit hash"] or "no commit")[:12]
    code = (f"commit {commit}{' with its uncommitted diff' if ours['diff'] else ''}, "
            f"{len(ours['packages'])} packages, Python {ours['python']}")
    return {"volume": plan_.volume, "a": {"kind": "run", "id": plan_.run_id},
            "b": {"kind": "checkout", "id": where}, "rows": rows, "texts": texts,
            "same": all(r["same"] for r in rows), "code": code}
