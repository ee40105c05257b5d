"""The client's side of the Redis backend: one ``FCALL spoold_submit`` per job.

The client runs inside users' applications, so one connection is kept per
process (per URL and spool) and reused: after the first call, a submit is
one round trip, bounded by ``[spool] redis_timeout``. A job is sent under an
id made here; "dup" (this very document is in already) means a re-sent call
arrived twice and is the same job; "taken" (another job has the id) means a
new id. Unreachable Redis raises ``RedisUnavailable`` (an OSError) within
the timeout, never a hang.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from spoold.backends.redis.connection import RedisUnavailable, connect, fcall, prefix, safe_url
from spoold.config import SpoolSettings
from spoold.ids import new_job_id

if TYPE_CHECKING:
    import redis

_clients: dict[tuple[str, str, float, int], redis.Redis] = {}
_lock = threading.Lock()


class RedisSubmitter:
    """Submits job documents to the spool ``[spool] name`` in ``[spool] url``."""

    def __init__(self, spool: SpoolSettings) -> None:
        self.spool = spool
        self.key = prefix(spool)

    def submit(self, payload: bytes, *, now: float) -> str:
        client = _client(self.spool)
        while True:
            job_id = new_job_id(now)
            try:
                answer = fcall(client, "spoold_submit", self.key, job_id, payload)
            except RedisUnavailable as exc:
                where = safe_url(self.spool.url)
                raise RedisUnavailable(exc.errno, f"{exc.strerror} ({where})") from None
            if answer != b"taken":
                return job_id


def _client(spool: SpoolSettings) -> redis.Redis:
    """This process's client for the spool (a forked child makes its own: pools track pids)."""
    key = (spool.url, spool.name, spool.redis_timeout, os.getpid())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = connect(spool)
        return client
