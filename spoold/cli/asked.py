"""``spoold cancel``, ``spoold wait``, and ``spoold show`` for those who may not read the spool.

Who may read the spool (root, the daemon's user; the watching group, records
only) reads it straight, through the backend's ``Catalog``: ``wait`` then
works while no daemon runs. Anyone else asks the daemon on its control socket
(``spoold.asking``), which answers a submitter about its own jobs only. A
cancel is always asked of the daemon: the loop that files every record is the
only one that may decide between a job's end and its cancel.

``wait`` exits 0 when the job is done, 1 when it failed, was cancelled or was
rejected, 2 when ``--timeout`` ran out first, 3 when there is no such job.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spoold.asking import (
    ENDED,
    UNKNOWN,
    Answer,
    DaemonUnreachable,
    ask,
    ask_through_restarts,
    socket_path,
)
from spoold.backends import open_catalog
from spoold.cli import output as cli_output
from spoold.config import Config
from spoold.core.backend import Catalog, CatalogError, NoSuchJob, StoredJob
from spoold.job import CANCELLED

# Seconds a cancel may take to be answered: a running attempt gets SIGTERM, then SIGKILL
# 2 s later, and its record is filed as soon as it has ended.
CANCEL_TIMEOUT = 30.0
WAIT_DONE, WAIT_ENDED_BADLY, WAIT_TIMED_OUT, WAIT_UNKNOWN = 0, 1, 2, 3


def cmd_cancel(args: argparse.Namespace, config: Config) -> int:
    path = socket_path(config.spool.dir)
    status = 0
    for job_id in args.job_ids:
        try:
            answer = ask(path, "cancel", job_id, CANCEL_TIMEOUT)
        except TimeoutError:
            _say(f"job {job_id}: asked to cancel it; it has not stopped after "
                 f"{CANCEL_TIMEOUT:.0f}s (see spoold show {job_id})")  # fmt: skip
            status = 1
            continue
        status = max(status, _cancelled(job_id, answer))
    return status


def _cancelled(job_id: str, answer: Answer) -> int:
    """Print what became of one cancel; its exit status."""
    record_status = (answer.document or {}).get("status")
    if answer.ok and record_status == CANCELLED:
        print(f"cancelled {job_id}")
        return 0
    if answer.ok:  # it ended on its own while its attempt was being stopped
        _say(f"job {job_id} ended before it could be cancelled ({record_status}); nothing changed")
    elif answer.code == ENDED:
        _say(f"{answer.error}; nothing changed")
    else:
        _say(answer.error)
    return 1


def cmd_wait(args: argparse.Namespace, config: Config) -> int:
    stored = _wait(config, args.job_id, args.timeout)
    if stored is None:
        _say(f"no job {args.job_id}")
        return WAIT_UNKNOWN
    if stored.state not in ("done", "failed"):
        waited = f" after {args.timeout:g}s" if args.timeout is not None else ""
        _say(f"job {args.job_id} has not ended{waited} (it is in {stored.state})")
        return WAIT_TIMED_OUT
    cli_output.show(stored, as_json=args.json)
    status = (stored.document or {}).get("status")
    return WAIT_DONE if status == "done" else WAIT_ENDED_BADLY


def _wait(config: Config, job_id: str, timeout: float | None) -> StoredJob | None:
    """The record, or the job as it is when the time ran out; None if there is no such job
    (of the caller's)."""
    catalog = open_catalog(config)
    try:
        return catalog.wait_for_record(job_id, timeout)
    except NoSuchJob:
        return None
    except (CatalogError, OSError):  # not the caller's to read: ask the daemon
        pass
    return _wait_asking(config, job_id, timeout)


def _wait_asking(config: Config, job_id: str, timeout: float | None) -> StoredJob | None:
    """Ask the daemon to answer when the job ends; through its restarts, till the timeout."""
    path = socket_path(config.spool.dir)
    try:
        answer = ask_through_restarts(path, job_id, timeout)
    except TimeoutError:
        return _as_stored(_show_or_none(path, job_id), job_id)
    if answer.code == UNKNOWN:
        return None
    if not answer.ok:
        raise CatalogError(answer.error)
    return _as_stored(answer, job_id)


def _show_or_none(path: Path, job_id: str) -> Answer | None:
    try:
        return ask(path, "show", job_id, 5.0)
    except (OSError, TimeoutError):
        return None


def _as_stored(answer: Answer | None, job_id: str) -> StoredJob | None:
    """The daemon's answer as the catalog would have given it (its path: where it is)."""
    if answer is None or answer.state is None:
        return StoredJob(job_id, "unknown", Path("?"), 0.0, None, "", "no answer")
    return StoredJob(job_id, answer.state, Path(answer.state) / f"{job_id}.json", time.time(),
                     answer.document, "")  # fmt: skip


def show_asking(catalog: Catalog, config: Config, job_id: str) -> StoredJob:
    """``spoold show``: read straight if the caller may, else ask the daemon."""
    try:
        return catalog.find(job_id)
    except NoSuchJob:
        raise
    except (CatalogError, OSError) as exc:
        refused = exc
    try:
        answer = ask(socket_path(config.spool.dir), "show", job_id, 5.0)
    except (DaemonUnreachable, TimeoutError):
        raise refused from None
    stored = _as_stored(answer, job_id)
    if not answer.ok or stored is None:
        raise CatalogError(answer.error)
    return stored


def _say(message: str) -> None:
    print(f"spoold: {message}", file=sys.stderr)
