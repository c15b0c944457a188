"""Documented python-task-queue tasks: either decorator order works."""
from cloudvolume import CloudVolume
from taskqueue import queueable

import ptb


@queueable
@ptb.provenance("dst", "count foreground voxels in a slice")
def count(dst: str, z: int) -> int:
    return int((CloudVolume(dst, progress=False)[:, :, z] > 0).sum())


@ptb.provenance("dst", "check that a slice is not empty")
@queueable
def check(dst: str, z: int) -> None:
    if not (CloudVolume(dst, progress=False)[:, :, z] > 0).any():
        raise ValueError(f"slice {z} of {dst} is empty")
