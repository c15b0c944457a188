"""Put the tasks on a queue: python enqueue.py QUEUE CLOUDPATH (QUEUE: fq:///path/to/queue or sqs://name)."""
import sys
from functools import partial

import tasks
from taskqueue import TaskQueue

queue, dst = sys.argv[1], sys.argv[2]
TaskQueue(queue).insert([partial(tasks.count, dst, z) for z in range(4)] +
                        [partial(tasks.check, dst, z) for z in range(4, 8)])
