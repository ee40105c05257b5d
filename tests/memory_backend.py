"""An in-memory ``Engine``: a whole backend in a few dicts, for fast tests of the core.

What it is for: tests of the core's decisions (``spoold/core/``) that want a
backend without folders, fsyncs or inotify, and a clock of their own, as
dramatiq's ``StubBroker`` is for dramatiq. It implements every member of
``spoold.core.backend.Engine`` with the seam's rules (fencing tokens, a
record filed exactly once, due times, finite or infinite leases, recovery
of what a dead daemon held) and passes the same backend suite as the file
spool (``tests/test_backends.py``).

It is a test backend, never a deployment one, and it is used *beside* the
real file spool, never instead of it: every decision a test checks here is
also checked on real folders (``tests/test_core_in_process.py`` and the
daemon tests).

Beyond the Protocol a test has:

* ``submit(payload)``: what the client does (returns the job's id);
* ``now`` / ``clock()`` / ``advance(seconds)``: the backend's clock;
* ``full``: while True, every filing raises ``OSError(ENOSPC)`` and changes nothing;
* ``crash()``: the daemon dies; a later ``open`` recovers what it held;
* ``records``, ``record(id)``, ``waiting_ids()``, ``waiting_job(id)``, ``ready_ids()``,
  ``claimed_ids()``;
* ``marks``: each schedule's mark, by name (a test may drop one, as a lost
  ``schedules.json`` would).

Flow control follows the file spool: a unique key is held from acceptance
to the record (``spoold/backends/files/unique.py``), ``limits`` (set by a
test; the file spool reads ``[limits]``) pass over the jobs of a class at its
limit (``spoold.limits.Gate``), and a record's follow-up is handed in as a
submission of the daemon's own user when the record is filed.

Periodic jobs follow ``spoold/backends/files/firings.py``: a firing is handed
in as a submission under its derived id (judged at the next ``receive`` like
any other, as written by the daemon's own user), the mark moves after.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import json
import math
import os
import time
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass
from typing import Any

from spoold.backends.files.unique import UniqueKeys
from spoold.core.backend import (
    ALREADY,
    FIRED,
    OVERLAP,
    Accepted,
    Arrival,
    Claim,
    Counts,
    Engine,
    Firing,
    Judge,
    Mark,
    Origin,
    Places,
    Recovered,
    Refusal,
    Refused,
    StaleClaim,
    Taken,
    Unavailable,
)
from spoold.followups import children
from spoold.ids import new_job_id
from spoold.job import Job, encode
from spoold.limits import ClassLimit, Gate

RECORD_STATUSES = ("done", "failed")


@dataclass(frozen=True)
class _Submission:
    """Bytes handed in, not read yet."""

    job_id: str
    payload: bytes
    uid: int | None
    gid: int | None


@dataclass
class _Held:
    """A claimed job (or refused submission) and its current claim."""

    claim: Claim  # as handed out; its expiry is the one at claim time
    item: Job | Refused
    source: str
    claimed_at: float
    expires_at: float  # the current expiry: renewals move it, the handed-out Claim stays


@dataclass
class _Waiting:
    job: Job
    source: str
    due_at: float
    again: bool


class MemoryEngine:
    """Every job, claim and record of one backend, in memory."""

    def __init__(
        self, *, lease: float = math.inf, owner: str = "memory:1", clock_start: float | None = None
    ) -> None:
        self.lease = lease
        self.owner = owner
        self.now = time.time() if clock_start is None else clock_start
        self.places = Places("memory:claimed", "memory:waiting", "memory")
        self.full = False  # a test's full disk: filings raise ENOSPC
        self.down = False  # a test's outage: renew and expired raise Unavailable
        self.records: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in RECORD_STATUSES}
        self.closed = False
        self._judge: Judge | None = None
        self._tokens = itertools.count(1)  # one counter for every claim: tokens only grow
        self._order = itertools.count()  # ties in the heaps: first in, first out
        self._unread: list[_Submission] = []
        self._arrived: dict[str, tuple[_Submission, Arrival]] = {}  # judged, not decided yet
        self._ready: dict[str, tuple[Job, str]] = {}
        self._ready_heap: list[tuple[int, float, int, str]] = []
        self._waiting: dict[str, _Waiting] = {}
        self._waiting_heap: list[tuple[float, int, str]] = []
        self._claimed: dict[str, _Held] = {}
        self.published: list[tuple[bytes, float]] = []  # each stats snapshot, with its keep_for
        self.marks: dict[str, Mark] = {}  # each schedule's mark, by name
        self.limits: dict[str, ClassLimit] = {}  # a test's [limits]
        self.gate = Gate()
        self.unique = UniqueKeys()

    # -- the test's side --

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock on; the new time."""
        self.now += seconds
        return self.now

    def submit(self, payload: bytes, *, uid: int | None = None, gid: int | None = None) -> str:
        """Hand a job document in, as the client does; its id (judged at the next ``receive``)."""
        job_id = new_job_id(self.now)
        while self._in_use(job_id):
            job_id = new_job_id(self.now)
        self._unread.append(_Submission(job_id, bytes(payload), uid, gid))
        return job_id

    def crash(self) -> None:
        """The daemon dies: what it held stays claimed, for the next ``open`` to recover.

        What it had read but not decided on is read again by the next daemon.
        """
        self._judge = None
        self._unread[:0] = [submission for submission, _ in self._arrived.values()]
        self._arrived.clear()

    def record(self, job_id: str) -> dict[str, Any] | None:
        """The record filed under ``job_id`` (done or failed), or None."""
        for status in RECORD_STATUSES:
            if job_id in self.records[status]:
                return self.records[status][job_id]
        return None

    def waiting_ids(self) -> list[str]:
        """Ids waiting for a time, soonest first."""
        return [job_id for *_, job_id in sorted(self._waiting_heap)]

    def waiting_job(self, job_id: str) -> Job | None:
        """The job waiting under ``job_id`` as it was stored, or None."""
        waiting = self._waiting.get(job_id)
        return waiting.job if waiting is not None else None

    def ready_ids(self) -> list[str]:
        """Ids ready to run, in the order ``take_ready`` hands them out."""
        return [job_id for *_, job_id in sorted(self._ready_heap)]

    def claimed_ids(self) -> list[str]:
        return sorted(self._claimed)

    def _in_use(self, job_id: str) -> bool:
        """Whether ``job_id`` is any job's or record's this engine holds."""
        return self._live(job_id) or any(job_id in filed for filed in self.records.values())

    def _live(self, job_id: str) -> bool:
        """Whether ``job_id`` still waits or runs: handed in (read or not), ready, waiting
        for a time, or claimed (the file spool's incoming/, scheduled/, active/)."""
        places: list[Container[str]] = [self._ready, self._waiting, self._claimed, self._arrived]
        return any(job_id in place for place in places) or any(
            s.job_id == job_id for s in self._unread
        )

    # -- life cycle --

    def open(self, judge: Judge, now: float) -> list[Recovered]:
        """Take over: every job still claimed was held by a daemon that went away."""
        self._judge = judge
        self.closed = False
        for waiting in self._waiting.values():
            waiting.again = False  # "again" counts what *this* daemon put back
        return [self._reclaim(held, now) for held in list(self._claimed.values())]

    def watch(self, now: float) -> None:
        pass  # nothing to watch: ``next_wakeup`` says when to look

    def descriptors(self) -> Sequence[int]:
        return ()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.crash()  # a clean stop lets go the same way; claims stay for the next open

    def purge_records(self, status: str, finished_before: float, limit: int) -> int:
        old = [job_id for job_id, record in self.records[status].items()
               if record.get("finished_at", 0.0) < finished_before][:limit]  # fmt: skip
        for job_id in old:
            del self.records[status][job_id]
        return len(old)

    def end_turn(self) -> None:
        pass  # memory is as durable as it gets

    # -- each turn --

    def next_wakeup(self, now: float) -> float | None:
        if self._unread:
            return now
        classes = {job.class_path for job, _source in self._ready.values()}
        times = [self.gate.next_free(self.limits, classes, now)]
        times.append(self._waiting_heap[0][0] if self._waiting_heap else None)
        return min((time for time in times if time is not None), default=None)

    def receive(self, now: float) -> list[Arrival]:
        if self._judge is None:
            raise RuntimeError("open() comes first")
        arrivals = []
        unread, self._unread = self._unread, []
        for submission in unread:
            origin = Origin(submission.job_id, now, submission.uid, submission.gid, trusted=False)
            verdict = self._judge(submission.payload, origin)
            if isinstance(verdict, Accepted) and verdict.job.unique_key is not None:
                holder = self.unique.hold(verdict.job.unique_key, verdict.job.id)
                if holder is not None:
                    verdict = Refused(verdict.job.id, f"duplicate of {holder}",
                                      submission.payload, kind="duplicate")  # fmt: skip
            arrival = Arrival(submission.job_id, verdict, now)
            self._arrived[arrival.ref] = (submission, arrival)
            arrivals.append(arrival)
        while self._waiting_heap and self._waiting_heap[0][0] <= now:
            _, _, job_id = heapq.heappop(self._waiting_heap)
            waiting = self._waiting.pop(job_id)
            self._make_ready(waiting.job, waiting.source)
        return arrivals

    def accept(self, arrival: Arrival) -> None:
        if not isinstance(arrival.verdict, Accepted):
            raise ValueError(f"{arrival.ref}: only an accepted arrival can be made ready")
        if self._arrived.pop(arrival.ref, None) is None:
            return  # decided on already
        self._make_ready(arrival.verdict.job, arrival.ref)

    def claim_arrival(self, arrival: Arrival, now: float) -> Taken | Refusal | None:
        if self._arrived.pop(arrival.ref, None) is None:
            return None  # gone: decided on already
        verdict = arrival.verdict
        if isinstance(verdict, Refused):
            held = self._claim(verdict.job_id, verdict, arrival.ref, now)
            return Refusal(held.claim, verdict, arrival.ref, now)
        held = self._claim(verdict.job.id, verdict.job, arrival.ref, now)
        return Taken(held.claim, verdict.job, source=arrival.ref)

    def take_ready(self, now: float) -> Taken | Refusal | None:
        free = [
            key
            for key in sorted(self._ready_heap)
            if not self.gate.blocked(self.limits, self._ready[key[-1]][0].class_path, now)
        ]
        if not free:
            return None
        job_id = free[0][-1]
        self._ready_heap.remove(free[0])
        heapq.heapify(self._ready_heap)
        job, source = self._ready.pop(job_id)
        held = self._claim(job.id, job, source, now)
        self.gate.started(self.limits, job.class_path, job.id, now)
        return Taken(held.claim, job, source=source)

    def held_back(self, now: float) -> dict[str, int]:
        counted: dict[str, int] = {}
        for job, _source in self._ready.values():
            if self.gate.blocked(self.limits, job.class_path, now):
                counted[job.class_path] = counted.get(job.class_path, 0) + 1
        return counted

    def cancel(self, job_id: str, by: int, now: float) -> Taken | Refusal | bool:
        if job_id in self._ready:
            job, source = self._ready.pop(job_id)
            self._ready_heap = [key for key in self._ready_heap if key[-1] != job_id]
            heapq.heapify(self._ready_heap)
        elif job_id in self._waiting:
            waiting = self._waiting.pop(job_id)
            job, source = waiting.job, waiting.source
            self._waiting_heap = [key for key in self._waiting_heap if key[-1] != job_id]
            heapq.heapify(self._waiting_heap)
        else:
            return False  # one daemon: what runs, runs under the core's own claim
        held = self._claim(job_id, job, source, now)
        return Taken(held.claim, job, source=source)

    def cancellations(self) -> list[tuple[str, int]]:
        return []

    def view_group(self) -> int | None:
        return None

    def follow_records(self, job_ids: Collection[str]) -> list[str]:
        return []

    def unclaim(self, claim: Claim, job: Job, due_at: float) -> None:
        held = self._check(claim, job)
        self._wait(job, held.source, due_at, again=True)

    def schedule(self, claim: Claim, job: Job, *, again: bool) -> None:
        if job.due_at is None:
            raise ValueError(f"job {job.id}: schedule needs its due_at")
        held = self._check(claim, job)
        self._wait(job, held.source, job.due_at, again=again)

    def finish(self, claim: Claim, status: str, record: dict[str, Any]) -> str:
        if status not in RECORD_STATUSES:
            raise ValueError(f"a record is filed as done or failed, not {status!r}")
        self._check(claim)
        filed_as = claim.job_id
        while self.record(filed_as) is not None:  # records are never replaced
            filed_as = new_job_id(self.now)
        # Stored as the file spool would read it back: JSON, a copy of its own.
        self.records[status][filed_as] = json.loads(encode({**record, "id": filed_as}))
        del self._claimed[claim.job_id]
        self.gate.ended(claim.job_id)
        self.unique.release(claim.job_id)
        for follow_up in children(self.records[status][filed_as]):
            if not self._in_use(follow_up.job_id):  # written by the daemon's own user
                self._unread.append(_Submission(follow_up.job_id, follow_up.payload,
                                                os.geteuid(), os.getegid()))  # fmt: skip
        return filed_as

    def prefetch(self, on: bool) -> None:
        pass  # a claim here costs no trip: take_ready claims when asked

    def renew(self, claims: Sequence[Claim], now: float) -> list[Claim]:
        self._reachable()
        lost = []
        for claim in claims:
            held = self._claimed.get(claim.job_id)
            if held is None or held.claim.token != claim.token or now >= held.expires_at:
                lost.append(claim)
            else:
                held.expires_at = now + self.lease
        return lost

    def _reachable(self) -> None:
        if self.down:
            raise Unavailable(
                errno.ECONNREFUSED, "cannot reach the memory engine (a test's outage)"
            )

    def expired(self, now: float) -> list[Recovered]:
        self._reachable()
        lapsed = [held for held in self._claimed.values() if now >= held.expires_at]
        return [self._reclaim(held, now) for held in lapsed]

    def oldest_ready(self, now: float) -> float | None:
        self._reachable()
        return min((_ready_since(job) for job, _source in self._ready.values()), default=None)

    def publish_stats(self, snapshot: bytes, keep_for: float) -> None:
        self._reachable()
        self.published.append((snapshot, keep_for))

    def counts(self) -> Counts:
        again = sum(waiting.again for waiting in self._waiting.values())
        return Counts(len(self._ready), len(self._waiting), again, bool(self._unread),
                      self.held_back(self.now))  # fmt: skip

    # -- periodic jobs (as spoold/backends/files/firings.py) --

    def schedule_marks(self) -> dict[str, Mark]:
        return dict(self.marks)

    def fire(self, firing: Firing) -> str:
        mark = self.marks.get(firing.schedule)
        if mark is not None and mark.considered >= firing.at:
            return ALREADY
        if self._in_use(firing.job_id):
            self._move(firing.schedule, firing.at)
            return ALREADY
        if firing.exclusive and mark is not None and mark.last_job and self._live(mark.last_job):
            self._move(firing.schedule, firing.at)
            return OVERLAP
        # Written by the daemon itself, as the file spool's firing is: the daemon's user.
        submission = _Submission(firing.job_id, bytes(firing.payload), os.geteuid(), os.getegid())
        self._unread.append(submission)
        self.marks[firing.schedule] = Mark(firing.at, firing.job_id, firing.at)
        return FIRED

    def skip_firings(self, schedule: str, upto: float) -> None:
        self._move(schedule, upto)

    def _move(self, schedule: str, upto: float) -> None:
        """The mark forward to ``upto`` (never back), keeping its last job."""
        mark = self.marks.get(schedule)
        if mark is not None and mark.considered >= upto:
            return
        last_job, last_fired = (mark.last_job, mark.last_fired) if mark else (None, None)
        self.marks[schedule] = Mark(upto, last_job, last_fired)

    # -- claims and moves --

    def _claim(self, job_id: str, item: Job | Refused, source: str, now: float) -> _Held:
        expires_at = now + self.lease
        claim = Claim(job_id, self.owner, next(self._tokens), expires_at)
        held = _Held(claim, item, source, claimed_at=now, expires_at=expires_at)
        self._claimed[job_id] = held
        return held

    def _reclaim(self, held: _Held, now: float) -> Recovered:
        """Claim a held job anew for this daemon; the old claim is stale from now on."""
        item = held.item
        fresh = self._claim(held.claim.job_id, item, held.source, now)
        verdict = Accepted(item) if isinstance(item, Job) else item
        return Recovered(fresh.claim, verdict, claimed_at=held.claimed_at, source=held.source)

    def _check(self, claim: Claim, job: Job | None = None) -> _Held:
        """The job's hold if ``claim`` is its current claim (StaleClaim if not), room permitting."""
        held = self._claimed.get(claim.job_id)
        if held is None or held.claim.token != claim.token:
            raise StaleClaim(
                f"job {claim.job_id}: claim {claim.token} no longer holds it "
                "(it was filed or claimed again since)"
            )
        if job is not None and job.id != claim.job_id:
            raise ValueError(f"claim {claim.token} is for job {claim.job_id}, not {job.id}")
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return held

    def _wait(self, job: Job, source: str, due_at: float, *, again: bool) -> None:
        del self._claimed[job.id]
        self.gate.ended(job.id)
        self._waiting[job.id] = _Waiting(job, source, due_at, again)
        heapq.heappush(self._waiting_heap, (due_at, next(self._order), job.id))

    def _make_ready(self, job: Job, source: str) -> None:
        self._ready[job.id] = (job, source)
        key = (-job.priority, job.enqueued_at, next(self._order), job.id)
        heapq.heappush(self._ready_heap, key)


def as_engine(engine: MemoryEngine) -> Engine:
    """``engine`` as the core sees it (mypy checks here that every member of Engine is there)."""
    return engine


def _ready_since(job: Job) -> float:
    """When a ready job became due: submitted, its run_at, or its retry's time."""
    return max(job.enqueued_at, job.run_at or 0.0, job.due_at or 0.0)
