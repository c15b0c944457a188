"""Worker programs that tests start as real OS processes.

    python workers.py notes CLOUDPATH COUNT TAG       write COUNT notes tagged TAG
    python workers.py spin CLOUDPATH                  write large notes until killed
    python workers.py watch CLOUDPATH STOPFILE        read `provenance` until STOPFILE exists;
                                                      print reads and invalid reads as JSON
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
        ptb.addgeneric(cloudpath, f"spin-{i} {filler}")
        ptb.view.merge_now(ptb.storage.Volume.resolve(cloudpath), [])
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


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "notes":
        notes(args[0], int(args[1]), args[2])
    elif command == "spin":
        spin(args[0])
    elif command == "watch":
        watch(*args)
    else:
        sys.exit(f"unknown command {command}")
