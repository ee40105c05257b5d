"""The file-spool backend: every move of a job between state folders.

This is the narrow interface a second backend (Redis, for several hosts)
would implement: claim a waiting job, put it back to wait for a time, file
its record. The rule that makes crashes harmless: a job is rewritten only
on its way *out of* ``active/``, by writing the next state's file whole
(tmp, fsync, no-clobber rename, fsync the folder) and only then unlinking
``active/<id>.json``. A crash between the two leaves two copies, and
recovery keeps the one further along (a record, else ``scheduled/``).
Claims are plain renames, so a waiting job is never in two places.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from spoold.fsio import fsync_dir, rename_noreplace, write_new
from spoold.ids import new_job_id
from spoold.job import Job, encode
from spoold.spool import Spool


class JobStore:
    """Moves jobs between the spool's folders, durably unless told otherwise."""

    def __init__(self, spool: Spool, *, durable: bool) -> None:
        self.spool = spool
        self.durable = durable
        self._unsynced: set[str] = set()

    def id_taken(self, job_id: str, *, source: tuple[str, str] | None = None) -> bool:
        """True if another job or record already uses ``job_id``."""
        name = f"{job_id}.json"
        return any(
            self.spool.exists(state, name) and (state, name) != source
            for state in ("active", "scheduled", "done", "failed")
        )

    def fresh_id(self) -> str:
        while True:
            job_id = new_job_id()
            if not self.id_taken(job_id):
                return job_id

    def move_to_active(self, state: str, name: str, job_id: str) -> None:
        """Claim a waiting file by renaming it to ``active/<job_id>.json``."""
        rename_noreplace(self.spool.path(state, name), self.active_path(job_id))
        self._unsynced.add(state)

    def claim(self, state: str, name: str, job: Job) -> Job:
        """Move a waiting job into active/ under its id (a rename, or a clean rewrite)."""
        if job.clean:
            self.move_to_active(state, name, job.id)
            return job
        # The submitted file carried daemon-owned fields: store the cleaned job instead.
        active = self.spool.folder("active")
        write_new(active, f"{job.id}.json", encode(job.state_document()), durable=self.durable)
        self.spool.path(state, name).unlink()
        self._unsynced.add(state)
        return replace(job, clean=True)

    def sync_claims(self) -> None:
        """Make this turn's claims durable before any of their outcomes can be filed.

        Otherwise a power cut could bring a claimed job back to incoming/
        while its record survived, and it would run twice.
        """
        if self.durable:
            for state in self._unsynced:
                fsync_dir(self.spool.folder(state))
            if self._unsynced:
                fsync_dir(self.spool.folder("active"))
        self._unsynced.clear()

    def schedule(self, job: Job) -> None:
        """Move an active job to scheduled/ to wait for ``job.due_at``."""
        write_new(
            self.spool.folder("scheduled"),
            f"{job.id}.json",
            encode(job.state_document()),
            durable=self.durable,
        )
        self._drop_active(job.id)

    def file_record(self, job: Job, folder: str, record: dict[str, Any]) -> str:
        """Write the job's record into done/ or failed/ and drop its active copy.

        Returns the id the record was filed under: a fresh one if a record
        with the job's id appeared meanwhile (records are never replaced).
        """
        record_id = job.id
        while True:
            try:
                write_new(
                    self.spool.folder(folder),
                    f"{record_id}.json",
                    encode({**record, "id": record_id}),
                    durable=self.durable,
                )
                break
            except FileExistsError:
                record_id = self.fresh_id()
        self._drop_active(job.id)
        return record_id

    def _drop_active(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.active_path(job_id).unlink()

    def active_path(self, job_id: str) -> Path:
        return self.spool.path("active", f"{job_id}.json")
