"""Filing outcomes: the decisions at the end of a claim, with their log lines.

Every way a claimed job can go on is one method here: rejected, done,
failed for good, or back to wait (a retry, a future ``run_at``, an
interrupted attempt to rerun, a put-back). Each presents the job's claim
to the backend, which files it exactly once. Those that go through
``held.py`` take ``now`` last: the time the filing is made. The daemon's
loop and recovery share them, so a job is filed the same way whichever
path brought it here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from spoold import followups
from spoold.core import policy
from spoold.core.backend import Claim, Engine, Refused
from spoold.core.events import Events
from spoold.durations import seconds
from spoold.identity import who
from spoold.job import CANCELLED, Job, rejection_record
from spoold.live import Live
from spoold.logs import job_logger

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt


class Filer:
    """Files claimed jobs through the backend and says so in the log."""

    def __init__(self, engine: Engine, events: Events, live: Live) -> None:
        self.engine = engine
        self.events = events
        self.live = live  # the allowlist in force, for follow-ups

    def _file(
        self, claim: Claim, status: str, record: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """File a done or failed record, naming the follow-up it starts (``followups``):
        the id filed under, and the record as filed."""
        record = followups.plan(claim.job_id, record, self.live.config)
        return self.engine.finish(claim, status, record), record

    @staticmethod
    def _say_follow_ups(filed_as: str, record: dict[str, Any]) -> None:
        """The follow-up a filing started, said after the outcome's own line."""
        rejected = record.get(followups.FOLLOW_UP_REJECTED)
        for follow_up in record.get(followups.FOLLOW_UPS, ()):
            if rejected:
                job_logger(filed_as).warning(
                    "job {} started a follow-up that will be rejected: {}", filed_as, rejected
                )
            else:
                job_logger(filed_as).info("job {} started its follow-up {}", filed_as, follow_up)

    def reject(self, claim: Claim, refused: Refused, now: float, *, source: str) -> None:
        """File the rejection record of a claimed submission."""
        record = rejection_record(
            claim.job_id, refused.reason, refused.raw, file_name=source, received_at=now
        )
        filed_as = self.engine.finish(claim, "failed", record)
        job_logger(filed_as).warning("job {} rejected: {}", filed_as, refused.reason)
        self.events.rejected(filed_as, refused.reason, refused.kind)
        self.events.filed(filed_as, "rejected", "")

    def succeeded(self, claim: Claim, job: Job, entry: Attempt) -> None:
        attempt = {key: value for key, value in entry.items() if key != "result"}
        record = job.record("done", entry["finished_at"], last=cast("Attempt", attempt),
                            result=entry.get("result"))  # fmt: skip
        filed_as, record = self._file(claim, "done", record)
        took = entry["finished_at"] - entry["started_at"]
        job_logger(filed_as).success("job {} succeeded in {}", filed_as, seconds(took))
        self._say_follow_ups(filed_as, record)
        self.events.filed(filed_as, "done", job.class_path)

    def failed(
        self, claim: Claim, job: Job, reason: str, now: float, traceback: str | None = None
    ) -> None:
        record = job.record("failed", now, reason=reason)
        filed_as, record = self._file(claim, "failed", record)
        log = job_logger(filed_as)
        log.error("job {} failed for good after {} attempt(s): {}", filed_as, job.attempts, reason)
        if traceback:
            log.debug("job {} traceback of the last attempt:\n{}", filed_as, traceback)
        self._say_follow_ups(filed_as, record)
        self.events.filed(filed_as, "failed", job.class_path)

    def cancelled(
        self, claim: Claim, job: Job, by: int, now: float, entry: Attempt | None = None
    ) -> None:
        """File the job ``cancelled`` (in failed/) at the request of uid ``by``; ``entry``:
        its attempt that was running, stopped by the cancel."""
        if entry is not None:
            job = replace(job, history=(*job.history, entry))
        reason = f"cancelled by {who(by)}"
        record = job.record(CANCELLED, now, reason=reason, cancelled_by=by)
        filed_as = self.engine.finish(claim, "failed", record)
        job_logger(filed_as).warning("job {} {}", filed_as, reason)
        self.events.filed(filed_as, CANCELLED, job.class_path)

    def schedule(self, claim: Claim, job: Job, due_at: float, *, again: bool) -> None:
        """Wait until ``due_at``; ``again``: a retry or a rerun."""
        job = replace(job, due_at=due_at)
        self.engine.schedule(claim, job, again=again)
        if again:
            self.events.retry_scheduled(job, due_at)

    def unclaim(self, claim: Claim, job: Job, due_at: float) -> None:
        """A job that never started goes back unchanged, to wait until ``due_at``."""
        self.engine.unclaim(claim, job, due_at)

    def attempt_failed(
        self, claim: Claim, job: Job, entry: Attempt, limits: policy.Limits, now: float
    ) -> None:
        """An attempt ended in error, timeout or crash: retry later, or fail for good."""
        job = replace(job, history=(*job.history, entry))
        failures = policy.failed_attempts(job.history)
        error = entry.get("error") or entry["outcome"]
        if policy.should_retry(job.history, limits):
            delay = policy.retry_delay(failures, limits)
            # From ``now`` (the backend's clock), not the attempt's end as its worker saw it:
            # a host whose clock is off would hold the retry back, or release it early.
            self.schedule(claim, job, now + delay, again=True)  # first: logs once
            job_logger(job.id).warning(
                "job {} failed (attempt {}, {}): {}; retry {} of {} in {}",
                job.id,
                job.attempts,
                entry["outcome"],
                error,
                failures,
                limits.max_retries,
                seconds(delay),
            )
            return
        reason = f"{entry['outcome']} on attempt {job.attempts} (retries exhausted): {error}"
        self.failed(claim, job, reason, now, entry.get("traceback"))

    def interrupted(
        self, claim: Claim, job: Job, entry: Attempt, max_interruptions: int, now: float
    ) -> None:
        """An attempt cut short by the daemon's stop or death: rerun it, unless that recurs."""
        job = replace(job, history=(*job.history, entry))
        in_a_row = policy.interruptions_in_a_row(job.history)
        if in_a_row >= max_interruptions:
            self.failed(
                claim,
                job,
                f"interrupted by the daemon's death {in_a_row} times in a row; "
                "it may be what brings the daemon down",
                now,
            )
            return
        self.schedule(claim, job, now, again=True)
        job_logger(job.id).warning(
            "job {} was interrupted ({}); it will run again", job.id, entry.get("cause")
        )

    def deferred(self, claim: Claim, job: Job, now: float) -> None:
        """A job whose run_at is still ahead: wait until it (whatever ``now``)."""
        assert job.run_at is not None
        # First: a held move logs once it is made.
        self.schedule(claim, job, job.run_at, again=False)
        when = datetime.fromtimestamp(job.run_at, UTC).isoformat(timespec="seconds")
        job_logger(job.id).info("job {} scheduled for {}", job.id, when)
