"""The one job body every system of ``bench.peers`` runs: ``record(log, enqueued, sleep)``.

It sleeps if asked, then appends ``"<enqueued> <start> <end> <pid>\\n"`` to
``log`` with a single ``os.write`` on an ``O_APPEND`` descriptor, so two
workers appending at once never interleave. ``enqueued`` is the time the
enqueuer took right before its enqueue call, passed through the framework as
an argument; ``start`` and ``end`` are this call's own ``time.time()``. The
bench times every system from these lines, never from the system's own log.

Each framework wraps it its own way: RQ enqueues ``bench.peerjobs.record``
itself, Celery and Huey decorate a task that calls it (bench/peer_celery.py,
bench/peer_huey.py), and spoold runs ``peerjobs.Record.record`` (this module
on the daemon's ``[worker] python_path``, the class allowlisted). It imports
only ``os`` and ``time``, so importing it costs every system the same. The
descriptor is kept per (process, path): a worker that runs many jobs opens it
once, a fresh process per job opens it each time.
"""

import os
import time

_fds: dict[tuple[int, str], int] = {}


def record(log: str, enqueued: float, sleep: float = 0.0) -> None:
    start = time.time()
    if sleep:
        time.sleep(sleep)
    line = f"{enqueued!r} {start!r} {time.time()!r} {os.getpid()}\n".encode()
    key = (os.getpid(), log)
    fd = _fds.get(key)
    if fd is None:
        fd = _fds[key] = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    os.write(fd, line)


class Record:
    """spoold's job class: ``run_background_job("peerjobs.Record", "record", [log, t, s])``."""

    def record(self, log: str, enqueued: float, sleep: float = 0.0) -> None:
        record(log, enqueued, sleep)
