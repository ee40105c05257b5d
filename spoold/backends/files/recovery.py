"""Start-up recovery: rebuild the daemon's picture from the folders alone.

Runs before the first job starts. It tidies what a crash left (the daemon's
own temporary files, a client's tmp/ file older than 36 hours), undoes a
claim a crash cut between its link and unlink (no RENAME_NOREPLACE), finishes
moves out of active/ a crash cut in half (a marker ``<id>.to-<state>``, or a
job whose copy further along exists), claims every other job in active/ for
the core, which decides what becomes of it (``Recovered``: rerun an
interrupted attempt, go on waiting for a ``run_at``, file a rejection), and
loads scheduled/ into the due queue.
"""

from __future__ import annotations

import os

from loguru import logger

from spoold.backends.files.claims import Claims
from spoold.backends.files.intake import NotYet, Trouble, examine
from spoold.backends.files.queue import DueQueue
from spoold.backends.files.spool import Spool
from spoold.backends.files.store import JobStore
from spoold.backends.files.unique import UniqueKeys
from spoold.core.backend import Accepted, Judge, Recovered, Refused

CLIENT_TMP_MAX_AGE = 36 * 3600  # Maildir's rule for abandoned tmp/ files


def tidy(spool: Spool) -> None:
    for path in spool.remove_own_temp_files():
        logger.info("removed {}, a temporary file left by an earlier crash", path)
    for path in spool.remove_stale_client_files(CLIENT_TMP_MAX_AGE):
        logger.warning("removed {}: a client left it in tmp/ more than 36 hours ago", path)


def recover_active(
    spool: Spool, store: JobStore, claims: Claims, judge: Judge, max_bytes: int, now: float
) -> list[Recovered]:
    """Finish or undo what a crash cut short; every job left in active/, claimed for the core."""
    for line in [*store.undo_cut_claims(), *store.finish_moves()]:
        logger.info(line)
    recovered = []
    for name in spool.job_names("active"):
        try:
            found = _recover_one(spool, name, claims, judge, max_bytes, now)
        except OSError as exc:  # unreadable for now: the job stays in active/ for next time
            logger.error("cannot recover active/{} now ({}); it stays there until the next start",
                         name, exc)  # fmt: skip
            continue
        if found is not None:
            recovered.append(found)
    return recovered


def _recover_one(
    spool: Spool, name: str, claims: Claims, judge: Judge, max_bytes: int, now: float
) -> Recovered | None:
    if _finish_cut_move(spool, name):
        return None
    verdict = examine(spool, "active", name, judge, max_bytes, now=now, closed=True)
    if isinstance(verdict, Trouble):
        raise verdict.error
    if verdict is None:
        return None
    if isinstance(verdict, NotYet):
        verdict = Refused(name[:-5], "incomplete", b"", kind="incomplete")
    job_id = verdict.job.id if isinstance(verdict, Accepted) else verdict.job_id
    # The claim's rename set the file's ctime: when the lost attempt's claim was made.
    claimed_at = os.stat(spool.path("active", name), follow_symlinks=False).st_ctime
    return Recovered(claims.holds.take(job_id), verdict, claimed_at, source=name)


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


def load_scheduled(
    spool: Spool, judge: Judge, max_bytes: int, due: DueQueue, unique: UniqueKeys, now: float
) -> list[str]:
    """Index scheduled/ (and the unique keys its jobs hold); return the names of files
    there that are not valid jobs."""
    damaged = []
    for name in spool.job_names("scheduled"):
        verdict = examine(spool, "scheduled", name, judge, max_bytes, now=now, closed=True)
        if isinstance(verdict, Accepted):
            job = verdict.job
            due_at = job.due_at if job.due_at is not None else (job.run_at or 0.0)
            due.push(name, due_at, job.priority, job.enqueued_at, class_path=job.class_path)
            if job.unique_key is not None:
                unique.hold(job.unique_key, job.id)
        elif isinstance(verdict, Trouble):  # unreadable for now: look at it again soon
            due.push(name, now + 1.0, 0, 0.0)
        elif verdict is not None:
            damaged.append(name)
    return damaged
