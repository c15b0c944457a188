"""The same tasks on one machine, without a queue service: python local_queue.py CLOUDPATH."""
import sys
from functools import partial

import tasks
from taskqueue import LocalTaskQueue

if __name__ == "__main__":
    dst = sys.argv[1]
    with LocalTaskQueue(parallel=2) as queue:
        queue.insert([partial(tasks.count, dst, z) for z in range(4)] +
                     [partial(tasks.check, dst, z) for z in range(4, 8)])
