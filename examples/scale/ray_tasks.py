"""Documented steps as Ray tasks, defined in the script itself.

    python ray_tasks.py CLOUDPATH
"""
import sys

import ray
from cloudvolume import CloudVolume

import ptb


@ray.remote
@ptb.provenance("dst", "count foreground voxels in a slice")
def count(dst: str, z: int) -> int:
    return int((CloudVolume(dst, progress=False)[:, :, z] > 0).sum())


if __name__ == "__main__":
    dst = sys.argv[1]
    ray.init(num_cpus=2, include_dashboard=False)
    print(sum(ray.get([count.remote(dst, z) for z in range(8)])))
    ray.shutdown()
