"""The benchmark's job class: every call appends "<job id> <start> <end>" to a log file.

The daemon imports this module (``[worker] python_path`` is the bench folder) in
every attempt's process, so it stays tiny and imports only ``os`` and ``time``.
Each line is written with one ``os.write`` on an ``O_APPEND`` descriptor, so two
workers appending at once never interleave. The descriptor is kept per
(process, path): a long-lived worker (``max_jobs_per_process > 1``) opens it once.
"""

import os
import time

_fds: dict[tuple[int, str], int] = {}


def _append(log: str, start: float) -> None:
    line = f"{os.environ.get('SPOOLD_JOB_ID', '?')} {start!r} {time.time()!r}\n".encode()
    key = (os.getpid(), log)
    fd = _fds.get(key)
    if fd is None:
        fd = _fds[key] = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    os.write(fd, line)


class Bench:
    def noop(self, log: str) -> None:
        _append(log, time.time())

    def sleep(self, log: str, seconds: float) -> None:
        start = time.time()
        time.sleep(seconds)
        _append(log, start)
