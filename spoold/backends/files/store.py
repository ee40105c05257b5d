"""The file spool's store: every move of a job between state folders.

The engine (``engine.py``) answers the core's ``claim``, ``schedule``,
``unclaim`` and ``finish`` with these moves. A job is always in exactly one folder. Claims are plain
renames. A job is rewritten only on its way *out of* ``active/``: the new
content is written beside it as ``active/<id>.to-<state>`` (and fsynced),
the old file is unlinked, and one rename moves the new one out, after which
the destination folder is fsynced. Recovery finishes any move whose marker
it finds whole, and drops a marker cut short while the job is still there,
so a crash at any step loses nothing.

Every move out of active/ is idempotent: it is refused (``NotInActive``,
nothing changed) unless the job is still in active/, as ``<id>.json`` or as
the marker of a move to the same folder that was cut short half-way. An
outcome applied twice therefore files one record, never two.

Claims are made durable lazily: the folders they changed are fsynced just
before the next move out of active/, so that no outcome is ever on disk
while the claim that led to it could still be undone by a power cut. A
claim lost to a power cut before that only means the job runs again.

With ``defer_moves`` (the daemon's loop) the destination folder of a move
is fsynced by ``sync_pending`` at the end of the loop's turn rather than
at once, after the turn has handed out the next attempts, and once for all
the moves the turn made. The outcome itself is durable before that: its
marker was fsynced, and a power cut that undoes the rename leaves the
marker in active/, where recovery finishes the move. The same call makes
the turn's claims durable, so that an attempt's outcome usually finds
nothing left to sync when it comes back.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from spoold.backends.files.fsio import (
    exists,
    fsync_dir,
    link_count,
    rename_noreplace,
    write_new,
    write_whole,
)
from spoold.backends.files.spool import (
    CLAIMING_SUFFIX,
    MOVE_STATES,
    Spool,
    claiming_name,
    marker_name,
)
from spoold.core.backend import StaleClaim
from spoold.faults import crash_point
from spoold.followups import children
from spoold.ids import is_valid_id, new_job_id
from spoold.job import Job, encode
from spoold.live import Live


class NotInActive(StaleClaim):
    """An outcome for a job that is no longer in active/: it was refused, nothing changed."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} is no longer in active/, so it cannot go to {state}/")


class JobStore:
    """Moves jobs between the spool's folders, durably unless ``[spool] fsync`` is off."""

    def __init__(self, spool: Spool, live: Live, *, defer_moves: bool = False) -> None:
        self.spool = spool
        self.live = live
        self.defer_moves = defer_moves
        self._unsynced: set[str] = set()
        self._unsynced_moves: set[str] = set()

    @property
    def durable(self) -> bool:
        return self.live.config.spool.fsync

    def id_taken(self, job_id: str, *, source: tuple[str, str] | None = None) -> bool:
        """True if another job or record already uses ``job_id``."""
        name = f"{job_id}.json"
        for state in ("active", "scheduled", "done", "failed"):
            if (state, name) != source and exists(self.spool.file(state, name)):
                return True
        return False

    def fresh_id(self) -> str:
        while True:
            job_id = new_job_id()
            if not self.id_taken(job_id):
                return job_id

    def move_to_active(self, state: str, name: str, job_id: str) -> None:
        """Claim a waiting file by renaming it to ``active/<job_id>.json``."""
        rename_noreplace(self.spool.file(state, name), self.spool.file("active", f"{job_id}.json"))
        self._unsynced.add(state)
        crash_point("after_claim")

    def claim(self, state: str, name: str, job: Job) -> Job:
        """Move a waiting job into active/ under its id (a rename, or a clean rewrite)."""
        if job.clean:
            self.move_to_active(state, name, job.id)
            return job
        # The submitted file carried daemon-owned fields: store the cleaned job instead.
        # The file is claimed first, by one rename to <id>.claiming, and only then
        # replaced by the cleaned copy, so that a crash never leaves the job both
        # waiting and in active/ (it would run twice): recovery puts a .claiming
        # file back to wait (``undo_cut_claims``).
        claiming = self.spool.file("active", claiming_name(job.id))
        source = self.spool.file(state, name)
        rename_noreplace(source, claiming)
        self._unsynced.add(state)
        active = self.spool.folder("active")
        try:
            write_new(active, f"{job.id}.json", encode(job.state_document()), durable=self.durable)
        except OSError:  # no room for the cleaned copy: the job waits where it was
            rename_noreplace(claiming, source)
            raise
        crash_point("in_cleaning_claim")
        os.unlink(claiming)
        return replace(job, clean=True)

    def sync_claims(self) -> None:
        """Make the claims made so far durable; called before any outcome is filed.

        Otherwise a power cut could bring a claimed job back to incoming/
        while its record survived, and it would run twice.
        """
        if self.durable:
            for state in self._unsynced:
                fsync_dir(self.spool.folder(state))
            if self._unsynced:
                fsync_dir(self.spool.folder("active"))
        self._unsynced.clear()

    def sync_pending(self) -> None:
        """Make the claims and the moves out of active/ made so far durable."""
        self.sync_claims()
        self.sync_moves()

    def sync_moves(self) -> None:
        """Make the moves out of active/ made so far durable (their destination folders)."""
        while self._unsynced_moves:
            state = next(iter(self._unsynced_moves))
            if self.durable:
                fsync_dir(self.spool.folder(state))
            self._unsynced_moves.discard(state)  # only once it worked: a failure is retried

    def schedule(self, job: Job) -> None:
        """Move an active job to scheduled/ to wait for ``job.due_at``."""
        self._move_out(job.id, "scheduled", job.state_document())

    def file_record(self, job_id: str, folder: str, record: dict[str, Any]) -> str:
        """Move the job out of active/ as its record in done/ or failed/.

        Returns the id the record was filed under: a fresh one if a record
        with the job's id exists already (records are never replaced).
        """
        record_id = job_id
        while True:
            try:
                self._move_out(job_id, folder, {**record, "id": record_id}, record_id)
                return record_id
            except FileExistsError:  # the id has a record already; a marker is left to rewrite
                record_id = self.fresh_id()

    def _move_out(
        self, job_id: str, state: str, document: dict[str, Any], new_id: str | None = None
    ) -> None:
        """Replace active/<id>.json by ``document`` in ``state``/, in one folder throughout.

        The new content is first made whole as ``active/<id>.to-<state>``, the
        old file is unlinked, and one rename moves the new one out. A crash
        at any point leaves the job in active/, and recovery finishes a move
        whose marker file exists (``finish_moves``). If the destination name
        was taken meanwhile, FileExistsError is raised and the marker stays.
        NotInActive is raised, before anything is touched, if the job has left
        active/ already.
        """
        marker = self.spool.file("active", marker_name(job_id, state))
        if not (os.path.lexists(self.spool.file("active", f"{job_id}.json"))
                or os.path.lexists(marker)):  # fmt: skip
            raise NotInActive(job_id, state)  # filed already: applying it again would double it
        data = encode(document)
        try:
            write_whole(marker, data, durable=self.durable)
        except FileExistsError:
            # A move that failed half-way (disk full, id taken) left its marker, and
            # the job may be unlinked already: replace it atomically, never in place.
            write_new(
                self.spool.folder("active"), marker_name(job_id, state), data,
                durable=self.durable, sync_folder=False, replace=True,
            )  # fmt: skip
        # After the marker's fsync, which on a journalling filesystem has just
        # committed the claims too: these folder fsyncs then find nothing left to do.
        self.sync_claims()
        crash_point("after_marker")
        if state in RECORD_STATES:
            self.submit_follow_ups(document)
        self._drop_active(job_id)
        crash_point("after_unlink")
        rename_noreplace(marker, self.spool.file(state, f"{new_id or job_id}.json"))
        crash_point("after_move")
        self._unsynced_moves.add(state)
        if not self.defer_moves:
            self.sync_moves()

    def submit_follow_ups(self, record: dict[str, Any]) -> None:
        """Submit into incoming/ the follow-ups a record names (``spoold.followups``), each
        once: one whose id is taken (submitted before a crash, or run already) is not
        submitted again. Done after the record's marker is whole and before its move, so
        that recovery, which finishes the move, submits what a crash kept from here."""
        for follow_up in children(record):
            crash_point("before_follow_up")
            name = f"{follow_up.job_id}.json"
            if self.id_taken(follow_up.job_id):
                continue
            with contextlib.suppress(FileExistsError):  # in incoming/ already
                write_new(self.spool.folder("incoming"), name, follow_up.payload,
                          durable=self.durable)  # fmt: skip
            crash_point("after_follow_up")

    def unclaim(self, job: Job) -> None:
        """Put a claimed job that never started back to wait in scheduled/, as it was."""
        source = self.spool.file("active", f"{job.id}.json")
        if not os.path.lexists(source):
            raise NotInActive(job.id, "scheduled")
        rename_noreplace(source, self.spool.file("scheduled", f"{job.id}.json"))

    def undo_cut_claims(self) -> list[str]:
        """Undo the claims a crash cut short; describe each. Nothing was started yet.

        * On a filesystem without RENAME_NOREPLACE a claim is a link into
          active/ and then an unlink of the waiting file: cut in between, one
          inode has both names. The active/ name is dropped and the job waits
          where it was. (A put-back to scheduled/ cut the same way leaves the
          same two names, and this finishes it.)
        * A ``<id>.claiming`` file is a submitted file claimed while its
          cleaned copy was being written (``claim``): it goes back to incoming/.
        """
        report = []
        waiting: dict[tuple[int, int], str] | None = None
        for name in sorted(os.listdir(self.spool.folder("active"))):
            claiming = name.endswith(CLAIMING_SUFFIX)
            if name.startswith(".") or not (claiming or name.endswith(".json")):
                continue
            path = self.spool.file("active", name)
            try:
                links = link_count(path)
            except FileNotFoundError:  # a cleaned copy a put-back .claiming file took along
                continue
            if links >= 2:
                if waiting is None:
                    waiting = self._waiting_inodes()
                info = os.lstat(path)
                twin = waiting.get((info.st_dev, info.st_ino))
                if twin is not None:
                    os.unlink(path)
                    report.append(f"undid the claim of {twin} (cut short by a crash): "
                                  f"active/{name} was a second link to it")  # fmt: skip
                    continue
            if claiming:
                report.append(self._put_back_claiming(name.removesuffix(CLAIMING_SUFFIX)))
        return report

    def _put_back_claiming(self, job_id: str) -> str:
        """A claim cut short while its file was being cleaned: back to incoming/ as it came."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool.file("active", f"{job_id}.json"))  # the cleaned copy, if made
        claiming = self.spool.file("active", claiming_name(job_id))
        target_id = job_id
        while True:
            try:
                rename_noreplace(claiming, self.spool.file("incoming", f"{target_id}.json"))
                break
            except FileExistsError:  # the name was submitted again meanwhile
                target_id = self.fresh_id()
        return (f"undid the claim of {job_id} (cut short by a crash while it was cleaned): "
                f"back in incoming/ as {target_id}.json")  # fmt: skip

    def _waiting_inodes(self) -> dict[tuple[int, int], str]:
        """The waiting files of incoming/ and scheduled/ by inode."""
        found = {}
        for state in ("incoming", "scheduled"):
            for name in self.spool.job_names(state):
                with contextlib.suppress(FileNotFoundError):
                    info = os.lstat(self.spool.file(state, name))
                    found[(info.st_dev, info.st_ino)] = f"{state}/{name}"
        return found

    def finish_moves(self) -> list[str]:
        """Complete the moves out of active/ that a crash cut short; describe each."""
        report = []
        for job_id, state in _markers(self.spool.folder("active")):
            marker = self.spool.path("active", marker_name(job_id, state))
            document = _whole_document(marker)
            if document is None and self.spool.exists("active", f"{job_id}.json"):
                marker.unlink()  # cut short while being written: the move never began
                report.append(f"removed {marker.name}: written only in part; {job_id} stays")
                continue
            if document is not None and state in RECORD_STATES:
                self.submit_follow_ups(document)
            self._drop_active(job_id)
            target = self.spool.path(state, f"{_filed_id(document, job_id)}.json")
            try:
                rename_noreplace(marker, target)
                report.append(f"finished moving {job_id} to {state}/ (cut short by a crash)")
            except FileExistsError:
                report.append(self._settle_duplicate(marker, target))
        return report

    def _settle_duplicate(self, marker: Path, target: Path) -> str:
        if target.read_bytes() == marker.read_bytes():  # moved already; only the marker was left
            marker.unlink()
            return f"removed {marker.name}: {target} already holds it"
        return f"left {marker.name} in active/: {target} exists with other content"

    def _drop_active(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool.file("active", f"{job_id}.json"))


RECORD_STATES = ("done", "failed")


def _markers(folder: Path) -> list[tuple[str, str]]:
    found = []
    for name in sorted(os.listdir(folder)):
        job_id, dot, state = name.rpartition(".to-")
        if dot and state in MOVE_STATES and not name.startswith("."):
            found.append((job_id, state))
    return found


def _whole_document(marker: Path) -> dict[str, Any] | None:
    """The marker's JSON object, or None if it is not one (written only in part)."""
    try:
        document = json.loads(marker.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _filed_id(document: dict[str, Any] | None, job_id: str) -> str:
    """The id a record marker was to be filed under (it may differ from the job's)."""
    filed = document.get("id") if document is not None else None
    return filed if isinstance(filed, str) and is_valid_id(filed) else job_id
