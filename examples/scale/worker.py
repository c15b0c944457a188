"""A queue worker, run as many as you like: python worker.py QUEUE."""
import sys

import tasks  # noqa: F401  (registers the decorated tasks with the queue)
from taskqueue import TaskQueue

queue = TaskQueue(sys.argv[1])
queue.poll(lease_seconds=600, stop_fn=lambda: queue.is_empty())
