"""Redis memory per job and per record: what README "Redis" quotes, measured.

``python -m bench.redis_memory [--jobs 20000]`` starts a private redis-server
(bench/redisserver.py), loads spoold's functions library, submits N jobs
through ``spoold_submit`` (a 138-byte document like a small mailer job),
then claims and finishes each with a one-attempt done record through
``spoold_claim`` and ``spoold_finish``, reading ``INFO memory`` before and
after each phase. It prints JSON: bytes per waiting job, bytes per done
record, and the sizes of what was stored.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.redisserver import RedisServer, unavailable
from spoold.backends.redis.connection import library_source
from spoold.client import job_payload
from spoold.ids import new_job_id

KEY = "spoold:{memory}:"


def measure(jobs: int) -> dict[str, Any]:
    import redis

    with tempfile.TemporaryDirectory(prefix="spoold-redis-memory-") as folder:
        server = RedisServer(Path(folder), dict(os.environ)).start()
        try:
            client = redis.Redis.from_url(server.url)
            client.function_load(library_source(), replace=True)
            return _fill(client, jobs)
        finally:
            server.stop()


def _fill(client: Any, jobs: int) -> dict[str, Any]:
    def used() -> int:
        return int(client.info("memory")["used_memory"])

    base = used()
    payload = b""
    for number in range(jobs):
        params = [f"user{number:06d}@example.com", {"template": "welcome"}]
        payload = job_payload("app.jobs.Mailer", "send", params, now=time.time())
        client.fcall("spoold_submit", 1, KEY, new_job_id(), payload)
    queued = used()
    record = b""
    for _ in range(jobs):
        job_id, epoch, document = client.fcall("spoold_claim", 1, KEY, "bench:1", 30000, 100)[:3]
        now = time.time()
        attempt = {"attempt": 1, "started_at": now, "finished_at": now, "outcome": "ok",
                   "pid": 12345}  # fmt: skip
        record = json.dumps({**json.loads(document), "id": job_id.decode(), "status": "done",
                             "attempts": 1, "result": None, "history": [attempt],
                             "finished_at": now}).encode()  # fmt: skip
        client.fcall("spoold_finish", 1, KEY, job_id, epoch, "done", record)
    done = used()
    return {
        "jobs": jobs,
        "document_bytes": len(payload),
        "record_bytes": len(record),
        "bytes_per_waiting_job": round((queued - base) / jobs),
        "bytes_per_done_record": round((done - base) / jobs),
        "redis_version": client.info("server")["redis_version"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    reason = unavailable()
    if reason is not None:
        raise SystemExit(f"skipped: {reason}")
    print(json.dumps(measure(args.jobs), indent=2))


if __name__ == "__main__":
    main()
