"""Intake: look at one file in a waiting folder and decide what it is.

Reading is careful (no links followed, no FIFOs opened, a size cap before
parsing) and nothing is imported: the allowlist is checked on names alone.
The answer is one of ``Accepted``, ``Refused`` (with the reason for the
record), ``NotYet`` (bytes that are not yet a whole document, from a writer
that may still be writing) or None (the file is gone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from spoold.config import Config
from spoold.fsio import FileContent, UnsafeFile, is_resource_error, read_regular
from spoold.ids import id_from_filename, new_job_id
from spoold.job import Incomplete, Job, Rejected, check_allowed, parse_job
from spoold.spool import Spool

# How long a file that is not yet whole JSON may stay in incoming/ before it
# is rejected, when no inotify "closed after writing" event says it is done.
INCOMPLETE_GRACE = 5.0


@dataclass(frozen=True)
class Accepted:
    job: Job


@dataclass(frozen=True)
class Refused:
    job_id: str
    reason: str
    raw: bytes


@dataclass(frozen=True)
class NotYet:
    look_again_at: float


@dataclass(frozen=True)
class Trouble:
    """The daemon could not read the file for a reason of its own (out of descriptors...)."""

    error: OSError


Verdict = Accepted | Refused | NotYet | Trouble | None


def examine(
    spool: Spool, state: str, name: str, config: Config, *, now: float, closed: bool
) -> Verdict:
    """Read ``state/name`` and judge it; ``closed`` means its writer has closed it."""
    job_id = id_from_filename(name) or new_job_id(now)
    try:
        content = read_regular(spool.file(state, name), config.spool.max_job_bytes)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        return Refused(job_id, f"the file {exc}", b"")
    except OSError as exc:
        if is_resource_error(exc):
            return Trouble(exc)
        return Refused(job_id, f"the file cannot be read: {exc.strerror}", b"")
    return _judge(content, job_id, config, trusted=state != "incoming", now=now, closed=closed)


def _judge(
    content: FileContent, job_id: str, config: Config, *, trusted: bool, now: float, closed: bool
) -> Verdict:
    try:
        _check_owner(content.uid, content.gid, config)
        job = parse_job(content.data, job_id=job_id, mtime=content.mtime, trusted=trusted)
        check_allowed(job, config)
    except Incomplete as exc:
        if not closed and now - content.mtime < INCOMPLETE_GRACE:
            return NotYet(content.mtime + INCOMPLETE_GRACE)
        return Refused(job_id, str(exc), content.data)
    except Rejected as exc:
        return Refused(job_id, str(exc), content.data)
    return Accepted(job)


def _check_owner(uid: int, gid: int, config: Config) -> None:
    uids, gids = config.spool.allowed_uids, config.spool.allowed_gids
    if (uids or gids) and uid not in uids and gid not in gids:
        raise Rejected(
            f"the file is owned by uid {uid} gid {gid}, who may not submit jobs "
            "([spool] allowed_uids / allowed_gids)"
        )


def is_directory(spool: Spool, state: str, name: str) -> bool:
    try:
        return os.path.isdir(spool.path(state, name)) and not os.path.islink(
            spool.path(state, name)
        )
    except OSError:
        return False
