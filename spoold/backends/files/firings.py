"""Periodic jobs on the file spool: the schedules' marks in ``schedules.json``, and each
firing written into incoming/ like any submission (the intake judges it as it judges
every file).

One daemon holds a file spool, so it alone fires: checking that a firing's
id is free and then writing the job cannot race another firer. The order
makes a crash harmless: the job first, the mark after. A daemon that died
between the two finds, at its next start, the mark behind; it fires again
and meets the id taken: already fired. The marks live in a file of the
spool's root, beside ``stats.json``, not in a record, so retention (which
removes records) cannot make an old firing look new.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from spoold.atomic import replace_file
from spoold.backends.files.fsio import read_regular, write_new
from spoold.backends.files.spool import STATES, Spool
from spoold.core.backend import ALREADY, FIRED, OVERLAP, Firing, Mark
from spoold.faults import crash_point

MAX_MARKS_BYTES = 4 * 1024 * 1024
LIVE_STATES = ("incoming", "scheduled", "active")  # a job here waits or runs


class MarksDamaged(ValueError):
    """``schedules.json`` is not what the daemon writes."""


def marks_path(spool: Spool) -> str:
    return os.fspath(spool.schedules_path)


def read_marks(spool: Spool) -> dict[str, Mark]:
    """The marks as stored; {} before the first firing; MarksDamaged if unreadable."""
    try:
        content = read_regular(marks_path(spool), MAX_MARKS_BYTES)
    except FileNotFoundError:
        return {}
    try:
        stored = json.loads(content.data)
        return {name: _mark(entry) for name, entry in stored.items()}
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MarksDamaged(f"{marks_path(spool)}: not a file of marks ({exc})") from None


def _mark(entry: dict[str, Any]) -> Mark:
    last_fired = entry.get("last_fired")
    return Mark(
        considered=float(entry["considered"]),
        last_job=str(entry["last_job"]) if entry.get("last_job") else None,
        last_fired=float(last_fired) if last_fired is not None else None,
    )


class FileFirings:
    """The engine's side of periodic jobs on one spool; the marks are read once, then
    kept (this daemon is their only writer)."""

    def __init__(self, spool: Spool, *, durable: bool, complain: Callable[[str], object]) -> None:
        self.spool = spool
        self.durable = durable
        self.complain = complain  # the engine's error log (the CLI's catalog loads no loguru)
        self._marks: dict[str, Mark] | None = None

    def marks(self) -> dict[str, Mark]:
        if self._marks is None:
            try:
                self._marks = read_marks(self.spool)
            except MarksDamaged as exc:
                # The ids still tell what was fired while its record is kept; the next
                # firing writes the file anew.
                self.complain(
                    f"{exc}; the schedules start from no marks (a firing whose job or record"
                    " is still in the spool is still known by its id)"
                )
                self._marks = {}
        return dict(self._marks)

    def fire(self, firing: Firing) -> str:
        mark = self.marks().get(firing.schedule)
        if mark is not None and mark.considered >= firing.at:
            return ALREADY
        if self._taken(firing.job_id):
            self._move(firing.schedule, firing.at)
            return ALREADY
        if firing.exclusive and mark is not None and mark.last_job and self._live(mark.last_job):
            self._move(firing.schedule, firing.at)
            return OVERLAP
        try:
            write_new(self.spool.folder("incoming"), f"{firing.job_id}.json", firing.payload,
                      durable=self.durable)  # fmt: skip
        except FileExistsError:  # written meanwhile by hand: the id is taken all the same
            self._move(firing.schedule, firing.at)
            return ALREADY
        crash_point("after_firing")
        self._save(firing.schedule, Mark(firing.at, firing.job_id, firing.at))
        return FIRED

    def skip(self, schedule: str, upto: float) -> None:
        self._move(schedule, upto)

    def _move(self, schedule: str, upto: float) -> None:
        """The mark forward to ``upto`` (never back), keeping its last job."""
        mark = self.marks().get(schedule)
        if mark is not None and mark.considered >= upto:
            return
        last_job, last_fired = (mark.last_job, mark.last_fired) if mark else (None, None)
        self._save(schedule, Mark(upto, last_job, last_fired))

    def _save(self, schedule: str, mark: Mark) -> None:
        marks = {**self.marks(), schedule: mark}
        document = {
            name: {"considered": m.considered, "last_job": m.last_job, "last_fired": m.last_fired}
            for name, m in sorted(marks.items())
        }
        data = json.dumps(document, indent=1).encode() + b"\n"
        gid = os.stat(self.spool.folder("done")).st_gid  # the watching group, as stats.json
        replace_file(self.spool.schedules_path, data, mode=0o640, gid=gid,
                     durable=self.durable)  # fmt: skip
        self._marks = marks

    def _taken(self, job_id: str) -> bool:
        name = f"{job_id}.json"
        return any(os.path.lexists(self.spool.file(state, name)) for state in STATES)

    def _live(self, job_id: str) -> bool:
        name = f"{job_id}.json"
        return any(os.path.lexists(self.spool.file(state, name)) for state in LIVE_STATES)
