"""One backend suite, run against every backend (huey's ``StorageTests`` habit).

Each test drives an ``Engine`` (``spoold/core/backend.py``) the way the core
does, through a small adapter (``Backend``) that knows how to hand a job in,
read a record back and let time pass for its backend:

* ``files``: the real file spool (``spoold.backends.open_engine``) on a
  temporary folder, jobs submitted by the real client;
* ``memory``: ``tests/memory_backend.py``'s ``MemoryEngine``, jobs handed in
  as the same JSON document the client writes;
* ``redis``: the real ``RedisEngine`` (``spoold.backends.open_engine`` with
  ``[spool] backend = "redis"``) on a real redis-server of the test's own
  (the ``redis_server`` fixture: skipped where redis-server is missing,
  failed in CI), jobs submitted by the real client into its local
  ``incoming/``, so that each comes back from ``receive()`` as an arrival and
  ``accept()`` submits it to Redis; records are read from Redis. One
  redis-only test submits straight to Redis instead (no arrival).

Time. Files and memory are on the time the test passes in: the suite jumps
it forward (``backend.at(t)`` is ``t``) and compares the times they report
exactly. Redis ignores the ``now`` it is given: due times, lease deadlines
and claim times are the Redis server's clock (``TIME`` inside its
functions). So on Redis ``backend.at(t)`` waits real time until the
engine's clock has passed ``t``, delays are short (``backend.delay``,
0.3 s), a lapse the test waits for is polled for with a deadline, and the
times it reports are compared within ``backend.tolerance`` (0.5 s; 0 for
files and memory). Redis releases a due job in the claim that takes it,
not in ``receive()`` (``backend.releases_on_receive``).

The ``finite_lease_backend`` fixture is the same backends built with a
finite lease where they have one (the memory engine: 30 s; Redis: 1 s, so
that a lapse is waited for; the file spool's claims never lapse). Nothing is
mocked.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest
from harness import TESTJOBS_ALLOW, Spool, wait_for, write_config
from memory_backend import MemoryEngine

from spoold import followups
from spoold.backends import open_engine
from spoold.client import (
    _encode,
    _job_document,
    _start_time,
    job_payload,
    run_background_job,
)
from spoold.config import config_from_mapping, load_config
from spoold.core.backend import (
    ALREADY,
    FIRED,
    OVERLAP,
    Accepted,
    Arrival,
    Counts,
    Engine,
    Firing,
    Mark,
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
from spoold.limits import parse_limit
from spoold.live import Live
from spoold.schedules import firing_id

if TYPE_CHECKING:
    from redis_server import RedisServer

    from spoold.backends.redis.engine import RedisEngine

T = TypeVar("T")

BACKENDS = ["files", "memory", "redis"]
FINITE_LEASE = 30.0  # the memory engine's lease in ``finite_lease_backend``
NOT_ALLOWED = "testjobs.NotOnTheList"  # a well-formed class path the allowlist lacks

STILL_DELAY = 60.0  # files and memory: a delay the test jumps over
REDIS_NAME = "suite"  # the spool's name in Redis: its keys are "spoold:{suite}:..."
REDIS_LEASE = 30.0  # Redis's lease in ``backend`` ([spool] lease's default)
REDIS_SHORT_LEASE = 1.0  # Redis's lease in ``finite_lease_backend``: its lapse is waited for
REDIS_DELAY = 0.3  # seconds of real time a Redis test waits for a due time
REDIS_TOLERANCE = 0.5  # how far a time Redis reports may be from the one the test expects
REDIS_STEP = 0.002  # Redis keeps times in whole milliseconds (due rounded, now floored)
REDIS_EARLY = 0.05  # a check "before t" on Redis runs at least this long before t
REDIS_POLL_TIMEOUT = 5.0  # seconds a Redis test polls for what its server's clock brings


class Backend(Protocol):
    """What the suite needs of a backend besides its ``Engine``."""

    name: str
    engine: Engine
    now: float  # the backend's time when the test began; the engine was opened at it
    owner: str  # who its claims say holds them
    delay: float  # a delay a test waits out on this backend's clock
    tolerance: float  # how far a time the backend reports may be from the expected one
    releases_on_receive: bool  # receive() makes due jobs ready (Redis: the next claim does)

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

    def counts(self) -> Counts:
        """``engine.counts()`` as of now."""
        ...

    def source(self, arrival: Arrival) -> str:
        """Where an accepted arrival waits once accepted (a Taken's ``source``)."""
        ...

    def current(self) -> float:
        """The backend's time as the test stands (files, memory: ``now``; it moves only
        when the test passes a later one)."""
        ...

    def at(self, when: float) -> float:
        """A time at or after ``when`` on the backend's clock, to pass as ``now``
        (files, memory: ``when``; Redis: waits for it)."""
        ...

    def before(self, when: float, by: float = 1.0) -> float:
        """A time before ``when``, to pass as ``now`` (files, memory: ``when - by``;
        Redis: its clock now, which must still be before ``when``)."""
        ...

    def first(self, probe: Callable[[float], T], when: float) -> tuple[T, float]:
        """``probe(now)`` at ``when`` and the ``now`` it was given (Redis: from ``when`` on,
        polled until it returns something truthy)."""
        ...


class _StillTime:
    """Time for a backend that is on the time the test passes in: it jumps, never waits."""

    now: float
    engine: Engine
    delay = STILL_DELAY
    tolerance = 0.0
    releases_on_receive = True

    def counts(self) -> Counts:
        return self.engine.counts()

    def source(self, arrival: Arrival) -> str:
        return arrival.ref

    def current(self) -> float:
        return self.now

    def at(self, when: float) -> float:
        return when

    def before(self, when: float, by: float = 1.0) -> float:
        return when - by

    def first(self, probe: Callable[[float], T], when: float) -> tuple[T, float]:
        return probe(when), when


class _DropsFiles:
    """Jobs handed in as files in the local spool's incoming/, by the real client."""

    spool: Spool

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


class FileBackend(_DropsFiles, _StillTime):
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


class MemoryBackend(_StillTime):
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


class RedisBackend(_DropsFiles):
    """``RedisEngine`` on the test's own redis-server, as the daemon opens it.

    Jobs are handed in as files in its local ``[spool] dir`` (the real client with
    ``spool=``), so each is an arrival, as on the file spool. Its time is the server's:
    ``at`` waits for it, and what it reports is compared within ``tolerance``.
    """

    name = "redis"
    delay = REDIS_DELAY
    tolerance = REDIS_TOLERANCE
    releases_on_receive = False  # spoold_claim releases due jobs, in the claim that takes one

    def __init__(
        self, tmp_path: Path, server: RedisServer, *, lease: float, **spool: float
    ) -> None:
        import redis

        from spoold.backends.redis.connection import prefix

        self.spool = Spool(tmp_path / "spool").create()
        settings = {"backend": "redis", "url": server.url, "name": REDIS_NAME, "lease": lease,
                    **spool}  # fmt: skip
        path = write_config(tmp_path / "config.toml", self.spool, {"spool": settings})
        self.config = load_config(path)
        live = Live(self.config, JobIdentity())
        self.key = prefix(self.config.spool)
        self.url = server.url
        self.redis = redis.Redis.from_url(server.url)  # the test's own: records, CONFIG SET
        self.redis_engine: RedisEngine = open_engine(live)  # type: ignore[assignment]
        self.engine: Engine = self.redis_engine
        assert self.engine.open(Judge(live), self.engine.clock()) == []
        self.now = self.engine.clock()  # the server's, now that open() has read its TIME
        self.owner = self.redis_engine.owner
        self.engine.watch(self.now)

    def record(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(f"{self.key}job:{job_id}", "record")
        return None if raw is None else json.loads(raw)

    def fail_filings(self) -> None:
        # Redis refuses writes for real: past maxmemory with noeviction it answers OOM,
        # which the engine raises as RedisUnavailable (an OSError, ENOSPC).
        self.redis.config_set("maxmemory-policy", "noeviction")
        self.redis.config_set("maxmemory", 1)

    def mend_filings(self) -> None:
        self.redis.config_set("maxmemory", 0)

    def counts(self) -> Counts:
        # The engine caches its ZCARDs for a second (the status line asks every turn);
        # the suite's counts must be of now, so the cache is made due (the adapter only).
        self.redis_engine.next_count = 0.0
        return self.engine.counts()

    def source(self, arrival: Arrival) -> str:
        return _arrival_id(arrival)  # accepted, it waits in Redis as job:<id>; the file is gone

    def current(self) -> float:
        return self.engine.clock()

    def at(self, when: float) -> float:
        # Past ``when`` by a step: Redis rounds a due time to the millisecond and floors
        # its own clock. The engine's clock trails the server's by the reply's transit.
        target = when + REDIS_STEP
        while (now := self.engine.clock()) < target:
            time.sleep(target - now)
        return now

    def before(self, when: float, by: float = 1.0) -> float:
        now = self.engine.clock()
        assert now < when - REDIS_EARLY, (
            f"this run was too slow to check a moment before {when:.3f}: it is {now:.3f}"
        )
        return now

    def first(self, probe: Callable[[float], T], when: float) -> tuple[T, float]:
        self.at(when)

        def attempt() -> tuple[T, float] | None:
            now = self.engine.clock()
            found = probe(now)
            return (found, now) if found else None

        found = wait_for(attempt, REDIS_POLL_TIMEOUT, f"nothing came from {probe} after {when}")
        assert found is not None  # wait_for returns only something truthy
        return found

    def close(self) -> None:
        self.engine.close()
        self.redis.close()


def _make(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, *, finite_lease: bool
) -> Iterator[Backend]:
    made: FileBackend | MemoryBackend | RedisBackend
    if name == "files":
        made = FileBackend(tmp_path)
    elif name == "memory":
        made = MemoryBackend(tmp_path, lease=FINITE_LEASE if finite_lease else math.inf)
    else:
        server = request.getfixturevalue("redis_server")  # only this param starts one
        lease = REDIS_SHORT_LEASE if finite_lease else REDIS_LEASE
        made = RedisBackend(tmp_path, server, lease=lease)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend, opened (and watching) at ``backend.now``; closed at the end."""
    yield from _make(request.param, request, tmp_path, finite_lease=False)


@pytest.fixture(params=BACKENDS)
def finite_lease_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend with a finite lease, where it has one (``engine.lease`` says)."""
    yield from _make(request.param, request, tmp_path, finite_lease=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisBackend]:
    """The Redis backend alone, for what only it does."""
    made = RedisBackend(tmp_path, request.getfixturevalue("redis_server"), lease=REDIS_LEASE)
    try:
        yield made
    finally:
        made.close()


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


def close_to(backend: Backend, actual: float, expected: float) -> bool:
    """``actual`` is ``expected`` (files, memory), or within the backend's tolerance (Redis)."""
    return actual == expected or abs(actual - expected) <= backend.tolerance


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
    assert taken.source == backend.source(arrival)
    assert not taken.fresh, "received at intake already: not to be said twice"
    claim = taken.claim
    assert (claim.job_id, claim.owner) == (job_id, backend.owner)
    assert isinstance(claim.token, int) and claim.token > 0
    assert close_to(backend, claim.expires_at, backend.now + backend.engine.lease), claim
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


def test_oldest_ready_is_when_the_longest_waiting_job_became_due(backend: Backend) -> None:
    """Not the first in line: an urgent job goes first, yet the oldest waits on; a job
    whose due time passed counts from its due time (on Redis, before any claim released
    it). Nothing ready: None. What the stats snapshot's oldest wait is made of."""
    engine = backend.engine
    assert engine.oldest_ready(backend.now) is None
    sent = time.time()
    old = {"class": "testjobs.Noop", "method": "run", "params": [],
           "enqueued_at": sent - 100}  # fmt: skip
    oldest = backend.submit_raw(json.dumps(old).encode())
    urgent = backend.submit(priority=5)
    assert sorted(accept_all(backend)) == sorted([oldest, urgent])
    since = engine.oldest_ready(backend.current())
    assert since is not None and abs(since - (sent - 100)) <= 1.0 + backend.tolerance, since
    assert take(backend).job.id == urgent
    assert engine.oldest_ready(backend.current()) == since
    assert take(backend).job.id == oldest
    assert engine.oldest_ready(backend.current()) is None

    later = backend.submit(delay=backend.delay)
    arrival = arrive(backend)[later]
    assert isinstance(arrival.verdict, Accepted)
    job = arrival.verdict.job
    assert job.run_at is not None
    claimed = engine.claim_arrival(arrival, backend.now)
    assert isinstance(claimed, Taken)
    engine.schedule(claimed.claim, replace(job, due_at=job.run_at), again=False)
    assert engine.oldest_ready(backend.before(job.run_at)) is None
    at = backend.at(job.run_at)
    engine.receive(at)
    since = engine.oldest_ready(at)
    assert since is not None and close_to(backend, since, job.run_at), (since, job.run_at)


def test_an_empty_backend_has_nothing_to_hand_out(backend: Backend) -> None:
    """No arrivals, nothing ready, nothing lapsed, every count zero."""
    engine = backend.engine
    assert engine.receive(backend.now) == []
    assert engine.take_ready(backend.now) is None
    assert engine.expired(backend.now) == []
    assert backend.counts() == Counts(ready=0, waiting=0, again=0, busy=False)


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
    assert backend.counts() == Counts(ready=0, waiting=0, again=0, busy=False)


def finish_prefetching(backend: Backend, taken: Taken) -> None:
    """File ``taken`` done as the core files a finished attempt's outcome (``prefetch``)."""
    backend.engine.prefetch(True)
    try:
        backend.engine.finish(taken.claim, "done", done_record(taken.job, backend.now))
    finally:
        backend.engine.prefetch(False)


def test_a_finish_while_prefetching_leaves_the_next_job_to_the_next_take(
    backend: Backend,
) -> None:
    """The next take hands out the best ready job, once, as without ``prefetch`` (the
    Redis engine has claimed it with the finish: below)."""
    first, second, third = backend.submit(), backend.submit(), backend.submit(priority=5)
    accept_all(backend)
    assert take(backend).job.id == third
    taken = take(backend)
    assert taken.job.id == first
    finish_prefetching(backend, taken)
    assert backend.record(first) is not None
    following = take(backend)
    assert (following.job.id, following.job.history) == (second, ())
    assert backend.engine.take_ready(backend.now) is None
    backend.engine.finish(following.claim, "done", done_record(following.job, backend.now))
    assert backend.record(second) is not None


def test_end_turn_puts_back_what_a_prefetching_finish_claimed_and_no_take_wanted(
    backend: Backend,
) -> None:
    """The daemon began to stop, or cannot launch: the job claimed with the finish waits
    again as it was (no attempt counted) and is taken again later, with a new claim."""
    first, second = backend.submit(), backend.submit()
    accept_all(backend)
    finish_prefetching(backend, take(backend))
    backend.engine.end_turn()
    assert backend.counts().ready == 1
    again = take(backend)
    assert (again.job.id, again.job.history, again.job.attempts) == (second, (), 0)
    assert backend.engine.take_ready(backend.now) is None
    backend.engine.finish(again.claim, "done", done_record(again.job, backend.now))
    assert backend.record(second) is not None and backend.record(first) is not None


def test_redis_a_prefetching_finish_claims_the_next_job_in_the_same_call(
    redis_backend: RedisBackend,
) -> None:
    """One FCALL files the record and claims the next job (the server's slow log, set to
    log every command, says which calls were made); the take that follows asks nothing."""
    backend = redis_backend
    first, second = backend.submit(), backend.submit()
    accept_all(backend)
    taken = take(backend)
    backend.redis.config_set("slowlog-log-slower-than", 0)
    backend.redis.slowlog_reset()
    finish_prefetching(backend, taken)
    assert take(backend).job.id == second
    called = [entry["command"].split()[1] for entry in backend.redis.slowlog_get(100)
              if entry["command"].startswith(b"FCALL ")]  # fmt: skip
    assert called == [b"spoold_finish_claim"], called
    assert backend.record(first) is not None


def _busy(backend: RedisBackend) -> bool:
    """True once a ping goes unanswered: a script holds the server."""
    import redis

    probe = redis.Redis.from_url(backend.url, socket_timeout=0.05)
    try:
        probe.ping()
    except redis.TimeoutError:
        return True
    finally:
        probe.close()
    return False


def test_redis_a_lost_answer_of_a_prefetching_finish_puts_its_claim_back(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The server runs the finish and its claim after the daemon gave up on the answer:
    the finish, held and sent again, is answered "already"; the next take puts the job
    Redis gave the daemon unknown back (``spoold_release``) and takes it under a new
    claim, with no attempt counted."""
    from redis_server import BUSY_SCRIPT

    backend = RedisBackend(tmp_path, request.getfixturevalue("redis_server"), lease=REDIS_LEASE,
                           redis_timeout=0.3)  # fmt: skip
    try:
        first, second = backend.submit(), backend.submit()
        accept_all(backend)
        taken = take(backend)
        stall = threading.Thread(target=backend.redis.eval, args=(BUSY_SCRIPT, 0, 1500))
        stall.start()
        wait_for(lambda: _busy(backend), 5.0, "the script never took the server")
        with pytest.raises(OSError):  # the finish waits behind the script, past its timeout
            finish_prefetching(backend, taken)
        stall.join()
        assert backend.redis_engine.unsure
        record = done_record(taken.job, backend.now)
        assert backend.engine.finish(taken.claim, "done", record) == first  # "already"
        again = take(backend)
        assert (again.job.id, again.job.attempts) == (second, 0)
        assert backend.engine.take_ready(backend.now) is None
        backend.engine.finish(again.claim, "done", done_record(again.job, backend.now))
        assert backend.record(first) is not None and backend.record(second) is not None
    finally:
        backend.close()


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
    assert backend.counts() == Counts(ready=0, waiting=0, again=0, busy=False)
    assert backend.record(first.job.id) is None

    record = done_record(second.job, now)
    assert engine.finish(second.claim, "done", record) == first.job.id
    assert backend.record(first.job.id) == record


# -- waiting for a time --


def test_a_scheduled_job_is_not_ready_before_its_due_time_and_is_ready_from_it(
    backend: Backend,
) -> None:
    """A job with a run_at is claimed on arrival and scheduled until it: a turn before hands
    out nothing; a turn at the due time hands it out, due time and all. (On Redis the job
    stays counted as waiting until the claim that takes it releases it.)"""
    engine, now = backend.engine, backend.now
    job_id = backend.submit(delay=backend.delay)
    arrival = arrive(backend)[job_id]
    assert isinstance(arrival.verdict, Accepted)
    job = arrival.verdict.job
    assert job.run_at is not None
    due = job.run_at
    claimed = engine.claim_arrival(arrival, now)
    assert isinstance(claimed, Taken) and claimed.job == job
    engine.schedule(claimed.claim, replace(job, due_at=due), again=False)
    assert backend.counts() == Counts(ready=0, waiting=1, again=0, busy=False)
    wakeup = engine.next_wakeup(now)
    assert wakeup is not None and wakeup <= due

    early = backend.before(due)
    assert engine.receive(early) == []
    assert engine.take_ready(early) is None
    assert backend.counts() == Counts(ready=0, waiting=1, again=0, busy=False)

    at = backend.at(due)
    assert engine.receive(at) == []
    if backend.releases_on_receive:
        assert backend.counts() == Counts(ready=1, waiting=0, again=0, busy=False)
    else:
        assert backend.counts() == Counts(ready=0, waiting=1, again=0, busy=False)
    taken = take(backend, at)
    assert (taken.job.id, taken.job.due_at, taken.job.params) == (job_id, due, [])
    assert taken.claim.token > claimed.claim.token
    assert backend.counts() == Counts(ready=0, waiting=0, again=0, busy=False)


def test_a_job_scheduled_again_is_counted_as_again_until_it_is_due(backend: Backend) -> None:
    """``again`` counts the retries, reruns and put-backs still waiting (burst mode waits for
    them), not a job waiting for its own run_at. Each is released at its due time (on
    Redis: by the claim that takes it, so until then it is counted as before)."""
    engine, step = backend.engine, backend.delay
    retried, put_back, own_time = (backend.submit() for _ in range(3))
    accept_all(backend)
    by_id = {t.job.id: t for t in (take(backend) for _ in range(3))}
    base = backend.current()
    due = {retried: base + step, put_back: base + 2 * step, own_time: base + 3 * step}
    engine.schedule(by_id[retried].claim, replace(by_id[retried].job, due_at=due[retried]),
                    again=True)  # fmt: skip
    engine.unclaim(by_id[put_back].claim, by_id[put_back].job, due[put_back])
    engine.schedule(by_id[own_time].claim, replace(by_id[own_time].job, due_at=due[own_time]),
                    again=False)  # fmt: skip
    assert backend.counts() == Counts(ready=0, waiting=3, again=2, busy=False)
    again_before = 2
    for job_id, waiting, again in ((retried, 2, 1), (put_back, 1, 0), (own_time, 0, 0)):
        at = backend.at(due[job_id])
        engine.receive(at)
        if backend.releases_on_receive:
            assert backend.counts() == Counts(ready=1, waiting=waiting, again=again, busy=False)
        else:
            assert backend.counts() == Counts(ready=0, waiting=waiting + 1, again=again_before,
                                              busy=False)  # fmt: skip
        assert take(backend, at).job.id == job_id
        assert backend.counts() == Counts(ready=0, waiting=waiting, again=again, busy=False)
        again_before = again


def test_unclaim_puts_the_job_back_unchanged(backend: Backend) -> None:
    """A job that never started goes back as it was: the same params and fields, no history
    added, no due time written into it; it waits until the time given."""
    engine = backend.engine
    first = submitted_and_taken(backend)
    due = backend.current() + backend.delay
    engine.unclaim(first.claim, first.job, due)
    assert backend.counts() == Counts(ready=0, waiting=1, again=1, busy=False)
    early = backend.before(due)
    engine.receive(early)
    assert engine.take_ready(early) is None
    at = backend.at(due)
    engine.receive(at)
    again = take(backend, at)
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
    assert backend.counts() == Counts(ready=2, waiting=0, again=0, busy=False)
    deferred = engine.claim_arrival(arrivals[later], now)
    assert isinstance(deferred, Taken) and deferred.job.run_at is not None
    engine.schedule(deferred.claim, replace(deferred.job, due_at=deferred.job.run_at),
                    again=False)  # fmt: skip
    assert backend.counts() == Counts(ready=2, waiting=1, again=0, busy=False)
    taken = take(backend)
    assert backend.counts() == Counts(ready=1, waiting=1, again=0, busy=False)
    engine.finish(taken.claim, "done", done_record(taken.job, now))
    assert backend.counts() == Counts(ready=1, waiting=1, again=0, busy=False)
    take(backend)
    assert backend.counts() == Counts(ready=0, waiting=1, again=0, busy=False)


# -- leases --


def test_a_finite_lease_is_renewed_while_current_and_a_lapsed_claim_is_claimed_anew(
    finite_lease_backend: Backend,
) -> None:
    """For a backend whose claims can lapse: renew extends the current claim; once it lapses,
    expired() claims the job anew (a larger token, this owner, the old claim's claim time)
    and the old claim is stale: renew reports it lost and finish refuses it.

    On Redis (a 1 s lease) the test waits for each moment; the renewed claim's lapse is
    polled for, since the renewal's own time on the server is a little after the test's."""
    backend = finite_lease_backend
    engine, now, lease = backend.engine, backend.now, backend.engine.lease
    if math.isinf(lease):
        pytest.skip(f"{backend.name}: claims never lapse (test_claims_without_a_lease_...)")
    taken = submitted_and_taken(backend)
    claim = taken.claim
    assert close_to(backend, claim.expires_at, now + lease), claim

    renewed_at = backend.at(now + lease / 2)
    assert engine.renew([claim], renewed_at) == []
    assert engine.expired(backend.at(now + lease)) == [], (
        "a renewed claim lapsed at its first expiry"
    )
    renewed_until = renewed_at + lease
    assert engine.expired(backend.before(renewed_until, by=0.001)) == []
    recovered, reaped_at = backend.first(engine.expired, renewed_until)
    assert close_to(backend, reaped_at, renewed_until), "the renewed claim lapsed late"
    assert len(recovered) == 1
    again = recovered[0]
    assert isinstance(again, Recovered)
    assert again.claim.job_id == taken.job.id
    assert again.claim.owner == backend.owner
    assert again.claim.token > claim.token
    assert close_to(backend, again.claim.expires_at, reaped_at + lease), again.claim
    assert again.verdict == Accepted(taken.job)
    assert close_to(backend, again.claimed_at, now), again.claimed_at
    assert again.source == taken.source
    assert engine.expired(reaped_at) == [], "a lapsed claim was handed out twice"

    assert engine.renew([claim, again.claim], reaped_at) == [claim]
    with pytest.raises(StaleClaim):
        engine.finish(claim, "done", done_record(taken.job, reaped_at))
    assert backend.record(taken.job.id) is None
    record = done_record(taken.job, reaped_at)
    assert engine.finish(again.claim, "done", record) == taken.job.id
    assert backend.record(taken.job.id) == record
    assert engine.renew([again.claim], reaped_at) == [again.claim]


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
    tests/test_resources.py's. Redis refuses the write for real (``maxmemory`` 1 byte,
    ``noeviction``: OOM, raised as RedisUnavailable, ENOSPC).
    """
    engine, now = backend.engine, backend.now
    taken = submitted_and_taken(backend)
    record = done_record(taken.job, now)
    backend.fail_filings()
    try:
        with pytest.raises(OSError) as raised:
            engine.finish(taken.claim, "done", record)
        assert not isinstance(raised.value, StaleClaim)
        if backend.name in ("memory", "redis"):
            assert raised.value.errno == errno.ENOSPC, raised.value
    finally:
        backend.mend_filings()
    assert backend.record(taken.job.id) is None
    assert engine.finish(taken.claim, "done", record) == taken.job.id
    assert backend.record(taken.job.id) == record
    with pytest.raises(StaleClaim):
        engine.finish(taken.claim, "done", record)


# -- what only Redis does --


def test_fire_submits_each_firing_once_and_keeps_the_schedules_mark(backend: Backend) -> None:
    """Periodic jobs' seam (``fire``, ``skip_firings``, ``schedule_marks``): a firing is
    submitted once, a repeat is ALREADY; the mark moves to the firing, and a skip moves it
    on (never back); an exclusive firing while the last one still waits is OVERLAP."""
    engine = backend.engine
    at = 1_700_000_000.0
    first = Firing("tick", at, firing_id("tick", at), job_payload("testjobs.Noop", "run", [],
                   now=at), exclusive=False)  # fmt: skip
    assert engine.schedule_marks() == {}
    assert engine.fire(first) == FIRED
    assert engine.fire(first) == ALREADY
    assert engine.schedule_marks() == {"tick": Mark(at, first.job_id, at)}
    engine.skip_firings("tick", at + 60)
    engine.skip_firings("tick", at + 30)  # (never back)
    assert engine.schedule_marks() == {"tick": Mark(at + 60, first.job_id, at)}
    later = replace(first, at=at + 120, job_id=firing_id("tick", at + 120), exclusive=True)
    assert engine.fire(later) == OVERLAP, "the last firing still waits"
    assert engine.schedule_marks()["tick"].considered == at + 120
    assert later.job_id not in arrive(backend), "an overlapping firing was submitted"


def test_cancel_claims_a_ready_job_and_a_scheduled_one_and_nothing_else(
    backend: Backend,
) -> None:
    """``Engine.cancel`` takes a waiting job out of the order, ready or scheduled, claimed for
    the core to file cancelled; a job with a record, or none, is answered False. Neither
    cancelled job is handed out again."""
    engine, now = backend.engine, backend.now
    ready_id, later_id = backend.submit(), backend.submit(delay=backend.delay)
    arrivals = arrive(backend)
    engine.accept(arrivals[ready_id])
    later = engine.claim_arrival(arrivals[later_id], now)
    assert isinstance(later, Taken) and later.job.run_at is not None
    engine.schedule(later.claim, replace(later.job, due_at=later.job.run_at), again=False)

    for job_id in (ready_id, later_id):
        cancelled = engine.cancel(job_id, 1234, backend.current())
        assert isinstance(cancelled, Taken), (job_id, cancelled)
        assert (cancelled.job.id, cancelled.claim.job_id) == (job_id, job_id)
        assert cancelled.cancelled_by is None  # (set only for a job marked while it ran)
        record = cancelled.job.record("cancelled", backend.current(), cancelled_by=1234)
        assert engine.finish(cancelled.claim, "failed", record) == job_id
        assert backend.record(job_id) == record
    assert backend.counts() == Counts(ready=0, waiting=0, again=0, busy=False)
    assert engine.take_ready(backend.at(later.job.run_at)) is None
    assert engine.cancel(ready_id, 1234, backend.current()) is False, "it has a record"
    assert engine.cancel(new_job_id(), 1234, backend.current()) is False, "there is no such job"


def test_cancel_of_a_job_this_daemon_runs_is_left_to_the_core(backend: Backend) -> None:
    """A job claimed by this very daemon is stopped by the core (its dispatcher), not by the
    backend: on files and memory the engine answers False; on Redis it marks it, and the
    mark comes back to this daemon through ``cancellations`` (the channel, or a renewal)."""
    engine = backend.engine
    taken = submitted_and_taken(backend)
    marked = engine.cancel(taken.job.id, 1234, backend.current())
    if backend.name != "redis":
        assert marked is False
        assert engine.cancellations() == []
        return
    assert marked is True

    def heard() -> list[tuple[str, int]]:
        engine.receive(backend.current())  # (reads the channel)
        engine.renew([taken.claim], backend.current())  # (the fallback: the renewal's word)
        return engine.cancellations()

    assert wait_for(heard, REDIS_POLL_TIMEOUT) == [(taken.job.id, 1234)]


def test_redis_a_job_submitted_straight_to_redis_is_taken_without_an_arrival(
    redis_backend: RedisBackend,
) -> None:
    """The client configured for Redis submits to it, not to incoming/: receive() hands back
    nothing, and take_ready claims the job (the bell, or the sweep, says one may be ready)
    as submitted, where it waits in Redis: under its id."""
    from spoold.backends.redis.submitter import RedisSubmitter

    backend, engine = redis_backend, redis_backend.engine
    assert engine.receive(backend.now) == []
    assert engine.take_ready(backend.now) is None  # nothing yet: no claim asked until a hint
    sent = time.time()
    payload = job_payload("testjobs.Noop", "run", [1, "two"], now=sent, priority=3)
    job_id = RedisSubmitter(backend.config.spool).submit(payload, now=sent)
    assert backend.spool.names("incoming") == []

    def turn() -> Taken | Refusal | None:
        now = backend.current()
        assert engine.receive(now) == [], "a job submitted to Redis came back as an arrival"
        return engine.take_ready(now)

    taken = wait_for(turn, REDIS_POLL_TIMEOUT, "the job submitted to Redis was never taken")
    assert isinstance(taken, Taken), taken
    job = taken.job
    assert (job.id, job.class_path, job.method, job.params) == (
        job_id, "testjobs.Noop", "run", [1, "two"],
    )  # fmt: skip
    assert (job.priority, job.enqueued_at, job.submitted) == (3, sent, json.loads(payload))
    assert taken.source == job_id and taken.fresh, "judged here first: the core says received"
    assert (taken.claim.job_id, taken.claim.owner) == (job_id, backend.owner)
    assert close_to(backend, taken.claim.expires_at, backend.current() + engine.lease)
    assert engine.take_ready(backend.current()) is None, "one submitted job was taken twice"
    record = done_record(job, backend.current())
    assert engine.finish(taken.claim, "done", record) == job_id
    assert backend.record(job_id) == record
    assert backend.counts() == Counts(ready=0, waiting=0, again=0, busy=False)


def test_redis_the_bell_wakes_the_loop_for_a_job_submitted_to_redis(
    redis_backend: RedisBackend,
) -> None:
    """Without polling: the engine's descriptors include the subscription's socket, which
    turns readable when a job is submitted, and receive() hears the bell, so a claim is
    asked for at once (the once-a-second sweep is put off here, so only the bell can say
    so). The subscription's confirmation is left unread before the job is submitted, as in
    a daemon that has just started: it reaches the socket with the bell or just before it,
    and reading it must not end the reading of what follows it."""
    import select

    from spoold.backends.redis.submitter import RedisSubmitter

    backend, engine = redis_backend, redis_backend.redis_engine
    assert engine.take_ready(backend.current()) is None
    engine.next_sweep = math.inf
    assert not engine.ready_hint
    descriptors = list(engine.descriptors())
    assert len(descriptors) == 2, "no subscription socket for the loop to wait on"
    sent = time.time()
    job_id = RedisSubmitter(backend.config.spool).submit(
        job_payload("testjobs.Noop", "run", [], now=sent), now=sent
    )
    deadline = time.monotonic() + REDIS_POLL_TIMEOUT
    while not engine.ready_hint:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select(descriptors, [], [], wait)[0]:
            break  # what receive() left unread in the client's buffer wakes nobody
        engine.receive(backend.current())
    assert engine.ready_hint, "the bell rang but receive() did not hear it"
    taken = engine.take_ready(backend.current())
    assert isinstance(taken, Taken) and taken.job.id == job_id


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


# -- flow control (issue 20): unique keys, [limits], follow-ups --


def set_limits(backend: Backend, limits: dict[str, Any]) -> None:
    """Put ``[limits]`` (``{class: {"concurrency": n, "rate": "n/s"}}``) in force."""
    parsed = {class_path: parse_limit(table) for class_path, table in limits.items()}
    if isinstance(backend.engine, MemoryEngine):
        backend.engine.limits = parsed
        return
    live: Live = backend.engine.live  # type: ignore[attr-defined]
    live.swap(replace(live.config, limits=parsed), live.identity)


def document(class_path: str = "testjobs.Noop", **fields: Any) -> bytes:
    """A job document as a client writes it, with ``fields`` added."""
    return _encode({**_job_document(class_path, "run", None, now=time.time()), **fields})


def decide_all(backend: Backend) -> dict[str, Refusal]:
    """What the core does with a turn's arrivals: a refused one is claimed (its refusal
    returned by id), an accepted one is made ready."""
    refused = {}
    for job_id, arrival in arrive(backend).items():
        if isinstance(arrival.verdict, Refused):
            claimed = backend.engine.claim_arrival(arrival, backend.now)
            assert isinstance(claimed, Refusal), claimed
            refused[job_id] = claimed
        else:
            backend.engine.accept(arrival)
    return refused


def take_everything(backend: Backend, now: float | None = None) -> list[Taken | Refusal]:
    """``take_ready`` until it hands out nothing more."""
    handed: list[Taken | Refusal] = []
    while (taken := backend.engine.take_ready(backend.now if now is None else now)) is not None:
        handed.append(taken)
    return handed


def next_turn_takes(backend: Backend) -> Callable[[float], list[Taken | Refusal]]:
    """A turn of the loop at ``now``, as a probe: receive (nothing new arrives), then take
    all it can."""

    def turn(now: float) -> list[Taken | Refusal]:
        assert backend.engine.receive(now) == []
        return take_everything(backend, now)

    return turn


def test_a_unique_key_is_held_from_acceptance_to_the_record(backend: Backend) -> None:
    """Of two submissions with one key, the second is refused as a duplicate of the first
    (at intake on a spool one daemon holds, at its claim on Redis); once the first is
    filed, the key is free for a third."""
    first = backend.submit_raw(document(unique_key="report-7"))
    refused = decide_all(backend)
    second = backend.submit_raw(document(unique_key="report-7"))
    other = backend.submit_raw(document(unique_key="report-8"))
    refused.update(decide_all(backend))
    handed = take_everything(backend)
    refused.update({r.refused.job_id: r for r in handed if isinstance(r, Refusal)})
    taken = {t.job.id: t for t in handed if isinstance(t, Taken)}
    assert sorted(taken) == sorted([first, other])
    assert list(refused) == [second]
    assert refused[second].refused.reason == f"duplicate of {first}"
    assert refused[second].refused.kind == "duplicate"

    claim = taken[first].claim
    backend.engine.finish(claim, "done", done_record(taken[first].job, backend.now))
    third = backend.submit_raw(document(unique_key="report-7"))
    assert decide_all(backend) == {}
    assert [t.job.id for t in take_everything(backend) if isinstance(t, Taken)] == [third]


def test_a_class_at_its_concurrency_is_passed_over_for_other_classes(backend: Backend) -> None:
    """concurrency = 1: the limited class's second job is passed over, even with the top
    priority, for another class's; counted as held back; the first's end frees it."""
    set_limits(backend, {"testjobs.Noop": {"concurrency": 1}})
    limited = [backend.submit("testjobs.Noop", priority=9) for _ in range(3)]
    other = backend.submit("testjobs.Echo")
    accept_all(backend)
    handed = [t for t in take_everything(backend) if isinstance(t, Taken)]
    assert [t.job.id for t in handed] == [limited[0], other]
    assert dict(backend.counts().held_back) == {"testjobs.Noop": 2}
    assert backend.counts().ready == 2

    taken = handed[0]
    backend.engine.finish(taken.claim, "done", done_record(taken.job, backend.now))
    # The loop's next turn: receive (on Redis, the bell the end of a limited attempt
    # rings), then take.
    freed, _ = backend.first(next_turn_takes(backend), backend.current())
    assert [t.job.id for t in freed if isinstance(t, Taken)] == [limited[1]]


def test_a_class_at_its_rate_waits_for_its_next_token(backend: Backend) -> None:
    """rate = "2/s": two start at once (the bucket's burst), the third only once half a
    second has refilled a token; next_wakeup says when."""
    set_limits(backend, {"testjobs.Noop": {"rate": "2/s"}})
    ids = [backend.submit() for _ in range(3)]
    accept_all(backend)
    start = backend.current()
    assert [t.job.id for t in take_everything(backend, start) if isinstance(t, Taken)] == ids[:2]
    wakeup = backend.engine.next_wakeup(start)
    assert wakeup is not None and wakeup <= start + 0.5 + backend.tolerance
    assert backend.engine.take_ready(backend.before(start + 0.5, by=0.1)) is None
    [taken], _ = backend.first(next_turn_takes(backend), backend.at(start + 0.5))
    assert isinstance(taken, Taken) and taken.job.id == ids[2]


def test_a_record_starts_its_follow_up_once(backend: Backend) -> None:
    """A record that names a follow-up (``followups.plan``) submits it with the filing,
    under the derived id, with its parent's id, status and result; the parent's
    submitter is the child's. A failed record starts on_failure, not on_success."""
    parent_id = backend.submit_raw(document(
        on_success={"class": "testjobs.Echo", "method": "run", "params": [1]},
        on_failure={"class": "testjobs.Boom", "method": "run"},
    ))  # fmt: skip
    accept_all(backend)
    taken = take(backend)
    assert taken.job.id == parent_id
    allowing = config_from_mapping({"allow": TESTJOBS_ALLOW}, Path("/"))
    record = {**done_record(taken.job, backend.now), "result": 42}
    record = followups.plan(parent_id, record, allowing)
    child_id = record[followups.FOLLOW_UPS][0]
    backend.engine.finish(taken.claim, "done", record)

    def child_taken(now: float) -> Taken | None:
        for arrival in backend.engine.receive(now):
            backend.engine.accept(arrival)
        found = backend.engine.take_ready(now)
        return found if isinstance(found, Taken) else None

    child, _ = backend.first(child_taken, backend.current())
    assert child.job.id == child_id
    assert (child.job.class_path, child.job.params) == ("testjobs.Echo", [1])
    assert child.job.submitted["parent"] == {"id": parent_id, "status": "done", "result": 42}
    assert child.job.submitted["submitted_by"] == taken.job.submitted["submitted_by"]
    backend.engine.finish(child.claim, "done", done_record(child.job, backend.now))
    assert backend.engine.take_ready(backend.current()) is None  # started once
