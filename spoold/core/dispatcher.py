"""Dispatching: hand claimed jobs to the launcher and route what it reports.

Keeps the running attempts, sends each one's request with its limits,
logs its start, and files its outcome (done, retry, failed, or rerun after
an interruption) when the launcher reports it. If the launcher dies, its
attempts are failed as ``crashed`` and a new launcher is started.

Each slot may have its next request sent ahead (``[worker] send_ahead``): it
waits in the launcher, which starts it the moment an attempt ends, so that
a slot does not stand idle while the daemon files the outcome and claims
the next job. Such a request is claimed like any other (its lease kept,
counted against its class's limits), and is taken back unstarted when a
filing is held, when the daemon stops, or when it has waited
``STALE_AHEAD`` for slots that stay busy (then no request is sent ahead
until an attempt ends, so long jobs do not keep work from other hosts).

The daemon's own trouble never fails a job: an outcome that cannot be filed
(disk full) is held (``held.py``) and filed again after a backoff, and no
new attempt starts meanwhile: requests sent ahead are taken back, so at
most one per slot (sent before the trouble showed) can start before the
outcome that freed its slot is filed. A job the launcher could not start
(out of processes) goes back to wait unchanged and launches pause for a
backoff.
"""

from __future__ import annotations

import json
import selectors
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from loguru import logger

from spoold import followups
from spoold.backoff import Backoff
from spoold.core import policy
from spoold.core.backend import Claim, Taken
from spoold.core.events import Events
from spoold.core.held import HeldFilings
from spoold.core.outcomes import Filer
from spoold.durations import seconds
from spoold.errors import describe_os_error
from spoold.exec.launcher import KILL_GRACE
from spoold.exec.launcher_client import LauncherClient, LauncherGone
from spoold.exec.protocol import Op, Outcome
from spoold.faults import crash_point
from spoold.identity import who
from spoold.job import Job
from spoold.live import Live
from spoold.logs import job_logger
from spoold.snapshot import RunningAttempt

if TYPE_CHECKING:
    from spoold.exec.messages import (
        Attempt,
        AttemptMessage,
        FinishedMessage,
        NotStartedMessage,
        RunRequest,
        StartedMessage,
    )


@dataclass
class Running:
    claim: Claim
    job: Job
    limits: policy.Limits
    sent_at: float  # when it was handed to the launcher
    ahead: bool = False  # sent while every slot was taken: it waits in the launcher
    pid: int | None = None  # None until the launcher says it started
    taken_back: bool = False  # asked back unstarted (``unqueue``): not_started comes
    lost: bool = False  # its lease was lost: it is being killed
    cancelled_by: int | None = None  # a cancel asked for by this uid: it is being stopped


STALE_AHEAD = 1.0  # seconds a request sent ahead may wait for a slot before it is taken back


class Dispatcher:
    """Hands claimed jobs to the launcher and routes what it reports back."""

    def __init__(
        self,
        live: Live,
        filer: Filer,
        held: HeldFilings,
        events: Events,
        selector: selectors.BaseSelector,
        new_launcher: Callable[[], LauncherClient] = LauncherClient,
    ) -> None:
        self.live = live
        self.launcher_factory = new_launcher  # a test hands in a stand-in
        self.filer = filer
        self.events = events
        self.held = held  # outcomes (and other filings) a resource shortage held back
        self.selector = selector
        self.running: dict[str, Running] = {}
        self.launch_trouble = Backoff()
        self.ahead_paused = False  # a request waited STALE_AHEAD: none ahead till one ends
        # By name, once: what each report does, how the daemon words an outcome, and
        # where each outcome is filed (anything else failed: retry, or fail for good).
        self.on_report: dict[str, Callable[[Running, Any, float], None]] = {
            Op.NOT_STARTED: self._on_not_started,
            Op.STARTED: self._on_started,
            Op.FINISHED: self._on_finished,
        }
        self.wordings = {
            Outcome.TIMEOUT: self._word_timeout,
            Outcome.INTERRUPTED: self._word_stop,
            Outcome.CANCELLED: self._word_cancel,
        }
        self.filings = {
            Outcome.OK: self._file_success,
            Outcome.INTERRUPTED: self._file_interruption,
            Outcome.CANCELLED: self._file_cancelled,
        }
        self.launcher = self._new_launcher()

    def _new_launcher(self) -> LauncherClient:
        launcher = self.launcher_factory()
        self.selector.register(launcher.fileno(), selectors.EVENT_READ, self)
        return launcher

    def await_launcher(self, timeout: float, now: float) -> None:
        """Wait until the launcher can take attempts, so that READY=1 means jobs start at once."""
        try:
            if not self.launcher.wait_ready(timeout):
                logger.warning("the launcher is not ready after {}; going on", seconds(timeout))
        except LauncherGone:
            self._launcher_died(now)

    def __len__(self) -> int:
        return len(self.running) + len(self.held)

    def can_launch(self, now: float) -> bool:
        return not self.held and not self.launch_trouble.waiting(now)

    def room(self, now: float) -> int:
        """How many more requests may be sent now: a free slot's, and one ahead per slot."""
        if not self.can_launch(now):
            return 0
        worker = self.live.config.worker
        ahead = 0 if self.ahead_paused or not worker.send_ahead else worker.concurrency
        return worker.concurrency + ahead - len(self)

    def busy(self) -> int:
        """Attempts running now (not counting requests that wait in the launcher)."""
        return sum(1 for running in self.running.values() if running.pid is not None)

    def next_wakeup(self) -> float | None:
        times = [self.launch_trouble.until or None, *self._stale_at()]
        return min((t for t in times if t is not None), default=None)

    def take_back(self, now: float, *, every: bool = False) -> None:
        """Ask back the requests that wait in the launcher, if they should not start:
        ``every`` one (the daemon stops, or its config changed), all of them while a
        filing is held, and any that waited STALE_AHEAD."""
        for running in list(self.running.values()):
            if running.pid is not None or running.taken_back or running.lost:
                continue
            stale = now - running.sent_at >= STALE_AHEAD
            if every or self.held or stale:
                self.ahead_paused = self.ahead_paused or stale
                running.taken_back = True
                if not self._send_or_replace(partial(self.launcher.unqueue, running.job.id), now):
                    return  # the launcher died: what it held was put back with the rest

    def _stale_at(self) -> list[float]:
        waiting = [r for r in self.running.values() if r.pid is None and not r.taken_back]
        return [min(r.sent_at for r in waiting) + STALE_AHEAD] if waiting else []

    def launch(self, taken: Taken, now: float) -> None:
        job = taken.job
        limits = policy.limits_for(job, self.live.config.worker)
        fields: dict[str, Any] = {
            "job_id": job.id,
            "class": job.class_path,
            "method": job.method,
            "params": job.params,
            "python_path": [str(p) for p in self.live.config.worker.python_path],
            "memory_limit": limits.memory_limit,
            "max_jobs_per_process": self.live.config.worker.max_jobs_per_process,
            **self.live.identity.as_request(),  # its keys, or none
        }
        parent = job.submitted.get(followups.PARENT)
        if isinstance(parent, dict):  # a follow-up: its parent, for SPOOLD_PARENT
            fields["parent"] = json.dumps(parent, ensure_ascii=False, default=repr)
        request = cast("RunRequest", fields)
        ahead = len(self.running) >= self.live.config.worker.concurrency
        self.running[job.id] = Running(taken.claim, job, limits, now, ahead=ahead)
        send = partial(self.launcher.run, job.id, request, limits.timeout,
                       self.live.config.worker.concurrency)  # fmt: skip
        self._send_or_replace(send, now)
        crash_point("after_launch")

    def _send_or_replace(self, send: Callable[[], None], now: float) -> bool:
        """Send to the launcher; False if it was gone (and so replaced)."""
        try:
            send()
        except LauncherGone:
            self._launcher_died(now)
            return False
        return True

    def on_readable(self, now: float) -> None:
        """Handle what the launcher reported (a dead launcher is replaced here)."""
        try:
            messages = self.launcher.receive()
        except LauncherGone:
            self._launcher_died(now)
            return
        for message in messages:
            self._on_message(message, now)

    def stop_all(self, *, grace: float, why: str) -> None:
        """Stop every attempt (they run again), and take back the requests sent ahead."""
        if busy := self.busy():
            logger.warning("{}: stopping {} running job(s); they will run again", why, busy)
        for job_id in self.running:
            self.launcher.kill(job_id, grace)  # one that waits in the launcher comes back

    def lose(self, claim: Claim, why: str = "the backend says so") -> None:
        """``claim`` no longer holds its job (``why``): stop the attempt at once, once.

        The job runs again elsewhere (or here, claimed anew); this attempt's outcome,
        if it still comes, is refused by the backend as stale.
        """
        running = self.running.get(claim.job_id)
        if running is None or running.claim != claim or running.lost:
            return
        running.lost = True
        job_logger(claim.job_id).error("job {}: lease lost ({}); killing its attempt (pid {})",
                                       claim.job_id, why, running.pid or "?")  # fmt: skip
        self.launcher.kill(claim.job_id, 0.0)

    def cancel(self, job_id: str, by: int) -> bool:
        """Stop the attempt of ``job_id`` for a cancel by uid ``by`` (SIGTERM, then SIGKILL
        after the grace a timeout gets); its outcome is then filed ``cancelled``, unless
        it succeeded first. False if no attempt of it runs here."""
        running = self.running.get(job_id)
        if running is None:
            return False
        if running.cancelled_by is None and not running.lost:
            running.cancelled_by = by
            job_logger(job_id).warning("job {}: cancelled by {}; stopping its attempt (pid {})",
                                       job_id, who(by), running.pid or "?")  # fmt: skip
            self.launcher.kill(job_id, KILL_GRACE)
        return True

    def attempts(self) -> list[RunningAttempt]:
        """The attempts running, with their limits as at launch (for watchers)."""
        return [_attempt(running) for running in self.running.values() if running.pid is not None]

    def claims(self) -> list[Claim]:
        return [running.claim for running in self.running.values()]

    def close(self) -> None:
        self.selector.unregister(self.launcher.fileno())
        self.launcher.close()

    def _on_message(self, message: AttemptMessage, now: float) -> None:
        running = self.running.get(message["key"])
        if running is None:
            return
        self.on_report[message["op"]](running, message, now)

    def _on_not_started(self, running: Running, message: NotStartedMessage, now: float) -> None:
        del self.running[running.job.id]
        if message["errno"] is None:  # taken back before it started
            self._unsent(running, now)
            return
        # The launcher sends the errno, the daemon words it: "EAGAIN: Resource temporarily ..."
        reason = OSError(message["errno"], message["strerror"])
        self._put_back(running, describe_os_error(reason, code=True), now)

    def _unsent(self, running: Running, now: float) -> None:
        """A request that never started: cancelled, lost, or back to wait as it was."""
        claim, job = running.claim, running.job
        if running.cancelled_by is not None:
            cancel = partial(self.filer.cancelled, claim, job, running.cancelled_by)
            self.held.attempt(claim, "cancellation", cancel, now)
        elif not running.lost:  # (a lost claim's job runs again wherever it is claimed anew)
            job_logger(job.id).debug("job {} taken back before it started", job.id)
            put_back = partial(self._unclaim, running, 0.0)
            self.held.attempt(claim, f"put-back to {self.held.places.waiting}", put_back, now)

    def _on_started(self, running: Running, message: StartedMessage, _now: float) -> None:
        job = running.job
        self.launch_trouble.clear()
        running.pid = message["pid"]
        job_logger(job.id).info(
            "job {} started: {}.{} attempt {} (pid {})",
            job.id, job.class_path, job.method, job.attempts + 1, message["pid"],
        )  # fmt: skip
        self.events.started(job, message["pid"])

    def _on_finished(self, running: Running, message: FinishedMessage, now: float) -> None:
        del self.running[running.job.id]
        self.ahead_paused = False  # a slot came free: the next may be sent ahead again
        self._route(running, _history_entry(running.job.attempts + 1, message), now)

    def _route(self, running: Running, entry: Attempt, now: float) -> None:
        """Word the attempt's end, tell the listeners, and file it (held if it cannot be now)."""
        if running.cancelled_by is not None and entry["outcome"] != Outcome.OK:
            entry["outcome"] = Outcome.CANCELLED  # (a success that came first stands)
        if entry["outcome"] in self.wordings:
            self.wordings[entry["outcome"]](running, entry)
        self.events.finished(running.job, entry)
        self.held.attempt(running.claim, "outcome", partial(self._file, running, entry), now)
        if self.held:
            self.take_back(now)  # no attempt may start now that was not already on its way

    def _word_timeout(self, running: Running, entry: Attempt) -> None:
        # The launcher reports the fact; the words name the limit, which the daemon set.
        entry["error"] = f"timed out after {seconds(running.limits.timeout)} and was killed"

    def _word_stop(self, _running: Running, entry: Attempt) -> None:
        entry["cause"] = policy.SHUTDOWN
        entry["error"] = "killed at shutdown after shutdown_timeout"

    def _file(self, running: Running, entry: Attempt, now: float) -> None:
        """File one outcome at ``now`` (raises OSError if it cannot be done now)."""
        self.filings.get(entry["outcome"], self._file_failure)(running, entry, now)

    def _word_cancel(self, running: Running, entry: Attempt) -> None:
        assert running.cancelled_by is not None
        entry.pop("signal", None)  # (how it was stopped is the cancel's doing)
        entry["error"] = f"cancelled by {who(running.cancelled_by)}"

    def _file_cancelled(self, running: Running, entry: Attempt, now: float) -> None:
        assert running.cancelled_by is not None
        self.filer.cancelled(running.claim, running.job, running.cancelled_by, now, entry)

    def _file_success(self, running: Running, entry: Attempt, _now: float) -> None:
        self.filer.succeeded(running.claim, running.job, entry)  # done when the attempt finished

    def _file_interruption(self, running: Running, entry: Attempt, now: float) -> None:
        # The limit as it was at launch, like the retry limits: a held filing made after a
        # reload must make the same move it began (a half-made move admits no other).
        limit = running.limits.max_interruptions
        self.filer.interrupted(running.claim, running.job, entry, limit, now)

    def _file_failure(self, running: Running, entry: Attempt, now: float) -> None:
        """An error, a timeout or a crash: retry later, or fail for good."""
        self.filer.attempt_failed(running.claim, running.job, entry, running.limits, now)

    def _put_back(self, running: Running, error: str, now: float) -> None:
        job = running.job
        delay = self.launch_trouble.hit(now)
        job_logger(job.id).warning("job {} could not start ({}); it waits {} and tries again",
                                   job.id, error, seconds(delay))  # fmt: skip
        put_back = partial(self._unclaim, running, delay)
        self.held.attempt(running.claim, f"put-back to {self.held.places.waiting}", put_back, now)

    def _unclaim(self, running: Running, delay: float, now: float) -> None:
        # ``now``: when the put-back is made, if it was held
        self.filer.unclaim(running.claim, running.job, now + delay)

    def _launcher_died(self, now: float) -> None:
        logger.critical("the launcher process died; failing its attempts and starting a new one")
        self.selector.unregister(self.launcher.fileno())
        self.launcher.close(timeout=1)
        lost, self.running = list(self.running.values()), {}
        for running in lost:
            if running.ahead and running.pid is None:  # it waited for a slot: back, as it was
                self._unsent(running, now)
                continue
            entry: Attempt = {"attempt": running.job.attempts + 1, "started_at": now,
                              "finished_at": now, "outcome": Outcome.CRASHED,
                              "error": "the launcher process died"}  # fmt: skip
            self._route(running, entry, now)
        self.launcher = self._new_launcher()


def _history_entry(number: int, message: FinishedMessage) -> Attempt:
    """The attempt's number, then what the launcher saw, in the order it sent it."""
    seen = {key: value for key, value in message.items() if key not in ("op", "key")}
    return cast("Attempt", {"attempt": number, **seen})


def _attempt(running: Running) -> RunningAttempt:
    job = running.job
    target = f"{job.class_path}.{job.method}"
    return RunningAttempt(job.id, target, job.attempts + 1, running.sent_at, running.limits.timeout)
