"""The file spool as the daemon's ``Engine``: the rooms of files/ behind the seam.

Assembles the spool, its lock, the store (every move between folders),
the in-memory order (``queue``), claims, the receiver (the watch on
incoming/) and start-up recovery, and answers the core in the seam's
words. One daemon holds a spool (``SpoolLock``), so a claim never lapses:
``lease`` is infinite, ``renew`` and ``expired`` have nothing to do, and
recovery happens once, at ``open``. The clock is this host's.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from loguru import logger

from spoold.atomic import replace_file
from spoold.backends.files import recovery
from spoold.backends.files.claims import Claims, Holds, RetryUnderWay
from spoold.backends.files.firings import FileFirings
from spoold.backends.files.fsio import fsync_dir
from spoold.backends.files.queue import DueQueue, ReadyEntry, ReadyQueue
from spoold.backends.files.receiver import Receiver
from spoold.backends.files.spool import Spool, SpoolLock
from spoold.backends.files.store import JobStore
from spoold.backends.files.unique import UniqueKeys
from spoold.backends.files.watcher import Watcher
from spoold.core.backend import (
    Accepted,
    Arrival,
    Claim,
    Counts,
    Firing,
    Judge,
    Mark,
    Places,
    Recovered,
    Refusal,
    Refused,
    Taken,
    Verdict,
)
from spoold.job import Job, encode
from spoold.limits import ClassLimit, Gate
from spoold.live import Live

PARSED_CACHE_LIMIT = 1000  # ready jobs kept parsed in memory; the rest are read again at claim
RETRY_LOOK_AGAIN = 0.01  # seconds before a job put back by `spoold retry` is looked at again
DAMAGED = "the job file is damaged"  # the reason for a file in scheduled/ that is not a job


class FileEngine:
    """One spool's folders, as the daemon's backend."""

    lease = math.inf

    def __init__(self, live: Live, spool: Spool, lock: SpoolLock | None = None) -> None:
        self.live = live
        self.spool = spool
        self.lock = lock
        self.store = JobStore(spool, live, defer_moves=True)
        self.ready = ReadyQueue()
        self.due = DueQueue()
        self.holds = Holds(owner=f"{socket.gethostname()}:{os.getpid()}")
        self.claims = Claims(spool, self.store, self.due, self.holds)
        self.receiver: Receiver | None = None  # made by ``open``, which is given the judge
        self.watcher: Watcher | None = None  # started by ``watch``
        self.places = Places("active/", "scheduled/", str(spool.folder("incoming")))
        self.firings = FileFirings(spool, durable=self.store.durable, complain=logger.error)
        self.unique = UniqueKeys()  # the keys of the jobs that wait or run
        self.gate = Gate()  # [limits]: each limited class's running attempts and bucket
        self.closed = False

    @classmethod
    def open_locked(cls, live: Live) -> FileEngine:
        """Create the spool's folders and take its lock (SpoolLocked if a daemon has it)."""
        return cls(live, *SpoolLock.taken(live.config.spool.dir))

    @property
    def max_bytes(self) -> int:
        return self.live.config.spool.max_job_bytes

    def clock(self) -> float:
        return time.time()

    # -- life cycle --

    def open(self, judge: Judge, now: float) -> list[Recovered]:
        recovery.tidy(self.spool)
        self.receiver = Receiver(self.live, self.spool, judge, self.ready, self.claims.ignored)
        found = recovery.recover_active(
            self.spool, self.store, self.claims, judge, self.max_bytes, now
        )
        for recovered in found:
            self._hold_key(recovered.verdict)
        scheduled = recovery.load_scheduled(
            self.spool, judge, self.max_bytes, self.due, self.unique, now
        )
        for name in scheduled:
            refusal = self.claims.reject(
                "scheduled", name, Refused(name[:-5], DAMAGED, b"", kind="damaged"), now
            )
            if refusal is not None:
                found.append(Recovered(refusal.claim, refusal.refused, now, source=name))
        return found

    def watch(self, now: float) -> None:
        self.watcher = self._receiver.start()
        self._receiver.rescan(now)

    def descriptors(self) -> Sequence[int]:
        return (self.watcher.fileno(),) if self.watcher is not None else ()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.receiver is not None:
            self.receiver.stop()
        try:
            self.store.sync_pending()
        except OSError as exc:  # the markers are durable: recovery finishes these moves
            logger.error("the last moves out of active/ may not be durable: {}", exc)
        if self.lock is not None:
            self.lock.release()

    @property
    def _receiver(self) -> Receiver:
        assert self.receiver is not None, "open() comes first"
        return self.receiver

    # -- each turn --

    def next_wakeup(self, now: float) -> float | None:
        times = [self._receiver.next_wakeup(), self.due.next_due()]
        lanes = self.ready.lane_classes()
        if lanes:  # jobs held back by a rate: the moment the first of them may start
            times.append(self.gate.next_free(self.live.config.limits, lanes, now))
        return min(time for time in times if time is not None)

    def receive(self, now: float) -> list[Arrival]:
        arrivals = [self._unique(arrival) for arrival in self._receiver.turn(now)]
        for entry in self.due.pop_due(now):
            self.ready.push("scheduled", entry.name, entry.priority, entry.enqueued_at, None,
                            entry.due_at, entry.class_path)  # fmt: skip
        return arrivals

    def _unique(self, arrival: Arrival) -> Arrival:
        """An accepted submission whose unique key another live job holds: refused."""
        verdict = arrival.verdict
        holder = self._hold_key(verdict)
        if holder is None or not isinstance(verdict, Accepted):
            return arrival
        job = verdict.job
        refused = Refused(job.id, f"duplicate of {holder}", encode(job.submitted),
                          kind="duplicate")  # fmt: skip
        return replace(arrival, verdict=refused)

    def _hold_key(self, verdict: Verdict) -> str | None:
        """Let an accepted job hold its unique key: None, or the other job that holds it."""
        if not isinstance(verdict, Accepted) or verdict.job.unique_key is None:
            return None
        return self.unique.hold(verdict.job.unique_key, verdict.job.id)

    def accept(self, arrival: Arrival) -> None:
        assert isinstance(arrival.verdict, Accepted)
        job = arrival.verdict.job
        cached = job if len(self.ready) < PARSED_CACHE_LIMIT else None
        since = max(job.enqueued_at, job.run_at or 0.0)
        self.ready.push("incoming", arrival.ref, job.priority, job.enqueued_at, cached, since,
                        job.class_path)  # fmt: skip

    def claim_arrival(self, arrival: Arrival, now: float) -> Taken | Refusal | None:
        verdict = arrival.verdict
        try:
            if isinstance(verdict, Refused):
                return self.claims.reject("incoming", arrival.ref, verdict, now)
            taken = self.claims.claim("incoming", arrival.ref, verdict.job)
            if taken is not None:
                self.unique.renamed(verdict.job.id, taken.job.id)
            return taken
        except RetryUnderWay:
            self._look_again_soon(arrival.ref, now)
            return None
        except OSError as exc:  # the claim failed (a claim that failed half-way is undone)
            self._receiver.not_now(arrival.ref, now, exc, "claim")
            return None

    def take_ready(self, now: float) -> Taken | Refusal | None:
        limits = self.live.config.limits
        blocked = partial(self._blocked, limits, now) if limits else None
        while (entry := self.ready.pop(blocked)) is not None:
            try:
                taken = self.claims.claim_ready(entry, self._judge, self.max_bytes, now)
            except RetryUnderWay:
                self._look_again_soon(entry.name, now)
                continue
            if isinstance(taken, Taken):
                self.unique.renamed(entry.name.removesuffix(".json"), taken.job.id)
                self.gate.started(limits, taken.job.class_path, taken.job.id, now)
            if taken is not None:
                return taken
        return None

    def _blocked(self, limits: Mapping[str, ClassLimit], now: float, class_path: str) -> bool:
        return self.gate.blocked(limits, class_path, now)

    def held_back(self, now: float) -> dict[str, int]:
        """The ready jobs set aside because their class is at its limit, by class."""
        limits = self.live.config.limits
        return self.ready.held_back(partial(self._blocked, limits, now)) if limits else {}

    def cancel(self, job_id: str, by: int, now: float) -> Taken | Refusal | bool:
        """Claim the waiting job ``job_id`` wherever it waits in the order: incoming/ or
        scheduled/, ready or due. False if it waits nowhere (one daemon holds the spool:
        what runs, runs here; a file the watch has not yet reported is not received)."""
        name = f"{job_id}.json"
        entry = self.ready.remove("incoming", name) or self.ready.remove("scheduled", name)
        if entry is None:
            if self.due.remove(name) is None:
                return False
            entry = ReadyEntry((0, 0.0, 0), "scheduled", name)
        try:
            taken = self.claims.claim_ready(entry, self._judge, self.max_bytes, now)
        except RetryUnderWay:
            self._look_again_soon(name, now)
            return False
        return taken if taken is not None else False

    def cancellations(self) -> list[tuple[str, int]]:
        return []  # one daemon holds the spool: a cancel is asked of it, never of another

    def view_group(self) -> int | None:
        return self.spool.view_group()  # (this host's folder, on Redis too)

    def follow_records(self, job_ids: Collection[str]) -> list[str]:
        return []  # ... and every record is filed by it

    def _look_again_soon(self, name: str, now: float) -> None:
        """A job ``spoold retry`` put back whose record is still going: judged anew soon."""
        self._receiver.look_again(name, now + RETRY_LOOK_AGAIN)

    @property
    def _judge(self) -> Judge:
        return self._receiver.judge

    def unclaim(self, claim: Claim, job: Job, due_at: float) -> None:
        self.holds.check(claim)
        self.store.unclaim(job)
        self._let_go(claim)
        self.due.push(f"{job.id}.json", due_at, job.priority, job.enqueued_at, again=True,
                      class_path=job.class_path)  # fmt: skip

    def schedule(self, claim: Claim, job: Job, *, again: bool) -> None:
        assert job.due_at is not None
        self.holds.check(claim)
        self.store.schedule(job)
        self._let_go(claim)
        self.due.push(f"{job.id}.json", job.due_at, job.priority, job.enqueued_at, again=again,
                      class_path=job.class_path)  # fmt: skip

    def finish(self, claim: Claim, status: str, record: dict[str, Any]) -> str:
        """File the record, and submit the follow-up it names (``JobStore``)."""
        self.holds.check(claim)
        filed_as = self.store.file_record(claim.job_id, status, record)
        self._let_go(claim)
        self.unique.release(claim.job_id)
        return filed_as

    def _let_go(self, claim: Claim) -> None:
        self.holds.let_go(claim)
        self.gate.ended(claim.job_id)

    def prefetch(self, on: bool) -> None:
        pass  # a claim is a rename at take_ready: no trip to save

    def renew(self, claims: Sequence[Claim], now: float) -> list[Claim]:
        return []  # one daemon holds the spool: its claims never lapse

    def expired(self, now: float) -> list[Recovered]:
        return []  # ... and nobody else's claims are here to lapse

    def end_turn(self) -> None:
        self.store.sync_pending()

    def purge_records(self, status: str, finished_before: float, limit: int) -> int:
        """The oldest-named records first; a record's mtime is when it was filed."""
        removed = 0
        for name in self.spool.job_names(status):
            if removed >= limit:
                break
            path = self.spool.file(status, name)
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(path).st_mtime < finished_before:
                    os.unlink(path)
                    removed += 1
        if removed and self.store.durable:
            fsync_dir(self.spool.folder(status))
        return removed

    def oldest_ready(self, now: float) -> float | None:
        return self.ready.oldest_ready_since()

    def schedule_marks(self) -> dict[str, Mark]:
        return self.firings.marks()

    def fire(self, firing: Firing) -> str:
        return self.firings.fire(firing)

    def skip_firings(self, schedule: str, upto: float) -> None:
        self.firings.skip(schedule, upto)

    def publish_stats(self, snapshot: bytes, keep_for: float) -> None:
        """``stats.json`` in the spool's root, with the group of done/ (the watching group,
        ``spoold init --view-group``): a file has no expiry, its reader looks at its age."""
        gid = os.stat(self.spool.folder("done")).st_gid
        replace_file(self.spool.stats_path, snapshot, mode=0o640, gid=gid)

    def counts(self) -> Counts:
        busy = self.receiver is not None and self.receiver.busy
        return Counts(len(self.ready), len(self.due), self.due.again, busy,
                      self.held_back(self.clock()))  # fmt: skip
