"""A small pipeline whose steps document themselves with ``@ptb.provenance``.

Each call of a decorated step becomes a run on the volume named by its ``dst``
parameter: the process (description + parameters), the code environment (git
checkout, packages, the step's source), a motivation and a result note, its
duration and resources, and on failure the error. Run it::

    python examples/pipeline.py [DIRECTORY]

then read what it recorded with ``ptb log file://DIRECTORY``.
"""
from __future__ import annotations

import sys
import tempfile

import numpy as np
from cloudvolume import CloudVolume

import ptb


@ptb.provenance("dst", "smooth the image", motivation="remove speckle before thresholding")
def smooth(dst: str, passes: int = 1) -> None:
    vol = CloudVolume(dst, progress=False)
    data = vol[:, :, :][..., 0].astype(np.float32)
    for _ in range(passes):
        data = (data + np.roll(data, 1, 0) + np.roll(data, -1, 0) + np.roll(data, 1, 1) + np.roll(data, -1, 1)) / 5
    vol[:, :, :] = data.astype(np.uint8)[..., None]


@ptb.provenance("dst", "threshold into a mask", result=lambda n: f"{n} voxels in the mask")
def threshold(dst: str, level: int = 128) -> int:
    vol = CloudVolume(dst, progress=False)
    mask = vol[:, :, :] > level
    if mask.mean() > 0.5:
        ptb.current_run().note(f"level {level} keeps more than half the volume")
    vol[:, :, :] = mask.astype(np.uint8) * 255
    return int(mask.sum())


@ptb.provenance("dst", "label connected components")
def label(dst: str, connectivity: int = 26) -> None:
    if connectivity not in (6, 18):
        raise ValueError(f"connectivity {connectivity} is not supported by this toy labeller (6 or 18)")


def main(directory: str | None = None) -> str:
    directory = directory or tempfile.mkdtemp(prefix="ptb-example-")
    cloudpath = "file://" + directory
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)
    CloudVolume.from_numpy(image, vol_path=cloudpath, resolution=(4, 4, 40), layer_type="image")
    ptb.addmotivation(cloudpath, "example pipeline: smooth, threshold, label")

    smooth(cloudpath, passes=2)
    threshold(cloudpath, level=120)
    try:
        label(cloudpath)                  # fails on purpose: the failure is documented too
    except ValueError as exc:
        print(f"label failed as planned: {exc}")

    history = ptb.history(cloudpath)
    for run in history.runs:
        print(f"{run.started:%H:%M:%S}  {run.status:<10} {run.description}  ({run.duration:.3f} s)")
    print(f"{len(history.processes)} processes, {len(history.runs)} runs, {len(history.notes)} notes "
          f"on {cloudpath}; `ptb log {cloudpath}` shows them")
    return cloudpath


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
