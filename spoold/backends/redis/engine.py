"""Redis as the daemon's ``Engine``: the queue, the claims and the records in one Redis.

Every move is one function of ``library.lua``; this module only calls them
and translates between their answers and the seam's words. What stays on
this host is the folder ``[spool] dir``: its ``incoming/`` still takes job
files (read and judged here, then submitted to Redis under their own id and
removed, so a crash in between submits nothing twice: the second submit of
the same bytes is answered ``dup``), and its lock keeps a second daemon off
that folder.

Wake-ups without polling: a subscription to the spool's ``bell`` channel,
whose socket sits in the daemon's selector, says a job may be ready; a
timer at the earliest due time, and a sweep every ``SWEEP_EVERY`` seconds,
cover a bell missed while the subscription was down. Claims are asked for
only when something may be ready, so an idle daemon makes one call a second.

Time is the server's: each answer carries its clock, and ``clock()`` is
this host's clock plus the last offset seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loguru import logger

from spoold.backends.files import recovery
from spoold.backends.files.queue import ReadyQueue
from spoold.backends.files.receiver import Receiver
from spoold.backends.files.spool import Spool, SpoolLock
from spoold.backends.files.watcher import Watcher
from spoold.backends.redis import durability
from spoold.backends.redis.connection import (
    FILED,
    READY_AGE_DIGITS,
    READY_SEQ_DIGITS,
    RedisUnavailable,
    call,
    connect,
    fcall,
    held_back_in,
    load_library,
    prefix,
    safe_url,
    text,
)
from spoold.backends.redis.firings import millis, read_marks
from spoold.backoff import Backoff
from spoold.core.backend import (
    FIRED,
    Accepted,
    Arrival,
    Claim,
    Counts,
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
)
from spoold.durations import seconds
from spoold.faults import crash_point
from spoold.followups import children
from spoold.ids import new_job_id
from spoold.job import Job, encode
from spoold.limits import ClassLimit
from spoold.live import Live

if TYPE_CHECKING:
    import redis
    from redis.client import PubSub

# Calls that may have claimed a job for this daemon when their answer is lost.
UNSURE_IF_LOST = frozenset({"spoold_claim", "spoold_adopt", "spoold_finish_claim"})
RECEIVED_KEPT = 10_000  # ids this daemon received at intake and has not claimed yet
HOUR_MS = 3_600_000  # a daemon not heard of for this long is gone
SWEEP_EVERY = 1.0  # seconds between claims asked for without a bell (a missed one)
COUNTS_EVERY = 1.0  # seconds the counts for the status line may be old
PROMOTE_BATCH = 100  # due jobs released per claim call
REAP_BATCH = 100


class RedisEngine:
    """One spool in Redis, with this host's incoming/ folder for job files."""

    def __init__(self, live: Live, spool: Spool, lock: SpoolLock | None, client: redis.Redis):
        settings = live.config.spool
        self.live = live
        self.spool = spool
        self.lock = lock
        self.client = client
        self.key = prefix(settings)
        self.lease = settings.lease
        self.lease_ms = round(settings.lease * 1000)
        # host:pid:instance, so a restarted daemon knows its host's earlier claims.
        self.owner = f"{settings.host_id}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.places = Places(
            "Redis's active set", "Redis's due set",
            f"{spool.folder('incoming')} and {safe_url(settings.url)}",
        )  # fmt: skip
        self.offset = 0.0  # the server's clock minus this host's
        self.ready_hint = True  # a job may be ready: worth a claim call
        self.next_sweep = 0.0
        self.next_due: float | None = None
        self.next_token: float | None = None  # when a job held back by its rate may start
        self.again: set[str] = set()  # put back to wait by this daemon, not taken since
        self.received_here: dict[str, None] = {}  # submitted from incoming/ by this daemon
        # The claims this daemon holds, by job: a move by any other claim is stale here
        # already (the server fences other daemons' stale claims).
        self.holds: dict[str, int] = {}
        self.unsure = False  # a claim's answer was lost: Redis may hold a claim of ours
        self.prefetching = False  # the core takes a job after each finish now (``prefetch``)
        # Handouts claimed with a finish, for the next take_ready; unjudged, so not in
        # ``holds`` until taken: end_turn gives back what no take wanted.
        self.claimed_ahead: list[list[Any]] = []
        self.url = safe_url(settings.url)
        self.counted = Counts(0, 0, 0, False)
        self.next_count = 0.0
        self.bell: PubSub | None = None
        self.bell_trouble = Backoff()
        self.cancel_heard: set[str] = set()  # jobs said cancelled on the channel, unread
        self.cancelled: dict[str, int] = {}  # held jobs found cancelled, for ``cancellations``
        self.followed: set[str] = set()  # jobs whose filed:<id> channel the bell listens to
        self.filed_heard: set[str] = set()  # ... and those heard filed, unread
        self.receiver: Receiver | None = None
        self.watcher: Watcher | None = None
        self.judge: Judge | None = None
        self.closed = False
        self.started = time.time()

    @classmethod
    def open_locked(cls, live: Live) -> RedisEngine:
        """Lock this host's folder and connect: the one connection of the daemon's own
        calls (``single``), made now, so that a Redis that is down is said here, in one
        line naming it."""
        spool, lock = SpoolLock.taken(live.config.spool.dir)
        settings = live.config.spool
        try:
            client = call(connect, settings, single=True)
        except RedisUnavailable as exc:
            lock.release()
            where = safe_url(settings.url)
            raise RedisUnavailable(exc.errno, f"{exc.strerror} ({where})") from None
        return cls(live, spool, lock, client)

    def clock(self) -> float:
        return time.time() + self.offset

    def _fcall(self, function: str, *args: Any) -> Any:
        """One function of the library; an unreachable Redis is named by its URL."""
        try:
            answer = fcall(self.client, function, self.key, *args)
        except RedisUnavailable as exc:
            if function in UNSURE_IF_LOST:  # it may have been carried out: see ``_settle``
                self.unsure = True
            raise RedisUnavailable(exc.errno, f"{exc.strerror} ({self.url})") from None
        return answer

    def _settle(self) -> None:
        """After a claim whose answer was lost, put back what Redis gave this daemon unknown.

        Such a job sits in the active set under this daemon's name, held by no attempt:
        left alone it would wait for its lease and come back as an interrupted attempt
        that never ran.
        """
        released = self._fcall("spoold_release", self.owner, *self.holds)
        self.unsure = False
        for job_id in released:
            logger.warning("job {}: its claim's answer was lost; it waits again, no attempt "
                           "counted", text(job_id))  # fmt: skip
        if released:
            self.ready_hint = True

    def _seen(self, server_ms: int) -> float:
        """Note the server's clock from an answer; it, in seconds."""
        server = server_ms / 1000
        self.offset = server - time.time()
        return server

    # -- life cycle --

    def open(self, judge: Judge, now: float) -> list[Recovered]:
        self.judge = judge
        try:
            load_library(self.client)
            durability.require(self.client, self.live.config.spool)
            seconds_, micros = call(self.client.time)
        except RedisUnavailable as exc:
            raise RedisUnavailable(exc.errno, f"{exc.strerror} ({self.url})") from None
        self.offset = seconds_ + micros / 1e6 - time.time()
        recovery.tidy(self.spool)
        self.receiver = Receiver(self.live, self.spool, judge, ReadyQueue(), set())
        host = self.live.config.spool.host_id
        answers = self._fcall("spoold_recover", f"{host}:", self.owner, self.lease_ms)
        found = [self._recovered(answer) for answer in answers]
        self._register()
        return found

    def _register(self) -> None:
        """Say this daemon is alive at once (``spoold status`` lists it from now on), and
        forget the daemons not heard of for an hour: killed ones never said goodbye."""
        now_ms = self._fcall("spoold_renew", self.owner, self.lease_ms, self._heartbeat())[0]
        self._seen(now_ms)
        beats = call(self.client.hgetall, self.key + "daemons")
        gone = [owner for owner, beat in beats.items() if _heard_before(beat, now_ms - HOUR_MS)]
        if gone:
            call(self.client.hdel, self.key + "daemons", *gone)

    def _heartbeat(self) -> bytes:
        """What this daemon says of itself: host, pid, since when, how many slots (Redis adds
        when it last heard of it; the jobs it holds are the active ones it owns)."""
        return encode({
            "host": self.live.config.spool.host_id, "hostname": socket.gethostname(),
            "pid": os.getpid(), "started": self.started,
            "max": self.live.config.worker.concurrency, "lease": self.lease,
        })  # fmt: skip

    def watch(self, now: float) -> None:
        assert self.receiver is not None, "open() comes first"
        self.watcher = self.receiver.start()
        self.receiver.rescan(now)
        self._subscribe(now)

    def descriptors(self) -> Sequence[int]:
        fds = [self.watcher.fileno()] if self.watcher is not None else []
        bell = self._bell_socket()
        return [*fds, bell] if bell is not None else fds

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.receiver is not None:
            self.receiver.stop()
        self._drop_bell()
        with contextlib.suppress(OSError):
            self._give_back_claimed_ahead()
        with contextlib.suppress(OSError):
            call(self.client.hdel, self.key + "daemons", self.owner)
        self.client.close()
        if self.lock is not None:
            self.lock.release()

    # -- the bell --

    def _subscribe(self, now: float) -> None:
        if self.bell is not None or self.bell_trouble.waiting(now):
            return
        pubsub = self.client.pubsub()  # confirmations too: see ``_ring``
        try:
            call(pubsub.subscribe, self.key + "bell", self.key + "cancel")
        except OSError as exc:
            pubsub.close()
            delay = self.bell_trouble.hit(now)
            logger.log(self.bell_trouble.loud(now),
                       "cannot listen for new jobs ({}); looking every {} meanwhile, "
                       "listening again in {}", exc, seconds(SWEEP_EVERY),
                       seconds(delay))  # fmt: skip
            return
        began = self.bell_trouble.clear()
        if began is not None:
            logger.info(
                "listening for new jobs again, after {} without", seconds(round(now - began, 1))
            )
        self.bell = pubsub
        self.ready_hint = True  # what was submitted while nobody listened

    def _bell_socket(self) -> int | None:
        connection = self.bell.connection if self.bell is not None else None
        sock = getattr(connection, "_sock", None) if connection is not None else None
        return sock.fileno() if sock is not None else None

    def _ring(self, now: float) -> None:
        """Read all the bell said; a message on it means a job may be ready.

        Read to the end of what the client holds, not only of the socket: a message read
        from the socket with the one before it waits in the client's buffer, where it
        wakes no selector. Hence confirmations are not ignored by the client (an ignored
        one reads as None, as does the end) but here.
        """
        if self.bell is None:
            self._subscribe(now)
            return
        try:
            while (said := call(self.bell.get_message, timeout=0.0)) is not None:
                if said["type"] != "message":
                    continue
                channel = text(said["channel"])
                if channel == self.key + "cancel":
                    self.cancel_heard.add(text(said["data"]))
                elif channel.startswith(self.key + FILED):
                    self.filed_heard.add(channel.removeprefix(self.key + FILED))
                else:
                    self.ready_hint = True
        except OSError as exc:
            logger.debug("lost the subscription to new jobs ({}); listening again", exc)
            self._drop_bell()
            self._subscribe(now)  # says so if it cannot

    def view_group(self) -> int | None:
        return self.spool.view_group()  # (this host's folder, on Redis too)

    def follow_records(self, job_ids: Collection[str]) -> list[str]:
        """Listen on the bell's connection to ``filed:<id>`` of each job waited for. A
        subscription lost with the bell is made again with it; meanwhile the core's own
        look at what it waits for (every second) stands in."""
        wanted = set(job_ids)
        if self.bell is not None and wanted != self.followed:
            try:
                if wanted - self.followed:
                    call(self.bell.subscribe, *self._filed_channels(wanted - self.followed))
                if self.followed - wanted:
                    call(self.bell.unsubscribe, *self._filed_channels(self.followed - wanted))
                self.followed = wanted
            except OSError:
                self._drop_bell()
        heard = [job_id for job_id in self.filed_heard if job_id in wanted]
        self.filed_heard.clear()
        return heard

    def _filed_channels(self, job_ids: Collection[str]) -> list[str]:
        return [self.key + FILED + job_id for job_id in job_ids]

    def _drop_bell(self) -> None:
        self.followed = set()  # (the subscriptions go with the connection)
        if self.bell is not None:
            with contextlib.suppress(Exception):
                self.bell.close()
            self.bell = None

    # -- each turn --

    def next_wakeup(self, now: float) -> float | None:
        times = [self.next_sweep]
        if self.receiver is not None:
            times.append(self.receiver.next_wakeup())
        times.extend(t for t in (self.next_due, self.next_token) if t is not None)
        if self.bell is None:
            times.append(self.bell_trouble.until or now + SWEEP_EVERY)
        return min(times)

    def receive(self, now: float) -> list[Arrival]:
        self._ring(now)
        due = [t for t in (self.next_due, self.next_token) if t is not None]
        if now >= self.next_sweep or any(now >= t for t in due):
            self.ready_hint = True
            self.next_sweep = now + SWEEP_EVERY
        assert self.receiver is not None, "open() comes first"
        return self.receiver.turn(now)

    def accept(self, arrival: Arrival) -> None:
        """A file from incoming/ that passed: submit it under its id, then remove the file."""
        assert isinstance(arrival.verdict, Accepted)
        payload = encode(arrival.verdict.job.submitted)
        job_id = arrival.verdict.job.id
        while text(self._fcall("spoold_submit", job_id, payload)) == "taken":
            job_id = new_job_id()
        crash_point("after_redis_submit")
        self._remove(arrival.ref)
        self.ready_hint = True
        self._received_here(job_id)

    def _received_here(self, job_id: str) -> None:
        """Note a job this daemon received at intake: its claim is not a first judging."""
        self.received_here[job_id] = None
        if len(self.received_here) > RECEIVED_KEPT:  # taken by other daemons: forget the oldest
            del self.received_here[next(iter(self.received_here))]

    def claim_arrival(self, arrival: Arrival, now: float) -> Taken | Refusal | None:
        verdict = arrival.verdict
        if isinstance(verdict, Refused):
            job_id, payload = verdict.job_id, verdict.raw
        else:
            job_id, payload = verdict.job.id, encode(verdict.job.submitted)
        refused = "1" if isinstance(verdict, Refused) else "0"  # (holds no unique key)
        while True:
            answer = self._fcall("spoold_adopt", job_id, payload, self.owner, self.lease_ms,
                                 refused)  # fmt: skip
            if not isinstance(answer, bytes | str) or text(answer) != "taken":
                break
            job_id = new_job_id()
        crash_point("after_redis_adopt")
        self._remove(arrival.ref)
        if isinstance(answer, bytes | str):  # "dup": adopted before a crash, or an answer lost
            self.unsure = True  # (then it is ours, unknown: ``_settle`` puts it back)
            return None
        epoch, server_ms, dup = answer
        claimed = self._seen(server_ms)
        claim = self._hold(job_id, int(epoch), claimed + self.lease)
        if dup:  # its unique_key is held: filed rejected now, not at its run_at
            verdict = Refused(job_id, f"duplicate of {text(dup)}", payload, kind="duplicate")
        if isinstance(verdict, Refused):
            return Refusal(claim, replace(verdict, job_id=job_id), arrival.ref, now)
        return Taken(claim, _with_id(verdict.job, job_id), source=arrival.ref)

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool.file("incoming", name))

    def take_ready(self, now: float) -> Taken | Refusal | None:
        if self.claimed_ahead:  # claimed with a finish, this turn
            return self._taken(self.claimed_ahead.pop(0), now)
        if self.unsure:
            self._settle()
        while self.ready_hint:
            answer = self._fcall("spoold_claim", self.owner, self.lease_ms, PROMOTE_BATCH,
                                 *_limit_args(self.live.config.limits))  # fmt: skip
            handout = self._claimed(answer)
            if handout is not None:
                return self._taken(handout, now)
        return None

    def _claimed(self, answer: list[Any]) -> list[Any] | None:
        """A claim's answer: its handout, or None (then ``ready_hint`` says if another
        claim could find one: it set jobs aside and stopped before it saw them all)."""
        *handout, next_due, next_token, more = answer
        # On the server's clock: when the next due job, or held-back job, may start.
        self.next_due = next_due / 1000 if next_due >= 0 else None
        self.next_token = next_token / 1000 if next_token >= 0 else None
        if handout[0]:
            return handout
        self._seen(handout[1])
        self.ready_hint = bool(more)
        return None

    def prefetch(self, on: bool) -> None:
        """While on, each finish also claims the best ready job, in the same call."""
        self.prefetching = on

    def _taken(self, answer: list[Any], now: float) -> Taken | Refusal:
        """A handout of ``spoold_claim`` or ``spoold_cancel``, judged."""
        job_id, epoch, document, trusted, claimed_ms, server_ms, cancelled_by, dup = answer[:8]
        job_id = text(job_id)
        self._seen(server_ms)
        self.again.discard(job_id)
        claimed = claimed_ms / 1000
        claim = self._hold(job_id, int(epoch), claimed + self.lease)
        verdict = self._judge_stored(job_id, document, bool(trusted), claimed)
        if dup and not isinstance(verdict, Refused):  # its unique_key was held when it came
            verdict = Refused(job_id, f"duplicate of {text(dup)}", document, kind="duplicate")
        if isinstance(verdict, Refused):
            return Refusal(claim, verdict, job_id, now)
        at_intake = job_id in self.received_here
        self.received_here.pop(job_id, None)
        fresh = not trusted and not at_intake
        by = int(cancelled_by) if cancelled_by else None
        return Taken(claim, verdict.job, source=job_id, fresh=fresh, cancelled_by=by)

    def cancel(self, job_id: str, by: int, now: float) -> Taken | Refusal | bool:
        answer = self._fcall("spoold_cancel", job_id, self.owner, self.lease_ms, by)
        if isinstance(answer, list):
            return self._taken(answer, now)
        return text(answer) == "marked"  # its daemon was told; else it has ended, or is none

    def cancellations(self) -> list[tuple[str, int]]:
        """The held jobs said cancelled on the channel (their hashes say by whom), and those
        the last renewal found marked."""
        heard = [job_id for job_id in self.cancel_heard if job_id in self.holds]
        self.cancel_heard.clear()
        if heard:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id in heard:
                    pipe.hget(self.key + "job:" + job_id, "cancel")
                answers = call(pipe.execute)
            for job_id, by in zip(heard, answers, strict=True):
                if by is not None:
                    self.cancelled[job_id] = int(by)
        found, self.cancelled = self.cancelled, {}
        return list(found.items())

    def _judge_stored(self, job_id: str, document: bytes, trusted: bool, when: float) -> Any:
        assert self.judge is not None, "open() comes first"
        return self.judge(document, Origin(job_id, when, trusted=trusted))

    def _hold(self, job_id: str, epoch: int, expires_at: float) -> Claim:
        self.holds[job_id] = epoch
        return Claim(job_id, self.owner, epoch, expires_at)

    def _check(self, claim: Claim) -> None:
        if self.holds.get(claim.job_id) != claim.token:
            raise StaleClaim(
                f"job {claim.job_id}: claim {claim.token} no longer holds it "
                "(it was filed or claimed again since)"
            )

    def unclaim(self, claim: Claim, job: Job, due_at: float) -> None:
        self._move(claim, due_at, b"")
        self.again.add(claim.job_id)

    def schedule(self, claim: Claim, job: Job, *, again: bool) -> None:
        assert job.due_at is not None
        self._move(claim, job.due_at, encode(job.state_document()))
        if again:
            self.again.add(claim.job_id)

    def _move(self, claim: Claim, due_at: float, document: bytes) -> None:
        self._check(claim)
        due_ms = round(due_at * 1000)
        answer = self._fcall("spoold_schedule", claim.job_id, claim.token, due_ms, document)
        self._let_go(claim, answer)
        if self.next_due is None or due_at < self.next_due:
            self.next_due = due_at

    def finish(self, claim: Claim, status: str, record: dict[str, Any]) -> str:
        self._check(claim)
        record = {**record, "id": claim.job_id}
        follow_ups = [part for child in children(record) for part in (child.job_id, child.payload)]
        if self.prefetching and self.ready_hint and not self.unsure:
            self._finish_and_claim(claim, status, encode(record), follow_ups)
            return claim.job_id
        answer = self._fcall("spoold_finish", claim.job_id, claim.token, status, encode(record),
                             *follow_ups)  # fmt: skip
        self._let_go(claim, answer)  # "already": filed by this call's earlier, unanswered send
        return claim.job_id

    def _finish_and_claim(
        self, claim: Claim, status: str, record: bytes, follow_ups: list[str | bytes]
    ) -> None:
        """File, and claim the best ready job for the slot the filing freed, in one call.

        The claim is made only once the record is filed (``'fenced'``: neither). Its
        handout waits for ``take_ready``, which judges it as any other."""
        limits = _limit_args(self.live.config.limits)
        filed, *answer = self._fcall(
            "spoold_finish_claim", claim.job_id, claim.token, status, record, self.owner,
            self.lease_ms, PROMOTE_BATCH, len(follow_ups), *follow_ups, *limits,
        )  # fmt: skip
        self._let_go(claim, filed)
        handout = self._claimed(answer)
        if handout is not None:
            self.claimed_ahead.append(handout)

    def _let_go(self, claim: Claim, answer: Any) -> None:
        """The move was made (or fenced on the server): this daemon holds the claim no more."""
        self.holds.pop(claim.job_id, None)
        _refuse_if_fenced(answer, claim)

    def renew(self, claims: Sequence[Claim], now: float) -> list[Claim]:
        """Renew the claims, and say this daemon is alive (``spoold status`` lists it)."""
        pairs = [part for claim in claims for part in (claim.job_id, claim.token)]
        for handout in self.claimed_ahead:  # (not the core's yet: kept here)
            pairs.extend((text(handout[0]), handout[1]))
        answer = self._fcall("spoold_renew", self.owner, self.lease_ms, self._heartbeat(), *pairs)
        self._seen(answer[0])
        said = [text(pair) for pair in answer[1:]]
        for marked in said:
            if marked.startswith("!"):  # "!<id> <uid>": a held job was cancelled
                job_id, by = marked[1:].split(" ")
                self.cancelled[job_id] = int(by)
        lost = set(said)
        return [claim for claim in claims if f"{claim.job_id} {claim.token}" in lost]

    def expired(self, now: float) -> list[Recovered]:
        answers = self._fcall("spoold_reap", self.owner, self.lease_ms, REAP_BATCH)
        return [self._recovered(answer) for answer in answers]

    def _recovered(self, answer: list[Any]) -> Recovered:
        job_id, epoch, document, trusted, claimed_ms, server_ms = answer[:6]
        job_id = text(job_id)
        now = self._seen(server_ms)
        claim = self._hold(job_id, int(epoch), now + self.lease)
        verdict = self._judge_stored(job_id, document, bool(trusted), claimed_ms / 1000)
        return Recovered(claim, verdict, claimed_ms / 1000, source=job_id)

    def end_turn(self) -> None:
        # Every call was made durable by Redis before it answered (appendfsync always).
        self._give_back_claimed_ahead()

    def _give_back_claimed_ahead(self) -> None:
        """Jobs claimed with a finish that no take wanted this turn (the daemon began to
        stop, or cannot launch now) go back to wait as they were: no attempt counted."""
        if self.claimed_ahead:
            self.claimed_ahead = []
            self._fcall("spoold_release", self.owner, *self.holds)
            self.ready_hint = True

    def purge_records(self, status: str, finished_before: float, limit: int) -> int:
        before_ms = round(finished_before * 1000)
        removed = self._fcall("spoold_purge", status, before_ms, limit)
        return len(removed)

    def oldest_ready(self, now: float) -> float | None:
        """The earliest of: a due time passed but not yet released (every daemon busy), and
        each priority's first in line, ready since its age or its due time, whichever is
        later. A round trip per priority in use: for the stats snapshot, not every turn."""
        key = self.key
        since: list[float] = []
        overdue = call(self.client.zrange, key + "due", 0, 0, withscores=True)
        if overdue and overdue[0][1] <= now * 1000:
            since.append(overdue[0][1])
        heads, floor = [], "-inf"
        while head := call(self.client.zrangebyscore, key + "ready", floor, "+inf",
                           start=0, num=1, withscores=True):  # fmt: skip
            member, score = text(head[0][0]), head[0][1]
            heads.append(
                (int(member[:READY_AGE_DIGITS]), member[READY_AGE_DIGITS + READY_SEQ_DIGITS + 1 :])
            )
            floor = f"({score}"
        if heads:
            pipe = self.client.pipeline(transaction=False)
            for _age, job_id in heads:
                pipe.hget(f"{key}job:{job_id}", "due")
            dues = call(pipe.execute)
            since += [
                max(age, float(due or 0)) for (age, _id), due in zip(heads, dues, strict=True)
            ]
        return min(since) / 1000 if since else None

    def schedule_marks(self) -> dict[str, Mark]:
        return read_marks(self.client, self.key)

    def fire(self, firing: Firing) -> str:
        answer = self._fcall("spoold_fire", firing.schedule, millis(firing.at), firing.job_id,
                             firing.payload, "1" if firing.exclusive else "0")  # fmt: skip
        if text(answer) == FIRED:
            self.ready_hint = True  # ours to take as much as anyone's
        return text(answer)

    def skip_firings(self, schedule: str, upto: float) -> None:
        self._fcall("spoold_skip_firings", schedule, millis(upto))

    def publish_stats(self, snapshot: bytes, keep_for: float) -> None:
        """``stats:<owner>``, expiring after ``keep_for``: a dead daemon's figures age out."""
        call(self.client.set, f"{self.key}stats:{self.owner}", snapshot,
             px=max(1, round(keep_for * 1000)))  # fmt: skip

    def counts(self) -> Counts:
        """Ready and due jobs as of at most a second ago (the status line asks every turn)."""
        now = time.monotonic()
        busy = self.receiver is not None and self.receiver.busy
        if now >= self.next_count:
            self.next_count = now + COUNTS_EVERY
            with contextlib.suppress(OSError):
                pipe = self.client.pipeline(transaction=False)
                pipe.zcard(self.key + "ready")
                pipe.zcard(self.key + "due")
                ready, due = call(pipe.execute)
                held_back = held_back_in(self.client, self.key)
                ready += sum(held_back.values())
                self.counted = Counts(ready, due, 0, False, held_back)
        counted = self.counted
        return Counts(counted.ready, counted.waiting, len(self.again), busy, counted.held_back)


def _limit_args(limits: Mapping[str, ClassLimit]) -> list[Any]:
    """``[limits]`` as the library's claim reads them: class, concurrency, count, period."""
    args: list[Any] = []
    for class_path, limit in limits.items():
        rate = limit.rate
        args += [class_path, limit.concurrency or 0, rate.count if rate else 0,
                 round(rate.per * 1000) if rate else 0]  # fmt: skip
    return args


def _refuse_if_fenced(answer: Any, claim: Claim) -> None:
    if text(answer) == "fenced":
        raise StaleClaim(
            f"job {claim.job_id}: claim {claim.token} no longer holds it "
            "(it was claimed again since, or filed)"
        )


def _heard_before(beat: bytes, moment_ms: float) -> bool:
    """A heartbeat (JSON with the server's "seen", in ms) older than ``moment_ms``."""
    try:
        return float(json.loads(beat)["seen"]) < moment_ms
    except (ValueError, KeyError, TypeError):
        return False  # not ours to judge: left alone


def _with_id(job: Job, job_id: str) -> Job:
    return job if job.id == job_id else replace(job, id=job_id)


__all__ = ["RedisEngine", "RedisUnavailable"]
