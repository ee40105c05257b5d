"""Redis as a ``Catalog``: what ``spoold status/list/show/retry/purge`` see and change.

The CLI reads and repairs jobs through ``core/backend.py``'s ``Catalog``;
this is the Redis backend's side of it, over the data model of
``library.lua`` (its header comment). Reading is plain ``ZRANGE`` / ``ZCARD``
on the sets and pipelined ``HMGET`` of the job hashes; changing is the
library's ``spoold_retry`` and ``spoold_purge``, atomic on the server.

The CLI's words for where a job is, and the Redis state each stands for:

  incoming   ``ready`` (submitted, not yet claimed), and the job files still
             in this host's ``[spool] dir``/incoming/ (the daemon moves them
             into Redis)
  scheduled  ``due`` (waiting for a time: run_at, a retry's delay)
  active     ``active`` (claimed by a daemon)
  done, failed  the records (``idx:done``, ``idx:failed``)

What ``spoold show`` prints as the job's path is its key
(``spoold:{<name>}:job:<id>``); a job file still in incoming/ is shown as
the file. ``document`` is the record for done and failed jobs, else the
daemon's state document where it wrote one, else the job as submitted.
Listings are ordered as the file spool's: per state, by id (ids sort by
time). Times in Redis are milliseconds of the server's clock; here they are
seconds.

Every Redis error becomes a one-line ``CatalogError`` naming the server
(its URL without the password): never a traceback. redis is imported only
inside this backend, and only when a call is made.
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from spoold.backends.files import admin
from spoold.backends.files.admin import checked_id, summarize
from spoold.backends.files.spool import Spool, running_daemon_pid
from spoold.backends.redis.connection import (
    FILED,
    READY_AGE_DIGITS,
    READY_SEQ_DIGITS,
    RedisUnavailable,
    connect,
    fcall,
    held_back_in,
    prefix,
    safe_url,
    shorter,
    text,
    why,
)
from spoold.backends.redis.firings import read_marks
from spoold.config import Config, SpoolSettings
from spoold.core.backend import (
    CatalogError,
    JobSummary,
    LiveDaemon,
    Mark,
    NoSuchJob,
    RetryOutcome,
    RunningJob,
    SpoolStatus,
    StoredJob,
)
from spoold.snapshot import Snapshot

if TYPE_CHECKING:
    import redis
    from redis.client import PubSub

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

# The CLI's state of each Redis state, and the sorted set that holds each CLI state.
CLI_STATE = {
    "ready": "incoming",
    "due": "scheduled",
    "active": "active",
    "done": "done",
    "failed": "failed",
}
STATE_SET = {
    "incoming": "ready",
    "scheduled": "due",
    "active": "active",
    "done": "idx:done",
    "failed": "idx:failed",
}
RECORD_STATES = ("done", "failed")
# What is read of each job: its state, its three documents, and its times.
FIELDS = ("state", "spec", "doc", "record", "enq", "claimed", "finished")
READ_BATCH = 1000  # job hashes read per pipeline round trip
PURGE_BATCH = 1000  # records deleted per spoold_purge call
LOOK_EVERY = 2.0  # seconds: wait_for_record's fallback look (a filing unheard), never more often

# A ready member is "<enqueued_at in ms, 16 digits><seq, 20 digits>:<id>" (library.lua).


class RedisCatalog:
    """The jobs and records of the spool ``[spool] name`` in ``[spool] url``.

    The connection is made at the first call; ``[spool] dir`` is this host's
    folder, whose incoming/ and tmp/ may still hold job files and whose lock
    says whether a daemon runs here.
    """

    def __init__(self, config: Config) -> None:
        self.settings = config.spool
        self.spool = Spool(config.spool.dir)
        self.key = prefix(config.spool)
        self.url = safe_url(config.spool.url)
        self._client: redis.Redis | None = None

    # -- the Catalog --

    def find(self, job_id: str) -> StoredJob:
        job_id = checked_id(job_id)
        for _ in range(2):  # a job file moves from incoming/ into Redis while we look
            found = self._read([job_id])[0]
            if found is not None:
                return found
            for state in ("incoming", "tmp"):
                try:
                    return admin.read_job(self.spool, state, f"{job_id}.json")
                except FileNotFoundError:
                    continue
        raise NoSuchJob(f"no job {job_id} in {self.url} {self.key} or {self.spool.root}")

    def wait_for_record(self, job_id: str, timeout: float | None) -> StoredJob:
        """Subscribed to the job's ``filed:<id>`` channel (``spoold_finish`` says there when
        its record is filed) before the first look, so that no filing goes unheard."""
        job_id = checked_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = self._talk(lambda client: client.pubsub(ignore_subscribe_messages=True))
        channel = self.key + FILED + job_id
        try:
            self._talk(lambda _client: pubsub.subscribe(channel))
            while True:
                stored = self.find(job_id)
                if stored.state in RECORD_STATES:
                    return stored
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return stored
                pause = LOOK_EVERY if left is None else min(left, LOOK_EVERY)
                self._listen(pubsub, pause)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def jobs(self, states: Sequence[str], now: float) -> list[JobSummary]:
        """Every job in these states, per state by id (as the file spool lists)."""
        found: list[JobSummary] = []
        for state in states:
            stored = self._stored_in(state)
            if state == "incoming":  # a file that is in Redis already is about to go
                in_redis = {job.id for job in stored}
                local = self._local_files()
                stored += [job for job in local if job.id not in in_redis]
            stored.sort(key=lambda job: job.id)
            found.extend(summarize(job, now) for job in stored)
        return found

    def ids(self, state: str) -> list[str]:
        """Per state by id, as the file spool lists (incoming: the local job files too)."""
        found = set(self._ids(state))
        if state == "incoming":
            found.update(job_id.removesuffix(".json") for job_id in self._local_names())
        return sorted(found)

    def read(self, state: str, job_ids: Sequence[str]) -> list[StoredJob]:
        stored = {job.id: job for job in self._read(job_ids) if job is not None}
        found = []
        for job_id in job_ids:
            job = stored.get(job_id)
            if job is None and state == "incoming":
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    job = admin.read_job(self.spool, "incoming", f"{checked_id(job_id)}.json")
            if job is not None and job.state == state:
                found.append(job)
        return found

    def finished_since(self, state: str, since: float) -> int:
        """``ZCOUNT`` of the record index: O(log n) however many records Redis holds."""
        if state not in RECORD_STATES:
            raise CatalogError(f"records are done or failed, not {state!r}")
        key = self.key + STATE_SET[state]
        return int(self._talk(lambda client: client.zcount(key, round(since * 1000), "+inf")))

    def _local_names(self) -> list[str]:
        try:
            return self.spool.job_names("incoming")
        except PermissionError:
            return []

    def status(self, now: float) -> SpoolStatus:
        counts = dict.fromkeys(("incoming", "scheduled", "active", "done", "failed"), 0)
        for state in ("tmp", "incoming"):  # this host's files; a watcher may not list them
            with contextlib.suppress(PermissionError):
                counts[state] = counts.get(state, 0) + len(self.spool.job_names(state))

        def count(client: redis.Redis) -> list[int]:
            pipe = client.pipeline(transaction=False)
            for state in STATE_SET.values():
                pipe.zcard(self.key + state)
            return list(pipe.execute())

        for state, number in zip(STATE_SET, self._talk(count), strict=True):
            counts[state] += number
        held_back = self._talk(lambda client: held_back_in(client, self.key))
        counts["incoming"] += sum(held_back.values())  # ready too, set aside in their lanes
        oldest = self._oldest_waiting(now)
        return SpoolStatus(
            root=self.spool.root,
            counts=counts,
            missing=[],
            oldest_waiting_id=oldest.id if oldest else None,
            oldest_waiting_age=oldest.age if oldest else None,
            daemon_pid=running_daemon_pid(self.spool),
            daemons=self._live_daemons(),
            held_back=held_back,
        )

    def _live_daemons(self) -> tuple[LiveDaemon, ...]:
        """The daemons heard of within their lease (a heartbeat comes every third of it),
        each with the jobs it holds now: read from the active jobs' owners, not from its
        last heartbeat, which may be a third of a lease old."""

        def read(client: redis.Redis) -> tuple[Any, Any, list[Any], list[Any]]:
            beats = client.hgetall(self.key + "daemons")
            server_time = client.time()
            active = client.zrange(self.key + "active", 0, -1)
            pipe = client.pipeline(transaction=False)
            for job_id in active:
                pipe.hget(f"{self.key}job:{text(job_id)}", "owner")
            return beats, server_time, active, pipe.execute()

        beats, (server_s, server_us), active, owners = self._talk(read)
        held: dict[str, list[str]] = {}
        for job_id, owner in zip(active, owners, strict=True):
            if owner is not None:
                held.setdefault(text(owner), []).append(text(job_id))
        server_ms = server_s * 1000 + server_us / 1000
        live = []
        for owner, raw in beats.items():
            try:
                beat = json.loads(raw)
                heard_ago = max(0.0, (server_ms - float(beat["seen"])) / 1000)
                if heard_ago > float(beat.get("lease", 30.0)):
                    continue
                running = tuple(sorted(held.get(text(owner), ())))
                live.append(LiveDaemon(str(beat["host"]), int(beat["pid"]), len(running),
                                       int(beat["max"]), heard_ago, running))  # fmt: skip
            except (ValueError, KeyError, TypeError):
                continue  # a stranger's entry
        return tuple(sorted(live, key=lambda daemon: (daemon.host, daemon.pid)))

    def running(self, now: float) -> list[RunningJob]:
        """The active jobs, longest running first (since their claim, on the server's clock)."""
        found = []
        for stored in self._stored_in("active"):
            summary = summarize(stored, now)
            found.append(
                RunningJob(
                    stored.id, summary.target, summary.attempts + 1, max(0.0, now - stored.mtime)
                )
            )
        return sorted(found, key=lambda job: -job.running_for)

    def failed_ids(self) -> list[str]:
        return sorted(self._ids("failed"))

    def retry(self, job_ids: Sequence[str]) -> RetryOutcome:
        """Each failed job waits again as submitted, attempts afresh, under its own id."""
        outcome = RetryOutcome(retried=[], errors=[])
        for position, job_id in enumerate(job_ids):
            try:
                outcome.retried.append(self._retry_one(job_id))
            except _Unreachable as exc:  # every other id would fail too, each after a timeout
                outcome.errors.append(f"cannot retry {job_id}: {exc}")
                rest = job_ids[position + 1 :]
                if rest:
                    outcome.errors.append(f"not retried either: {', '.join(rest)}")
                break
            except CatalogError as exc:
                outcome.errors.append(str(exc))
        return outcome

    def purge(self, state: str, older_than: float, now: float) -> list[str]:
        """Delete the records of ``state`` filed more than ``older_than`` seconds ago."""
        if state not in RECORD_STATES:
            raise CatalogError(f"purge works on done or failed, not {state!r}")
        before_ms = round((now - older_than) * 1000)
        removed: list[str] = []
        while True:
            batch = self._talk(
                lambda client: fcall(
                    client, "spoold_purge", self.key, state, before_ms, PURGE_BATCH
                )
            )
            removed.extend(text(job_id) for job_id in batch)
            if len(batch) < PURGE_BATCH:
                return removed

    def where(self, state: str) -> str:
        """The server and the key of the set holding ``state``'s jobs, for a message."""
        return f"{self.url} {self.key}{STATE_SET.get(state, state)}"

    def _local_files(self) -> list[StoredJob]:
        """The job files in this host's incoming/ (none for a watcher, who may not list it)."""
        try:
            return admin.stored_jobs(self.spool, "incoming")
        except PermissionError:
            return []

    def schedule_marks(self) -> dict[str, Mark]:
        return self._talk(lambda client: read_marks(client, self.key))

    def stats(self) -> list[Snapshot]:
        """The snapshot of each daemon that published one lately (they expire)."""

        def read(client: redis.Redis) -> list[Any]:
            owners = [text(owner) for owner in client.hkeys(self.key + "daemons")]
            return client.mget([f"{self.key}stats:{owner}" for owner in owners]) if owners else []

        found = []
        for raw in self._talk(read):
            if raw is None:
                continue  # expired, or not yet published
            with contextlib.suppress(ValueError):
                found.append(Snapshot.from_json(raw))
        return sorted(found, key=lambda snapshot: (snapshot.host, snapshot.pid))

    # -- reading and retrying one job --

    def _retry_one(self, job_id: str) -> str:
        job_id = checked_id(job_id)
        answer = text(self._talk(lambda client: fcall(client, "spoold_retry", self.key, job_id)))
        if answer == "ok":
            return job_id
        if answer == "missing":
            elsewhere = self.find(job_id)  # a job file in incoming/, or no such job
            state = elsewhere.state
        else:
            state = CLI_STATE.get(answer, answer)
        raise CatalogError(f"job {job_id} is in {state}/; only failed jobs can be retried")

    def _ids(self, state: str) -> list[str]:
        """The ids in the sorted set of CLI ``state`` (ready members carry their seq)."""
        if state == "incoming":
            ready = self._ready_members()
            return sorted(member[READY_AGE_DIGITS + READY_SEQ_DIGITS + 1 :] for member in ready)
        members = self._talk(lambda client: client.zrange(self.key + STATE_SET[state], 0, -1))
        return [text(member) for member in members]

    def _ready_members(self) -> list[str]:
        """The members of ready and of every class's lane (ready jobs set aside by a limit)."""

        def read(client: redis.Redis) -> list[Any]:
            lanes = [f"{self.key}lane:{text(c)}" for c in client.smembers(self.key + "lanes")]
            pipe = client.pipeline(transaction=False)
            for name in (self.key + "ready", *lanes):
                pipe.zrange(name, 0, -1)
            return [member for members in pipe.execute() for member in members]

        return [text(member) for member in self._talk(read)]

    def _stored_in(self, state: str) -> list[StoredJob]:
        """The jobs of CLI ``state`` in Redis; one that moved on meanwhile is skipped."""
        ids = self._ids(state)
        return [job for job in self._read(ids) if job is not None and job.state == state]

    def _read(self, ids: Sequence[str]) -> list[StoredJob | None]:
        """Each job as stored, None for one that is not (or no longer) there."""
        found: list[StoredJob | None] = []
        for start in range(0, len(ids), READ_BATCH):
            chunk = ids[start : start + READ_BATCH]

            def fetch(client: redis.Redis, chunk: Sequence[str] = chunk) -> list[Any]:
                pipe = client.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hmget(f"{self.key}job:{job_id}", FIELDS)
                return list(pipe.execute())

            rows = self._talk(fetch)
            found.extend(self._stored(job_id, row) for job_id, row in zip(chunk, rows, strict=True))
        return found

    def _stored(self, job_id: str, row: Sequence[bytes | None]) -> StoredJob | None:
        fields = dict(zip(FIELDS, row, strict=True))
        raw_state = fields["state"]
        if raw_state is None:
            return None
        state = CLI_STATE.get(text(raw_state), text(raw_state))
        if state in RECORD_STATES:
            data, moment = fields["record"], fields["finished"]
        else:
            data = fields["doc"] if fields["doc"] is not None else fields["spec"]
            moment = fields["claimed"] if state == "active" else fields["enq"]
        path = Path(f"{self.key}job:{job_id}")
        return _decoded(job_id, state, path, _seconds(moment), data or b"")

    def _oldest_waiting(self, now: float) -> JobSummary | None:
        """The waiting job submitted longest ago: in Redis (lowest seq), or a job file here."""
        candidates = [summarize(job, now) for job in self._local_files()]
        oldest_id = self._lowest_seq()
        if oldest_id is not None:
            stored = self._read([oldest_id])[0]
            if stored is not None and stored.state in ("incoming", "scheduled"):
                candidates.append(summarize(stored, now))
        return max(candidates, key=lambda job: job.age, default=None)

    def _lowest_seq(self) -> str | None:
        """The id of the waiting job (ready or due) with the lowest seq: the first submitted."""
        best: tuple[int, str] | None = None
        for member in self._ready_members():
            order = member[READY_AGE_DIGITS : READY_AGE_DIGITS + READY_SEQ_DIGITS]
            seq, job_id = int(order), member[READY_AGE_DIGITS + READY_SEQ_DIGITS + 1 :]
            best = min(best, (seq, job_id)) if best else (seq, job_id)
        due = [text(member) for member in self._talk(lambda c: c.zrange(self.key + "due", 0, -1))]
        for start in range(0, len(due), READ_BATCH):
            chunk = due[start : start + READ_BATCH]

            def seqs(client: redis.Redis, chunk: Sequence[str] = chunk) -> list[Any]:
                pipe = client.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hget(f"{self.key}job:{job_id}", "seq")
                return list(pipe.execute())

            for job_id, seq in zip(chunk, self._talk(seqs), strict=True):
                if seq is not None:
                    candidate = (int(seq), job_id)
                    best = min(best, candidate) if best else candidate
        return best[1] if best else None

    # -- talking to Redis --

    def _listen(self, pubsub: PubSub, pause: float) -> None:
        """Wait up to ``pause`` seconds for what the subscription says (its word is a hint)."""
        self._talk(lambda _client: pubsub.get_message(timeout=pause))

    def _talk(self, action: Callable[[redis.Redis], T]) -> T:
        """``action(client)``, with every Redis error a one-line CatalogError.

        Unreachable Redis raises ``_Unreachable`` (a CatalogError), so that a
        retry of many ids stops at the first.
        """
        with redis_errors(self.settings):
            if self._client is None:
                self._client = connect(self.settings)
            return action(self._client)


class _Unreachable(CatalogError):
    """Redis could not be reached (or is out of memory): nothing more can be done now."""


@contextmanager
def redis_errors(settings: SpoolSettings) -> Iterator[None]:
    """Turn Redis's trouble into one-line CatalogErrors that name the server (no password).

    Used by the catalog and by the CLI's ``submit`` and ``check``; a missing
    redis package is one line too.
    """
    url = safe_url(settings.url)
    try:
        import redis
    except ImportError:
        raise CatalogError(
            "[spool] backend = \"redis\" needs the redis package: pip install 'spoold[redis]'"
        ) from None
    try:
        yield
    except RedisUnavailable as exc:
        # ``connection.call`` words it "cannot reach Redis: <why>", and the submitter adds
        # " (<url>)"; what it wraps (its context) says whether the login was refused.
        refused = _cause(exc, redis.AuthenticationError)
        if refused is not None:
            raise _login_refused(url, refused) from None
        reason = (exc.strerror or str(exc)).removeprefix("cannot reach Redis: ")
        reason = reason.removesuffix(f" ({url})")
        if exc.errno == errno.ENOSPC:
            raise _Unreachable(f"Redis at {url}: {reason}") from None
        raise _Unreachable(f"cannot reach Redis at {url}: {shorter(reason)}") from None
    except redis.AuthenticationError as exc:
        raise _login_refused(url, exc) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise _Unreachable(f"cannot reach Redis at {url}: {shorter(why(exc))}") from None
    except redis.RedisError as exc:
        raise CatalogError(f"Redis at {url} refused the call: {why(exc)}") from None


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    """The exception of ``kind`` that ``exc`` was raised while handling, if any."""
    seen = exc.__context__
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__context__
    return seen


def _login_refused(url: str, exc: Exception) -> _Unreachable:
    """A wrong or missing password (redis-py words a missing one as HELLO's complaint)."""
    reason = why(exc)
    if reason.startswith("HELLO must be called"):
        reason = "it needs a password ([spool] url: redis://:PASSWORD@host:port/db)"
    return _Unreachable(f"Redis at {url} refused the login: {reason}")


def _decoded(job_id: str, state: str, path: Path, mtime: float, data: bytes) -> StoredJob:
    body = data.decode("utf-8", errors="replace")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return StoredJob(job_id, state, path, mtime, None, body, problem="not valid JSON")
    if not isinstance(document, dict):
        return StoredJob(job_id, state, path, mtime, None, body, problem="not a JSON object")
    return StoredJob(job_id, state, path, mtime, document, body)


def _seconds(milliseconds: bytes | None) -> float:
    try:
        return int(milliseconds or 0) / 1000
    except ValueError:
        return 0.0


__all__ = ["RedisCatalog", "redis_errors"]
