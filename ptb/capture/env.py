"""Code-environment capture: which code, in which state, ran a process.

An environment is a small JSON document without timestamps, stored once per
volume under a content-addressed name (``ptb/env/<kind>-<name>-<hash>.json``),
so identical environments are shared and different ones never overwrite each
other. The keys and value shapes of provenance-toolbox 0.1.x (``CodeEnv type``,
``name``, ``commit hash``, ``diff``, ``packages``, ``image name``, ``tag``,
``image ID``) are kept; the rest is added. Git is read through its command line,
and whatever is missing (git itself, a repository, a remote, a commit) is
recorded as what it is, never raised.
"""
from __future__ import annotations

import abc
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import MissingDependencyError, ProvenanceError
from ..records import content_hash

__all__ = ["CodeEnv", "PythonGithubEnv", "DockerEnv", "SourceEnv", "dockerimageID",
           "detect_docker", "installed_packages", "capture"]

MAX_TEXT = 256 * 1024      # bytes of diff or source kept in one environment file
MAX_UNTRACKED = 1000       # untracked names kept
STAT_LIMIT = 2000          # repositories up to this many tracked files have every file watched
GIT_TIMEOUT = 60.0

def _bounded(data: bytes, total: int, what: str) -> str:
    text = data[:MAX_TEXT].decode("utf-8", "replace")
    if total > MAX_TEXT:
        text += f"\n... [{what} truncated: {total - MAX_TEXT} bytes]"
    return text


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name or "")[:60] or "unnamed"


@functools.cache
def _platform() -> str:
    return platform.platform()


@functools.cache
def _packages() -> Tuple[Tuple[str, str], ...]:
    found = set()
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"]
            if name:
                found.add((str(name), str(dist.version or "")))
        except Exception:  # a broken distribution must not break capture
            continue
    return tuple(sorted(found, key=lambda p: (p[0].lower(), p[0], p[1])))


def installed_packages() -> List[Tuple[str, str]]:
    """Installed distributions as sorted ``(name, version)`` pairs, read once per process.

    Uses ``importlib.metadata`` (``pkg_resources`` is deprecated and slow).
    """
    return list(_packages())


class CodeEnv(abc.ABC):
    """A code environment; subclasses say what ``contents()`` holds."""

    kind: str = "CodeEnv"
    name: str = ""

    @abc.abstractmethod
    def contents(self) -> Dict[str, Any]:
        """JSON-safe description, without timestamps: the same environment gives the same dict."""

    @property
    def packagelist(self) -> List[Tuple[str, str]]:
        return installed_packages()

    def _hash(self) -> str:
        return content_hash(self.contents())

    @property
    def filename(self) -> str:
        """Content-addressed path relative to the volume, e.g. ``ptb/env/Docker-img-<hash>.json``."""
        return f"ptb/env/{self.kind}-{_safe_name(self.name)}-{self._hash()}.json"

    def log(self) -> Tuple[str, str]:
        """``(filename, JSON text of contents)``, as 0.1.x returned it."""
        return self.filename, json.dumps(self.contents(), sort_keys=True)


# --------------------------------------------------------------------- git
def _stat(path: str) -> Optional[Tuple[int, int, int]]:
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, ValueError):
        return None


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _find_repo(path: str) -> Optional[Tuple[str, str]]:
    """``(work tree, git dir)`` holding ``path``, found with a few stats and no git call."""
    p = os.path.abspath(path)
    if not os.path.isdir(p):
        p = os.path.dirname(p)
    while True:
        dotgit = os.path.join(p, ".git")
        if os.path.isdir(dotgit):
            return p, dotgit
        text = _read(dotgit) if os.path.isfile(dotgit) else None   # worktrees, submodules
        if text and text.startswith("gitdir:"):
            return p, os.path.normpath(os.path.join(p, text[7:].strip()))
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent


def _common_dir(gitdir: str) -> str:
    common = _read(os.path.join(gitdir, "commondir"))
    return os.path.normpath(os.path.join(gitdir, common)) if common else gitdir


def _git_state(gitdir: str) -> tuple:
    """What changes when HEAD moves, the index is written or the config is edited."""
    common = _common_dir(gitdir)
    head = _read(os.path.join(gitdir, "HEAD")) or ""
    ref = head[4:].strip() if head.startswith("ref:") else ""
    return (head, _stat(os.path.join(common, ref)) if ref else None,
            *(_stat(os.path.join(common, f)) for f in ("packed-refs", "reftable/tables.list", "config",
                                                       "shallow")),
            _stat(os.path.join(gitdir, "index")))


def _environ() -> Dict[str, str]:
    # GIT_OPTIONAL_LOCKS=0: `git status` must not rewrite the user's index (nor race with their git)
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def _git(cwd: str, *args: str) -> Tuple[int, bytes, str]:
    proc = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          env=_environ(), timeout=GIT_TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip()


def _git_bounded(cwd: str, *args: str) -> Tuple[bytes, int]:
    """Stdout of git, at most MAX_TEXT bytes kept, and its full length."""
    with subprocess.Popen(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=_environ()) as proc:
        assert proc.stdout is not None
        head = proc.stdout.read(MAX_TEXT)
        total = len(head)
        while chunk := proc.stdout.read(1 << 16):
            total += len(chunk)
    return head, total


def _parse_status(out: bytes) -> Tuple[Optional[str], Optional[str], List[str], List[str]]:
    """``git status --porcelain=v2 -z --branch``: (oid, head, changed paths, untracked paths)."""
    oid = head = None
    changed: List[str] = []
    untracked: List[str] = []
    parts = out.split(b"\0")
    i = 0
    while i < len(parts):
        entry = os.fsdecode(parts[i])
        i += 1
        if entry.startswith("# branch.oid "):
            oid = entry[13:]
        elif entry.startswith("# branch.head "):
            head = entry[14:]
        elif entry.startswith(("1 ", "u ")):
            changed.append(entry.split(" ", 8 if entry[0] == "1" else 10)[-1])
        elif entry.startswith("2 "):
            changed.append(entry.split(" ", 9)[-1])
            i += 1                                  # the rename's original path follows
        elif entry.startswith("? "):
            untracked.append(entry[2:])
    return oid, head, changed, untracked


def _remote_from_config(text: str) -> Optional[str]:
    """The origin (else first) remote URL of a git config file, for when git is absent."""
    urls = re.findall(r'\[remote\s+"([^"]*)"\][^\[]*?^\s*url\s*=\s*(\S+)', text, re.M)
    return dict(urls).get("origin") or (urls[0][1] if urls else None)


def repo_name_from_url(url: str) -> str:
    """``https://host/lab/pipe.git`` and ``git@host:lab/pipe.git`` -> ``pipe``."""
    base = re.split(r"[/:]", url.rstrip("/"))[-1]
    return base[:-4] if base.endswith(".git") else base


class PythonGithubEnv(CodeEnv):
    """A snapshot of the git checkout holding ``codeptr`` plus the Python packages.

    Taken once, at construction: remote URL (credentials stripped), commit,
    branch, detached/shallow/dirty flags, the uncommitted diff against HEAD
    (staged and unstaged, bounded to 256 KiB, secrets scrubbed with
    ``ptb.capture.params.scrub_text``) and untracked names (bounded to 1000). ``git``
    is ``"present"``, ``"absent"`` (no git binary: what the repository's files
    tell is still read), ``"no repository"`` or ``"error"``.
    """

    kind = "PythonGithub"

    def __init__(self, codeptr: str = "."):
        self.codeptr = codeptr
        self.path: Optional[str] = None
        self.git = "present"
        self.git_error: Optional[str] = None
        self.url: Optional[str] = None
        self.commithash: Optional[str] = None
        self.branch: Optional[str] = None
        self.detached = self.shallow = False
        self.dirty: Optional[bool] = False
        self.diff: Optional[str] = ""
        self.untracked: List[str] = []
        self.untracked_omitted = 0
        self.changed: List[str] = []     # paths (relative) found modified or untracked
        self._memo: Optional[str] = None
        self._snapshot()

    def _snapshot(self) -> None:
        from .params import scrub_text, strip_url_credentials

        start = os.path.abspath(self.codeptr)
        start = start if os.path.isdir(start) else os.path.dirname(start)
        found = _find_repo(start) if os.path.isdir(start) else None
        if not os.path.isdir(start) or shutil.which("git", path=os.environ.get("PATH")) is None:
            return self._from_files(start, found)
        try:
            rc, out, err = _git(start, "rev-parse", "--show-toplevel", "--is-shallow-repository")
            if rc != 0:
                self.path = start
                self.git = "no repository" if "not a git repository" in err.lower() else "error"
                self.git_error = scrub_text(err[:500]) if self.git == "error" else None
                return
            root, shallow = os.fsdecode(out).splitlines()[:2]
            self.path, self.shallow = root, shallow.strip() == "true"
            rc, out, _ = _git(root, "config", "--get-regexp", r"^remote\..*\.url$")
            remotes = dict(line.split(" ", 1) for line in out.decode("utf-8", "replace").splitlines()
                           if " " in line)
            url = remotes.get("remote.origin.url") or next(iter(remotes.values()), None)
            self.url = strip_url_credentials(url) if url else None
            rc, out, err = _git(root, "status", "--porcelain=v2", "-z", "--branch",
                                "--untracked-files=normal")
            if rc != 0:
                raise RuntimeError(err or "git status failed")
            oid, head, changed, untracked = _parse_status(out)
            self.commithash = oid if oid and oid != "(initial)" else None
            self.detached = head == "(detached)"
            self.branch = None if self.detached else head
            self.dirty = bool(changed)
            self.changed = changed + untracked
            names = sorted(_printable(p) for p in untracked)
            self.untracked, self.untracked_omitted = names[:MAX_UNTRACKED], max(0, len(names) - MAX_UNTRACKED)
            flags = ("--no-color", "--no-ext-diff", "--no-textconv")
            if self.commithash:
                data, total = _git_bounded(root, "diff", *flags, "HEAD")
            else:    # no commit yet: what is staged, then what is not
                staged, n1 = _git_bounded(root, "diff", *flags, "--cached")
                rest, n2 = _git_bounded(root, "diff", *flags)
                data, total = (staged + rest)[:MAX_TEXT], n1 + n2
            self.diff = scrub_text(_bounded(data, total, "diff"))   # a config file's diff can hold secrets
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as exc:
            self.git, self.git_error = "error", scrub_text(f"{type(exc).__name__}: {exc}"[:500])

    def _from_files(self, start: str, found: Optional[Tuple[str, str]]) -> None:
        """No git binary (or no such directory): read HEAD, refs and config directly."""
        from .params import strip_url_credentials

        self.path = found[0] if found else start
        if not os.path.isdir(start):
            self.git = "no repository"
            return
        self.git, self.dirty, self.diff = "absent", None, None    # unknown without git
        if not found:
            return
        gitdir, common = found[1], _common_dir(found[1])
        head = _read(os.path.join(gitdir, "HEAD")) or ""
        if head.startswith("ref:"):
            ref = head[4:].strip()
            self.branch = ref.rsplit("refs/heads/", 1)[-1]
            sha = _read(os.path.join(common, ref))
            for line in ([] if sha else (_read(os.path.join(common, "packed-refs")) or "").splitlines()):
                if line.endswith(" " + ref):
                    sha = line.split(" ", 1)[0]
            self.commithash = sha or None
        else:
            self.detached, self.commithash = True, head or None
        self.shallow = os.path.exists(os.path.join(common, "shallow"))
        url = _remote_from_config(_read(os.path.join(common, "config")) or "")
        self.url = strip_url_credentials(url) if url else None

    @property
    def remote(self) -> bool:
        return self.url is not None

    @property
    def repo_name(self) -> str:
        """The repository's name: from the remote URL, else the work tree's directory name."""
        if self.url:
            return repo_name_from_url(self.url)
        return os.path.basename(self.path.rstrip(os.sep)) if self.path else ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.repo_name

    def contents(self) -> Dict[str, Any]:
        out = {
            "CodeEnv type": self.kind, "name": self.url or self.path, "commit hash": self.commithash,
            "diff": self.diff, "packages": [list(p) for p in self.packagelist],
            "repo name": self.repo_name, "path": self.path, "remote": self.remote,
            "branch": self.branch, "detached": self.detached, "shallow": self.shallow,
            "dirty": self.dirty, "untracked": list(self.untracked),
            "untracked omitted": self.untracked_omitted, "git": self.git,
            "python": sys.version, "platform": _platform(),
        }
        if self.git_error:
            out["git error"] = self.git_error
        return out

    def _hash(self) -> str:   # a snapshot never changes: hash its (large) contents once
        if self._memo is None:
            self._memo = super()._hash()
        return self._memo


# ------------------------------------------------------------ docker, source
class DockerEnv(CodeEnv):
    """A Docker image, named by the user (0.1.x signature) or by ``detect_docker``."""

    kind = "Docker"

    def __init__(self, imagename: str, tag: Optional[str], imageID: Optional[str],
                 include_packages: bool = False):
        self.imagename = imagename
        self.tag = tag
        self.imageID = imageID
        self.include_packages = include_packages

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.imagename

    def contents(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"CodeEnv type": self.kind, "image name": self.imagename, "tag": self.tag,
                               "image ID": self.imageID}
        if self.include_packages:
            out["packages"] = [list(p) for p in self.packagelist]
        return out


def _unwrap(func: Any) -> Any:
    target = getattr(func, "__func__", func)            # methods, classmethods, staticmethods
    while isinstance(target, functools.partial):
        target = target.func
    try:
        return inspect.unwrap(target)
    except ValueError:
        return target


class SourceEnv(CodeEnv):
    """The source of a function or notebook cell, so code outside git is recorded too.

    The stored ``source`` is bounded and scrubbed of secrets (``ptb.capture.params.scrub_text``);
    ``sha256`` is the hash of the real, whole source, so the code's identity is kept.
    """

    kind = "Source"

    def __init__(self, name: str, source: str, filename: Optional[str] = None):
        self.name = name
        self.source = source
        self.file = filename      # ``filename`` is the content-addressed property
        self._stored: Optional[Tuple[str, Dict[str, str]]] = None

    def contents(self) -> Dict[str, Any]:
        if self._stored is None or self._stored[0] is not self.source:   # scrubbed once per source
            from .params import scrub_text

            data = self.source.encode("utf-8", "replace")
            self._stored = (self.source, {"source": scrub_text(_bounded(data, len(data), "source")),
                                          "sha256": hashlib.sha256(data).hexdigest()})
        return {"CodeEnv type": self.kind, "name": self.name, "file": self.file, **self._stored[1]}

    @classmethod
    def from_callable(cls, func: Callable) -> Optional[SourceEnv]:
        """The unwrapped function's source; ``None`` for builtins and code typed at a REPL."""
        target = _unwrap(func)
        try:
            source = inspect.getsource(target)
            file = inspect.getsourcefile(target) or inspect.getfile(target)
        except (OSError, TypeError):
            return None
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
        module = getattr(target, "__module__", None)
        return cls(f"{module}.{name}" if module else name, source, file)


def dockerimageID(imagename: str, tag: str) -> str:
    """The image ID (``sha256:...``) of a local image ``imagename:tag``, asked of the Docker daemon.

    Raises:
        ImportError: the Docker SDK is not installed (the ``docker`` extra).
        ValueError: no such image, as in 0.1.x.
        ProvenanceError: the Docker daemon cannot be reached.
    """
    try:
        import docker
    except ImportError as exc:
        raise MissingDependencyError("dockerimageID needs the Docker SDK: "
                                     "pip install provenance-toolbox[docker]") from exc
    key = f"{imagename}:{tag}"
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        raise ProvenanceError(f"cannot ask the Docker daemon for the ID of {key}: {exc}. Is Docker running, "
                              f"and may this user use its socket? Or pass the image ID to DockerEnv yourself.") from exc
    try:
        return client.images.get(key).id
    except docker.errors.ImageNotFound:
        raise ValueError(f"{key} not found in the current docker image list") from None
    finally:
        client.close()


IMAGE_VARS = ("PTB_DOCKER_IMAGE", "DOCKER_IMAGE", "CONTAINER_IMAGE", "DOCKER_IMAGE_NAME", "IMAGE_NAME")
IMAGE_ID_VARS = ("PTB_DOCKER_IMAGE_ID", "DOCKER_IMAGE_ID", "CONTAINER_IMAGE_ID", "IMAGE_ID")


@functools.cache
def _container_files() -> bool:
    cgroup = _read("/proc/1/cgroup") or ""
    return (os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
            or any(w in cgroup for w in ("docker", "kubepods", "containerd", "libpod", "lxc")))


def in_container() -> bool:
    """Hints that this process runs in a container (files, cgroups, ``container``, Kubernetes)."""
    return bool(os.environ.get("container") or os.environ.get("KUBERNETES_SERVICE_HOST")
                or _container_files())


def detect_docker() -> Optional[DockerEnv]:
    """The image this process runs in, when someone said which; else ``None``.

    A container cannot see its own image name, so it must be given in the
    environment (``docker run -e``, a Dockerfile ``ENV``, a Kubernetes pod spec):
    ``PTB_DOCKER_IMAGE`` (``name:tag``, ``name@sha256:...`` or
    ``name:tag@sha256:...``) is always trusted; ``DOCKER_IMAGE``,
    ``CONTAINER_IMAGE``, ``DOCKER_IMAGE_NAME`` and ``IMAGE_NAME`` only when
    ``in_container()`` (``/.dockerenv``, ``/run/.containerenv``, container
    cgroups of PID 1, ``$container`` or ``$KUBERNETES_SERVICE_HOST``).
    The ID comes from ``PTB_DOCKER_IMAGE_ID``, ``DOCKER_IMAGE_ID``,
    ``CONTAINER_IMAGE_ID`` or ``IMAGE_ID``, else from the reference's digest.
    """
    ref = os.environ.get("PTB_DOCKER_IMAGE", "").strip()
    if not ref and in_container():
        ref = next((os.environ[v].strip() for v in IMAGE_VARS[1:] if os.environ.get(v, "").strip()), "")
    if not ref:
        return None
    image_id = next((os.environ[v].strip() for v in IMAGE_ID_VARS if os.environ.get(v, "").strip()), None)
    ref, _, digest = ref.partition("@")
    name, tag = ref, (None if digest else "latest")
    if ":" in ref.rsplit("/", 1)[-1]:       # a registry port is not a tag
        name, tag = ref.rsplit(":", 1)
    return DockerEnv(name, tag, image_id or digest or None)


# ------------------------------------------------------------------ capture
_lock = threading.Lock()
_git_cache: Dict[Tuple[str, Optional[str]], Tuple[List[str], tuple, PythonGithubEnv]] = {}
_source_cache: Dict[tuple, Optional[SourceEnv]] = {}


def _reset_lock() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


def _fingerprint(found: Optional[Tuple[str, str]], paths: List[str]) -> tuple:
    return ((_git_state(found[1]) if found else ()), *(_stat(p) for p in paths))


def _watch_list(root: str) -> List[str]:
    """Tracked files and their directories (new or removed files change a directory's mtime);
    above STAT_LIMIT files, only the repository's modules imported by this process."""
    try:
        rc, out, _ = _git(root, "ls-files", "-z")
    except (OSError, subprocess.SubprocessError):
        return []
    tracked = [os.path.join(root, os.fsdecode(p)) for p in out.split(b"\0") if p] if rc == 0 else []
    if len(tracked) > STAT_LIMIT:
        prefix = root.rstrip(os.sep) + os.sep
        return sorted({f for m in list(sys.modules.values())
                       if isinstance(f := getattr(m, "__file__", None), str) and f.startswith(prefix)})
    return [root, *sorted({os.path.dirname(p) for p in tracked} - {root}), *tracked]


def _git_env(source_file: Optional[str]) -> PythonGithubEnv:
    found = _find_repo(os.path.dirname(os.path.abspath(source_file))) if source_file else None
    found = found or _find_repo(os.getcwd())
    key = (found[0] if found else os.getcwd(), source_file)
    with _lock:
        hit = _git_cache.get(key)
        if hit is not None and _fingerprint(found, hit[0]) == hit[1]:
            return hit[2]
        watch = _watch_list(found[0]) if found else []
        fingerprint = _fingerprint(found, watch)     # taken before the snapshot: edits during it show next time
        env = PythonGithubEnv(key[0])
        extra = [os.path.join(env.path or key[0], p) for p in env.changed]
        extra += [source_file] if source_file else []
        fingerprint += tuple(_stat(p) for p in extra)
        _git_cache[key] = (watch + extra, fingerprint, env)
        return env


def _source_env(func: Callable) -> Optional[SourceEnv]:
    code = getattr(_unwrap(func), "__code__", None)
    if code is None:
        return SourceEnv.from_callable(func)
    key = (code, _stat(code.co_filename))
    with _lock:
        if key in _source_cache:
            return _source_cache[key]
    env = SourceEnv.from_callable(func)
    with _lock:
        if len(_source_cache) > 512:
            _source_cache.clear()
        _source_cache[key] = env
    return env


def capture(source_file: Optional[str] = None, func: Optional[Callable] = None) -> List[CodeEnv]:
    """The environment of a documented run: git checkout, Docker image, the function's source.

    The git snapshot is of the repository holding ``source_file`` (else the
    working directory's). It is cached per process and reused while nothing it
    depends on changed. The check costs stats only, no git call: HEAD and its
    ref, packed refs, the config, the index, and the work tree. In repositories
    of up to ``STAT_LIMIT`` tracked files every tracked file and its directory
    is stat'ed (O(files), about a millisecond per thousand), so an edit to any
    tracked file or a new file next to one refreshes the snapshot. Larger
    repositories trade completeness for speed: only the files the last
    snapshot found modified or untracked, the repository's imported modules
    and ``source_file`` are watched, so an edit to another, clean, non-imported
    file there is picked up at the next commit, ``git add`` or restart. The
    source of ``func`` is cached by code object and file stat.
    """
    envs: List[CodeEnv] = [_git_env(source_file)]
    docker = detect_docker()
    if docker is not None:
        envs.append(docker)
    if func is not None:
        source = _source_env(func)
        if source is not None:
            envs.append(source)
    return envs
