"""Probes of the ``provenance`` view, for one side, in a fresh OS process; prints one JSON line.

    python view.py SIDE KIND JSON-ARGS

Like ``probe.py`` (whose helpers and ``SIDE`` it shares), for what every other tool sees of a
volume: the ``provenance`` file. KIND is one of

* ``stale``: after each call returns, is the view current for a reader in another OS process?
  (it starts that reader itself: ``reader``, which answers on stdin/stdout);
* ``writes``: whole-file writes of ``provenance`` per call and per note, counted with inotify;
* ``opentime``: ``CloudVolume(path)`` open time and the file's size against history length;
* ``native`` and ``contender``: a CloudVolume-native writer (as igneous writes) and the
  writers that race it; ``run.py`` starts them together and counts what the file kept
  (``rawprov`` reads it on S3 and GCS).
"""
from __future__ import annotations

import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from probe import SIDE, main, make_volume, seed_baseline, timed


def _plain(prov: Any) -> Dict[str, Any]:
    """CloudVolume's provenance object (a dict subclass) as plain JSON data."""
    return json.loads(json.dumps(prov))


def _error(exc: BaseException) -> str:
    """One line: CloudVolume's messages come with colour codes and line breaks."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}").split())[:120]


def _wait_for(path: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout:.0f} s (a writer that never started?)")
        time.sleep(0.002)


def by_hand(path: str, task: str, params: Dict[str, Any], env: Any, step: Callable[[int], Any]) -> str:
    """0.1.5's equivalent of a documented call, as its users write it (a fresh ``CloudVolume``):
    ``process_absent``/``logprocess``, ``addmotivation``, the call, ``addresult``; returns the result note."""
    from cloudvolume import CloudVolume

    import provenancetoolbox as pt

    vol = CloudVolume(path)
    process = pt.Process(task, params, env)
    if pt.process_absent(vol, process):
        pt.logprocess(vol, process)
    pt.addmotivation(vol, "benchmark")
    try:
        result = f"{task} {json.dumps(params)} returned {step(params['x'])}"
    except ValueError as exc:
        result = f"{task} {json.dumps(params)} failed: {exc}"
    pt.addresult(vol, result)
    return result


# ------------------------------------------------------------------ how stale is the view
def _holds(prov: Dict[str, Any], expect: Dict[str, Any]) -> bool:
    """Whether ``prov`` already shows what the call that just returned did."""
    processing = prov.get("processing") if isinstance(prov.get("processing"), list) else []
    if SIDE == "ptb":
        if expect["kind"] == "note":
            return expect["content"] in {n.get("content") for n in (prov.get("ptb") or {}).get("notes", [])}
        for entry in processing:
            runs = (entry.get("ptb") or {}).get("runs") if isinstance(entry, dict) else None
            if runs is None or entry.get("task") != expect["task"]:
                continue
            params = entry.get("parameters") or {}
            if all(params.get(k) == v for k, v in expect["params"].items()):
                return (runs["count"] == 1 and not runs["running"] and runs[expect["status"]] == 1
                        and (runs.get("last") or {}).get("status") == expect["status"])
        return False
    description = str(prov.get("description") or "")
    if expect["kind"] == "note":
        return f";GENERIC;{expect['content']}" in description
    return (f";RESULT;{expect['result']}" in description
            and any(isinstance(e, dict) and e.get("task") == expect["task"] and e.get("parameters") == expect["params"]
                    for e in processing))


REPLY = "PTB-READER "


def reader(args: Dict[str, Any]) -> Dict[str, Any]:
    """Answer each request on stdin: read a fresh ``CloudVolume(path).provenance`` until it holds
    what was asked (or 10 s passed); reply whether the first read did, and after how long."""
    from cloudvolume import CloudVolume

    print(f"{REPLY}ready", flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        first = time.time()
        reads, held = 0, False
        while True:
            reads += 1
            held = _holds(_plain(CloudVolume(ask["cloudpath"]).provenance), ask["expect"])
            if held or time.time() - first > 10:
                break
            time.sleep(0.01)
        until = time.time() - first if reads > 1 else 0.0
        print(REPLY + json.dumps({"current": held and reads == 1, "held": held, "until_s": until,
                                  "gap_s": first - ask["sent"], "reads": reads}), flush=True)
    return {}


def stale(args: Dict[str, Any]) -> Dict[str, Any]:
    """After each call returns, ask a reader in another OS process whether the view holds it.

    Kinds of call, each on its own volume, ``trials`` times, every other one failing:
    ptb: a decorated call, a ``ptb.documented`` block, ``ptb.addgeneric``; each call names a
    new process (its parameter), so the reader looks for that process with one run of the
    final status, none running. 0.1.5: its hand-written equivalent of the call (``logprocess``,
    ``addmotivation``, the call, ``addresult``, a fresh ``CloudVolume`` each time) and its
    ``addgeneric``; the reader looks for the process and the result note.
    """
    sys.path.insert(0, args["repo"])
    import pipeline

    trials, out = args["trials"], {}
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), SIDE, "reader", "{}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None

    def reply() -> str:
        for line in child.stdout:               # CloudVolume prints warnings on stdout (no GCS credentials)
            if line.startswith(REPLY):
                return line[len(REPLY):]
        raise RuntimeError("the reader exited")

    def ask(path: str, expect: Dict[str, Any]) -> Dict[str, Any]:
        child.stdin.write(json.dumps({"cloudpath": path, "expect": expect, "sent": time.time()}) + "\n")
        child.stdin.flush()
        return json.loads(reply())

    reply()

    kinds: Dict[str, Callable[[str, int], Dict[str, Any]]]
    if SIDE == "ptb":
        import ptb

        ok = ptb.provenance("dst", "stale call")(pipeline.step)
        failing = ptb.provenance("dst", "stale call")(pipeline.fail)

        def call(path: str, i: int) -> Dict[str, Any]:
            try:
                (failing if i % 2 else ok)(i, dst=path)
            except ValueError:
                pass
            return {"kind": "run", "task": "stale call", "params": {"x": i},
                    "status": "failed" if i % 2 else "succeeded"}

        def block(path: str, i: int) -> Dict[str, Any]:
            try:
                with ptb.documented(path, "stale block", parameters={"i": i}) as doc:
                    if i % 2:
                        raise ValueError("this block fails")
            except ValueError:
                pass
            return {"kind": "run", "task": "stale block", "params": {"i": i}, "status": doc.status}

        def note(path: str, i: int) -> Dict[str, Any]:
            ptb.addgeneric(path, f"stale note {i}")
            return {"kind": "note", "content": f"stale note {i}"}

        kinds = {"call": call, "block": block, "note": note}
    else:
        from cloudvolume import CloudVolume

        import provenancetoolbox as pt

        env = pt.PythonGithubEnv(args["repo"])

        def call(path: str, i: int) -> Dict[str, Any]:
            result = by_hand(path, "stale call", {"x": i}, env, pipeline.fail if i % 2 else pipeline.step)
            return {"kind": "run", "task": "stale call", "params": {"x": i}, "result": result}

        def note(path: str, i: int) -> Dict[str, Any]:
            pt.addgeneric(CloudVolume(path), f"stale note {i}")
            return {"kind": "note", "content": f"stale note {i}"}

        kinds = {"call": call, "note": note}
    for name, do in kinds.items():
        path = f"{args['cloudpath']}-{name}"
        make_volume(path)
        answers = [ask(path, do(path, i)) for i in range(trials)]
        out[name] = {"trials": trials, "current": sum(a["current"] for a in answers),
                     "held": sum(a["held"] for a in answers), "until_s": max(a["until_s"] for a in answers),
                     "gap_s": statistics.median(a["gap_s"] for a in answers)}
    child.stdin.close()
    child.wait(timeout=30)
    return out


# ---------------------------------------------------------- writes to provenance per run
class WriteCounter:
    """Whole-file writes of ``provenance`` in a directory, seen by Linux inotify (as in
    ``tests/workers.py``): a close after writing (CloudVolume writes in place) or a rename into
    place (ptb). Opens are watched too, though not counted: inotify merges identical events
    that follow each other unread, so two in-place writes in a row would count as one; the
    open of the second comes between them. (Exact for one writer at a time, as here.)
    """

    IN_OPEN, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_Q_OVERFLOW = 0x20, 0x8, 0x80, 0x100, 0x4000

    def __init__(self, directory: str, name: Optional[str] = "provenance") -> None:
        import ctypes

        self.name, self.count, self.overflow = (name.encode() if name else None), 0, False
        self.created = 0      # files created, temporary ones included (each a new inode)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        mask = self.IN_OPEN | self.IN_CLOSE_WRITE | self.IN_MOVED_TO | self.IN_CREATE
        if self.fd < 0 or libc.inotify_add_watch(self.fd, directory.encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {directory} failed")

    def poll(self) -> int:
        import struct

        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.count
            offset = 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16:offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                self.overflow |= bool(mask & self.IN_Q_OVERFLOW)
                self.created += bool(mask & self.IN_CREATE)
                wanted = name == self.name if self.name else not name.startswith(b".")  # None: any final name
                if wanted and mask & (self.IN_CLOSE_WRITE | self.IN_MOVED_TO):
                    self.count += 1


def writes(args: Dict[str, Any]) -> Dict[str, Any]:
    """Whole-file writes of ``provenance`` (``WriteCounter``, on the file:// volume's directory)
    during ``count`` sequential calls, and ``count`` notes.

    The calls are of one process, after a first call (the process is then in the view).
    ptb: a decorated call; ``ptb.store.updater.flush()`` and a pause before the count is read, so
    a write left to the background would be counted too. 0.1.5: the hand-written equivalent
    (``process_absent``, ``addmotivation``, the call, ``addresult``) and ``addgeneric``.
    """
    sys.path.insert(0, args["repo"])
    import pipeline

    count = args["count"]
    if SIDE == "ptb":
        import ptb

        documented = ptb.provenance("dst", "step")(pipeline.step)

        def do(kind: str, path: str, i: int) -> None:
            if kind == "call":
                documented(1, dst=path)
            else:
                ptb.addgeneric(path, f"note {i}")
    else:
        from cloudvolume import CloudVolume

        import provenancetoolbox as pt

        env = pt.PythonGithubEnv(args["repo"])

        def do(kind: str, path: str, i: int) -> None:
            if kind == "call":
                by_hand(path, "step", {"x": 1}, env, pipeline.step)
            else:
                pt.addgeneric(CloudVolume(path), f"note {i}")

    out: Dict[str, Any] = {"count": count}
    for kind in ("call", "note"):
        path = f"{args['cloudpath']}-{kind}"
        make_volume(path)
        do(kind, path, -1)                           # the first: environment captured, process recorded
        root = path[len("file://"):]
        journal = os.path.join(root, "ptb", "journal")
        counter, objects = WriteCounter(root), [WriteCounter(root, None)]
        if os.path.isdir(journal):
            objects.append(WriteCounter(journal, None))
        written = _bytes_written()
        for i in range(count):
            do(kind, path, i)
            counter.poll()
            for c in objects:
                c.poll()
        if SIDE == "ptb":
            ptb.store.updater.flush()
        time.sleep(0.3)
        out[kind] = {"writes": counter.poll(), "overflow": counter.overflow or any(c.overflow for c in objects),
                     "objects": sum(c.poll() for c in objects), "bytes": _bytes_written() - written,
                     "created": sum(c.created for c in objects)}
    out["file_creation_s"] = _file_creation_s(args["cloudpath"][len("file://"):] + "-creation")
    return out


def _file_creation_s(directory: str, count: int = 200) -> float:
    """What creating one small file costs on this machine (each journal object and view write makes one)."""
    os.makedirs(directory, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(count):
        with open(os.path.join(directory, f"f{i}"), "wb") as handle:
            handle.write(b"{}")
    return (time.perf_counter() - t0) / count


def _bytes_written() -> int:
    """Bytes this OS process has passed to write(2) so far (Linux ``/proc/self/io``: every file, every thread)."""
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("wchar:"))


# ----------------------------------------------------- open time against history length
def seed_ptb_bulk(path: str, count: int) -> None:
    """``count`` notes into the journal in one go, then one view update (as their writers' would be)."""
    from ptb.records import Note, NoteType
    from ptb.store import journal, updater
    from ptb.store.volume import Volume

    vol = Volume.resolve(path)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    notes = [Note(start + datetime.timedelta(seconds=i), NoteType.GENERIC, f"earlier note {i}") for i in range(count)]
    updater.update(vol, journal.append(vol, notes))


def opentime(args: Dict[str, Any]) -> Dict[str, Any]:
    """``CloudVolume(path)`` (a fresh object each time: it reads ``info`` and ``provenance``) on
    file:// volumes holding each of ``sizes`` notes; the median of ``repeat`` opens, the sizes in
    alternation so a busy machine slows them alike; and the ``provenance`` file's size.

    ptb: the notes go to the journal in bulk, then one view update, then one more note through
    ``ptb.addgeneric``. 0.1.5: its notes packed into ``description`` (as ``addgeneric`` packs
    them, written at once), then one more note through its ``addgeneric``.
    """
    from cloudvolume import CloudVolume

    sizes, repeat = args["sizes"], args["repeat"]
    paths = {size: f"{args['cloudpath']}-{size}" for size in sizes}
    for size, path in paths.items():
        make_volume(path)
        if SIDE == "ptb":
            import ptb

            seed_ptb_bulk(path, size - 1)
            ptb.addgeneric(path, "the last note")
        else:
            import provenancetoolbox as pt

            seed_baseline(path, size - 1)
            pt.addgeneric(CloudVolume(path), "the last note")
    samples: Dict[int, List[float]] = {size: [] for size in sizes}
    for size in sizes:
        CloudVolume(paths[size])                     # warm: imports, first-use caches
    for _ in range(repeat):
        for size in sizes:
            samples[size].append(timed(CloudVolume, paths[size]))
    return {str(size): {"open_s": statistics.median(samples[size]), "min_s": min(samples[size]),
                        "bytes": os.path.getsize(os.path.join(paths[size][len("file://"):], "provenance"))}
            for size in sizes}


# --------------------------------------------- a CloudVolume-native writer and its rivals
def native(args: Dict[str, Any]) -> Dict[str, Any]:
    """Append ``entries`` processing entries as igneous does, each through a fresh ``CloudVolume``:
    ``v.provenance.processing.append({...}); v.commit_provenance()``. No ptb, no 0.1.5. An error
    (a torn read) is counted and the writer goes on. Starts at ``gofile`` once the ``started``
    files are there too (its rivals' first calls are done), and touches ``stopfile`` when done."""
    from cloudvolume import CloudVolume

    path, tag, errors = args["cloudpath"], args["tag"], []
    if args.get("make"):
        make_volume(path)
    print("ready", flush=True)
    for name in [args["gofile"], *args.get("started", [])]:
        _wait_for(name)
    t0 = time.monotonic()
    for i in range(args["entries"]):
        try:
            vol = CloudVolume(path)
            vol.provenance.processing.append({"method": {"task": "DownsampleTask", "tag": tag, "i": i},
                                              "by": "igneous"})
            vol.commit_provenance()
        except Exception as exc:
            errors.append(_error(exc))
    seconds = time.monotonic() - t0
    if args.get("stopfile"):
        Path(args["stopfile"]).touch()
    return {"errors": len(errors), "first_error": errors[0] if errors else None, "seconds": seconds}


def contender(args: Dict[str, Any]) -> Dict[str, Any]:
    """Document calls on the volume until ``stopfile`` appears, as fast as possible.

    ptb: a decorated step, every 5th call failing. 0.1.5: the hand-written equivalent, a
    fresh ``CloudVolume`` for each call. Errors other than the step's own are counted. One
    call on a volume of its own first, so the race starts warm (environment captured), and
    ``started`` is touched after the first call on the raced volume (its process recorded).
    """
    sys.path.insert(0, args["repo"])
    import pipeline

    task = f"step {args['tag']}"
    if SIDE == "ptb":
        import ptb

        ok, failing = (ptb.provenance("dst", task)(f) for f in (pipeline.step, pipeline.fail))

        def call(path: str, i: int) -> None:
            try:
                (failing if i % 5 == 4 else ok)(i % 2, dst=path)
            except ValueError:
                pass
    else:
        import provenancetoolbox as pt

        env = pt.PythonGithubEnv(args["repo"])

        def call(path: str, i: int) -> None:
            by_hand(path, task, {"x": i % 2}, env, pipeline.fail if i % 5 == 4 else pipeline.step)
    warm = f"{args['cloudpath']}-warm-{args['tag']}"
    make_volume(warm)
    call(warm, 0)
    print("ready", flush=True)
    _wait_for(args["gofile"])
    took: List[float] = []
    errors = []
    while not os.path.exists(args["stopfile"]):
        t0 = time.perf_counter()
        try:
            call(args["cloudpath"], len(took))
        except Exception as exc:
            errors.append(_error(exc))
        took.append(time.perf_counter() - t0)
        if len(took) == 1:
            Path(args["started"]).touch()
    if SIDE == "ptb":
        ptb.store.updater.flush()
    return {"calls": len(took), "call_s": took, "errors": len(errors), "first_error": errors[0] if errors else None}


def rawprov(args: Dict[str, Any]) -> Dict[str, Any]:
    """The ``provenance`` file as text, for ``run.py`` to parse (it imports no cloud library)."""
    from cloudfiles import CloudFiles

    data = CloudFiles(args["cloudpath"]).get("provenance")
    return {"text": None if data is None else data.decode("utf-8", "replace")}


PROBES = {"stale": stale, "reader": reader, "writes": writes, "opentime": opentime, "native": native,
          "contender": contender, "rawprov": rawprov}

if __name__ == "__main__":
    main(PROBES)
