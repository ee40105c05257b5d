"""Judging a submission: the core's one word on what may run, handed to every backend.

A backend reads the bytes and says what it knows of their origin; this
parses them, checks who wrote them (``[spool] allowed_uids`` and
``allowed_gids``, where the backend knows the writer) and checks the
class and method against the allowlist, on names alone: nothing is
imported. The config is read afresh at each call, so a reload applies to
the next submission judged.
"""

from __future__ import annotations

import os

from spoold.config import Config
from spoold.core.backend import Accepted, Origin, Refused, Verdict
from spoold.job import (
    SUBMITTED_BY,
    Incomplete,
    Job,
    Rejected,
    check_allowed,
    parse_job,
    submitter_of,
)
from spoold.live import Live

_OWN_UID = os.geteuid()  # the daemon never changes its own uid: asked once, not per file


class Judge:
    """The core's judge over the live config: ``judge(raw, origin)``."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def __call__(self, raw: bytes, origin: Origin) -> Verdict:
        return judge(raw, origin, self.live.config)


def judge(raw: bytes, origin: Origin, config: Config) -> Verdict:
    try:
        _check_owner(origin, config)
        job = parse_job(raw, job_id=origin.job_id, mtime=origin.received_at,
                        trusted=origin.trusted)  # fmt: skip
        check_allowed(job, config)
        _note_submitter(job, origin)
    except Incomplete as exc:
        return Refused(origin.job_id, str(exc), raw, incomplete=True, kind=exc.kind)
    except Rejected as exc:
        return Refused(origin.job_id, str(exc), raw, kind=exc.kind)
    return Accepted(job)


def _note_submitter(job: Job, origin: Origin) -> None:
    """Record who submitted the job (``submitted_by``), which decides who besides root may
    see, wait for and cancel it: a file's owner, where the backend knows it, whatever the
    file says; only a file of the daemon's own user (its bookkeeping, root's own
    submissions) keeps what it says. Where the owner is unknown (a client that talked
    to Redis), the client's word stands: Redis's access control is the boundary there."""
    if origin.uid is None:
        return
    if origin.uid == _OWN_UID and submitter_of(job.submitted) is not None:
        return
    job.submitted[SUBMITTED_BY] = origin.uid


def _check_owner(origin: Origin, config: Config) -> None:
    uids, gids = config.spool.allowed_uids, config.spool.allowed_gids
    if origin.uid is not None and origin.uid == _OWN_UID:
        return  # the daemon's own user (a schedule's firing): it owns the spool anyway
    if (uids or gids) and origin.uid not in uids and origin.gid not in gids:
        raise Rejected(
            f"the file is owned by uid {origin.uid} gid {origin.gid}, who may not submit jobs "
            "([spool] allowed_uids / allowed_gids)",
            "not_owner",
        )
