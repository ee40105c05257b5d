"""Waiting for a job's record on the file spool: inotify on done/ and failed/.

For ``spoold wait`` run by whoever may read the folders (root, the daemon's
user, the watching group): it works while no daemon runs, and costs no CPU
while it waits. The watch is a hint: the job is looked up again when its
name shows up, and at the latest every ``LOOK_EVERY`` seconds (an overflowed
or lost watch; and the only way where watchdog, the inotify binding, cannot
be imported: the watchers' commands need nothing but the standard library).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from spoold.backends.files.admin import AdminError, find_job
from spoold.backends.files.spool import Spool
from spoold.core.backend import StoredJob

if TYPE_CHECKING:
    from spoold.backends.files.watcher import Watcher

LOOK_EVERY = 2.0  # seconds: the fallback look, never more often
RECORD_STATES = ("done", "failed")


def wait_for_record(spool: Spool, job_id: str, timeout: float | None) -> StoredJob:
    """The job's record once it is filed; the job as it is when ``timeout`` runs out.

    AdminError (a CatalogError) if there is no such job, or the caller may not look
    where it is, or may not read the records at all, at the start or later (a record
    purged meanwhile): then it is the daemon's to answer.
    """
    for state in RECORD_STATES:
        if not os.access(spool.folder(state), os.R_OK | os.X_OK):
            raise AdminError(f"cannot wait on {spool.folder(state)}: permission denied")
    stored = find_job(spool, job_id)  # first: a record, or a job the caller cannot see
    if stored.state in RECORD_STATES:
        return stored
    deadline = None if timeout is None else time.monotonic() + timeout
    name = f"{job_id}.json"
    with _watching(spool) as watchers:
        while True:
            stored = find_job(spool, job_id)  # (again once watched: no filing goes unheard)
            if stored.state in RECORD_STATES:
                return stored
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return stored
                pause = LOOK_EVERY if left is None else min(left, LOOK_EVERY)
                readable, _, _ = select.select(watchers, [], [], pause)
                heard = [seen for watcher in readable for seen, _ in watcher.take_names()]
                if not readable or name in heard or "" in heard:
                    break  # its name, an overflow, or the fallback's time: look again


@contextmanager
def _watching(spool: Spool) -> Iterator[list[Watcher]]:
    """Watches on done/ and failed/, started; none where watchdog cannot be imported."""
    try:
        from spoold.backends.files.watcher import Watcher  # watchdog: for those who wait
    except ImportError:
        yield []
        return
    watchers = [Watcher(spool.folder(state)) for state in RECORD_STATES]
    try:
        for watcher in watchers:
            watcher.start()
        yield watchers
    finally:
        for watcher in watchers:
            watcher.close()
