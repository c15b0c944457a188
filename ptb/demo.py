"""``ptb demo``: document a small pipeline on a local volume, to see what ptb records.

Three decorated steps run on a fresh ``file://`` volume: smoothing and
thresholding succeed, meshing fails on purpose (and is caught) so the log
shows a failed run with its error next to the successful ones. The volume is
properly documented (``ptb check`` passes): a motivation, every process with
its code environment, and its ``sources``: the raw toy image it was copied
from, a volume of its own in ``raw/`` inside the pipeline's.
"""
from __future__ import annotations

import tempfile
from typing import Optional

from .decorate import provenance
from .notes import addmotivation
from .run import current_run
from .store.volume import as_cloudpath

__all__ = ["run_demo"]


@provenance("dst", "smooth with a 3x3x3 box filter", motivation="remove speckle before thresholding")
def smooth(dst: str, iterations: int = 1) -> float:
    import numpy as np
    from cloudvolume import CloudVolume

    vol = CloudVolume(dst, progress=False)
    data = vol[:, :, :][..., 0].astype(np.float32)
    for _ in range(iterations):
        padded = np.pad(data, 1, mode="edge")
        data = sum(padded[x:x + data.shape[0], y:y + data.shape[1], z:z + data.shape[2]]
                   for x in range(3) for y in range(3) for z in range(3)) / 27.0
    vol[:, :, :] = data.astype(vol.dtype)[..., None]
    run = current_run()
    if run is not None:
        run.note(f"mean intensity after smoothing: {data.mean():.1f}")
    return float(data.mean())


@provenance("dst", "threshold into a foreground mask",
            result=lambda count: f"{count} foreground voxels")
def threshold(dst: str, level: int = 128) -> int:
    import numpy as np
    from cloudvolume import CloudVolume

    vol = CloudVolume(dst, progress=False)
    mask = vol[:, :, :] > level
    run = current_run()
    if run is not None and not mask.any():
        run.note(f"threshold {level} leaves no foreground; try a lower one")
    vol[:, :, :] = (mask * 255).astype(np.uint8)
    return int(mask.sum())


@provenance("dst", "mesh the mask")
def mesh(dst: str, simplification: int = -1) -> None:
    if simplification < 0:
        raise ValueError(f"simplification must be >= 0, got {simplification}")


def run_demo(path: Optional[str] = None) -> str:
    """Create a small volume, document a pipeline on it, and return its cloudpath.

    Args:
        path: A local directory (or ``file://`` path) for the volume; a new
            temporary directory when None (it is left in place, to look at).
    """
    import numpy as np
    from cloudvolume import CloudVolume

    from .store import updater

    if path is None:
        path = tempfile.mkdtemp(prefix="ptb-demo-")
    cloudpath = as_cloudpath(path)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(32, 32, 8), dtype=np.uint8)
    image[8:24, 8:24, 2:6] = 230
    raw = f"{cloudpath.rstrip('/')}/raw"      # inside it, so one directory holds the whole demo
    CloudVolume.from_numpy(image, vol_path=raw, resolution=(4, 4, 40), layer_type="image")
    vol = CloudVolume.from_numpy(image, vol_path=cloudpath, resolution=(4, 4, 40), layer_type="image")
    vol.provenance.sources = [raw]          # what it was made from: `ptb check` asks for it
    vol.provenance.owners = ["ptb demo"]
    vol.commit_provenance()
    addmotivation(cloudpath, "ptb demo: a toy image, smoothed, thresholded and meshed")
    smooth(cloudpath, iterations=2)
    threshold(cloudpath, level=100)
    try:
        mesh(cloudpath)
    except ValueError:
        pass            # failed on purpose: the log shows it with its error
    updater.flush()
    return cloudpath
