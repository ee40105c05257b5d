"""Start-up recovery: rebuild the daemon's picture from the folders alone.

Runs before the first job starts. It tidies what a crash left (the daemon's
own temporary files, a client's tmp/ file older than 36 hours), undoes a
claim a crash cut between its link and unlink (no RENAME_NOREPLACE), finishes
moves out of active/ a crash cut in half (a marker ``<id>.to-<state>``, or a
job whose copy further along exists), turns every other job in active/ into an
``interrupted`` attempt to rerun, and loads scheduled/ into the due queue.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING

from loguru import logger

from spoold.backends.files.intake import Accepted, NotYet, Refused, Trouble, examine
from spoold.backends.files.queue import DueQueue
from spoold.backends.files.spool import Spool
from spoold.backends.files.store import JobStore
from spoold.config import Config
from spoold.core.held import WAIT_FOR_RUN_AT, HeldFilings
from spoold.core.outcomes import Filer
from spoold.core.policy import DAEMON_DIED
from spoold.exec.protocol import Outcome
from spoold.job import Job

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt

CLIENT_TMP_MAX_AGE = 36 * 3600  # Maildir's rule for abandoned tmp/ files
COARSE_CLOCK_MARGIN = 0.02  # seconds a file timestamp may trail time.time()


def tidy(spool: Spool) -> None:
    for path in spool.remove_own_temp_files():
        logger.info("removed {}, a temporary file left by an earlier crash", path)
    for path in spool.remove_stale_client_files(CLIENT_TMP_MAX_AGE):
        logger.warning("removed {}: a client left it in tmp/ more than 36 hours ago", path)


def recover_active(
    spool: Spool, store: JobStore, config: Config, filer: Filer, held: HeldFilings, now: float
) -> None:
    for line in [*store.undo_cut_claims(), *store.finish_moves()]:
        logger.info(line)
    for name in spool.job_names("active"):
        try:
            _recover_one(spool, name, config, filer, held, now)
        except OSError as exc:  # unreadable for now: the job stays in active/ for next time
            logger.error("cannot recover active/{} now ({}); it stays there until the next start",
                         name, exc)  # fmt: skip


def _recover_one(
    spool: Spool, name: str, config: Config, filer: Filer, held: HeldFilings, now: float
) -> None:
    if not _finish_cut_move(spool, name):
        verdict = examine(spool, "active", name, config, now=now, closed=True)
        if isinstance(verdict, Refused | NotYet):
            refused = (
                verdict if isinstance(verdict, Refused) else Refused(name[:-5], "incomplete", b"")
            )
            held.attempt(refused.job_id, "rejection",
                         partial(filer.reject, refused, file_name=name), now)  # fmt: skip
        elif isinstance(verdict, Accepted):
            _rerun(spool, verdict.job, name, config, filer, held, now)
        elif isinstance(verdict, Trouble):
            raise verdict.error


def _finish_cut_move(spool: Spool, name: str) -> bool:
    """A copy further along exists: drop this one.

    With the marker protocol this happens only if a power cut kept a later
    rename but not the unlink before it (filesystems may reorder them).
    """
    for state in ("done", "failed", "scheduled"):
        if spool.exists(state, name):
            os.unlink(spool.path("active", name))
            logger.info("finished moving {} to {}/ (cut short by a crash)", name, state)
            return True
    return False


def _rerun(
    spool: Spool, job: Job, name: str, config: Config, filer: Filer, held: HeldFilings, now: float
) -> None:
    claimed_at = os.stat(spool.path("active", name), follow_symlinks=False).st_ctime
    if _was_on_its_way_to_wait(job, claimed_at):
        wait = partial(filer.deferred, job)
        held.attempt(job.id, WAIT_FOR_RUN_AT, wait, now)
        return
    entry: Attempt = {
        "attempt": job.attempts + 1,
        "started_at": claimed_at,
        "finished_at": now,
        "outcome": Outcome.INTERRUPTED,
        "cause": DAEMON_DIED,
        "error": "the daemon stopped or died while this attempt ran",
    }
    rerun = partial(filer.interrupted, job, entry, config.worker.max_interruptions)
    held.attempt(job.id, "rerun after the daemon's death", rerun, now)


def _was_on_its_way_to_wait(job: Job, claimed_at: float) -> bool:
    """A fresh job (no due time yet: it came from incoming/) whose run_at was still ahead
    when it was claimed never ran: it was being moved to scheduled/.

    The claim's rename set the file's ctime; file times come from a coarse clock that may
    lag by a few milliseconds, hence the margin (inside it, a rerun is the safe guess).
    """
    fresh = job.due_at is None and not job.history
    return fresh and job.run_at is not None and job.run_at > claimed_at + COARSE_CLOCK_MARGIN


def load_scheduled(spool: Spool, config: Config, due: DueQueue, now: float) -> list[str]:
    """Index scheduled/; return the names of files there that are not valid jobs."""
    damaged = []
    for name in spool.job_names("scheduled"):
        verdict = examine(spool, "scheduled", name, config, now=now, closed=True)
        if isinstance(verdict, Accepted):
            job = verdict.job
            due_at = job.due_at if job.due_at is not None else (job.run_at or 0.0)
            due.push(name, due_at, job.priority, job.enqueued_at)
        elif isinstance(verdict, Trouble):  # unreadable for now: look at it again soon
            due.push(name, now + 1.0, 0, 0.0)
        elif verdict is not None:
            damaged.append(name)
    return damaged
