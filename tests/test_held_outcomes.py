"""Held-back outcomes are filed exactly once (issue #10, defect 1), in process.

A real file engine (its ``JobStore``) on a real temporary spool, the real
``Dispatcher`` and its ``HeldFilings`` (spoold/core/held.py), with only
the launcher stood in for (its reports are handed over as the launcher would send
them). Filing is made to fail for real: a destination folder is moved aside, so the
marker's rename into it fails with ENOENT, as it would with ENOSPC on a full disk.
Two held outcomes of which the first still fails and the second is filed once used
to re-hold the second too: applied again, a record was filed twice (under a fresh
id), and a retry wedged the daemon (its move to scheduled/ failed for ever, and no
attempt starts while an outcome is held).
"""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from harness import Spool, write_config
from standin import StandInLauncher

from spoold.backends.files.engine import FileEngine
from spoold.backends.files.intake import examine
from spoold.backends.files.spool import Spool as RealSpool
from spoold.backends.files.store import NotInActive
from spoold.client import run_background_job
from spoold.config import load_config
from spoold.core.backend import Accepted, Taken
from spoold.core.dispatcher import Dispatcher
from spoold.core.events import Events, Tally
from spoold.core.held import HeldFilings
from spoold.core.judge import Judge
from spoold.core.outcomes import Filer
from spoold.identity import JobIdentity
from spoold.live import Live

LATER = time.time() + 10**6  # a round of HeldFilings.retry "now": far past any backoff


class Rig:
    """The daemon's filing parts on one spool, and the folders a test takes away."""

    def __init__(self, tmp_path: Path) -> None:
        self.spool = Spool(tmp_path / "spool").create()
        config = load_config(write_config(tmp_path / "config.toml", self.spool))
        live = Live(replace(config, spool=replace(config.spool, fsync=True)), JobIdentity())
        self.engine = FileEngine(live, RealSpool(self.spool.root))
        self.judge = Judge(live)
        self.engine.open(self.judge, time.time())
        self.store = self.engine.store
        self.tally = Tally()
        events = Events(self.tally)
        self.filer = Filer(self.engine, events, live)
        self.held_filings = HeldFilings(self.engine.places)
        self.dispatcher = Dispatcher(
            live, self.filer, self.held_filings, events, selectors.DefaultSelector(),
            StandInLauncher,  # type: ignore[arg-type]
        )  # fmt: skip
        self.launcher: StandInLauncher = self.dispatcher.launcher  # type: ignore[assignment]

    def claim_and_launch(self, class_name: str, **options: Any) -> Taken:
        """Submit through the real client, claim as the daemon does, hand to the launcher."""
        job_id = run_background_job(f"testjobs.{class_name}", "run", spool=self.spool.root,
                                    durable=False, **options)  # fmt: skip
        name = f"{job_id}.json"
        verdict = examine(self.store.spool, "incoming", name, self.judge, 1 << 20,
                          now=time.time(), closed=True)  # fmt: skip
        assert isinstance(verdict, Accepted), verdict
        taken = self.engine.claims.claim("incoming", name, verdict.job)
        assert taken is not None
        self.dispatcher.launch(taken, time.time())
        return taken

    def report(self, taken: Taken, outcome: str, **fields: Any) -> None:
        now = time.time()
        key = taken.job.id
        self.launcher.reports.append({"op": "finished", "key": key, "outcome": outcome,
                                      "started_at": now, "finished_at": now, **fields})  # fmt: skip
        self.dispatcher.on_readable(time.time())

    def take_away(self, state: str) -> None:
        os.rename(self.spool.folder(state), self.spool.root / f"{state}.away")

    def give_back(self, state: str) -> None:
        os.rename(self.spool.root / f"{state}.away", self.spool.folder(state))

    def held(self) -> list[str]:
        return [held.claim.job_id for held in self.held_filings.waiting]

    def close(self) -> None:
        self.dispatcher.close()
        self.engine.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def test_two_held_records_the_first_failing_again_each_filed_once(
    rig: Rig, log_lines: list[str]
) -> None:
    failing = rig.claim_and_launch("Boom", max_retries=0)  # its record goes to failed/
    passing = rig.claim_and_launch("Noop")  # its record goes to done/
    rig.take_away("failed")
    rig.take_away("done")
    rig.report(failing, "error", error="ValueError: boom")
    rig.report(passing, "ok", result=None)
    assert rig.held() == [failing.job.id, passing.job.id]
    assert not rig.dispatcher.can_launch(time.time())

    rig.give_back("done")  # room for the second, not yet for the first
    rig.held_filings.retry(LATER)
    assert rig.held() == [failing.job.id], "an outcome filed in this round was held again"
    assert rig.spool.job_ids("done") == [passing.job.id]
    assert any("1 held-back filing(s) done, 1 still cannot be" in line for line in log_lines)

    rig.give_back("failed")
    for round_ in range(3):
        rig.held_filings.retry(LATER + round_ + 1)
    assert rig.held() == []
    assert rig.spool.job_ids("done") == [passing.job.id], "a record was filed twice"
    assert rig.spool.job_ids("failed") == [failing.job.id]
    assert rig.spool.names("active") == []
    assert rig.dispatcher.can_launch(time.time())
    assert rig.tally.filed_by_status == {"done": 1, "failed": 1}


def test_a_held_retry_filed_in_a_round_is_not_moved_again(rig: Rig) -> None:
    finishing = rig.claim_and_launch("Noop")  # its record goes to done/
    retrying = rig.claim_and_launch("Boom", max_retries=2)  # back to scheduled/ to wait
    rig.take_away("done")
    rig.take_away("scheduled")
    rig.report(finishing, "ok", result=None)
    rig.report(retrying, "error", error="ValueError: boom")
    assert rig.held() == [finishing.job.id, retrying.job.id]

    rig.give_back("scheduled")
    rig.held_filings.retry(LATER)
    assert rig.held() == [finishing.job.id]
    assert rig.spool.job_ids("scheduled") == [retrying.job.id]

    rig.give_back("done")
    for round_ in range(3):
        rig.held_filings.retry(LATER + round_ + 1)
    assert rig.held() == [], "the retry is held for ever: the daemon starts nothing more"
    assert rig.dispatcher.can_launch(time.time())
    assert rig.spool.job_ids("scheduled") == [retrying.job.id]
    assert rig.spool.job_ids("done") == [finishing.job.id]
    assert rig.spool.names("active") == []
    waiting = rig.spool.record(retrying.job.id, "scheduled")
    assert waiting is not None and [e["outcome"] for e in waiting["history"]] == ["error"]


# -- the store's half: a move out of active/ is idempotent --


def test_a_record_filed_twice_is_refused_the_second_time(rig: Rig) -> None:
    job = rig.claim_and_launch("Noop").job
    record = job.record("done", time.time())
    assert rig.store.file_record(job.id, "done", record) == job.id
    with pytest.raises(NotInActive):
        rig.store.file_record(job.id, "done", record)
    assert rig.spool.job_ids("done") == [job.id]
    assert rig.spool.names("active") == []


def test_a_retry_or_put_back_applied_twice_is_refused_and_changes_nothing(rig: Rig) -> None:
    job = rig.claim_and_launch("Noop").job
    rig.store.schedule(job)
    before = (rig.spool.folder("scheduled") / f"{job.id}.json").read_bytes()
    with pytest.raises(NotInActive):
        rig.store.schedule(job)
    with pytest.raises(NotInActive):
        rig.store.unclaim(job)
    assert (rig.spool.folder("scheduled") / f"{job.id}.json").read_bytes() == before
    assert rig.spool.names("active") == []


def test_a_move_cut_short_half_way_still_completes(rig: Rig) -> None:
    """The marker is written and the job unlinked, the rename failed: the job is still in
    active/ in the marker's sense, so filing it again finishes the move."""
    job = rig.claim_and_launch("Noop").job
    rig.take_away("done")
    record = job.record("done", time.time())
    with pytest.raises(FileNotFoundError):
        rig.store.file_record(job.id, "done", record)
    assert rig.spool.names("active") == [f"{job.id}.to-done"]
    rig.give_back("done")
    assert rig.store.file_record(job.id, "done", record) == job.id
    assert rig.spool.names("active") == []
    assert rig.spool.job_ids("done") == [job.id]


def test_a_record_whose_id_is_taken_goes_under_a_fresh_id(rig: Rig) -> None:
    """The one case for a fresh id: a record with that id exists and the job is in active/."""
    job = rig.claim_and_launch("Noop").job
    (rig.spool.folder("done") / f"{job.id}.json").write_text('{"someone": "else"}')
    filed_as = rig.store.file_record(job.id, "done", job.record("done", time.time()))
    assert filed_as != job.id
    assert sorted(rig.spool.job_ids("done")) == sorted([job.id, filed_as])
    assert rig.spool.names("active") == []
