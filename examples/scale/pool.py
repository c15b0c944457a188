"""Documented steps in multiprocessing and concurrent.futures pools.

    python pool.py CLOUDPATH [fork|spawn|forkserver]
"""
import concurrent.futures
import multiprocessing
import sys

from cloudvolume import CloudVolume

import ptb


@ptb.provenance("dst", "count foreground voxels in a slice")
def count(dst: str, z: int) -> int:
    return int((CloudVolume(dst, progress=False)[:, :, z] > 0).sum())


if __name__ == "__main__":      # spawn and forkserver import this file again in each worker
    dst, method = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        print(sum(pool.starmap(count, [(dst, z) for z in range(4)])))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        print(sum(executor.map(count, [dst] * 4, range(4, 8))))
