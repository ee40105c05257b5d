"""The job ``python -m bench.hosts`` reclaims: it says when it starts, then holds its slot.

``Hold.hold(log, seconds)`` appends "<job id> <start> <pid> <parent pid>" to
``log`` with one ``os.write`` on an ``O_APPEND`` descriptor, then sleeps.
bench/benchjobs.py writes its line only at the end, too late for a job that
is killed mid-way; the parent pid (the launcher that forked the worker) says
which daemon ran the attempt.
"""

import os
import time


class Hold:
    def hold(self, log: str, seconds: float) -> None:
        start = time.time()
        job_id = os.environ.get("SPOOLD_JOB_ID", "?")
        line = f"{job_id} {start!r} {os.getpid()} {os.getppid()}\n".encode()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        time.sleep(seconds)
