"""Claiming: taking a waiting file into active/, under an id nobody else uses.

A claim is the one step that makes a job the daemon's. It gives the job a
fresh id if its id is already used anywhere (the spool never holds two jobs
or records under one id), and a file the judge refused is claimed too, so
that its rejection record is filed by the same crash-safe path as every
other way out of active/.

Every claim gets a fencing token (``Holds``): a move out of active/ must
present the latest claim of its job. One daemon holds the spool's lock, so
a claim never lapses; the tokens make a second filing of the same claim,
or a filing by a claim that was put back and taken again, a refusal
rather than a second record.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field, replace

from loguru import logger

from spoold.backends.files.intake import Trouble, examine, is_directory
from spoold.backends.files.queue import DueQueue, ReadyEntry
from spoold.backends.files.spool import Spool
from spoold.backends.files.store import JobStore
from spoold.core.backend import Accepted, Claim, Judge, Refusal, Refused, StaleClaim, Taken
from spoold.job import Job
from spoold.logs import job_logger


@dataclass
class Holds:
    """The latest claim of each job in active/: the one that may move it on."""

    owner: str
    tokens: dict[str, int] = field(default_factory=dict)
    _next: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def take(self, job_id: str) -> Claim:
        token = next(self._next)
        self.tokens[job_id] = token
        return Claim(job_id, self.owner, token)

    def check(self, claim: Claim) -> None:
        """Raise StaleClaim unless ``claim`` is the job's latest, still held."""
        if self.tokens.get(claim.job_id) != claim.token:
            raise StaleClaim(
                f"job {claim.job_id}: claim {claim.token} no longer holds it "
                "(it was filed or claimed again since)"
            )

    def let_go(self, claim: Claim) -> None:
        self.tokens.pop(claim.job_id, None)

    def __len__(self) -> int:
        return len(self.tokens)


RETRY_GRACE = 2.0  # seconds a job put back by `spoold retry` waits for its record to go


class RetryUnderWay(Exception):
    """Not now: this job's failed record, which ``spoold retry`` removes next, is still there."""


@dataclass
class Claims:
    """Takes waiting files into active/: ready jobs to run, refused files to file as rejected."""

    spool: Spool
    store: JobStore
    due: DueQueue
    holds: Holds
    ignored: set[str] = field(default_factory=set)  # folders made inside a waiting folder

    def claim(self, state: str, name: str, job: Job) -> Taken | None:
        """Move ``state/name`` to active/; None if it vanished meanwhile."""
        if self.store.id_taken(job.id, source=(state, name)):
            if state == "incoming" and self._retry_under_way(job.id, name):
                raise RetryUnderWay(name)
            job = self._under_a_free_id(state, name, job)
        try:
            job = self.store.claim(state, name, job)
        except FileNotFoundError:
            return None  # removed by hand meanwhile
        return Taken(self.holds.take(job.id), job, source=name)

    def _under_a_free_id(self, state: str, name: str, job: Job) -> Job:
        """The job, renamed if its id is still taken. Asked again: a retry may have removed
        its record between the two looks before (seen once in a full test run: the retried
        job ran under a fresh id)."""
        if not self.store.id_taken(job.id, source=(state, name)):
            return job
        fresh = self.store.fresh_id()
        job_logger(job.id).warning("job {} renamed to {}: the id is already taken", job.id, fresh)
        # Only the name changes: a file's "id" field is never read (the name is the id).
        return replace(job, id=fresh)

    def _retry_under_way(self, job_id: str, name: str) -> bool:
        """The id is taken by its own failed record, and the job came into incoming/ just
        now: ``spoold retry`` puts a job back before it removes the record (a crash between
        the two loses neither), so the record is about to go. Past RETRY_GRACE it is a
        retry that died half-way, and the job takes a fresh id."""
        if not os.path.lexists(self.spool.file("failed", f"{job_id}.json")):
            return False
        try:
            moved_in = os.lstat(self.spool.file("incoming", name)).st_ctime
        except FileNotFoundError:
            return False
        return time.time() - moved_in < RETRY_GRACE

    def claim_ready(
        self, entry: ReadyEntry, judge: Judge, max_bytes: int, now: float
    ) -> Taken | Refusal | None:
        """Claim a ready job, reading it again if it was not kept in memory."""
        job = entry.job
        if job is None:
            verdict = examine(self.spool, entry.state, entry.name, judge, max_bytes,
                              now=now, closed=True)  # fmt: skip
            if isinstance(verdict, Refused):
                return self.reject(entry.state, entry.name, verdict, now)
            if isinstance(verdict, Trouble) and entry.state == "scheduled":
                # Unreadable for now: try again soon, keeping its place in the order.
                # It is due work, so burst mode waits for it (``again``).
                self.due.push(entry.name, now + 1.0, entry.priority, entry.enqueued_at, again=True)
            if not isinstance(verdict, Accepted):
                return None  # (an unreadable incoming/ file is found again by the rescan)
            job = verdict.job
        return self.claim(entry.state, entry.name, job)

    def reject(self, state: str, name: str, refused: Refused, now: float) -> Refusal | None:
        """Claim a refused file, for its rejection record; None if it is gone or a folder."""
        if is_directory(self.spool, state, name):
            if name not in self.ignored:
                self.ignored.add(name)
                logger.warning("{}/{} is a folder, not a job file; leaving it alone", state, name)
            return None
        taken = self.store.id_taken(refused.job_id, source=(state, name))
        job_id = self.store.fresh_id() if taken else refused.job_id
        try:
            self.store.move_to_active(state, name, job_id)
        except FileNotFoundError:
            return None
        return Refusal(self.holds.take(job_id), replace(refused, job_id=job_id), name, now)
