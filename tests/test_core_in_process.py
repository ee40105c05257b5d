"""The daemon's decisions, driven in process: ``Daemon.tick(now)`` on a real file spool,
with the launcher stood in (tests/standin.py), so that time is the test's to choose.

No subprocess and no sleeping: each test submits through the real client, calls
``tick`` at the moments it wants, feeds the dispatcher the launcher's reports, and
reads the folders. Each decision is also tested once against the real daemon and
launcher; the docstrings name where.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Spool, write_config
from standin import StandInLauncher

from spoold.backends import open_engine
from spoold.client import run_background_job
from spoold.config import load_config
from spoold.core.daemon import Daemon
from spoold.exec.launcher import KILL_GRACE
from spoold.exec.protocol import Outcome
from spoold.identity import JobIdentity
from spoold.live import Live


class Core:
    """One daemon's rooms on a temporary spool, its launchers stood in."""

    def __init__(self, tmp_path: Path, worker: dict[str, Any], *, burst: bool) -> None:
        self.spool = Spool(tmp_path / "spool").create()
        path = write_config(tmp_path / "config.toml", self.spool, {"worker": worker})
        self.launchers: list[StandInLauncher] = []
        live = Live(load_config(path), JobIdentity())
        self.daemon = Daemon(live, open_engine(live), burst=burst, new_launcher=self._launcher)  # type: ignore[arg-type]
        self.now = time.time()
        self.daemon.open(self.now)
        self.daemon.watch(self.now)

    def _launcher(self) -> StandInLauncher:
        self.launchers.append(StandInLauncher())
        return self.launchers[-1]

    @property
    def launcher(self) -> StandInLauncher:
        return self.launchers[-1]

    def submit(self, class_name: str = "Noop", **options: Any) -> str:
        return run_background_job(f"testjobs.{class_name}", "run", spool=self.spool.root,
                                  durable=False, **options)  # fmt: skip

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
        self.daemon.tick(self.now + after)

    def report(self, after: float = 0.0) -> None:
        """Hand the dispatcher what the stand-in launcher has queued."""
        self.daemon.dispatcher.on_readable(self.now + after)

    def run_once(self, job_id: str, outcome: str = Outcome.OK, **fields: Any) -> None:
        self.started(job_id)
        self.launcher.finished(job_id, outcome, **fields)
        self.report()


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[Any]:
    made: list[Core] = []

    def make(*, burst: bool = False, **worker: Any) -> Core:
        made.append(Core(tmp_path, {"retry_delay": 10.0, **worker}, burst=burst))
        return made[-1]

    yield make
    for core in made:
        core.daemon.close()


def test_a_job_runs_once_and_is_filed_as_done(make_core: Any) -> None:
    """Real daemon: tests/test_records.py."""
    core = make_core()
    job_id = core.launched()
    assert core.launcher.keys == [job_id]
    core.run_once(job_id, result=7)
    record = core.spool.record(job_id, "done")
    assert record is not None and record["result"] == 7
    assert [e["outcome"] for e in record["history"]] == ["ok"]
    assert core.daemon.tally.filed_by_status == {"done": 1}


def test_a_failed_attempt_runs_again_after_its_delay_then_fails_for_good(make_core: Any) -> None:
    """Real daemon: tests/test_retries.py."""
    core = make_core(max_retries=1)
    job_id = core.launched()
    core.run_once(job_id, Outcome.ERROR, error="ValueError: no", traceback="...")
    assert core.spool.job_ids("scheduled") == [job_id]
    core.tick(after=9.0)
    assert core.launcher.keys == [job_id], "retried before its 10 s delay"
    core.tick(after=10.5)
    assert core.launcher.keys == [job_id, job_id]
    core.run_once(job_id, Outcome.ERROR, error="ValueError: no again")
    record = core.spool.record(job_id, "failed")
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
    assert core.spool.job_ids("scheduled") == [job_id]
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
    assert core.spool.job_ids("scheduled") == [job_id]
    assert "history" not in core.spool.record(job_id, "scheduled")  # type: ignore[operator]
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
    history = core.spool.record(job_id, "scheduled")["history"]  # type: ignore[index]
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
