"""The peers' enqueuer: ``<peers venv>/bin/python -m bench.peerclient COMMAND SYSTEM ...``.

``bench.peers`` runs it in the peers' venv (RQ, Celery and Huey are not in
spoold's), one process per run, after it started the system's workers:

``enqueue``
    waits until the workers are there (RQ: both registered; Celery: a ping
    answered; Huey: the harness has seen the consumer's two processes), sends
    ``PROBES`` warm-up jobs that append to ``--warmup-log`` (never the
    measured log) and waits for their lines, sleeps ``SETTLE`` seconds (idle
    workers, as spoold's daemon gets in bench/workloads.py), then enqueues
    ``--n`` jobs with ``feed``: each job's enqueue time is taken right before
    its enqueue call and passed to the job as an argument. It writes
    ``{"enqueued", "returned", "ids"}`` to ``--out``, prints ``enqueued`` and
    waits on its standard input: when the harness has stopped the workers it
    sends ``count``, and this prints ``{"kept": K}``, how many of those ids the
    system still holds a record of (RQ: the job hash ``rq:job:<id>``; Celery:
    ``celery-task-meta-<id>``, which only a result backend would write; Huey:
    a stored result for the task id).
``info``
    prints ``{"versions", "config"}``: the installed versions and the
    configuration the system runs with, read from the libraries themselves.

Only the standard library is imported at the top: ``bench.peers`` imports
``feed`` from here into spoold's venv, so spoold's client is paced the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

PROBES = 2  # warm-up jobs before a run: the connection is up, the workers take jobs
SETTLE = 1.0  # seconds of idle workers after the warm-up, before the first enqueue
READY_TIMEOUT = 90.0
QUEUE = "peers"  # RQ's queue
PACKAGES = ("rq", "celery", "kombu", "billiard", "huey", "redis", "hiredis")


def feed(
    enqueue: Callable[[float], Any], n: int, interval: float = 0.0
) -> tuple[list[float], list[float], list[Any]]:
    """Call ``enqueue(t)`` N times, ``t`` being ``time.time()`` taken right before the call.

    With ``interval``, call ``i`` is made ``i * interval`` seconds after the first
    (W2's one job every 20 ms); without, as fast as the calls return. Returns
    (each ``t``, the time each call returned, what each call returned). Every
    ``t`` is distinct (nudged by one ulp past the previous one if the clock did
    not move), so a job's line is known by its enqueue time.
    """
    enqueued: list[float] = []
    returned: list[float] = []
    handles: list[Any] = []
    began = time.monotonic()
    last = -math.inf
    for i in range(n):
        if interval:
            pause = began + i * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        now = time.time()
        if now <= last:
            now = math.nextafter(last, math.inf)
        last = now
        handles.append(enqueue(now))
        returned.append(time.time())
        enqueued.append(now)
    return enqueued, returned, handles


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


class Client:
    """One system's client side: how it enqueues the job body and what it keeps of it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def ready(self) -> bool:
        """Whether the workers are there to take jobs (beyond what the harness checks)."""
        return True

    def enqueue(self, log: str, enqueued: float, sleep: float) -> str:
        raise NotImplementedError

    def kept(self, ids: list[str]) -> int:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError


class RQClient(Client):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        from redis import Redis
        from rq import Queue

        from bench.peerjobs import record

        self.redis = Redis.from_url(args.url)
        self.queue = Queue(QUEUE, connection=self.redis)
        self.record = record

    def ready(self) -> bool:
        from rq import Worker

        workers: int = self.args.workers
        return len(Worker.all(connection=self.redis)) >= workers

    def enqueue(self, log: str, enqueued: float, sleep: float) -> str:
        return str(self.queue.enqueue(self.record, log, enqueued, sleep).id)

    def kept(self, ids: list[str]) -> int:
        from rq.job import Job

        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(Job.key_for(job_id))
        return sum(1 for found in pipe.execute() if found)

    def config(self) -> dict[str, Any]:
        from rq import defaults
        from rq.queue import Queue

        return {
            "queue": QUEUE,
            "enqueue": "Queue.enqueue(bench.peerjobs.record, log, enqueued, sleep)",
            "result_ttl_s": defaults.DEFAULT_RESULT_TTL,
            "job_timeout_s": Queue.DEFAULT_TIMEOUT,
            "serializer": "pickle (the default)",
            "default_worker_class": defaults.DEFAULT_WORKER_CLASS,
        }


class CeleryClient(Client):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        from bench.peer_celery import app, record

        self.app = app
        self.task = record

    def ready(self) -> bool:
        return bool(self.app.control.ping(timeout=0.5))

    def enqueue(self, log: str, enqueued: float, sleep: float) -> str:
        return str(self.task.delay(log, enqueued, sleep).id)

    def kept(self, ids: list[str]) -> int:
        from redis import Redis

        client = Redis.from_url(self.args.url)
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(f"celery-task-meta-{job_id}")
        return sum(1 for found in pipe.execute() if found)

    def config(self) -> dict[str, Any]:
        conf = self.app.conf
        keys = ("result_backend", "task_ignore_result", "task_acks_late",
                "task_acks_on_failure_or_timeout", "task_reject_on_worker_lost",
                "worker_prefetch_multiplier", "task_serializer", "accept_content",
                "broker_transport_options", "broker_pool_limit", "worker_max_tasks_per_child",
                "task_default_queue")  # fmt: skip
        return {
            "broker": "the bench's redis-server (PEERS_REDIS_URL)",
            "enqueue": "record.delay(log, enqueued, sleep)",
            **{key: _plain(conf.get(key)) for key in keys},
        }


class HueyClient(Client):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        from bench.peer_huey import huey, record

        self.huey = huey
        self.task = record

    def enqueue(self, log: str, enqueued: float, sleep: float) -> str:
        return str(self.task(log, enqueued, sleep).id)

    def kept(self, ids: list[str]) -> int:
        storage = self.huey.storage
        return sum(1 for job_id in ids if storage.has_data_for_key(job_id))

    def config(self) -> dict[str, Any]:
        from huey.consumer_options import config_defaults

        storage = self.huey.storage
        wanted = ("path", "levels", "filename", "_cache_mb", "_fsync", "_journal_mode",
                  "_timeout", "strict_fifo")  # fmt: skip
        return {
            "class": type(self.huey).__name__,
            "storage": type(storage).__name__,
            "storage_options": {
                key.lstrip("_"): _plain(getattr(storage, key))
                for key in wanted
                if hasattr(storage, key)
            },
            "results": self.huey.results,
            "store_none": self.huey.store_none,
            "utc": self.huey.utc,
            "enqueue": "record(log, enqueued, sleep) (the decorated task)",
            "consumer_defaults": {k: _plain(v) for k, v in dict(config_defaults).items()},
        }


CLIENTS: dict[str, type[Client]] = {"rq": RQClient, "celery": CeleryClient, "huey": HueyClient}


def _plain(value: Any) -> Any:
    """``value`` if JSON takes it as it is, else its repr."""
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def wait_until(what: str, check: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"peerclient: {what} not within {timeout:g} s")
        time.sleep(0.05)


def run_enqueue(client: Client, args: argparse.Namespace) -> None:
    wait_until("the workers ready", client.ready)
    warmup = Path(args.warmup_log)
    for _ in range(PROBES):
        client.enqueue(str(warmup), time.time(), 0.0)
    wait_until(f"{PROBES} warm-up jobs done", lambda: count_lines(warmup) >= PROBES)
    time.sleep(SETTLE)
    enqueued, returned, ids = feed(
        lambda t: client.enqueue(args.log, t, args.sleep), args.n, args.interval
    )
    Path(args.out).write_text(json.dumps({"enqueued": enqueued, "returned": returned, "ids": ids}))
    print("enqueued", flush=True)
    if sys.stdin.readline().strip() == "count":
        print(json.dumps({"kept": client.kept(ids)}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peerclient", description=__doc__)
    parser.add_argument("command", choices=("enqueue", "info"))
    parser.add_argument("system", choices=sorted(CLIENTS))
    parser.add_argument("--url", default="", help="the bench's redis-server (RQ, Celery)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log", default="")
    parser.add_argument("--warmup-log", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args(argv)
    client = CLIENTS[args.system](args)
    if args.command == "info":
        print(json.dumps({"versions": versions(), "config": client.config()}))
    else:
        run_enqueue(client, args)


if __name__ == "__main__":
    main()
