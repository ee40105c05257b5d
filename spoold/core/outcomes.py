"""Filing outcomes: the decisions at the end of a job's stay in active/, with their log lines.

Every way a job can leave ``active/`` is one method here: rejected, done,
failed for good, or back to ``scheduled/`` to wait (a retry, a future
``run_at``, an interrupted attempt to rerun). Those that go through
``held.py`` take ``now`` last: the time the filing is made. The daemon's loop and the
start-up recovery share them, so a job is filed the same way whichever
path brought it here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from spoold.backends.files.intake import Refused
from spoold.backends.files.queue import DueQueue
from spoold.backends.files.store import JobStore
from spoold.core import policy
from spoold.core.events import Events
from spoold.durations import seconds
from spoold.job import Job, rejection_record
from spoold.logs import job_logger

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt


class Filer:
    """Files jobs out of active/ through the store and says so in the log."""

    def __init__(self, store: JobStore, due: DueQueue, events: Events) -> None:
        self.store = store
        self.due = due
        self.events = events

    def reject(self, refused: Refused, now: float, *, file_name: str) -> None:
        """File the rejection record of a file already moved to active/<id>.json."""
        record = rejection_record(
            refused.job_id, refused.reason, refused.raw, file_name=file_name, received_at=now
        )
        filed_as = self.store.file_record(refused.job_id, "failed", record)
        job_logger(filed_as).warning("job {} rejected: {}", filed_as, refused.reason)
        self.events.rejected(filed_as, refused.reason)
        self.events.filed(filed_as, "rejected")

    def succeeded(self, job: Job, entry: Attempt) -> None:
        attempt = {key: value for key, value in entry.items() if key != "result"}
        job = replace(job, history=(*job.history, cast("Attempt", attempt)))
        record = job.record("done", entry["finished_at"], result=entry.get("result"))
        filed_as = self.store.file_record(job.id, "done", record)
        took = entry["finished_at"] - entry["started_at"]
        job_logger(filed_as).success("job {} succeeded in {}", filed_as, seconds(took))
        self.events.filed(filed_as, "done")

    def failed(self, job: Job, reason: str, now: float, traceback: str | None = None) -> None:
        record = job.record("failed", now, reason=reason)
        filed_as = self.store.file_record(job.id, "failed", record)
        log = job_logger(filed_as)
        log.error("job {} failed for good after {} attempt(s): {}", filed_as, job.attempts, reason)
        if traceback:
            log.debug("job {} traceback of the last attempt:\n{}", filed_as, traceback)
        self.events.filed(filed_as, "failed")

    def schedule(self, job: Job, due_at: float, *, again: bool) -> None:
        """Move to scheduled/ to wait until ``due_at``; ``again``: a retry, a rerun, a put-back."""
        job = replace(job, due_at=due_at)
        self.store.schedule(job)
        self.due.push(f"{job.id}.json", due_at, job.priority, job.enqueued_at, again=again)
        if again:
            self.events.retry_scheduled(job, due_at)

    def unclaim(self, job: Job, due_at: float) -> None:
        """A job that never started goes back to scheduled/ unchanged, to wait until ``due_at``."""
        self.store.unclaim(job)
        self.due.push(f"{job.id}.json", due_at, job.priority, job.enqueued_at, again=True)

    def attempt_failed(self, job: Job, entry: Attempt, limits: policy.Limits, now: float) -> None:
        """An attempt ended in error, timeout or crash: retry later, or fail for good."""
        job = replace(job, history=(*job.history, entry))
        failures = policy.failed_attempts(job.history)
        error = entry.get("error") or entry["outcome"]
        if policy.should_retry(job.history, limits):
            delay = policy.retry_delay(failures, limits)
            self.schedule(job, entry["finished_at"] + delay, again=True)  # first: logs once
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
        self.failed(job, reason, now, entry.get("traceback"))

    def interrupted(self, job: Job, entry: Attempt, max_interruptions: int, now: float) -> None:
        """An attempt cut short by the daemon's stop or death: rerun it, unless that recurs."""
        job = replace(job, history=(*job.history, entry))
        in_a_row = policy.interruptions_in_a_row(job.history)
        if in_a_row >= max_interruptions:
            self.failed(
                job,
                f"interrupted by the daemon's death {in_a_row} times in a row; "
                "it may be what brings the daemon down",
                now,
            )
            return
        self.schedule(job, now, again=True)
        job_logger(job.id).warning(
            "job {} was interrupted ({}); it will run again", job.id, entry.get("cause")
        )

    def deferred(self, job: Job, now: float) -> None:
        """A job whose run_at is still ahead: wait in scheduled/ (until it, whatever ``now``)."""
        assert job.run_at is not None
        self.schedule(job, job.run_at, again=False)  # first: a held move logs once it is made
        when = datetime.fromtimestamp(job.run_at, UTC).isoformat(timespec="seconds")
        job_logger(job.id).info("job {} scheduled for {}", job.id, when)
