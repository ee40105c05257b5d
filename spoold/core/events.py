"""Events: what happens to jobs, told to listeners that can neither fail nor steer it.

The rooms of the loop say what happened when it happened: a job received,
a file rejected, an attempt started and finished, a retry scheduled, a
record filed. Listeners count it: the run's ``Tally`` (burst mode's exit
status) is the first, metrics come next. This is dramatiq's middleware
habit: every hook is a no-op on ``Listener``, a listener overrides the ones
it needs, and one that raises is logged (CRITICAL, with its traceback the
first time) while the others still run. A job's course never depends on a
listener: the hooks are told after the step they describe is done.

Listeners run in the loop's own thread, between its steps, so they must
return at once: count, never block or do I/O. (A dashboard or a metrics
endpoint reads a snapshot from another process.)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt
    from spoold.job import Job


class Listener:
    """Every hook, doing nothing: override the ones you need."""

    def received(self, job: Job) -> None:
        """A submitted job passed intake: it is ready, or waits for its ``run_at``."""

    def rejected(self, job_id: str, reason: str, kind: str) -> None:
        """A submitted file was refused (``kind``: one of ``job.REJECTION_KINDS``); its
        rejection record is filed (``filed`` follows)."""

    def started(self, job: Job, pid: int) -> None:
        """An attempt of ``job`` runs in process ``pid`` (``job.attempts`` ran before it)."""

    def finished(self, job: Job, attempt: Attempt) -> None:
        """An attempt ended, ``attempt["outcome"]`` says how; its filing comes next."""

    def retry_scheduled(self, job: Job, due_at: float) -> None:
        """``job`` waits to run again at ``due_at``: a retry after a failed
        attempt, or a rerun after an interrupted one (``job.history[-1]`` says which)."""

    def filed(self, job_id: str, status: str, class_path: str) -> None:
        """A record was filed under ``job_id``: ``done``, ``failed`` or ``rejected`` (whose
        ``class_path`` is "": a rejected file's class is nobody's word)."""


class Tally(Listener):
    """What this run of the daemon filed, by status: burst mode's exit status comes from it."""

    def __init__(self) -> None:
        self.filed_by_status: Counter[str] = Counter()

    def filed(self, job_id: str, status: str, class_path: str) -> None:
        self.filed_by_status[status] += 1

    @property
    def anything_failed(self) -> bool:
        return bool(self.filed_by_status["failed"] or self.filed_by_status["rejected"])


class Events:
    """The listeners of one daemon, and the one way to tell them something."""

    def __init__(self, *listeners: Listener, repeat_every: float = 60.0) -> None:
        self.listeners = list(listeners)
        self.repeat_every = repeat_every  # how often a listener that keeps failing is named again
        self._failures: dict[tuple[int, str], _Failures] = {}

    def received(self, job: Job) -> None:
        self._emit("received", job)

    def rejected(self, job_id: str, reason: str, kind: str) -> None:
        self._emit("rejected", job_id, reason, kind)

    def started(self, job: Job, pid: int) -> None:
        self._emit("started", job, pid)

    def finished(self, job: Job, attempt: Attempt) -> None:
        self._emit("finished", job, attempt)

    def retry_scheduled(self, job: Job, due_at: float) -> None:
        self._emit("retry_scheduled", job, due_at)

    def filed(self, job_id: str, status: str, class_path: str) -> None:
        self._emit("filed", job_id, status, class_path)

    def _emit(self, hook: str, *args: object) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, hook)(*args)
            except Exception as exc:  # a listener's bug must never reach a job
                self._failed(listener, hook, exc)

    def _failed(self, listener: Listener, hook: str, exc: Exception) -> None:
        key = (id(listener), hook)
        failures = self._failures.setdefault(key, _Failures())
        failures.count += 1
        now = time.monotonic()
        name = f"{type(listener).__name__}.{hook}"
        if failures.count == 1:
            logger.opt(exception=exc).critical(
                "event listener {} failed ({}); the jobs go on, and it is told the next events",
                name, exc,
            )  # fmt: skip
        elif now >= failures.named_at + self.repeat_every:
            logger.critical("event listener {} still fails: {} time(s) so far ({})",
                            name, failures.count, exc)  # fmt: skip
        else:
            return
        failures.named_at = now


@dataclass
class _Failures:
    count: int = 0
    named_at: float = 0.0  # time.monotonic() of the last log line about it


class Broken(Listener):
    """Raises in every hook: ``SPOOLD_FAULT=broken_listener`` adds it first, so that the
    tests see jobs run, retry and file, and the tally count, with a listener that fails."""

    def received(self, job: Job) -> None:
        _fail()

    def rejected(self, job_id: str, reason: str, kind: str) -> None:
        _fail()

    def started(self, job: Job, pid: int) -> None:
        _fail()

    def finished(self, job: Job, attempt: Attempt) -> None:
        _fail()

    def retry_scheduled(self, job: Job, due_at: float) -> None:
        _fail()

    def filed(self, job_id: str, status: str, class_path: str) -> None:
        _fail()


def _fail() -> None:
    raise RuntimeError("a broken listener, on purpose (SPOOLD_FAULT=broken_listener)")
