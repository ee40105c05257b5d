"""Claiming: taking a waiting file into active/, under an id nobody else uses.

A claim is the one step that makes a job the daemon's. It gives the job a
fresh id if its id is already used anywhere (the spool never holds two jobs
or records under one id), and a file that is refused is claimed too, so
that its rejection record is filed by the same crash-safe path as every
other way out of active/.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from loguru import logger

from spoold.backends.files.intake import Accepted, Refused, Trouble, examine, is_directory
from spoold.backends.files.queue import DueQueue, ReadyEntry
from spoold.backends.files.spool import Spool
from spoold.backends.files.store import JobStore
from spoold.config import Config
from spoold.core.held import WAIT_FOR_RUN_AT, HeldFilings
from spoold.core.outcomes import Filer
from spoold.job import Job, Rejected, check_allowed
from spoold.logs import job_logger


@dataclass
class Claims:
    """Takes waiting files into active/: ready jobs to run, refused files to file as rejected."""

    spool: Spool
    store: JobStore
    due: DueQueue
    filer: Filer
    held: HeldFilings
    ignored: set[str] = field(default_factory=set)  # folders made inside a waiting folder

    def claim(self, state: str, name: str, job: Job) -> Job | None:
        """Move ``state/name`` to active/; None if it vanished meanwhile."""
        if self.store.id_taken(job.id, source=(state, name)):
            fresh = self.store.fresh_id()
            job_logger(job.id).warning(
                "job {} renamed to {}: the id is already taken", job.id, fresh
            )
            # Only the name changes: a file's "id" field is never read (the name is the id).
            job = replace(job, id=fresh)
        try:
            return self.store.claim(state, name, job)
        except FileNotFoundError:
            return None  # removed by hand meanwhile

    def claim_to_wait(self, state: str, name: str, job: Job, now: float) -> None:
        """Claim a job whose ``run_at`` is ahead and move it to scheduled/ to wait for it."""
        claimed = self.claim(state, name, job)
        if claimed is not None:
            wait = partial(self.filer.deferred, claimed)
            self.held.attempt(claimed.id, WAIT_FOR_RUN_AT, wait, now)

    def claim_ready(self, entry: ReadyEntry, config: Config, now: float) -> Job | None:
        """Re-check a ready job (the allowlist may have been reloaded since) and claim it."""
        job = entry.job
        if job is None:
            verdict = examine(self.spool, entry.state, entry.name, config, now=now, closed=True)
            if not isinstance(verdict, Accepted):
                if isinstance(verdict, Refused):
                    self.reject(entry.state, entry.name, verdict, now)
                elif isinstance(verdict, Trouble) and entry.state == "scheduled":
                    # Unreadable for now: try again soon, keeping its place in the order.
                    # It is due work, so burst mode waits for it (``again``).
                    self.due.push(
                        entry.name, now + 1.0, entry.priority, entry.enqueued_at, again=True
                    )
                return None  # (an unreadable incoming/ file is found again by the rescan)
            job = verdict.job
        try:
            check_allowed(job, config)
        except Rejected as exc:
            self.reject(entry.state, entry.name, Refused(job.id, str(exc), b""), now)
            return None
        return self.claim(entry.state, entry.name, job)

    def reject(self, state: str, name: str, refused: Refused, now: float) -> None:
        """Claim a refused file and file its rejection record."""
        if is_directory(self.spool, state, name):
            if name not in self.ignored:
                self.ignored.add(name)
                logger.warning("{}/{} is a folder, not a job file; leaving it alone", state, name)
            return
        taken = self.store.id_taken(refused.job_id, source=(state, name))
        job_id = self.store.fresh_id() if taken else refused.job_id
        try:
            self.store.move_to_active(state, name, job_id)
        except FileNotFoundError:
            return
        rejection = partial(self.filer.reject, replace(refused, job_id=job_id), file_name=name)
        self.held.attempt(job_id, "rejection", rejection, now)
