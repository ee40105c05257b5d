"""One backend suite, run against every backend (huey's ``StorageTests`` habit).

Each test drives an ``Engine`` (``spoold/core/backend.py``) the way the core
does, through a small adapter (``Backend``) that knows how to hand a job in
and read a record back for its backend:

* ``files``: the real file spool (``spoold.backends.open_engine``) on a
  temporary folder, jobs submitted by the real client;
* ``memory``: ``tests/memory_backend.py``'s ``MemoryEngine``, jobs handed in
  as the same JSON document the client writes.

The ``finite_lease_backend`` fixture is the same backends built with a
finite lease where they have one (the memory engine: 30 s; the file spool's
claims never lapse). Nothing is mocked.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest
from harness import Spool, write_config
from memory_backend import MemoryEngine

from spoold.backends import open_engine
from spoold.client import _encode, _job_document, _start_time, run_background_job
from spoold.config import load_config
from spoold.core.backend import (
    Accepted,
    Arrival,
    Counts,
    Engine,
    Recovered,
    Refusal,
    Refused,
    StaleClaim,
    Taken,
)
from spoold.core.judge import Judge
from spoold.identity import JobIdentity
from spoold.ids import new_job_id
from spoold.job import Job, rejection_record
from spoold.live import Live

BACKENDS = ["files", "memory"]
FINITE_LEASE = 30.0  # the memory engine's lease in ``finite_lease_backend``
NOT_ALLOWED = "testjobs.NotOnTheList"  # a well-formed class path the allowlist lacks


class Backend(Protocol):
    """What the suite needs of a backend besides its ``Engine``."""

    name: str
    engine: Engine
    now: float  # the backend's time when the test began; the engine was opened at it
    owner: str  # who its claims say holds them

    def submit(
        self,
        class_path: str = "testjobs.Noop",
        method: str = "run",
        priority: int = 0,
        delay: float | None = None,
    ) -> str:
        """Hand a job in as the client does; its id."""
        ...

    def submit_raw(self, payload: bytes) -> str:
        """Hand in bytes as they are (the client only writes JSON); their id."""
        ...

    def record(self, job_id: str) -> dict[str, Any] | None:
        """The record filed under ``job_id``, done or failed; None if there is none."""
        ...

    def fail_filings(self) -> None:
        """Make every filing fail with an OSError until ``mend_filings``."""
        ...

    def mend_filings(self) -> None: ...


class FileBackend:
    """The file spool on a temporary folder, as the daemon opens it."""

    name = "files"

    def __init__(self, tmp_path: Path) -> None:
        self.spool = Spool(tmp_path / "spool").create()
        live = Live(load_config(write_config(tmp_path / "config.toml", self.spool)), JobIdentity())
        self.engine = open_engine(live)
        self.now = self.engine.clock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"  # this process is the daemon
        assert self.engine.open(Judge(live), self.now) == []
        self.engine.watch(self.now)

    def submit(
        self,
        class_path: str = "testjobs.Noop",
        method: str = "run",
        priority: int = 0,
        delay: float | None = None,
    ) -> str:
        return run_background_job(class_path, method, spool=self.spool.root, priority=priority,
                                  delay=delay, durable=False)  # fmt: skip

    def submit_raw(self, payload: bytes) -> str:
        job_id = new_job_id()
        self.spool.drop_renamed(f"{job_id}.json", payload)
        return job_id

    def record(self, job_id: str) -> dict[str, Any] | None:
        for state in ("done", "failed"):
            record = self.spool.record(job_id, state)
            if record is not None:
                return record
        return None

    def fail_filings(self) -> None:
        # The way tests/test_held_outcomes.py fails a filing for real: its destination
        # folder is gone (ENOENT, where a full disk gives ENOSPC at the same step).
        for state in ("done", "failed"):
            os.rename(self.spool.folder(state), self.spool.root / f"{state}.aside")

    def mend_filings(self) -> None:
        for state in ("done", "failed"):
            os.rename(self.spool.root / f"{state}.aside", self.spool.folder(state))

    def close(self) -> None:
        self.engine.close()


class MemoryBackend:
    """``MemoryEngine``, judged by the same config's allowlist as the file spool."""

    name = "memory"

    def __init__(self, tmp_path: Path, *, lease: float = math.inf) -> None:
        spool = Spool(tmp_path / "unused-spool")  # the config names one; nothing is written
        live = Live(load_config(write_config(tmp_path / "config.toml", spool)), JobIdentity())
        self.memory = MemoryEngine(lease=lease, clock_start=time.time())
        self.engine: Engine = self.memory
        self.now = self.engine.clock()
        self.owner = self.memory.owner
        assert self.engine.open(Judge(live), self.now) == []
        self.engine.watch(self.now)
        assert self.engine.descriptors() == ()

    def submit(
        self,
        class_path: str = "testjobs.Noop",
        method: str = "run",
        priority: int = 0,
        delay: float | None = None,
    ) -> str:
        now = time.time()  # the client's clock, as run_background_job reads it
        document = _job_document(class_path, method, None, now=now)
        if priority:
            document["priority"] = priority
        run_at = _start_time(now, delay, None)
        if run_at is not None:
            document["run_at"] = run_at
        return self.memory.submit(_encode(document))

    def submit_raw(self, payload: bytes) -> str:
        return self.memory.submit(payload)

    def record(self, job_id: str) -> dict[str, Any] | None:
        return self.memory.record(job_id)

    def fail_filings(self) -> None:
        self.memory.full = True

    def mend_filings(self) -> None:
        self.memory.full = False

    def close(self) -> None:
        self.engine.close()


def _make(name: str, tmp_path: Path, *, finite_lease: bool) -> Iterator[Backend]:
    made: FileBackend | MemoryBackend
    if name == "files":
        made = FileBackend(tmp_path)
    else:
        made = MemoryBackend(tmp_path, lease=FINITE_LEASE if finite_lease else math.inf)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend, opened (and watching) at ``backend.now``; closed at the end."""
    yield from _make(request.param, tmp_path, finite_lease=False)


@pytest.fixture(params=BACKENDS)
def finite_lease_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend with a finite lease, where it has one (``engine.lease`` says)."""
    yield from _make(request.param, tmp_path, finite_lease=True)


# -- helpers: the core's moves, in the order it makes them --


def arrive(backend: Backend, now: float | None = None) -> dict[str, Arrival]:
    """Receive at ``now`` (default: the test's start); the arrivals by the id they came under."""
    arrivals = backend.engine.receive(backend.now if now is None else now)
    return {_arrival_id(arrival): arrival for arrival in arrivals}


def _arrival_id(arrival: Arrival) -> str:
    verdict = arrival.verdict
    return verdict.job.id if isinstance(verdict, Accepted) else verdict.job_id


def accept_all(backend: Backend) -> list[str]:
    """Receive and make every (accepted) arrival ready; their ids."""
    arrivals = arrive(backend)
    for arrival in arrivals.values():
        assert isinstance(arrival.verdict, Accepted), arrival
        backend.engine.accept(arrival)
    return list(arrivals)


def take(backend: Backend, now: float | None = None) -> Taken:
    taken = backend.engine.take_ready(backend.now if now is None else now)
    assert isinstance(taken, Taken), taken
    return taken


def submitted_and_taken(backend: Backend) -> Taken:
    """Submit one Noop job, receive it, accept it and take it."""
    job_id = backend.submit()
    assert accept_all(backend) == [job_id]
    taken = take(backend)
    assert taken.job.id == job_id
    return taken


def done_record(job: Job, now: float) -> dict[str, Any]:
    """A done record as the core builds it (``Filer.succeeded``)."""
    return job.record("done", now, result=None)


def take_order(backend: Backend) -> list[str]:
    order = []
    while (taken := backend.engine.take_ready(backend.now)) is not None:
        assert isinstance(taken, Taken), taken
        order.append(taken.job.id)
    return order


# -- receiving --


def test_receive_judges_each_submission_and_hands_back_an_arrival(backend: Backend) -> None:
    """An allowed job comes back Accepted; a class off the allowlist and bytes that are not
    JSON come back Refused with the reason; each once, received at the turn's time."""
    good = backend.submit()
    off_list = backend.submit(NOT_ALLOWED)
    garbage = backend.submit_raw(b"this is not JSON")
    arrivals = arrive(backend)
    assert sorted(arrivals) == sorted([good, off_list, garbage])
    assert all(a.received_at == backend.now for a in arrivals.values())

    accepted = arrivals[good].verdict
    assert isinstance(accepted, Accepted)
    assert (accepted.job.id, accepted.job.class_path, accepted.job.method) == (
        good, "testjobs.Noop", "run",
    )  # fmt: skip
    refused = arrivals[off_list].verdict
    assert isinstance(refused, Refused)
    assert refused.reason == f'class "{NOT_ALLOWED}" is not on the allowlist'
    assert json.loads(refused.raw)["class"] == NOT_ALLOWED
    unparsable = arrivals[garbage].verdict
    assert isinstance(unparsable, Refused)
    assert unparsable.reason.startswith("not valid JSON")
    assert (unparsable.raw, unparsable.incomplete) == (b"this is not JSON", False)

    assert backend.engine.receive(backend.now) == [], "an arrival was handed back twice"


def test_an_accepted_arrival_is_taken_with_a_claim_on_it(backend: Backend) -> None:
    """accept makes it ready; take_ready claims it for this backend's owner, with a token,
    and hands over the job as judged and where it waited."""
    job_id = backend.submit()
    arrival = arrive(backend)[job_id]
    assert isinstance(arrival.verdict, Accepted)
    backend.engine.accept(arrival)
    taken = take(backend)
    assert taken.job == arrival.verdict.job
    assert taken.source == arrival.ref
    claim = taken.claim
    assert (claim.job_id, claim.owner) == (job_id, backend.owner)
    assert isinstance(claim.token, int) and claim.token > 0
    assert claim.expires_at == backend.now + backend.engine.lease
    assert backend.engine.take_ready(backend.now) is None, "one ready job was taken twice"


def test_take_ready_hands_out_the_highest_priority_first_then_the_oldest(
    backend: Backend,
) -> None:
    """Priority wins over age; among equals the oldest ``enqueued_at`` goes first, even when
    it was submitted last."""
    first = backend.submit()
    urgent = backend.submit(priority=5)
    second = backend.submit()
    old = {"class": "testjobs.Noop", "method": "run", "params": [],
           "enqueued_at": time.time() - 100}  # fmt: skip
    oldest = backend.submit_raw(json.dumps(old).encode())
    lowly = backend.submit(priority=-1)
    assert sorted(accept_all(backend)) == sorted([first, urgent, second, oldest, lowly])
    assert take_order(backend) == [urgent, oldest, first, second, lowly]


def test_an_empty_backend_has_nothing_to_hand_out(backend: Backend) -> None:
    """No arrivals, nothing ready, nothing lapsed, every count zero."""
    engine = backend.engine
    assert engine.receive(backend.now) == []
    assert engine.take_ready(backend.now) is None
    assert engine.expired(backend.now) == []
    assert engine.counts() == Counts(ready=0, waiting=0, again=0, busy=False)


# -- filing exactly once --


def test_finish_files_the_record_once_and_refuses_a_second_finish(backend: Backend) -> None:
    """The record is filed under the job's id as given; the same claim presented again is
    stale (StaleClaim) and the record stays as it was."""
    taken = submitted_and_taken(backend)
    record = done_record(taken.job, backend.now)
    assert backend.engine.finish(taken.claim, "done", record) == taken.job.id
    assert backend.record(taken.job.id) == record

    with pytest.raises(StaleClaim):
        backend.engine.finish(taken.claim, "done", {**record, "result": "second"})
    with pytest.raises(StaleClaim):
        backend.engine.finish(taken.claim, "failed", {**record, "status": "failed"})
    assert backend.record(taken.job.id) == record
    assert backend.engine.counts() == Counts(ready=0, waiting=0, again=0, busy=False)


def test_a_job_put_back_and_taken_again_has_a_larger_token_and_the_old_claim_is_stale(
    backend: Backend,
) -> None:
    """After unclaim and a second take, finish, schedule and unclaim by the first claim are
    refused and change nothing; the second claim files the job."""
    engine, now = backend.engine, backend.now
    first = submitted_and_taken(backend)
    engine.unclaim(first.claim, first.job, now)
    assert engine.receive(now) == []
    second = take(backend)
    assert second.job.id == first.job.id
    assert second.claim.token > first.claim.token

    old = first.claim
    with pytest.raises(StaleClaim):
        engine.finish(old, "done", done_record(first.job, now))
    with pytest.raises(StaleClaim):
        engine.schedule(old, replace(first.job, due_at=now + 60), again=True)
    with pytest.raises(StaleClaim):
        engine.unclaim(old, first.job, now)
    assert engine.counts() == Counts(ready=0, waiting=0, again=0, busy=False)
    assert backend.record(first.job.id) is None

    record = done_record(second.job, now)
    assert engine.finish(second.claim, "done", record) == first.job.id
    assert backend.record(first.job.id) == record


# -- waiting for a time --


def test_a_scheduled_job_is_not_ready_before_its_due_time_and_is_ready_from_it(
    backend: Backend,
) -> None:
    """A job with a run_at is claimed on arrival and scheduled until it: a turn a second
    before hands out nothing; a turn at the due time hands it out, due time and all."""
    engine, now = backend.engine, backend.now
    job_id = backend.submit(delay=60)
    arrival = arrive(backend)[job_id]
    assert isinstance(arrival.verdict, Accepted)
    job = arrival.verdict.job
    assert job.run_at is not None
    due = job.run_at
    claimed = engine.claim_arrival(arrival, now)
    assert isinstance(claimed, Taken) and claimed.job == job
    engine.schedule(claimed.claim, replace(job, due_at=due), again=False)
    assert engine.counts() == Counts(ready=0, waiting=1, again=0, busy=False)
    wakeup = engine.next_wakeup(now)
    assert wakeup is not None and wakeup <= due

    assert engine.receive(due - 1) == []
    assert engine.take_ready(due - 1) is None
    assert engine.counts() == Counts(ready=0, waiting=1, again=0, busy=False)

    assert engine.receive(due) == []
    assert engine.counts() == Counts(ready=1, waiting=0, again=0, busy=False)
    taken = take(backend, due)
    assert (taken.job.id, taken.job.due_at, taken.job.params) == (job_id, due, [])
    assert taken.claim.token > claimed.claim.token


def test_a_job_scheduled_again_is_counted_as_again_until_it_is_due(backend: Backend) -> None:
    """``again`` counts the retries, reruns and put-backs still waiting (burst mode waits for
    them), not a job waiting for its own run_at."""
    engine, now = backend.engine, backend.now
    retried, put_back, own_time = (backend.submit() for _ in range(3))
    accept_all(backend)
    by_id = {t.job.id: t for t in (take(backend) for _ in range(3))}
    engine.schedule(by_id[retried].claim, replace(by_id[retried].job, due_at=now + 10), again=True)
    engine.unclaim(by_id[put_back].claim, by_id[put_back].job, now + 20)
    engine.schedule(by_id[own_time].claim, replace(by_id[own_time].job, due_at=now + 30),
                    again=False)  # fmt: skip
    assert engine.counts() == Counts(ready=0, waiting=3, again=2, busy=False)
    engine.receive(now + 10)
    assert engine.counts() == Counts(ready=1, waiting=2, again=1, busy=False)
    engine.receive(now + 20)
    assert engine.counts() == Counts(ready=2, waiting=1, again=0, busy=False)
    engine.receive(now + 30)
    assert engine.counts() == Counts(ready=3, waiting=0, again=0, busy=False)


def test_unclaim_puts_the_job_back_unchanged(backend: Backend) -> None:
    """A job that never started goes back as it was: the same params and fields, no history
    added, no due time written into it; it waits until the time given."""
    engine, now = backend.engine, backend.now
    first = submitted_and_taken(backend)
    engine.unclaim(first.claim, first.job, now + 5)
    assert engine.counts() == Counts(ready=0, waiting=1, again=1, busy=False)
    engine.receive(now + 4)
    assert engine.take_ready(now + 4) is None
    engine.receive(now + 5)
    again = take(backend, now + 5)
    assert again.job == first.job
    assert (again.job.history, again.job.due_at) == ((), None)


# -- rejections --


def test_a_refused_arrival_is_claimed_as_a_refusal_and_filed_as_rejected(
    backend: Backend,
) -> None:
    """claim_arrival of a Refused arrival gives a Refusal; finishing it with the record the
    core builds (``rejection_record``) files that record, once, in failed."""
    off_list = backend.submit(NOT_ALLOWED)
    garbage = backend.submit_raw(b"this is not JSON")
    arrivals = arrive(backend)
    for job_id in (off_list, garbage):
        arrival = arrivals[job_id]
        assert isinstance(arrival.verdict, Refused)
        refusal = backend.engine.claim_arrival(arrival, backend.now)
        assert isinstance(refusal, Refusal)
        assert (refusal.claim.job_id, refusal.claim.owner) == (job_id, backend.owner)
        assert refusal.refused == arrival.verdict
        assert (refusal.source, refusal.received_at) == (arrival.ref, backend.now)
        record = rejection_record(job_id, refusal.refused.reason, refusal.refused.raw,
                                  file_name=refusal.source, received_at=backend.now)  # fmt: skip
        assert backend.engine.finish(refusal.claim, "failed", record) == job_id
        assert backend.record(job_id) == record
        assert record["status"] == "rejected"
        with pytest.raises(StaleClaim):
            backend.engine.finish(refusal.claim, "failed", record)
    off_record = backend.record(off_list)
    assert off_record is not None and off_record["class"] == NOT_ALLOWED
    assert backend.engine.receive(backend.now) == []


# -- counts --


def test_counts_follow_the_jobs_from_ready_to_waiting_to_filed(backend: Backend) -> None:
    """Ready and waiting counts move with each accept, take, schedule and finish."""
    engine, now = backend.engine, backend.now
    backend.submit()
    backend.submit()
    later = backend.submit(delay=60)
    arrivals = arrive(backend)
    for job_id, arrival in arrivals.items():
        if job_id != later:
            engine.accept(arrival)
    assert engine.counts() == Counts(ready=2, waiting=0, again=0, busy=False)
    deferred = engine.claim_arrival(arrivals[later], now)
    assert isinstance(deferred, Taken) and deferred.job.run_at is not None
    engine.schedule(deferred.claim, replace(deferred.job, due_at=deferred.job.run_at),
                    again=False)  # fmt: skip
    assert engine.counts() == Counts(ready=2, waiting=1, again=0, busy=False)
    taken = take(backend)
    assert engine.counts() == Counts(ready=1, waiting=1, again=0, busy=False)
    engine.finish(taken.claim, "done", done_record(taken.job, now))
    assert engine.counts() == Counts(ready=1, waiting=1, again=0, busy=False)
    take(backend)
    assert engine.counts() == Counts(ready=0, waiting=1, again=0, busy=False)


# -- leases --


def test_a_finite_lease_is_renewed_while_current_and_a_lapsed_claim_is_claimed_anew(
    finite_lease_backend: Backend,
) -> None:
    """For a backend whose claims can lapse: renew extends the current claim; once it lapses,
    expired() claims the job anew (a larger token, this owner, the old claim's claim time)
    and the old claim is stale: renew reports it lost and finish refuses it."""
    backend = finite_lease_backend
    engine, now, lease = backend.engine, backend.now, backend.engine.lease
    if math.isinf(lease):
        pytest.skip(f"{backend.name}: claims never lapse (test_claims_without_a_lease_...)")
    taken = submitted_and_taken(backend)
    claim = taken.claim
    assert claim.expires_at == now + lease

    assert engine.renew([claim], now + lease / 2) == []
    assert engine.expired(now + lease) == [], "a renewed claim lapsed at its first expiry"
    renewed_until = now + lease / 2 + lease
    assert engine.expired(renewed_until - 0.001) == []
    recovered = engine.expired(renewed_until)
    assert len(recovered) == 1
    again = recovered[0]
    assert isinstance(again, Recovered)
    assert again.claim.job_id == taken.job.id
    assert again.claim.owner == backend.owner
    assert again.claim.token > claim.token
    assert again.claim.expires_at == renewed_until + lease
    assert again.verdict == Accepted(taken.job)
    assert (again.claimed_at, again.source) == (now, taken.source)
    assert engine.expired(renewed_until) == [], "a lapsed claim was handed out twice"

    assert engine.renew([claim, again.claim], renewed_until) == [claim]
    with pytest.raises(StaleClaim):
        engine.finish(claim, "done", done_record(taken.job, renewed_until))
    assert backend.record(taken.job.id) is None
    record = done_record(taken.job, renewed_until)
    assert engine.finish(again.claim, "done", record) == taken.job.id
    assert backend.record(taken.job.id) == record
    assert engine.renew([again.claim], renewed_until) == [again.claim]


def test_claims_without_a_lease_never_lapse(backend: Backend) -> None:
    """For a backend whose claims never lapse (the file spool): expired() stays empty and
    renew loses nothing, even a million seconds on; the claim still files its job."""
    engine, now = backend.engine, backend.now
    if not math.isinf(engine.lease):
        pytest.skip(f"{backend.name}: its claims lapse (test_a_finite_lease_...)")
    taken = submitted_and_taken(backend)
    later = now + 10**6
    assert taken.claim.expires_at == math.inf
    assert engine.renew([taken.claim], later) == []
    assert engine.expired(later) == []
    assert engine.finish(taken.claim, "done", done_record(taken.job, later)) == taken.job.id


# -- resource trouble --


def test_a_filing_that_hits_a_resource_error_leaves_the_claim_valid(backend: Backend) -> None:
    """finish raises the OSError and files nothing; once the trouble is over the same claim
    files the job, once.

    The memory engine's disk is full (ENOSPC). The file spool's filing fails for real the
    way tests/test_held_outcomes.py makes it fail (done/ and failed/ moved aside: ENOENT at
    the step where a full disk gives ENOSPC); a real full filesystem is
    tests/test_resources.py's.
    """
    engine, now = backend.engine, backend.now
    taken = submitted_and_taken(backend)
    record = done_record(taken.job, now)
    backend.fail_filings()
    try:
        with pytest.raises(OSError) as raised:
            engine.finish(taken.claim, "done", record)
        assert not isinstance(raised.value, StaleClaim)
        if backend.name == "memory":
            assert raised.value.errno == errno.ENOSPC
    finally:
        backend.mend_filings()
    assert backend.record(taken.job.id) is None
    assert engine.finish(taken.claim, "done", record) == taken.job.id
    assert backend.record(taken.job.id) == record
    with pytest.raises(StaleClaim):
        engine.finish(taken.claim, "done", record)


# -- the memory engine's own test helpers --


def _memory(tmp_path: Path, lease: float = math.inf) -> tuple[MemoryEngine, Judge]:
    spool = Spool(tmp_path / "unused-spool")
    live = Live(load_config(write_config(tmp_path / "config.toml", spool)), JobIdentity())
    return MemoryEngine(lease=lease, clock_start=1_000_000.0), Judge(live)


def test_the_memory_engine_recovers_what_a_crashed_daemon_held(tmp_path: Path) -> None:
    """After crash(), open() hands back every claimed job (and refused submission) claimed
    anew, with the old claim time; the old claims are stale; waiting jobs still wait."""
    memory, judge = _memory(tmp_path)
    now = memory.clock()
    assert memory.open(judge, now) == []
    document = {"class": "testjobs.Noop", "method": "run", "params": [], "enqueued_at": now}
    running, waiting = (memory.submit(json.dumps(document).encode()) for _ in range(2))
    refused = memory.submit(b"[]")
    arrivals = {a.ref: a for a in memory.receive(now)}
    for job_id in (running, waiting):
        memory.accept(arrivals[job_id])
    refusal = memory.claim_arrival(arrivals[refused], now)
    assert isinstance(refusal, Refusal)
    memory.advance(5)
    first = memory.take_ready(memory.now)
    second = memory.take_ready(memory.now)
    assert isinstance(first, Taken) and isinstance(second, Taken)
    assert {first.job.id, second.job.id} == {running, waiting}
    memory.schedule(second.claim, replace(second.job, due_at=now + 100), again=True)
    assert memory.counts().again == 1

    memory.crash()
    recovered = {r.claim.job_id: r for r in memory.open(judge, memory.advance(5))}
    assert sorted(recovered) == sorted([first.job.id, refused])
    assert recovered[first.job.id].verdict == Accepted(first.job)
    assert recovered[first.job.id].claimed_at == now + 5
    assert recovered[refused].verdict == refusal.refused
    assert recovered[refused].claimed_at == now
    assert recovered[first.job.id].claim.token > max(first.claim.token, refusal.claim.token)
    with pytest.raises(StaleClaim):
        memory.finish(first.claim, "done", done_record(first.job, now))
    assert memory.waiting_ids() == [second.job.id]
    assert memory.counts() == Counts(ready=0, waiting=1, again=0, busy=False)
    assert memory.claimed_ids() == sorted([first.job.id, refused])


def test_the_memory_engine_never_replaces_a_record(tmp_path: Path) -> None:
    """A record whose id is filed already goes under a fresh id, as on the file spool; and
    while the disk is full no move changes anything."""
    memory, judge = _memory(tmp_path)
    now = memory.clock()
    memory.open(judge, now)
    job_id = memory.submit(b'{"class": "testjobs.Noop", "method": "run"}')
    (arrival,) = memory.receive(now)
    memory.accept(arrival)
    taken = memory.take_ready(now)
    assert isinstance(taken, Taken)
    memory.records["failed"][job_id] = {"id": job_id, "status": "failed"}
    memory.full = True
    for move in (
        lambda: memory.finish(taken.claim, "done", {}),
        lambda: memory.schedule(taken.claim, replace(taken.job, due_at=now), again=True),
        lambda: memory.unclaim(taken.claim, taken.job, now),
    ):
        with pytest.raises(OSError, match="No space left"):
            move()
        assert memory.claimed_ids() == [job_id] and memory.waiting_ids() == []
    memory.full = False
    filed_as = memory.finish(taken.claim, "done", {"status": "done"})
    assert filed_as != job_id
    assert memory.records["done"] == {filed_as: {"status": "done", "id": filed_as}}
    assert memory.record(job_id) == {"id": job_id, "status": "failed"}
