"""Documented steps with joblib (its default loky backend), defined in the script itself.

    python joblib_parallel.py CLOUDPATH
"""
import sys

from cloudvolume import CloudVolume
from joblib import Parallel, delayed

import ptb


@ptb.provenance("dst", "count foreground voxels in a slice")
def count(dst: str, z: int) -> int:
    return int((CloudVolume(dst, progress=False)[:, :, z] > 0).sum())


if __name__ == "__main__":
    dst = sys.argv[1]
    print(sum(Parallel(n_jobs=2)(delayed(count)(dst, z) for z in range(8))))
