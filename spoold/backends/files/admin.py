"""What the read-only ``spoold`` commands do: find, list, count and describe jobs.

Each function reads the real folders of one spool and returns small
dataclasses for the CLI to print; nothing here talks to the daemon, because
the folders are the truth. Files are read without following links (a link
in the spool is reported, never opened). ``maintenance`` holds the commands
that change the spool (retry, purge).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from spoold.backends.files.fsio import FileContent, UnsafeFile, read_regular
from spoold.backends.files.spool import (
    MOVE_STATES,
    STATES,
    Spool,
    claiming_name,
    marker_name,
    running_daemon_pid,
)
from spoold.core.backend import (
    CatalogError,
    JobSummary,
    NoSuchJob,
    RunningJob,
    SpoolStatus,
    StoredJob,
)
from spoold.ids import is_valid_id

# Records carry results, tracebacks and rejected bytes, so they may be larger
# than max_job_bytes; the cap only stops a runaway file from eating memory.
RECORD_READ_LIMIT = 64 * 1024 * 1024
LISTED_STATES = ("incoming", "scheduled", "active", "done", "failed")
# A job can move while we look; lifecycle order finds it in one pass nearly always.
SEARCH_ORDER = ("incoming", "scheduled", "active", "done", "failed", "tmp")


class AdminError(CatalogError):
    """A problem the operator can fix, worded in one line."""


class JobNotFound(AdminError, NoSuchJob):
    """No job or record has the id, in any folder the caller may search."""


# -- reading --


def read_job(spool: Spool, state: str, name: str, job_id: str | None = None) -> StoredJob:
    """Read ``state/name`` without following links; raise FileNotFoundError if it is gone,
    PermissionError if the folder itself refuses the caller (it cannot tell either way).
    The job's id is the name without ``.json``, unless ``job_id`` says it.

    A file the caller may not read in a folder it may read is reported, not
    raised: a watcher (``spoold init --view-group``) reads what the daemon wrote,
    but a job claimed by a rename is still the submitter's (0640, the submit group).
    """
    path = spool.path(state, name)
    job_id = job_id or name.removesuffix(".json")
    try:
        content = read_regular(path, RECORD_READ_LIMIT)
    except UnsafeFile as exc:
        mtime = os.lstat(path).st_mtime
        return StoredJob(job_id, state, path, mtime, None, "", problem=f"unreadable: {exc}")
    except PermissionError:
        mtime = os.lstat(path).st_mtime  # PermissionError again if the folder refuses us
        problem = "unreadable: permission denied (not in its group)"
        return StoredJob(job_id, state, path, mtime, None, "", problem=problem)
    return _decoded(job_id, state, path, content)


def _decoded(job_id: str, state: str, path: Path, content: FileContent) -> StoredJob:
    text = content.data.decode("utf-8", errors="replace")
    try:
        document = json.loads(content.data)
    except (ValueError, RecursionError):
        return StoredJob(job_id, state, path, content.mtime, None, text, problem="not valid JSON")
    if not isinstance(document, dict):
        return StoredJob(job_id, state, path, content.mtime, None, text, "not a JSON object")
    return StoredJob(job_id, state, path, content.mtime, document, text)


def checked_id(job_id: str) -> str:
    """The id itself (a trailing ``.json`` dropped); AdminError if it could escape the spool."""
    job_id = job_id.removesuffix(".json")
    if not is_valid_id(job_id):
        raise AdminError(f"{job_id!r} is not a job id")
    return job_id


def find_job(spool: Spool, job_id: str) -> StoredJob:
    """The job ``job_id`` in whichever folder holds it; AdminError if none does."""
    job_id = checked_id(job_id)
    refused: list[str] = []  # folders the caller may not search (a watcher: tmp/, incoming/)
    for _ in range(2):  # a second pass catches a job that moved backwards (a retry)
        for state in SEARCH_ORDER:
            try:
                return read_job(spool, state, f"{job_id}.json")
            except FileNotFoundError:
                if state == "active" and (between := _in_between(spool, job_id)) is not None:
                    return between
                continue
            except PermissionError:
                if state not in refused:
                    refused.append(state)
    if refused:
        closed = ", ".join(f"{state}/" for state in refused)
        raise AdminError(f"no job {job_id} in {spool.root} ({closed}: permission denied)")
    raise JobNotFound(f"no job {job_id} in {spool.root}")


def _in_between(spool: Spool, job_id: str) -> StoredJob | None:
    """The job in active/ under the name it has for a moment between two states: being
    cleaned as it is claimed (``<id>.claiming``), or moved out whole as its next file
    (``<id>.to-<state>``, after its ``<id>.json`` is unlinked and before the rename;
    store.py). Without this look, ``spoold show``, ``spoold wait`` and the job's web
    page could say "no job" for a job that is being filed (or that a crash left there,
    for recovery to finish)."""
    for name in (claiming_name(job_id), *(marker_name(job_id, state) for state in MOVE_STATES)):
        try:
            return read_job(spool, "active", name, job_id)
        except FileNotFoundError:
            continue
    return None


def stored_jobs(spool: Spool, state: str) -> list[StoredJob]:
    """Every job in a folder, oldest id first; files that vanish meanwhile are skipped."""
    found = []
    for name in spool.job_names(state):
        try:
            found.append(read_job(spool, state, name))
        except FileNotFoundError:
            continue
    return found


# -- summaries --


def summarize(stored: StoredJob, now: float) -> JobSummary:
    doc = stored.document or {}
    history = doc.get("history")
    attempts = len(history) if isinstance(history, list) else 0
    return JobSummary(
        id=stored.id,
        state=stored.state,
        status=_text(doc.get("status")),
        target=f"{_text(doc.get('class')) or '?'}.{_text(doc.get('method')) or '?'}",
        attempts=attempts,
        age=max(0.0, now - reference_time(stored)),
        error=last_error(doc) if stored.document is not None else stored.problem,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def reference_time(
    stored: StoredJob, keys: tuple[str, ...] = ("finished_at", "enqueued_at")
) -> float:
    """When a record finished, else when the job was submitted, else the file's mtime."""
    doc = stored.document or {}
    for key in keys:
        value = doc.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return stored.mtime


def last_error(doc: dict[str, Any]) -> str | None:
    """A rejection's reason, else the last attempt's error, else the record's reason."""
    if doc.get("status") == "rejected":
        return _text(doc.get("reason"))
    history = doc.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        error = _text(history[-1].get("error"))
        if error:
            return error
    return _text(doc.get("reason"))


def list_jobs(spool: Spool, states: tuple[str, ...], now: float | None = None) -> list[JobSummary]:
    """The jobs in ``states``. Of several, a folder the caller may not list is left out (a
    watcher is not in the submit group that owns incoming/); PermissionError if all are."""
    moment = time.time() if now is None else now
    found: list[JobSummary] = []
    listed = 0
    refused: PermissionError | None = None
    for state in states:
        try:
            stored = stored_jobs(spool, state)
        except PermissionError as exc:
            refused = refused or exc
            continue
        listed += 1
        found.extend(summarize(job, moment) for job in stored)
    if refused is not None and listed == 0:
        raise refused
    return found


def spool_status(spool: Spool, now: float | None = None) -> SpoolStatus:
    """The counts per state; a folder the caller may not list is left out of them (unknown
    is not 0): a watcher sees scheduled/ to failed/, not tmp/ or incoming/. PermissionError
    if the caller may list none."""
    moment = time.time() if now is None else now
    counts: dict[str, int] = {}
    refused: PermissionError | None = None
    for state in STATES:
        try:
            counts[state] = spool.count_jobs(state)
        except PermissionError as exc:
            refused = refused or exc
    if refused is not None and not counts:
        raise refused
    waiting = list_jobs(spool, tuple(s for s in ("incoming", "scheduled") if s in counts), moment)
    oldest = max(waiting, key=lambda job: job.age, default=None)
    return SpoolStatus(
        root=spool.root,
        counts=counts,
        missing=[state for state in STATES if not spool.folder(state).is_dir()],
        oldest_waiting_id=oldest.id if oldest else None,
        oldest_waiting_age=oldest.age if oldest else None,
        daemon_pid=running_daemon_pid(spool),
    )


def running_jobs(spool: Spool, now: float | None = None) -> list[RunningJob]:
    """The jobs in active/, longest running first.

    A job enters active/ by a rename or a fresh write, both of which set the
    file's ctime, so the ctime is when this attempt's claim happened.
    """
    moment = time.time() if now is None else now
    found = []
    for stored in stored_jobs(spool, "active"):
        try:
            claimed = os.lstat(stored.path).st_ctime
        except FileNotFoundError:
            continue  # it finished while we looked
        summary = summarize(stored, moment)
        found.append(
            RunningJob(stored.id, summary.target, summary.attempts + 1, max(0.0, moment - claimed))
        )
    return sorted(found, key=lambda job: -job.running_for)
