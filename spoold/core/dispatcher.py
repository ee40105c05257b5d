"""Dispatching: hand claimed jobs to the launcher and route what it reports.

Keeps the running attempts, sends each one's request with its limits,
logs its start, and files its outcome (done, retry, failed, or rerun after
an interruption) when the launcher reports it. If the launcher dies, its
attempts are failed as ``crashed`` and a new launcher is started.

The daemon's own trouble never fails a job: an outcome that cannot be filed
(disk full) is held (``held.py``) and filed again after a backoff, and no
new attempt starts meanwhile; a job the launcher could not start (out of
processes) goes back to scheduled/ unchanged and launches pause for a
backoff.
"""

from __future__ import annotations

import selectors
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from loguru import logger

from spoold.core import policy
from spoold.core.held import HeldFilings
from spoold.core.outcomes import Filer
from spoold.durations import seconds
from spoold.exec.launcher_client import LauncherClient, LauncherGone
from spoold.faults import crash_point
from spoold.job import Job
from spoold.live import Live
from spoold.logs import job_logger


@dataclass
class Running:
    job: Job
    limits: policy.Limits
    sent_at: float = field(default_factory=time.time)
    pid: int | None = None


class Dispatcher:
    def __init__(
        self, live: Live, filer: Filer, held: HeldFilings, selector: selectors.BaseSelector
    ) -> None:
        self.live = live
        self.filer = filer
        self.held = held  # outcomes (and other filings) a resource shortage held back
        self.selector = selector
        self.running: dict[str, Running] = {}
        self.launch_trouble = policy.Backoff()
        self.launcher = self._new_launcher()

    def _new_launcher(self) -> LauncherClient:
        launcher = LauncherClient()
        self.selector.register(launcher.fileno(), selectors.EVENT_READ, self)
        return launcher

    def await_launcher(self, timeout: float) -> None:
        """Wait until the launcher can take attempts, so that READY=1 means jobs start at once."""
        try:
            if not self.launcher.wait_ready(timeout):
                logger.warning("the launcher is not ready after {}; going on", seconds(timeout))
        except LauncherGone:
            self._launcher_died()

    def __len__(self) -> int:
        return len(self.running) + len(self.held)

    def can_launch(self, now: float) -> bool:
        return not self.held and not self.launch_trouble.waiting(now)

    def next_wakeup(self) -> float | None:
        return self.launch_trouble.until or None

    def launch(self, job: Job) -> None:
        limits = policy.limits_for(job, self.live.config.worker)
        request = {
            "job_id": job.id,
            "class": job.class_path,
            "method": job.method,
            "params": job.params,
            "python_path": [str(p) for p in self.live.config.worker.python_path],
            "memory_limit": limits.memory_limit,
            "max_jobs_per_process": self.live.config.worker.max_jobs_per_process,
            **self.live.identity.as_request(),
        }
        self.running[job.id] = Running(job, limits)
        try:
            self.launcher.run(job.id, request, limits.timeout)
        except LauncherGone:
            self._launcher_died()
        crash_point("after_launch")

    def on_readable(self) -> None:
        """Handle what the launcher reported (a dead launcher is replaced here)."""
        try:
            messages = self.launcher.receive()
        except LauncherGone:
            self._launcher_died()
            return
        for message in messages:
            self._on_message(message)

    def stop_all(self, *, grace: float, why: str) -> None:
        if self.running:
            logger.warning("{}: stopping {} running job(s); they will run again", why, len(self))
        for job_id in self.running:
            self.launcher.kill(job_id, grace)

    def close(self) -> None:
        self.selector.unregister(self.launcher.fileno())
        self.launcher.close()

    def _on_message(self, message: dict[str, Any]) -> None:
        running = self.running.get(message["key"])
        if running is None:
            return
        job = running.job
        if message["op"] == "not_started":
            del self.running[job.id]
            self._put_back(running, message["error"])
            return
        if message["op"] == "started":
            self.launch_trouble.clear()
            running.pid = message["pid"]
            job_logger(job.id).info(
                "job {} started: {}.{} attempt {} (pid {})",
                job.id, job.class_path, job.method, job.attempts + 1, message["pid"],
            )  # fmt: skip
            return
        del self.running[job.id]
        outcome = {k: v for k, v in message.items() if k not in ("op", "key")}
        self._route(running, {"attempt": job.attempts + 1, **outcome})

    def _route(self, running: Running, entry: dict[str, Any]) -> None:
        self.held.attempt(running.job.id, "outcome", partial(self._file, running, entry))

    def _file(self, running: Running, entry: dict[str, Any]) -> None:
        """File one outcome (raises OSError if it cannot be done now)."""
        job = running.job
        if entry["outcome"] == "ok":
            self.filer.succeeded(job, entry)
        elif entry["outcome"] == "interrupted":
            entry.update(cause=policy.SHUTDOWN, error="killed at shutdown after shutdown_timeout")
            self.filer.interrupted(job, entry, self.live.config.worker.max_interruptions)
        else:
            self.filer.attempt_failed(job, entry, running.limits)

    def _put_back(self, running: Running, error: str) -> None:
        job = running.job
        delay = self.launch_trouble.hit(time.time())
        job_logger(job.id).warning("job {} could not start ({}); it waits {} and tries again",
                                   job.id, error, seconds(delay))  # fmt: skip
        self.held.attempt(job.id, "put-back to scheduled/", partial(self._unclaim, job, delay))

    def _unclaim(self, job: Job, delay: float) -> None:
        self.filer.unclaim(job, time.time() + delay)  # when the put-back is made, if held

    def _launcher_died(self) -> None:
        logger.critical("the launcher process died; failing its attempts and starting a new one")
        self.selector.unregister(self.launcher.fileno())
        self.launcher.close(timeout=1)
        now = time.time()
        for running in list(self.running.values()):
            del self.running[running.job.id]
            entry = {"attempt": running.job.attempts + 1, "started_at": now, "finished_at": now,
                     "outcome": "crashed", "error": "the launcher process died"}  # fmt: skip
            self._route(running, entry)
        self.launcher = self._new_launcher()
