"""A lab's volumes for the tests of ``ptb status``, ``ptb find`` and ``ptb watch`` (and their benchmark).

``step`` journals a process and its runs exactly as the instrumentation does
(a ``running`` record at entry with the process and a motivation, a final
one at exit with a result note), each run with its own code-environment
files: a git checkout at some commit with some packages installed, or the
command-line tool a ``ptb run`` step ran (``"CodeEnv type": "Command"``).
``Requests`` counts what reaches the storage, below ptb: CloudFiles' storage
interfaces for every protocol, and botocore's API calls for S3.
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import socket
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ptb.capture.codeenv import CodeEnv
from ptb.records import Note, NoteType, ProcessRecord, RunRecord, new_id, utcnow
from ptb.store import journal, writer
from ptb.store.volume import Volume

VOLUME_INFO = {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [{
    "key": "4_4_40", "encoding": "raw", "resolution": [4, 4, 40], "voxel_offset": [0, 0, 0],
    "size": [64, 64, 16], "chunk_sizes": [[64, 64, 16]]}]}
HERE = socket.gethostname()


class Env(CodeEnv):
    """A code environment with the given contents, stored as ptb stores any (content-addressed)."""

    def __init__(self, kind: str, name: str, contents: Dict[str, Any]):
        self.kind, self.name, self._contents = kind, name, contents

    def contents(self) -> Dict[str, Any]:
        return dict(self._contents)


def git_env(commit: str, packages: Sequence[Sequence[str]] = (), dirty: bool = False) -> Env:
    return Env("git", "pipeline", {"CodeEnv type": "PythonGithub", "name": "https://github.com/lab/pipeline.git",
                                   "commit hash": commit, "dirty": dirty, "diff": "+x" if dirty else "",
                                   "packages": [list(p) for p in packages]})


def command_env(argv0: str, distribution: Optional[str] = None, version: Optional[str] = None) -> Env:
    """What ``ptb run VOLUME DESCRIPTION -- argv0 ...`` records of the tool it ran (issue 20)."""
    contents = {"CodeEnv type": "Command", "argv0": argv0, "executable": f"/opt/conda/bin/{argv0}"}
    if distribution:
        contents.update(distribution=distribution, version=version)
    return Env("command", argv0, contents)


def make_volume(cloudpath: str) -> str:
    from cloudfiles import CloudFiles

    CloudFiles(cloudpath).put_json("info", VOLUME_INFO)
    return cloudpath


def run(status: str = "succeeded", envs: Sequence[Env] = (), values: Optional[Dict[str, Any]] = None,
        host: str = "node1", pid: Optional[int] = 1000, started: Optional[datetime.datetime] = None,
        seconds: float = 1.5, error: str = "ValueError: chunk failed") -> Dict[str, Any]:
    return {"status": status, "envs": list(envs), "values": values or {}, "host": host, "pid": pid,
            "started": started, "seconds": seconds, "error": error}


def step(cloudpath: str, description: str, parameters: Dict[str, Any], runs: Sequence[Dict[str, Any]],
         command: Optional[List[str]] = None) -> ProcessRecord:
    """A process and its runs, journalled as a documented call journals them (two objects per run)."""
    vol = Volume.resolve(cloudpath)
    first = [writer.write_env(vol, e) for e in (runs[0]["envs"] if runs else ())]
    params = {"command": command} if command is not None else parameters
    process = ProcessRecord(description, params, tuple(first), timestamp=utcnow())
    announced = False
    for spec in runs:
        files = tuple(writer.write_env(vol, e) for e in spec["envs"])
        began = spec["started"] or utcnow()
        rid = new_id()
        common = dict(host=spec["host"], pid=spec["pid"], user="alice", code_envfiles=files,
                      parameters=spec["values"])
        start = [RunRecord(rid, description, process.key, "running", began, **common),
                 Note(began, NoteType.MOTIVATION, f"motivation of {description}", run=rid)]
        journal.append(vol, ([] if announced else [process]) + start)
        announced = True
        if spec["status"] != "running":
            ended = began + datetime.timedelta(seconds=spec["seconds"])
            kind, _, message = spec["error"].partition(": ")
            error = {"type": kind, "message": message} if spec["status"] in ("failed", "interrupted") else None
            journal.append(vol, [RunRecord(rid, description, process.key, spec["status"], began, ended,
                                           spec["seconds"], error=error, **common),
                                 Note(ended, NoteType.RESULT, f"{spec['status']}", run=rid)])
    if not runs:
        journal.append(vol, [process])
    return process


class Requests:
    """What reached the storage while counting: (operation, path) pairs, CloudFiles' interfaces and botocore's."""

    def __init__(self) -> None:
        self.calls: List[tuple] = []
        self.s3: List[tuple] = []

    def gets(self, under: str = "") -> List[str]:
        return [path for op, path in self.calls if op == "get" and under in path]

    def count(self, op: str) -> int:
        return sum(1 for o, _ in self.calls if o == op)

    def s3_ops(self) -> Dict[str, int]:
        return dict(collections.Counter(op for op, _ in self.s3))


@contextlib.contextmanager
def counting() -> Iterator[Requests]:
    """Count storage calls below ptb: ``get_file``, ``list_files``, ``head`` and ``size`` of each interface,
    and on file:// ptb's own link-safe ``read`` and ``listdir``."""
    import botocore.client
    from cloudfiles import interfaces

    seen = Requests()
    originals = []
    for cls in (interfaces.FileInterface, interfaces.MemoryInterface, interfaces.S3Interface,
                interfaces.GoogleCloudStorageInterface):
        for name, op in (("get_file", "get"), ("list_files", "list"), ("head", "head"), ("size", "size")):
            original = cls.__dict__.get(name)
            if original is None:
                continue

            def counted(self, *args, _original=original, _op=op, **kwargs):
                path = args[0] if args else kwargs.get("prefix", kwargs.get("file_path"))
                seen.calls.append((_op, str(path)))
                return _original(self, *args, **kwargs)

            originals.append((cls, name, original))
            setattr(cls, name, counted)
    from ptb.store import localfs  # file:// reads and listings go through it, not through CloudFiles

    for name, op in (("read", "get"), ("listdir", "list")):
        original = getattr(localfs, name)

        def counted_local(root, key, *args, _original=original, _op=op, **kwargs):
            seen.calls.append((_op, f"{root}/{key}"))
            return _original(root, key, *args, **kwargs)

        originals.append((localfs, name, original))
        setattr(localfs, name, counted_local)
    call = botocore.client.BaseClient._make_api_call

    def api_call(self, operation, params):
        seen.s3.append((operation, params.get("Key") or params.get("Prefix")))
        return call(self, operation, params)

    botocore.client.BaseClient._make_api_call = api_call
    try:
        yield seen
    finally:
        botocore.client.BaseClient._make_api_call = call
        for cls, name, original in originals:
            setattr(cls, name, original)

