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

from spoold.backends.files.fsio import (
    LinkedFile,
    UnsafeFile,
    is_resource_error,
    link_count,
    read_regular,
)
from spoold.backends.files.spool import Spool
from spoold.core.backend import Accepted, Judge, Origin, Refused
from spoold.ids import id_from_filename, new_job_id

# How long a file that is not yet whole JSON may stay in incoming/ before it
# is rejected, when no inotify "closed after writing" event says it is done.
INCOMPLETE_GRACE = 5.0
# How long a file in incoming/ may share its inode with tmp/<same name> before it is
# rejected: a client's move on a filesystem without RENAME_NOREPLACE is a link and then
# an unlink, and in between the file has two links (see fsio.rename_noreplace).
TWIN_GRACE = 5.0


@dataclass(frozen=True)
class NotYet:
    look_again_at: float


@dataclass(frozen=True)
class Trouble:
    """The daemon could not read the file for a reason of its own (out of descriptors...)."""

    error: OSError


Verdict = Accepted | Refused | NotYet | Trouble | None


def examine(
    spool: Spool, state: str, name: str, judge: Judge, max_bytes: int, *, now: float, closed: bool
) -> Verdict:
    """Read ``state/name`` and have it judged; ``closed`` means its writer has closed it."""
    job_id = id_from_filename(name) or new_job_id(now)
    try:
        content = read_regular(spool.file(state, name), max_bytes)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Trouble(exc) if is_resource_error(exc) else _unreadable(job_id, exc)
    except LinkedFile as exc:
        return _linked(spool, state, name, job_id, exc, now)
    except UnsafeFile as exc:
        return Refused(job_id, f"the file {exc}", b"", kind=exc.kind)
    origin = Origin(job_id, content.mtime, content.uid, content.gid, trusted=state != "incoming")
    verdict = judge(content.data, origin)
    # Not yet whole: its writer may still be at it, unless it closed the file or is late.
    young = now - content.mtime < INCOMPLETE_GRACE
    if isinstance(verdict, Refused) and verdict.incomplete and not closed and young:
        return NotYet(content.mtime + INCOMPLETE_GRACE)
    return verdict


def _unreadable(job_id: str, exc: OSError) -> Refused:
    return Refused(job_id, f"the file cannot be read: {exc.strerror}", b"", kind="unreadable")


def _linked(
    spool: Spool, state: str, name: str, job_id: str, linked: LinkedFile, now: float
) -> NotYet | Refused:
    """A file with more than one link: a client's move still under way, or refused."""
    if state == "incoming" and _twin_in_tmp(spool, name, linked.info, linked.links):
        return _wait_for_unlink(job_id, linked, now)
    if state == "incoming" and _single_now(spool.file(state, name)):
        return NotYet(now)  # the client's unlink came between the count and the twin's look
    return Refused(job_id, f"the file {linked}", b"", kind="unsafe_file")


def _twin_in_tmp(spool: Spool, name: str, info: os.stat_result, links: int) -> bool:
    """``tmp/<name>`` is the file's only other name: a client's move not finished yet."""
    try:
        twin = os.lstat(spool.file("tmp", name))
    except OSError:
        return False
    return links == 2 and (twin.st_dev, twin.st_ino) == (info.st_dev, info.st_ino)


def _single_now(path: str) -> bool:
    try:
        return link_count(path) == 1
    except OSError:
        return False


def _wait_for_unlink(job_id: str, linked: LinkedFile, now: float) -> NotYet | Refused:
    """Look again soon while the client's unlink may still come; refuse once it is late.

    The link set the inode's ctime. Looks come quickly at first (the unlink
    usually follows within microseconds) and then further apart.
    """
    age = now - linked.info.st_ctime
    if age < TWIN_GRACE:
        return NotYet(now + min(1.0, max(0.002, age / 2)))
    return Refused(
        job_id,
        f"the file {linked}: tmp/ still holds the other one {TWIN_GRACE:g}s after the link "
        "(a client that died half-way through its move into incoming/)",
        b"",
        kind="unsafe_file",
    )


def is_directory(spool: Spool, state: str, name: str) -> bool:
    try:
        return os.path.isdir(spool.path(state, name)) and not os.path.islink(
            spool.path(state, name)
        )
    except OSError:
        return False
