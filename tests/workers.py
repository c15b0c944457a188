"""Worker programs that tests start as real OS processes.

    python workers.py notes CLOUDPATH COUNT TAG       write COUNT notes tagged TAG
    python workers.py spin CLOUDPATH                  write large notes until killed
    python workers.py watch CLOUDPATH STOPFILE        read `provenance` until STOPFILE exists;
                                                      print reads and invalid reads as JSON
    python workers.py run CLOUDPATH COUNT TAG         one documented run (ptb.documented) making COUNT
                                                      notes tagged TAG through run.note
    python workers.py hang CLOUDPATH                  enter a documented run, print "inside", sleep forever
    python workers.py calls CLOUDPATH COUNT TAG       COUNT calls of a decorated step; every 5th one fails
    python workers.py chunks CLOUDPATH COUNT TAG      COUNT chunk calls of one step (per_run=["bbox"]) as if on host
                                                      node-TAG; chunks listed in $PTB_FAIL_CHUNKS ("TAG:i,...")
                                                      fail, and chunk $PTB_DIE_CHUNK ("TAG:i") kills the worker
    python workers.py cvwriter CLOUDPATH COUNT TAG    append COUNT processing entries as igneous does: a fresh
                                                      CloudVolume, append, commit_provenance (no ptb at all)
    python workers.py view CLOUDPATH                  print what a fresh CloudVolume(path).provenance holds
    python workers.py watchview CLOUDPATH STOPFILE [DIR]
                                                      like watch, printing "ready" first, and the view
                                                      must be a provenance object. With DIR (a local
                                                      directory holding the `provenance` file: a file://
                                                      volume, or the GCS emulator's copy), also count
                                                      the writes to it with Linux inotify (each whole-
                                                      file write ends in a rename or close-after-write)
"""
from __future__ import annotations

import json
import os
import sys
import time


def notes(cloudpath: str, count: int, tag: str) -> None:
    import ptb

    for i in range(count):
        ptb.addgeneric(cloudpath, f"{tag}-{i}")


def spin(cloudpath: str) -> None:
    import ptb

    print("started", flush=True)
    filler = "x" * 200_000
    i = 0
    while True:
        ptb.addgeneric(cloudpath, f"spin-{i} {filler}")   # each note rewrites the view before it returns
        i += 1


def watch(cloudpath: str, stopfile: str) -> None:
    from cloudfiles import CloudFiles

    cf = CloudFiles(cloudpath)
    reads = invalid = 0
    while not os.path.exists(stopfile):
        data = cf.get("provenance")
        if data is not None:
            reads += 1
            try:
                json.loads(data)
            except ValueError:
                invalid += 1
        time.sleep(0.001)
    print(json.dumps({"reads": reads, "invalid": invalid}))


def _documented():
    import ptb

    if hasattr(ptb, "documented"):
        return ptb.documented
    from ptb.block import documented

    return documented


def run(cloudpath: str, count: int, tag: str) -> None:
    with _documented()(cloudpath, f"scale worker {tag}", parameters={"tag": tag, "count": count},
                       motivation=f"worker {tag} of the scale test") as doc:
        for i in range(count):
            doc.note(f"{tag}-{i}")
    print(json.dumps({"run": doc.id, "status": doc.status, "duration": doc.duration}), flush=True)


def hang(cloudpath: str) -> None:
    with _documented()(cloudpath, "a step that hangs", motivation="to be killed"):
        print("inside", flush=True)
        while True:
            time.sleep(1)


def calls(cloudpath: str, count: int, tag: str) -> None:
    import ptb

    @ptb.provenance("dst", f"step {tag}")
    def step(dst: str, i: int) -> int:
        if i % 5 == 4:
            raise ValueError(f"chunk {i} failed")
        return i

    for i in range(count):
        try:
            step(cloudpath, i % 2 if i % 5 != 4 else 4)
        except ValueError:
            pass


CHUNK = 64


def chunks(cloudpath: str, count: int, tag: str) -> None:
    import socket

    socket.gethostname = lambda: f"node-{tag}"      # as if every worker ran on a node of its own
    import ptb

    fail = set(filter(None, os.environ.get("PTB_FAIL_CHUNKS", "").split(",")))
    die = os.environ.get("PTB_DIE_CHUNK", "")

    @ptb.provenance("dst", "downsample to mip 1", per_run=["bbox"], motivation="mip 1 for proofreading")
    def downsample(dst: str, bbox: list, mip: int = 0) -> int:
        chunk = f"{tag}:{bbox[0] // CHUNK}"
        if chunk == die:
            os._exit(3)                            # killed mid-chunk: the run never finishes
        if chunk in fail:
            raise ValueError(f"chunk {bbox} has no data at mip {mip}")
        return bbox[0]

    row = int(tag) * CHUNK
    for i in range(count):
        try:
            downsample(cloudpath, [i * CHUNK, row, 0, (i + 1) * CHUNK, row + CHUNK, CHUNK])
        except ValueError:
            pass


def cvwriter(cloudpath: str, count: int, tag: str) -> None:
    from cloudvolume import CloudVolume

    for i in range(count):
        vol = CloudVolume(cloudpath)
        vol.provenance.processing.append({"method": {"task": "DownsampleTask", "tag": tag, "i": i}, "by": "igneous"})
        vol.commit_provenance()


def view(cloudpath: str) -> None:
    """What any CloudVolume reader sees: the processes, and each one's run digest."""
    from cloudvolume import CloudVolume

    prov = CloudVolume(cloudpath).provenance
    ours = {e["task"] + " " + json.dumps(e["parameters"], sort_keys=True): e["ptb"]["runs"]
            for e in prov["processing"] if isinstance(e.get("ptb"), dict)}
    print(json.dumps({"processes": ours, "notes": len(prov["ptb"]["notes"]) if "ptb" in prov else 0,
                      "foreign": [e for e in prov["processing"] if not isinstance(e.get("ptb"), dict)]}))


class WriteCounter:
    """Counts whole-file writes of ``name`` in ``directory`` with Linux inotify (no polling, none missed)."""

    IN_CLOSE_WRITE, IN_MOVED_TO, IN_Q_OVERFLOW = 0x8, 0x80, 0x4000

    def __init__(self, directory: str, name: str = "provenance") -> None:
        import ctypes

        self.name = name.encode()
        self.count = 0
        self.overflow = False
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        mask = self.IN_CLOSE_WRITE | self.IN_MOVED_TO
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
                if mask & self.IN_Q_OVERFLOW:
                    self.overflow = True
                elif name == self.name:
                    self.count += 1


def watchview(cloudpath: str, stopfile: str, directory: str = "") -> None:
    from cloudfiles import CloudFiles

    counter = WriteCounter(directory) if directory else None
    cf = CloudFiles(cloudpath)
    reads = invalid = 0
    problems = []
    print("ready", flush=True)
    while not os.path.exists(stopfile):
        data = cf.get("provenance")
        if counter is not None:
            counter.poll()
        if data is not None:
            reads += 1
            try:
                view = json.loads(data)
                if not isinstance(view, dict) or not isinstance(view.get("processing"), list):
                    raise ValueError("not a provenance object")
            except ValueError as exc:
                invalid += 1
                problems.append(f"{exc}: {data[:80]!r}")
        time.sleep(0.002)
    time.sleep(0.2)
    out = {"reads": reads, "invalid": invalid, "problems": problems[:5]}
    if counter is not None:
        out.update(writes=counter.poll(), overflow=counter.overflow)
    print(json.dumps(out))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "notes":
        notes(args[0], int(args[1]), args[2])
    elif command == "spin":
        spin(args[0])
    elif command == "watch":
        watch(*args)
    elif command == "run":
        run(args[0], int(args[1]), args[2])
    elif command == "hang":
        hang(args[0])
    elif command == "calls":
        calls(args[0], int(args[1]), args[2])
    elif command == "chunks":
        chunks(args[0], int(args[1]), args[2])
    elif command == "cvwriter":
        cvwriter(args[0], int(args[1]), args[2])
    elif command == "view":
        view(args[0])
    elif command == "watchview":
        watchview(*args)
    else:
        sys.exit(f"unknown command {command}")
