"""Documented steps on a Dask cluster, defined in the script itself (``__main__``), as in a notebook.

    python dask_cluster.py CLOUDPATH
"""
import sys

from cloudvolume import CloudVolume
from dask.distributed import Client, LocalCluster

import ptb


@ptb.provenance("dst", "count foreground voxels in a slice")
def count(dst: str, z: int) -> int:
    return int((CloudVolume(dst, progress=False)[:, :, z] > 0).sum())


if __name__ == "__main__":
    dst = sys.argv[1]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        print(sum(client.gather(client.map(count, [dst] * 8, range(8)))))
