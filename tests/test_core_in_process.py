"""The daemon's decisions, driven in process: ``Daemon.tick(now)`` on each backend (the real
file spool, and the memory engine of tests/memory_backend.py), with the launcher stood in
(tests/standin.py), so that time is the test's to choose.

No subprocess and no sleeping: each test submits a job (through the real client, on the
file spool), calls ``tick`` at the moments it wants, feeds the dispatcher the launcher's
reports, and reads what was filed. Each decision is also tested once against the real
daemon and launcher; the docstrings name where.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from harness import Spool, write_config
from memory_backend import MemoryEngine
from standin import StandInLauncher

from spoold.backends import open_engine
from spoold.client import _encode, _job_document, _start_time, run_background_job
from spoold.config import RetentionSettings, load_config
from spoold.core.backend import Engine
from spoold.core.daemon import Daemon
from spoold.exec.launcher import KILL_GRACE
from spoold.exec.protocol import Outcome
from spoold.identity import JobIdentity
from spoold.live import Live
from spoold.snapshot import Snapshot

BACKENDS = ("files", "memory")


class Core:
    """One daemon's rooms on a backend, its launchers stood in."""

    def __init__(
        self, tmp_path: Path, worker: dict[str, Any], *, burst: bool, backend: str, lease: float
    ) -> None:
        self.spool = Spool(tmp_path / "spool").create()
        path = write_config(tmp_path / "config.toml", self.spool, {"worker": worker})
        self.live = Live(load_config(path), JobIdentity())
        self.burst = burst
        self.now = time.time()
        self.memory = (
            MemoryEngine(lease=lease, clock_start=self.now) if backend == "memory" else None
        )
        self.launchers: list[StandInLauncher] = []
        self.elapsed = 0.0  # the daemon's monotonic clock: the test's seconds since start
        self.daemon = self._start(self.now)

    def _start(self, now: float) -> Daemon:
        engine: Engine = self.memory if self.memory is not None else open_engine(self.live)
        daemon = Daemon(self.live, engine, burst=self.burst, new_launcher=self._launcher,
                        monotonic=lambda: self.elapsed)  # type: ignore[arg-type]  # fmt: skip
        daemon.open(now)
        daemon.watch(now)
        return daemon

    def restart(self, after: float) -> None:
        """The daemon goes away mid-attempt (closed, its claims left as they are) and a new
        one opens the same backend ``after`` seconds past the test's start."""
        self.daemon.close()
        self.daemon = self._start(self.now + after)

    def _launcher(self) -> StandInLauncher:
        self.launchers.append(StandInLauncher())
        return self.launchers[-1]

    @property
    def launcher(self) -> StandInLauncher:
        return self.launchers[-1]

    def submit(self, class_name: str = "Noop", **options: Any) -> str:
        target = f"testjobs.{class_name}"
        if self.memory is None:
            return run_background_job(target, "run", spool=self.spool.root, durable=False,
                                      **options)  # fmt: skip
        now = time.time()  # the client's clock, as run_background_job reads it
        document = _job_document(target, "run", None, now=now)
        run_at = _start_time(now, options.pop("delay", None), None)
        document.update({"run_at": run_at} if run_at is not None else {}, **options)
        return self.memory.submit(_encode(document))

    # -- what was filed, whatever the backend --

    def record(self, job_id: str, status: str) -> dict[str, Any] | None:
        """The record filed under ``job_id`` in done or failed, or None."""
        if self.memory is None:
            return self.spool.record(job_id, status)
        return self.memory.records[status].get(job_id)

    def waiting_ids(self) -> list[str]:
        if self.memory is None:
            return self.spool.job_ids("scheduled")
        return self.memory.waiting_ids()

    def waiting_history(self, job_id: str) -> list[dict[str, Any]]:
        if self.memory is None:
            document = self.spool.record(job_id, "scheduled")
            assert document is not None, f"{job_id} is not waiting"
            return list(document.get("history", []))
        job = self.memory.waiting_job(job_id)
        assert job is not None, f"{job_id} is not waiting"
        return [dict(entry) for entry in job.history]

    def fill_disk(self) -> None:
        """Make every filing fail for want of room (files: the destinations taken away,
        which fails the same step with ENOENT that a full disk fails with ENOSPC)."""
        if self.memory is not None:
            self.memory.full = True
            return
        for state in ("done", "failed", "scheduled"):
            os.rename(self.spool.folder(state), self.spool.root / f"{state}.away")

    def free_disk(self) -> None:
        if self.memory is not None:
            self.memory.full = False
            return
        for state in ("done", "failed", "scheduled"):
            os.rename(self.spool.root / f"{state}.away", self.spool.folder(state))

    # -- driving it --

    def launched(self, class_name: str = "Noop", **options: Any) -> str:
        """Submit a job and run a turn, which hands it to the launcher; its id."""
        job_id = self.submit(class_name, **options)
        self.tick()
        return job_id

    def started(self, job_id: str) -> None:
        self.launcher.started(job_id)
        self.report()

    def tick(self, after: float = 0.0) -> None:
        """A turn of the loop ``after`` seconds past the test's start."""
        self.elapsed = after
        self.daemon.tick(self.now + after)

    def report(self, after: float = 0.0) -> None:
        """Hand the dispatcher what the stand-in launcher has queued."""
        self.daemon.dispatcher.on_readable(self.now + after)

    def run_once(self, job_id: str, outcome: str = Outcome.OK, **fields: Any) -> None:
        self.started(job_id)
        self.launcher.finished(job_id, outcome, **fields)
        self.report()


@pytest.fixture(params=BACKENDS)
def make_core(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made: list[Core] = []

    def make(*, burst: bool = False, lease: float = float("inf"), **worker: Any) -> Core:
        where = tmp_path / str(len(made))
        where.mkdir()
        core = Core(where, {"retry_delay": 10.0, **worker}, burst=burst, backend=request.param,
                    lease=lease)  # fmt: skip
        made.append(core)
        return core

    yield make
    for core in made:
        core.daemon.close()


def test_a_job_runs_once_and_is_filed_as_done(make_core: Any) -> None:
    """Real daemon: tests/test_records.py."""
    core = make_core()
    job_id = core.launched()
    assert core.launcher.keys == [job_id]
    core.run_once(job_id, result=7)
    record = core.record(job_id, "done")
    assert record is not None and record["result"] == 7
    assert [e["outcome"] for e in record["history"]] == ["ok"]
    assert core.daemon.tally.filed_by_status == {"done": 1}


def test_a_failed_attempt_runs_again_after_its_delay_then_fails_for_good(make_core: Any) -> None:
    """Real daemon: tests/test_retries.py."""
    core = make_core(max_retries=1)
    job_id = core.launched()
    core.run_once(job_id, Outcome.ERROR, error="ValueError: no", traceback="...")
    assert core.waiting_ids() == [job_id]
    core.tick(after=9.0)
    assert core.launcher.keys == [job_id], "retried before its 10 s delay"
    core.tick(after=10.5)
    assert core.launcher.keys == [job_id, job_id]
    core.run_once(job_id, Outcome.ERROR, error="ValueError: no again")
    record = core.record(job_id, "failed")
    assert record is not None
    assert record["reason"] == "error on attempt 2 (retries exhausted): ValueError: no again"
    assert core.daemon.tally.anything_failed


def test_the_higher_priority_runs_first_when_one_slot_is_free(make_core: Any) -> None:
    """Real daemon: tests/test_order.py."""
    core = make_core(concurrency=1)
    low = core.submit(priority=0)
    high = core.submit(priority=10)
    core.tick()
    assert core.launcher.keys == [high]
    core.run_once(high)
    core.tick()
    assert core.launcher.keys == [high, low]


def test_a_job_with_a_run_at_ahead_waits_until_then(make_core: Any) -> None:
    """Real daemon: tests/test_retries.py and tests/test_records.py (run_at, delay)."""
    core = make_core()
    job_id = core.submit(delay=100)
    core.tick()
    assert core.launcher.keys == []
    assert core.waiting_ids() == [job_id]
    core.tick(after=50)
    assert core.launcher.keys == []
    core.tick(after=101)
    assert core.launcher.keys == [job_id]


def test_a_job_the_launcher_could_not_start_goes_back_unchanged_and_launches_pause(
    make_core: Any,
) -> None:
    """Real daemon: tests/test_resources.py (fork refused under RLIMIT_NPROC)."""
    core = make_core()
    job_id = core.launched()
    core.launcher.not_started(job_id, errno.EAGAIN, "Resource temporarily unavailable")
    core.report()
    assert core.waiting_ids() == [job_id]
    assert core.waiting_history(job_id) == []
    assert not core.daemon.dispatcher.can_launch(core.now)
    core.tick(after=5.0)
    assert core.launcher.keys == [job_id, job_id]


def test_when_the_launcher_dies_its_attempts_crash_and_a_new_one_starts(
    make_core: Any,
) -> None:
    """Real daemon: tests/test_bad_jobs.py (the launcher killed)."""
    core = make_core()
    job_id = core.launched()
    core.started(job_id)
    core.launcher.gone = True
    core.report()
    assert len(core.launchers) == 2
    history = core.waiting_history(job_id)
    assert [(e["outcome"], e["error"]) for e in history] == [
        ("crashed", "the launcher process died")
    ]


def test_a_stop_waits_then_kills_with_a_grace_and_a_second_stop_kills_at_once(
    make_core: Any,
) -> None:
    """Real daemon: tests/test_signals.py and tests/test_recovery.py (SIGTERM, twice)."""
    core = make_core(shutdown_timeout=5.0)
    job_id = core.launched()
    core.started(job_id)
    core.daemon.flags.stop = 1
    core.tick(after=1.0)
    assert core.launcher.kills == []
    core.tick(after=6.5)
    assert core.launcher.kills == [(job_id, KILL_GRACE)]
    core.daemon.flags.stop = 2
    core.tick(after=7.0)
    assert core.launcher.kills == [(job_id, KILL_GRACE), (job_id, 0.0)]


def test_burst_mode_waits_for_a_retry_and_then_says_a_job_failed(make_core: Any) -> None:
    """Real daemon: tests/test_burst.py."""
    core = make_core(burst=True, max_retries=1)
    job_id = core.launched()
    core.run_once(job_id, Outcome.CRASHED, error="killed by signal 9 (SIGKILL)", signal=9)
    assert not core.daemon.finished(), "burst ended with a retry still waiting"
    core.tick(after=11.0)
    core.run_once(job_id, Outcome.CRASHED, error="killed by signal 9 (SIGKILL)", signal=9)
    assert core.daemon.finished()
    assert core.daemon.tally.anything_failed


def test_exponential_backoff_doubles_the_delay_up_to_max_delay(make_core: Any) -> None:
    """Real daemon: tests/test_retries.py (exponential backoff)."""
    core = make_core(max_retries=3, backoff="exponential", max_delay=25.0)
    job_id = core.launched()
    finished_at = core.now
    for delay in (10.0, 20.0, 25.0):  # 10, then 20, then 40 capped at 25
        core.run_once(job_id, Outcome.ERROR, error="ValueError: no")
        finished_at = time.time()  # at or after the stand-in's finished_at stamp
        attempts = len(core.launcher.keys)
        core.tick(after=finished_at - core.now + delay - 0.5)
        assert len(core.launcher.keys) == attempts, f"retried before its {delay:g}s delay"
        core.tick(after=finished_at - core.now + delay + 0.5)
        assert len(core.launcher.keys) == attempts + 1, f"not retried after {delay:g}s"
    core.run_once(job_id, Outcome.ERROR, error="ValueError: no")
    record = core.record(job_id, "failed")
    assert record is not None and record["attempts"] == 4


def test_an_outcome_that_cannot_be_filed_is_held_and_nothing_starts_until_it_is(
    make_core: Any, log_lines: list[str]
) -> None:
    """Real daemon: tests/test_resources.py (a full tmpfs) and tests/test_held_outcomes.py."""
    core = make_core()
    first = core.launched()
    core.fill_disk()
    core.run_once(first)
    second = core.submit()
    core.tick(after=0.01)
    assert core.launcher.keys == [first], "an attempt started while an outcome was held"
    assert core.record(first, "done") is None
    assert any(f"job {first}: cannot file its outcome" in line for line in log_lines)
    core.free_disk()
    core.tick(after=60.0)  # past any backoff
    assert core.record(first, "done") is not None
    assert core.launcher.keys == [first, second]
    core.tick(after=120.0)
    assert core.daemon.tally.filed_by_status == {"done": 1}, "the held outcome was filed twice"


@pytest.mark.parametrize("make_core", ["memory"], indirect=True)
def test_a_lapsed_lease_kills_the_attempt_reruns_the_job_and_refuses_the_old_outcome(
    make_core: Any, log_lines: list[str]
) -> None:
    """Memory only: the file spool's claims never lapse (one daemon holds its lock), so no
    real daemon can lose a lease yet; the Redis backend (issue #15) tests it for real."""
    core = make_core(lease=30.0)
    job_id = core.launched()
    core.started(job_id)
    core.tick(after=9.0)
    core.tick(after=11.0)  # renewed at a third of the lease: still held
    assert core.launcher.kills == []
    core.tick(after=11.0 + 31.0)  # no renewal for longer than the lease (a frozen loop, say)
    assert core.launcher.kills == [(job_id, 0.0)]
    assert any(f"job {job_id}: lease lost" in line for line in log_lines)
    assert core.waiting_ids() == [job_id], "the lapsed job was not put back to rerun"
    core.tick(after=43.0)
    assert core.launcher.keys == [job_id], "rerun under the key of the attempt still stopping"
    # The killed attempt still reports; its claim is stale, so nothing is filed.
    core.launcher.finished(job_id, Outcome.OK, result="late")
    core.report(after=43.5)
    assert core.record(job_id, "done") is None
    assert any("no longer holds it" in line for line in log_lines)
    core.tick(after=45.0)
    assert core.launcher.keys == [job_id, job_id], "the rerun did not start"
    core.run_once(job_id, result="rerun")
    record = core.record(job_id, "done")
    assert record is not None and record["result"] == "rerun"
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "ok"]
    assert core.daemon.tally.filed_by_status == {"done": 1}


def test_what_a_dead_daemon_held_is_rerun_as_interrupted_by_the_next(make_core: Any) -> None:
    """Real daemon: tests/test_recovery.py (SIGKILL mid-attempt, then a restart)."""
    core = make_core()
    job_id = core.launched()
    core.started(job_id)
    core.restart(after=5.0)
    core.tick(after=6.0)
    assert core.launcher.keys == [job_id]
    core.run_once(job_id)
    record = core.record(job_id, "done")
    assert record is not None
    assert [(e["outcome"], e.get("cause")) for e in record["history"]] == [
        ("interrupted", "daemon_died"),
        ("ok", None),
    ]


@pytest.mark.parametrize("make_core", ["files"], indirect=True)
def test_a_file_both_listed_and_named_by_the_watch_is_received_once(
    make_core: Any, log_lines: list[str]
) -> None:
    """Files only (the watch and the listing are the file spool's). Real daemon: the
    received counts of tests/test_events.py."""
    core = make_core()
    job_id = core.submit()
    core.daemon.engine.receiver.next_rescan = 0.0  # this turn lists incoming/ as well
    core.tick()
    received = [line for line in log_lines if f"job {job_id} received" in line]
    assert len(received) == 1, received
    assert core.launcher.keys == [job_id]


def test_retention_removes_the_records_past_their_time_and_keeps_the_rest(
    make_core: Any, log_lines: list[str]
) -> None:
    """Real daemon: tests/test_redis_daemon.py (retention on the Redis backend)."""
    core = make_core()
    core.daemon.live.swap(
        replace(core.daemon.config, retention=RetentionSettings(done=3600.0, failed=None)),
        core.daemon.live.identity,
    )
    old = core.launched()
    core.run_once(old)
    if core.memory is not None:
        core.memory.records["done"][old]["finished_at"] = core.now - 7200
    else:
        path = core.spool.folder("done") / f"{old}.json"
        os.utime(path, (core.now - 7200, core.now - 7200))
    new = core.launched()
    core.run_once(new)
    core.tick(after=61.0)  # retention runs once a minute
    assert core.record(old, "done") is None
    assert core.record(new, "done") is not None
    assert any("retention: removed 1 done record(s) finished more than 1h ago" in line
               for line in log_lines)  # fmt: skip


@pytest.mark.parametrize("make_core", ["memory"], indirect=True)
def test_a_daemon_that_cannot_renew_for_most_of_a_lease_kills_its_attempts_itself(
    make_core: Any, log_lines: list[str]
) -> None:
    """Self-fencing, by the daemon's own monotonic clock: with a 30 s lease and the backend
    unreachable, renewals fail from 10 s on; past 25 s (the lease minus its 5 s margin)
    the attempt is killed, once, and logged as a lost lease. Memory only: the file spool's
    claims never lapse. Real daemons on Redis: tests/test_redis_hosts.py."""
    core = make_core(lease=30.0)
    job_id = core.launched()
    core.started(job_id)
    assert core.memory is not None
    core.memory.down = True
    for after in (10.0, 15.0, 20.0, 24.0):
        core.tick(after=after)
    assert core.launcher.kills == [], "killed before the lease was nearly out"
    assert any("cannot renew the running jobs' leases" in line for line in log_lines)
    core.tick(after=25.5)
    assert core.launcher.kills == [(job_id, 0.0)]
    assert any(f"job {job_id}: lease lost (not renewed for" in line for line in log_lines)
    core.tick(after=26.5)
    assert core.launcher.kills == [(job_id, 0.0)], "killed twice"


@pytest.mark.parametrize("make_core", ["memory"], indirect=True)
def test_an_outage_shorter_than_the_lease_kills_nothing(
    make_core: Any, log_lines: list[str]
) -> None:
    """The renewals fail for 20 s of a 30 s lease, then work again: the attempt lives on.
    The log says the outage once when it begins, with the time the attempt has left, and
    once when it ends, not at each of the tries a second in between (those are DEBUG)."""
    core = make_core(lease=30.0)
    job_id = core.launched()
    core.started(job_id)
    assert core.memory is not None
    core.memory.down = True
    for after in range(10, 21):  # a try a second
        core.tick(after=float(after))
    core.memory.down = False
    core.tick(after=21.0)
    for after in (40.0, 60.0):
        core.tick(after=after)
    assert core.launcher.kills == []
    said = [line for line in log_lines if "cannot renew" in line and "| DEBUG " not in line]
    assert len(said) == 1, said
    assert "their attempts are stopped if this lasts 15s more" in said[0], said[0]
    tries = [line for line in log_lines if "cannot renew" in line]
    assert len(tries) == 11, tries
    ended = [line for line in log_lines if "leases again" in line]
    assert len(ended) == 1 and "after 11s without" in ended[0], ended
    core.run_once(job_id)
    assert core.record(job_id, "done") is not None


@pytest.mark.parametrize("make_core", ["memory"], indirect=True)
def test_a_held_outcome_keeps_its_lease_until_it_is_filed(make_core: Any) -> None:
    """An outcome that cannot be filed for longer than the lease (a full disk, not an
    outage: renewals still work) keeps its claim renewed, so no daemon reruns its job; it
    is filed once when there is room. Memory only: the file spool's claims never lapse."""
    core = make_core(lease=30.0)
    job_id = core.launched()
    core.fill_disk()
    core.run_once(job_id, result="kept")
    for after in (10.0, 20.0, 31.0, 41.0, 51.0, 61.0):  # renewed every third of the lease
        core.tick(after=after)
    assert core.waiting_ids() == [] and core.record(job_id, "done") is None
    core.free_disk()
    core.tick(after=71.0)
    record = core.record(job_id, "done")
    assert record is not None and [e["outcome"] for e in record["history"]] == ["ok"]


# -- the stats the daemon publishes for watchers --


def published(core: Core) -> Snapshot:
    """The latest stats snapshot the daemon handed its backend."""
    if core.memory is not None:
        assert core.memory.published, "nothing was published"
        return Snapshot.from_json(core.memory.published[-1][0])
    return Snapshot.from_json((core.spool.root / "stats.json").read_bytes())


def test_the_stats_count_what_the_loop_saw_and_name_no_rejected_class(make_core: Any) -> None:
    """A success, a job failed for good, a rejected ``evil.Class``: each counted by class
    and outcome, the rejection by its kind only; published every [metrics] interval
    (5 s). Real daemon: tests/test_stats.py."""
    core = make_core(max_retries=0)
    done = core.launched()
    core.run_once(done, result=1)
    failed = core.launched()
    core.run_once(failed, Outcome.ERROR, error="ValueError: no")
    if core.memory is None:
        run_background_job("evil.Class", "run", spool=core.spool.root, durable=False)
    else:
        core.memory.submit(_encode(_job_document("evil.Class", "run", None, now=time.time())))
    core.tick(after=1.0)
    first = published(core)
    core.tick(after=6.0)
    snapshot = published(core)
    assert snapshot.taken_at == core.now + 6.0 and snapshot.taken_at > first.taken_at
    noop = "testjobs.Noop"
    assert snapshot.received == {noop: 2}
    assert snapshot.rejected == {"not_allowed": 1}
    assert snapshot.attempts_started == {noop: 2}
    assert snapshot.attempts_finished == {noop: {"ok": 1, "error": 1}}
    assert snapshot.jobs_finished == {noop: {"done": 1, "failed": 1}}
    assert set(snapshot.last_success) == {noop}
    assert snapshot.duration[noop].count == 2 and snapshot.pickup.count == 2
    ring = snapshot.minutes
    assert (sum(m.started for m in ring), sum(m.done for m in ring),
            sum(m.failed for m in ring), sum(m.rejected for m in ring)) == (2, 1, 1, 1)  # fmt: skip
    assert (snapshot.busy, snapshot.slots, snapshot.running) == (0, 2, [])  # the harness: 2
    assert "evil" not in snapshot.to_json().decode()


def test_a_running_attempt_is_in_the_snapshot_with_its_timeout(make_core: Any) -> None:
    core = make_core(timeout=42.0)
    job_id = core.launched()
    core.started(job_id)
    core.tick(after=5.0)
    running = published(core).running
    assert [(r.job_id, r.target, r.attempt, r.timeout) for r in running] == [
        (job_id, "testjobs.Noop.run", 1, 42.0)
    ]
    assert published(core).busy == 1


def test_a_long_wait_is_warned_of_once_and_its_end_said(
    make_core: Any, log_lines: list[str]
) -> None:
    """Every slot busy and a job due for longer than [metrics] long_wait (60 s): one
    WARNING, then one INFO when it is taken; the snapshot and the status line carry the
    oldest wait. Real daemon: tests/test_stats.py."""
    core = make_core(concurrency=1)
    busy = core.launched()
    core.started(busy)
    waiting = core.submit()
    for after in (10.0, 30.0, 50.0):
        core.tick(after=after)
    assert not [line for line in log_lines if "long_wait" in line]
    for after in (70.0, 80.0, 90.0):
        core.tick(after=after)
    warnings = [line for line in log_lines if "longer than [metrics] long_wait" in line]
    assert len(warnings) == 1 and "| WARNING " in warnings[0], warnings
    oldest = published(core).oldest_wait
    assert oldest is not None and 89.0 <= oldest <= 91.0 + (time.time() - core.now), oldest
    assert "oldest waited" in core.daemon._status()
    core.launcher.finished(busy, Outcome.OK)
    core.report(after=91.0)
    core.tick(after=91.0)  # the waiting job starts
    assert core.launcher.keys == [busy, waiting]
    core.tick(after=96.0)
    ended = [line for line in log_lines if "no job waits longer than" in line]
    assert len(ended) == 1 and "| INFO " in ended[0], ended


# -- cancel (real daemon: tests/test_cancel_wait.py; Redis: tests/test_redis_cancel.py) --

CANCELLER = 1234


def test_a_cancelled_waiting_job_is_filed_cancelled_and_never_runs(make_core: Any) -> None:
    core = make_core(concurrency=1)
    busy = core.launched()
    waiting = core.submit()
    core.tick()
    assert core.daemon.cancel(waiting, CANCELLER, core.now)
    record = core.record(waiting, "failed")
    assert record is not None
    assert (record["status"], record["cancelled_by"], record["attempts"]) == ("cancelled", 1234, 0)
    assert record["reason"].startswith("cancelled by ") and "1234" in record["reason"]
    core.run_once(busy)
    core.tick()
    assert core.launcher.keys == [busy], "the cancelled job ran"
    assert core.daemon.tally.filed_by_status == {"cancelled": 1, "done": 1}


def test_a_cancelled_scheduled_job_leaves_the_wait(make_core: Any) -> None:
    core = make_core()
    job_id = core.submit(delay=100)
    core.tick()
    assert core.daemon.cancel(job_id, CANCELLER, core.now)
    assert core.waiting_ids() == []
    core.tick(after=101)
    assert core.launcher.keys == []
    assert core.record(job_id, "failed")["status"] == "cancelled"  # type: ignore[index]


def test_a_cancelled_running_attempt_is_killed_with_a_grace_and_never_retried(
    make_core: Any,
) -> None:
    core = make_core(max_retries=3)
    job_id = core.launched()
    core.started(job_id)
    assert core.daemon.cancel(job_id, CANCELLER, core.now)
    assert core.launcher.kills == [(job_id, KILL_GRACE)]
    assert core.record(job_id, "failed") is None, "filed before its attempt ended"
    core.launcher.finished(job_id, Outcome.INTERRUPTED, error="stopped by the daemon")
    core.report()
    record = core.record(job_id, "failed")
    assert record is not None and record["status"] == "cancelled"
    assert [e["outcome"] for e in record["history"]] == ["cancelled"]
    assert "1234" in record["history"][-1]["error"]
    assert core.waiting_ids() == []


def test_an_attempt_that_succeeds_before_the_cancel_lands_is_done(make_core: Any) -> None:
    """The race between a cancel and the job's end: one record, the success's."""
    core = make_core()
    job_id = core.launched()
    core.started(job_id)
    core.daemon.cancel(job_id, CANCELLER, core.now)
    core.launcher.finished(job_id, Outcome.OK, result=1)
    core.report()
    assert core.record(job_id, "done") is not None
    assert core.record(job_id, "failed") is None


def test_a_failed_attempt_racing_a_cancel_is_cancelled_not_retried(make_core: Any) -> None:
    core = make_core(max_retries=3)
    job_id = core.launched()
    core.started(job_id)
    core.daemon.cancel(job_id, CANCELLER, core.now)
    core.launcher.finished(job_id, Outcome.ERROR, error="ValueError: no", traceback="...")
    core.report()
    assert core.waiting_ids() == []
    assert core.record(job_id, "failed")["status"] == "cancelled"  # type: ignore[index]


def test_a_cancel_of_a_job_with_a_record_changes_nothing(make_core: Any) -> None:
    core = make_core()
    job_id = core.launched()
    core.run_once(job_id)
    assert not core.daemon.cancel(job_id, CANCELLER, core.now)
    assert core.record(job_id, "done") is not None
    assert core.record(job_id, "failed") is None


# -- requests sent ahead ([worker] send_ahead): each slot's next job waits in the launcher --


def one_running_one_ahead(make_core: Any) -> tuple[Core, str, str]:
    """One slot, its attempt started, and a second job sent ahead, waiting in the launcher."""
    core = make_core(concurrency=1, send_ahead=True)
    first = core.launched()
    second = core.submit()
    core.tick()
    core.started(first)
    return core, first, second


def test_each_slot_gets_one_request_ahead_which_is_not_counted_busy(make_core: Any) -> None:
    """Real daemon and launcher: tests/test_send_ahead.py."""
    core = make_core(concurrency=1, send_ahead=True)
    first = core.launched()
    second, third = core.submit(), core.submit()
    core.tick()
    assert core.launcher.keys == [first, second], "one ahead for the one slot, no more"
    core.started(first)
    assert core.daemon.dispatcher.busy() == 1
    assert [a.job_id for a in core.daemon.dispatcher.attempts()] == [first]
    core.launcher.finished(first)
    core.started(second)  # the launcher starts it as the slot frees, then says so
    core.tick()
    assert core.launcher.keys == [first, second, third]
    assert core.record(first, "done") is not None


def test_a_held_filing_takes_back_what_waits_and_it_waits_again_unchanged(make_core: Any) -> None:
    """Real daemon: tests/test_resources.py (a full disk, send_ahead on)."""
    core, first, second = one_running_one_ahead(make_core)
    core.fill_disk()
    core.launcher.finished(first)
    core.report()
    assert core.launcher.unqueued == [second], "the request ahead was not taken back"
    core.tick()
    assert core.launcher.keys == [first, second], "a request was sent while a filing is held"
    core.free_disk()
    core.launcher.not_started(second, None, None)  # the launcher gave it back unstarted
    core.report()
    core.tick(after=10.0)  # the held filings are made
    assert core.record(first, "done") is not None
    assert core.launcher.keys == [first, second, second]
    core.run_once(second)
    record = core.record(second, "done")
    assert record is not None and [e["attempt"] for e in record["history"]] == [1]


def test_a_request_that_waits_too_long_is_taken_back_and_none_goes_ahead_till_one_ends(
    make_core: Any,
) -> None:
    """A long job must not keep the next one from other hosts (or from a job of higher
    priority) for longer than STALE_AHEAD."""
    core, first, second = one_running_one_ahead(make_core)
    core.tick(after=0.5)
    assert core.launcher.unqueued == []
    core.tick(after=1.5)
    assert core.launcher.unqueued == [second]
    core.launcher.not_started(second, None, None)
    core.report(after=1.5)
    for after in (2.0, 5.0):
        core.tick(after=after)
    assert core.launcher.keys == [first, second], "sent ahead again while the slot stays busy"
    core.launcher.finished(first)
    core.report(after=5.0)
    core.tick(after=5.0)
    assert core.launcher.keys == [first, second, second]


def test_a_cancelled_request_that_waits_is_filed_cancelled_without_an_attempt(
    make_core: Any,
) -> None:
    """Real daemon: tests/test_send_ahead.py."""
    core, _first, second = one_running_one_ahead(make_core)
    assert core.daemon.cancel(second, CANCELLER, core.now)
    assert core.launcher.kills[-1][0] == second
    core.launcher.not_started(second, None, None)
    core.report()
    record = core.record(second, "failed")
    assert record is not None
    assert (record["status"], record["attempts"], record["history"]) == ("cancelled", 0, [])


def test_when_the_launcher_dies_what_waited_in_it_goes_back_without_an_attempt(
    make_core: Any,
) -> None:
    core, first, second = one_running_one_ahead(make_core)
    core.launcher.gone = True
    core.report()
    assert sorted(core.waiting_ids()) == sorted([first, second])
    assert [e["outcome"] for e in core.waiting_history(first)] == ["crashed"]
    assert core.waiting_history(second) == []


def test_a_stop_takes_back_what_waits_in_the_launcher(make_core: Any) -> None:
    """Real daemon: tests/test_send_ahead.py (SIGTERM)."""
    core, _first, second = one_running_one_ahead(make_core)
    core.daemon.flags.stop = 1
    core.tick()
    assert core.launcher.unqueued == [second]
    core.launcher.not_started(second, None, None)
    core.report()
    assert core.waiting_ids() == [second] and core.waiting_history(second) == []
    assert not core.daemon.finished(), "stopped before the running attempt ended"
