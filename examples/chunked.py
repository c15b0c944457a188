"""A step run once per chunk, as igneous and python-task-queue run them, documented with ``per_run``.

``ThresholdTask`` is a ``@queueable`` task written the way igneous writes its own
(``TransferTask(src_path, dest_path, mip, shape, offset, ...)``): the step's settings,
then the chunk it works on. ``create_threshold_tasks`` binds one task per chunk of a grid
with ``functools.partial``, as igneous' task creators do; a ``TaskQueue`` (``fq://``, SQS) or
a ``LocalTaskQueue`` takes them as they are. ``per_run=["offset"]`` makes the chunk's
offset each run's own value, so the whole step is one process with one run per chunk.

Two chunks fail on their first try (a read that timed out). The script prints the
grouped ``ptb log``, finds the failed chunks in ``ptb.history`` and runs exactly those
again. Run it::

    python examples/chunked.py [DIRECTORY]

Without DIRECTORY it works in a temporary directory and removes it at the end. It needs only
ptb; with python-task-queue installed, the tasks are also registered with it as ``@queueable``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import partial
from typing import Callable, Iterator, List, Sequence

import numpy as np
from cloudvolume import Bbox, CloudVolume

import ptb

try:                       # python-task-queue (pip install task-queue): the tasks can also go on a queue
    from taskqueue import queueable
except ImportError:        # without it they still run here, as `execute` runs them
    def queueable(task):
        return task

SHAPE = (16, 16, 8)                   # one task per 16 x 16 x 8 chunk
FLAKY = {(16, 32, 0), (48, 0, 0)}     # these chunks fail on their first try


@queueable
@ptb.provenance("dest_path", "threshold into a mask", per_run=["offset"],
                motivation="a foreground mask for meshing")
def ThresholdTask(src_path: str, dest_path: str, mip: int, shape: Sequence[int], offset: Sequence[int],
                  level: int = 128) -> None:
    if tuple(offset) in FLAKY:
        FLAKY.discard(tuple(offset))
        raise TimeoutError(f"reading the chunk at {list(offset)} of {src_path} timed out")
    src = CloudVolume(src_path, mip=mip, progress=False)
    bbox = Bbox.clamp(Bbox(offset, np.add(offset, shape)), src.bounds)
    image = src[bbox.to_slices()]
    CloudVolume(dest_path, mip=mip, progress=False)[bbox.to_slices()] = (image > level).astype(np.uint8) * 255


def create_threshold_tasks(src_path: str, dest_path: str, mip: int = 0, shape: Sequence[int] = SHAPE,
                           level: int = 128) -> Iterator[Callable[[], None]]:
    """One task per chunk of the volume's grid, offsets as plain lists (they travel as JSON on a queue)."""
    bounds = CloudVolume(src_path, mip=mip).bounds
    for z in range(bounds.minpt.z, bounds.maxpt.z, shape[2]):
        for y in range(bounds.minpt.y, bounds.maxpt.y, shape[1]):
            for x in range(bounds.minpt.x, bounds.maxpt.x, shape[0]):
                yield partial(ThresholdTask, src_path, dest_path, mip=mip, shape=list(shape), offset=[x, y, z],
                              level=level)


def execute(tasks: Sequence[Callable[[], None]]) -> List[str]:
    """What queue workers do with the tasks: run each; a failing one is documented and left for a retry."""
    failures = []
    for task in tasks:
        try:
            task()
        except TimeoutError as exc:
            failures.append(str(exc))
    return failures


def ptb_log(cloudpath: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "ptb", "log", cloudpath, *args], check=True,
                          capture_output=True, text=True).stdout


def main(directory: str | None = None) -> str:
    workdir = directory or tempfile.mkdtemp(prefix="ptb-chunked-")
    src, dst = f"file://{workdir}/image", f"file://{workdir}/mask"
    image = np.random.default_rng(1).integers(0, 256, size=(64, 64, 8), dtype=np.uint8)
    CloudVolume.from_numpy(image, vol_path=src, resolution=(4, 4, 40), chunk_size=SHAPE, layer_type="image")
    CloudVolume.from_numpy(np.zeros_like(image), vol_path=dst, resolution=(4, 4, 40), chunk_size=SHAPE,
                           layer_type="image")
    try:
        tasks = list(create_threshold_tasks(src, dst))
        failures = execute(tasks)
        print(f"{len(tasks)} chunk tasks, {len(failures)} failed:", *failures, sep="\n  ")
        print(f"\n$ ptb log {dst}\n{ptb_log(dst)}")

        # The failed chunks, from the volume's own history: exactly those run again.
        history = ptb.history(dst)
        failed = [run.parameters["offset"] for run in history.runs if run.status != "succeeded"]
        print(f"re-running the chunks at {failed}")
        again = execute([partial(ThresholdTask, src, dst, mip=0, shape=list(SHAPE), offset=offset)
                         for offset in failed])
        print(f"{len(failed) - len(again)} of {len(failed)} succeeded this time\n")
        print(next(line for line in ptb_log(dst).splitlines() if "  runs  " in line))   # the step's summary
    finally:
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return dst


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
