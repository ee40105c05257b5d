"""Celery's side of ``bench.peers``: an app on the bench's private Redis, one task.

Started as ``celery -A bench.peer_celery worker --pool prefork -c 2`` in the
peers' venv (never spoold's). The broker is ``PEERS_REDIS_URL``, which the
harness sets to its own redis-server: there is no fallback, so it can never
reach another Redis. Everything else is Celery's default: no result backend
(so nothing is kept of a task once it ran), early acks (``task_acks_late``
False), ``worker_prefetch_multiplier`` 4, the JSON serializer.
"""

import os

from celery import Celery

from bench import peerjobs

app = Celery("spoold_peers", broker=os.environ["PEERS_REDIS_URL"])


@app.task
def record(log: str, enqueued: float, sleep: float = 0.0) -> None:
    peerjobs.record(log, enqueued, sleep)
