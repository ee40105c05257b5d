"""The seam: what the core needs from where jobs live, in words that name no place.

A backend keeps jobs waiting, hands them out, and files their records; it
never decides. The core hands it a ``Judge`` (parse, owner and allowlist
checks) for what it reads, and applies the policy (retry, give up, rerun,
reject) to what it gets back. Three Protocols: ``Engine`` for the daemon,
``Catalog`` for the CLI and a dashboard, ``Submitter`` for the client. The
file spool implements them (``spoold.backends.files``); a test backend
in memory does too (``tests/memory_backend.py``), and both pass one suite
(``tests/test_backends.py``).

Claims. Taking a job out of waiting gives the taker a ``Claim``: the job's
id, who holds it (``owner``), until when (``expires_at``, on the backend's
clock) and a **fencing token**, a number that grows with every claim of
that job. Every later move of the job (``finish``, ``schedule``,
``unclaim``, ``renew``) presents the claim, and a backend refuses it with
``StaleClaim``, changing nothing, unless that claim still holds the job: a
job claimed again (after a lapsed lease, say) cannot be filed by the holder
of the older claim, so it ends in exactly one record. With one daemon on
a locked spool a claim never lapses (``lease`` is infinite); a backend
shared by several daemons sets a finite ``lease``, the core renews its
running claims every third of it, and any daemon reruns what ``expired``
returns.

Time. Lease deadlines, due times and the moments a backend records are on
the backend's clock (``Engine.clock``): the file spool's is this host's,
a shared backend's is its server's. The core reads it once per turn and
passes it down as ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spoold.job import Job
from spoold.snapshot import Snapshot

# -- what the core judges a submission to be --


@dataclass(frozen=True, slots=True)
class Accepted:
    job: Job


@dataclass(frozen=True, slots=True)
class Refused:
    job_id: str
    reason: str  # the record's ``reason``
    raw: bytes  # the submitted bytes, kept in the rejection record
    incomplete: bool = False  # not (yet) a whole document: its writer may still be at it
    kind: str = "bad_field"  # why, in a fixed word (spoold.job.REJECTION_KINDS), for metrics


@dataclass(frozen=True, slots=True)
class Origin:
    """What a backend knows of a submission besides its bytes."""

    job_id: str  # the id it came under (a backend makes one up if it came without)
    received_at: float  # when it was written (a file's mtime)
    uid: int | None = None  # who wrote it, where the backend knows (a file's owner)
    gid: int | None = None
    trusted: bool = False  # written by the daemon itself: its bookkeeping is kept


Verdict = Accepted | Refused
Judge = Callable[[bytes, Origin], Verdict]


# -- periodic jobs --


@dataclass(frozen=True, slots=True)
class Mark:
    """How far a schedule has got, kept by the backend (and not in a record, so that
    retention cannot make a firing look new)."""

    considered: float  # the newest firing time dealt with: fired, found fired, or skipped
    last_job: str | None = None  # the id of its newest firing that was submitted
    last_fired: float | None = None  # ... and the firing time it was for


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing of a schedule, to submit unless it was fired already."""

    schedule: str  # its name
    at: float  # the firing time
    job_id: str  # derived from both (spoold.schedules.firing_id)
    payload: bytes  # the job document
    exclusive: bool  # overlap = false: not while its last firing waits or runs


FIRED, ALREADY, OVERLAP = "fired", "already", "overlap"  # what ``Engine.fire`` answers


# -- claims --


class Unavailable(OSError):
    """The backend cannot be reached now (a server down, a network cut): try again later.

    An OSError, so the loop and the held filings treat it as they treat a full
    disk; its message is one line and is logged without a traceback. The core
    tries again within ``RETRY_LONGEST`` seconds, not the 30 s of a full disk: a
    server comes back by itself, and every second of waiting brings leases closer.
    """

    RETRY_LONGEST = 2.0

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class StaleClaim(Exception):
    """A move that presented a claim which no longer holds the job: refused, nothing changed."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to move one job on: only the latest claim of a job holds it."""

    job_id: str
    owner: str  # the daemon that holds it
    token: int  # the fencing token: grows with every claim of this job
    expires_at: float = math.inf  # on the backend's clock; renewed while the attempt runs


@dataclass(frozen=True, slots=True)
class Taken:
    """A ready job, claimed to run."""

    claim: Claim
    job: Job
    source: str = ""  # how the backend names where it waited (a refusal record's ``file``)
    # Submitted straight to the backend (a client talking to Redis), not through intake:
    # judged at this claim for the first time, so the core says it was received.
    fresh: bool = False
    # A cancel asked for while it ran (or waited on its way back): filed cancelled, not run.
    cancelled_by: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A submission claimed so that its rejection record can be filed."""

    claim: Claim
    refused: Refused
    source: str  # how the backend names what was submitted (the record's ``file``)
    received_at: float


@dataclass(frozen=True, slots=True)
class Arrival:
    """A submission the backend read and had judged; the core says what becomes of it."""

    ref: str  # the backend's handle on it, handed back to ``accept`` / ``claim_arrival``
    verdict: Verdict
    received_at: float
    # Judged again: the backend put it back to be looked at anew (a retry whose record is
    # still going), so the core said it was received the first time, not again.
    again: bool = False


@dataclass(frozen=True, slots=True)
class Recovered:
    """A claimed job that was running, or on its way somewhere, when its daemon went away."""

    claim: Claim
    verdict: Verdict  # the job as stored (a Refused one is filed as rejected)
    claimed_at: float  # when the lost attempt's claim was made
    source: str = ""  # for a Refused one: the record's ``file``


@dataclass(frozen=True, slots=True)
class Counts:
    """What is waiting: the status line, burst mode's end, metrics."""

    ready: int  # runnable now
    waiting: int  # waiting for a time (run_at, retry delay)
    again: int  # of those: put back to wait by this daemon (retries, reruns, put-backs)
    busy: bool  # submissions seen but not yet read or judged
    # Of the ready: passed over because their class is at its [limits], by class.
    held_back: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Places:
    """The backend's words for where a job is, for the core's log lines."""

    claimed: str  # "active/"
    waiting: str  # "scheduled/"
    intake: str  # what the daemon watches: "/srv/spool/incoming"


class Engine(Protocol):
    """The daemon's side: where jobs wait, how one is taken, where it ends."""

    places: Places
    lease: float  # seconds a claim holds without renewal (math.inf: for ever)

    def clock(self) -> float:
        """The backend's time, in seconds since the epoch."""
        ...

    def open(self, judge: Judge, now: float) -> list[Recovered]:
        """Take over: tidy, index what waits; return what was claimed when a daemon died."""
        ...

    def watch(self, now: float) -> None:
        """Start noticing submissions (``descriptors`` says what the loop then waits on)."""
        ...

    def descriptors(self) -> Sequence[int]:
        """What the loop waits on for the backend, now (a reconnect may change them):
        readable means ``receive`` may have something."""
        ...

    def close(self) -> None:
        """Stop watching and let go (a locked spool is unlocked); safe to call twice."""
        ...

    def next_wakeup(self, now: float) -> float | None:
        """When ``receive`` next has something to do without the descriptor waking the loop."""
        ...

    def receive(self, now: float) -> list[Arrival]:
        """Release due jobs; read and judge new submissions, handing back what to decide."""
        ...

    def accept(self, arrival: Arrival) -> None:
        """An accepted arrival becomes ready to run."""
        ...

    def claim_arrival(self, arrival: Arrival, now: float) -> Taken | Refusal | None:
        """Claim an arrival (to refuse it, or to make it wait); None if not now or gone."""
        ...

    def take_ready(self, now: float) -> Taken | Refusal | None:
        """Claim the best ready job (highest priority, then oldest) whose class is not at its
        ``[limits]`` (``spoold.limits``): jobs of a class that is are passed over, and count
        as held back; None if none is ready."""
        ...

    def unclaim(self, claim: Claim, job: Job, due_at: float) -> None:
        """A claimed job that never started: back to wait until ``due_at``, unchanged."""
        ...

    def schedule(self, claim: Claim, job: Job, *, again: bool) -> None:
        """Move a claimed job to wait until ``job.due_at`` (``again``: retry, rerun, put-back)."""
        ...

    def finish(self, claim: Claim, status: str, record: dict[str, Any]) -> str:
        """File the job's record (``done`` or ``failed``) exactly once; the id filed under.
        The follow-up the record names (``spoold.followups.children``) is submitted with
        it, once: a crash between the two neither loses nor doubles it."""
        ...

    def prefetch(self, on: bool) -> None:
        """While on, the core means to take a job for each slot a finish frees, this turn:
        a backend whose calls are round trips may claim it with the finish, once the record
        is filed, and hand it out at the next ``take_ready``; ``end_turn`` puts back, as
        it was, what no take wanted. (Where a claim costs no trip, nothing to do.)"""
        ...

    def renew(self, claims: Sequence[Claim], now: float) -> list[Claim]:
        """Extend running claims' leases; return those that are lost (stale or lapsed)."""
        ...

    def expired(self, now: float) -> list[Recovered]:
        """Claim again, for this daemon, jobs whose lease lapsed: their attempts were lost."""
        ...

    def end_turn(self) -> None:
        """Make the turn's claims and moves durable (batched: once a turn)."""
        ...

    def purge_records(self, status: str, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` records of ``status`` finished before then (retention)."""
        ...

    def counts(self) -> Counts: ...

    def oldest_ready(self, now: float) -> float | None:
        """When the job that has waited longest for a slot became due (submitted, its
        ``run_at``, its retry's time), on the backend's clock; None if none is due."""
        ...

    def schedule_marks(self) -> dict[str, Mark]:
        """Each schedule's mark, by name (a schedule never fired has none)."""
        ...

    def fire(self, firing: Firing) -> str:
        """Submit the firing unless its schedule's mark is at or past it, or its id is
        taken (ALREADY: it was fired), or it is ``exclusive`` and the mark's last job
        still waits or runs (OVERLAP); then move the mark to it. Atomic against every
        other daemon of the spool: one firing is one job."""
        ...

    def skip_firings(self, schedule: str, upto: float) -> None:
        """Move the mark to ``upto`` (never back), submitting nothing: missed firings let go."""
        ...

    def cancel(self, job_id: str, by: int, now: float) -> Taken | Refusal | bool:
        """Claim a job that waits (ready or scheduled), so that the core files it cancelled.
        One that runs under another daemon's claim is marked cancelled by ``by`` (a uid)
        and that daemon told (its ``cancellations``): True. False if it is neither."""
        ...

    def cancellations(self) -> list[tuple[str, int]]:
        """(job id, uid) of the jobs this daemon holds that were marked cancelled by
        another daemon since the last call (never: one daemon on a file spool)."""
        ...

    def view_group(self) -> int | None:
        """The group that may read every job and record (the watching group), if any."""
        ...

    def follow_records(self, job_ids: Collection[str]) -> list[str]:
        """Follow the filing of these jobs' records (and no longer of others'), for those
        who wait for them; return those heard filed since the last call, by any daemon
        (never: one daemon on a file spool, whose own filings the core sees)."""
        ...

    def publish_stats(self, snapshot: bytes, keep_for: float) -> None:
        """Put this daemon's stats snapshot (``spoold.snapshot``) where watchers read it,
        replacing its last one; a backend that can expire it does so after ``keep_for``
        seconds, so that a dead daemon's figures age out."""
        ...


# -- the CLI's and a dashboard's side --


class CatalogError(Exception):
    """A problem the operator can fix, worded in one line."""


class NoSuchJob(CatalogError):
    """No job or record has this id (``find``): an answer, not a trouble."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    """One job or record as stored."""

    id: str
    state: str
    path: Path  # where it is stored (a file; shown by ``spoold show``)
    mtime: float
    document: dict[str, Any] | None  # None when it cannot be read as a JSON object
    text: str  # its text (undecodable bytes replaced), for what is not JSON
    problem: str | None = None  # why ``document`` is None


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One line of ``spoold list``."""

    id: str
    state: str
    status: str | None
    target: str
    attempts: int
    age: float
    error: str | None


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What ``spoold status`` reports."""

    root: Path
    counts: dict[str, int]
    missing: list[str]
    oldest_waiting_id: str | None
    oldest_waiting_age: float | None
    daemon_pid: int | None  # -1: a daemon holds the lock but its pid is unreadable
    daemons: tuple[LiveDaemon, ...] = ()  # a shared backend's daemons heard of lately
    # Ready jobs passed over because their class is at its [limits], by class (for the file
    # spool, as its daemon last published it in its stats).
    held_back: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveDaemon:
    """A daemon on a shared backend, as it last said of itself."""

    host: str  # its host_id
    pid: int
    busy: int  # attempts running
    max: int  # its concurrency
    heard_ago: float  # seconds since the backend last heard of it
    running: tuple[str, ...]  # the ids of the jobs it runs


@dataclass(frozen=True, slots=True)
class RunningJob:
    """One claimed job, for ``spoold status --verbose``."""

    id: str
    target: str
    attempt: int  # the attempt running now, counting from 1
    running_for: float  # seconds since it was claimed


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """Which jobs ``spoold retry`` put back, and why the others were not."""

    retried: list[str]
    errors: list[str]


class Catalog(Protocol):
    """Read and repair jobs and records: ``spoold status/list/show/retry/purge``, a dashboard."""

    def find(self, job_id: str) -> StoredJob:
        """The job or record with this id, wherever it is; CatalogError if there is none."""
        ...

    def jobs(self, states: Sequence[str], now: float) -> list[JobSummary]:
        """Every job in these states, oldest first."""
        ...

    def ids(self, state: str) -> list[str]:
        """The ids of the jobs in ``state``, oldest id first (ids sort by submission time):
        names only, nothing read, so that a dashboard pages through 100,000 cheaply."""
        ...

    def read(self, state: str, job_ids: Sequence[str]) -> list[StoredJob]:
        """These jobs as stored in ``state``, in the order given; one that moved on or
        is gone meanwhile is left out."""
        ...

    def finished_since(self, state: str, since: float) -> int:
        """How many records of ``state`` (done, failed) were filed at or after ``since``."""
        ...

    def status(self, now: float) -> SpoolStatus: ...

    def running(self, now: float) -> list[RunningJob]: ...

    def failed_ids(self) -> list[str]: ...

    def retry(self, job_ids: Sequence[str]) -> RetryOutcome:
        """Submit failed jobs again, each under a new id."""
        ...

    def purge(self, state: str, older_than: float, now: float) -> list[str]:
        """Delete the records of ``state`` finished more than ``older_than`` seconds ago."""
        ...

    def where(self, state: str) -> str:
        """How the backend names where the jobs of ``state`` are (a folder)."""
        ...

    def schedule_marks(self) -> dict[str, Mark]:
        """Each schedule's mark, by name, as the engine keeps it (``spoold schedule``)."""
        ...

    def wait_for_record(self, job_id: str, timeout: float | None) -> StoredJob:
        """The job's record once it is filed (by any daemon), woken by the backend's own
        notice of it, with a fallback look no more often than every second; the job as it
        is when ``timeout`` seconds run out (None: no limit). CatalogError if none."""
        ...

    def stats(self) -> list[Snapshot]:
        """The daemons' latest stats snapshots, one per daemon (a stale one too: the reader
        tells by ``Snapshot.stale``); one that cannot be read is left out."""
        ...


# -- the client's side --


class Submitter(Protocol):
    """Hand a job document in; the id it is known by comes back before anything runs."""

    def submit(self, payload: bytes, *, now: float) -> str: ...
