"""What ``spoold retry`` and ``spoold purge`` change in the spool.

Retry puts a failed job back into incoming/ as it was submitted (a rejected
one as its original bytes), through tmp/ and a no-clobber rename, and only
then removes the record; purge deletes old records. Neither ever
overwrites a file, and both leave the folders fsynced unless told not to.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from spoold.backends.files.admin import (
    AdminError,
    checked_id,
    find_job,
    read_job,
    reference_time,
    stored_jobs,
)
from spoold.backends.files.fsio import fsync_dir, rename_noreplace, write_new
from spoold.backends.files.spool import RECORD_STATES, Spool
from spoold.config import parse_age as config_parse_age
from spoold.core.backend import RetryOutcome, StoredJob
from spoold.errors import describe_os_error
from spoold.job import DAEMON_KEYS, encode, raw_bytes

# -- retry --


def retry_job(spool: Spool, job_id: str, *, durable: bool = True) -> str:
    """Put failed/<id>.json back into incoming/ as submitted, attempts afresh; return the id."""
    try:
        stored = read_job(spool, "failed", f"{checked_id(job_id)}.json")
    except FileNotFoundError:
        elsewhere = find_job(spool, job_id)
        raise AdminError(
            f"job {elsewhere.id} is in {elsewhere.state}/; only failed jobs can be retried"
        ) from None
    payload = resubmission(stored)
    name = stored.path.name
    _requeue(spool, name, payload, durable=durable)
    # Unlinked only once the job is safely back: a crash in between leaves both,
    # and the daemon then gives the job a fresh id rather than lose either.
    os.unlink(stored.path)
    if durable:
        fsync_dir(spool.folder("failed"))
    return stored.id


def resubmission(stored: StoredJob) -> bytes:
    """The bytes to submit again: a rejected file's original bytes, else the submitted fields."""
    doc = stored.document
    if doc is None:
        raise AdminError(f"cannot retry {stored.id}: the record is {stored.problem}")
    if doc.get("status") == "rejected":
        if "raw" not in doc:
            raise AdminError(f"cannot retry {stored.id}: the rejected record has no raw bytes")
        return raw_bytes(doc)
    return encode({key: value for key, value in doc.items() if key not in DAEMON_KEYS})


def _requeue(spool: Spool, name: str, payload: bytes, *, durable: bool) -> None:
    try:
        staged = write_new(spool.folder("tmp"), name, payload, durable=durable)
    except FileExistsError:
        raise AdminError(f"tmp/{name} already exists; remove it and retry again") from None
    try:
        rename_noreplace(staged, spool.path("incoming", name))
    except FileExistsError:
        os.unlink(staged)
        raise AdminError(f"incoming/{name} already exists; the job was not retried") from None
    if durable:
        fsync_dir(spool.folder("incoming"))


def retry_failed(spool: Spool, job_ids: list[str], *, durable: bool = True) -> RetryOutcome:
    """Retry each id; one that cannot be retried does not stop the others."""
    outcome = RetryOutcome(retried=[], errors=[])
    for job_id in job_ids:
        try:
            outcome.retried.append(retry_job(spool, job_id, durable=durable))
        except AdminError as exc:
            outcome.errors.append(str(exc))
        except OSError as exc:
            outcome.errors.append(f"cannot retry {job_id}: {describe_os_error(exc)}")
    return outcome


def failed_ids(spool: Spool) -> list[str]:
    return [name.removesuffix(".json") for name in spool.job_names("failed")]


# -- purge --


def parse_age(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d`` or ``2w`` as seconds (the config's ages too)."""
    try:
        return config_parse_age(text)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def purge(
    spool: Spool, state: str, older_than: float, *, now: float | None = None, durable: bool = True
) -> list[str]:
    """Delete records in done/ or failed/ that finished more than ``older_than`` seconds ago."""
    if state not in RECORD_STATES:
        raise AdminError(f"purge works on done or failed, not {state!r}")
    cutoff = (time.time() if now is None else now) - older_than
    removed = []
    for stored in stored_jobs(spool, state):
        if reference_time(stored, ("finished_at",)) <= cutoff:
            _unlink_quietly(stored.path)
            removed.append(stored.id)
    if removed and durable:
        fsync_dir(spool.folder(state))
    return removed


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # another purge got there first
        os.unlink(path)
