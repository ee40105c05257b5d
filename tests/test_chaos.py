"""Kill anywhere (SPEC.md "Nothing lost"): jobs keep arriving while the daemon is SIGKILLed
at random moments and restarted, and at the end every job is filed exactly once, every
record is whole, and no job ran more often than its history admits.

The kill moments come from ``random.Random(seed)``; the seed and the kill delays are
printed (``pytest -s``, or in the captured output of a failure). Set
``SPOOLD_CHAOS_SEED`` to replay a run. The delays are measured from the daemon's start,
not from READY=1, so some kills land in start-up recovery itself.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Spool, job, read_lines, wait_for

from spoold.atomic import TEMP_PREFIX

RECORD_FIELDS = ("id", "class", "method", "params", "status", "attempts", "history")


@dataclass(frozen=True)
class Planned:
    """One job of the run and what must become of it."""

    id: str
    kind: str  # "quick" (Recorder), "flaky" (fails `failures` times), "doomed" (always fails)
    failures: int = 0
    max_retries: int = 0

    def document(self, tmp_path: Path, rng: random.Random) -> dict[str, Any]:
        if self.kind == "quick":
            fields: dict[str, Any] = {"priority": rng.choice([0, 0, 0, 1, 5])}
            if rng.random() < 0.1:
                fields["run_at"] = time.time() + rng.uniform(0.1, 2.0)
            return job("Recorder", params=[str(tmp_path / "runs.jsonl"), self.id], **fields)
        counter = str(tmp_path / "counters" / f"{self.id}.jsonl")
        return job(
            "Flaky",
            params=[counter, self.failures],
            max_retries=self.max_retries,
            retry_delay=rng.choice([0.05, 0.2, 0.5]),
        )

    def runs(self, tmp_path: Path, quick_runs: Counter[str]) -> int:
        if self.kind == "quick":
            return quick_runs[self.id]
        return len(read_lines(tmp_path / "counters" / f"{self.id}.jsonl"))


def plan(jobs: int, failing: int, rng: random.Random) -> list[Planned]:
    planned = [Planned(f"quick-{n:05d}", "quick") for n in range(jobs)]
    doomed = max(2, failing // 5)
    for n in range(failing - doomed):
        planned.append(Planned(f"flaky-{n:04d}", "flaky", rng.choice([1, 2]), max_retries=3))
    for n in range(doomed):
        planned.append(Planned(f"doomed-{n:04d}", "doomed", 10**6, rng.choice([0, 1, 2])))
    rng.shuffle(planned)
    return planned


def chaos_seed(default: int | None = None) -> int:
    forced = os.environ.get("SPOOLD_CHAOS_SEED")
    if forced:
        return int(forced)
    return default if default is not None else int(time.time() * 1000) % 10**9


def run_chaos(
    spool: Spool,
    start_daemon: StartDaemon,
    tmp_path: Path,
    *,
    jobs: int,
    failing: int,
    kills: int,
    seed: int,
    max_delay: float = 1.5,
) -> None:
    """Drop the jobs in batches, one per daemon life; SIGKILL each life but the last at a
    random moment; then wait for everything to be filed and check every record and run."""
    rng = random.Random(seed)
    print(f"\nchaos: seed {seed} (replay: SPOOLD_CHAOS_SEED={seed}); {jobs}+{failing} jobs")
    (tmp_path / "counters").mkdir()
    planned = plan(jobs, failing, rng)
    batches = [planned[n :: kills + 1] for n in range(kills + 1)]
    config = {
        "worker": {"concurrency": 2, "max_interruptions": 1000},
        "log": {"level": "INFO"},
    }
    kill_delays = []
    for life, batch in enumerate(batches):
        last = life == kills
        daemon = start_daemon(ready=last, **config)
        started = time.monotonic()
        for item in batch:
            spool.drop_job(item.id, item.document(tmp_path, rng), rename=rng.random() < 0.9)
        if last:
            break
        delay = rng.uniform(0.05, max_delay)
        kill_delays.append(round(delay, 3))
        time.sleep(max(0.0, started + delay - time.monotonic()))  # the random moment itself
        assert daemon.returncode() is None, (
            f"seed {seed}: daemon died by itself:\n{daemon.log_text()}"
        )
        daemon.kill()
    print(f"chaos: seed {seed}: killed after {kill_delays} s")

    total = len(planned)
    wait_for(
        lambda: (
            len(spool.job_ids("done")) + len(spool.job_ids("failed")) >= total
            and not any(spool.names(s) for s in ("incoming", "scheduled", "active"))
        ),
        30 + total / 10,
        lambda: f"seed {seed}: every job filed; {spool.summary()}",
    )
    assert daemon.stop() == 0, f"seed {seed}: the last daemon did not stop cleanly"
    check_spool(spool, planned, seed)
    check_runs(planned, spool, tmp_path, seed)


def check_spool(spool: Spool, planned: list[Planned], seed: int) -> None:
    """Each job in exactly one record, in done/ or failed/, and nothing else anywhere."""
    ids = sorted(item.id for item in planned)
    filed = sorted(spool.job_ids("done") + spool.job_ids("failed"))
    counts = Counter(filed)
    assert [i for i, n in counts.items() if n > 1] == [], f"seed {seed}: filed twice"
    assert sorted(set(filed) - set(ids)) == [], f"seed {seed}: records under unknown ids"
    assert sorted(set(ids) - set(filed)) == [], f"seed {seed}: jobs with no record"
    for state in ("tmp", "incoming", "scheduled", "active"):
        assert spool.names(state) == [], f"seed {seed}: {state}/ holds {spool.names(state)[:10]}"
    for state in ("done", "failed"):
        strays = [n for n in spool.names(state) if not n.endswith(".json") or n[0] == "."]
        assert strays == [], f"seed {seed}: {state}/ holds {strays[:10]}"
    for state in ("scheduled", "active", "done", "failed"):
        temps = [n for n in spool.names(state) if n.startswith(TEMP_PREFIX)]
        assert temps == [], f"seed {seed}: daemon temp files left in {state}/: {temps}"


def load_record(spool: Spool, item: Planned) -> tuple[str, dict[str, Any]]:
    for state in ("done", "failed"):
        path = spool.folder(state) / f"{item.id}.json"
        if path.exists():
            record = json.loads(path.read_bytes())  # a torn record fails here
            assert isinstance(record, dict), f"{path}: {record!r}"
            return state, record
    raise AssertionError(f"no record for {item.id}")


def check_record(state: str, record: dict[str, Any], item: Planned) -> list[str]:
    """The record is whole and its history consistent with the job's kind."""
    missing = [field for field in RECORD_FIELDS if field not in record]
    assert missing == [], f"{item.id}: record lacks {missing}: {record}"
    assert record["id"] == item.id, f"{item.id}: filed with id {record['id']}"
    history = record["history"]
    outcomes = [entry["outcome"] for entry in history]
    assert [entry["attempt"] for entry in history] == list(range(1, len(history) + 1)), outcomes
    assert record["attempts"] == len(history), record
    assert outcomes, f"{item.id}: empty history"
    assert set(outcomes[:-1]) <= {"interrupted", "error"}, f"{item.id}: {outcomes}"
    for entry in history:
        if entry["outcome"] == "interrupted":
            assert entry.get("cause") == "daemon_died", f"{item.id}: {entry}"
    errors = outcomes.count("error")
    if item.kind == "doomed":
        assert (state, record["status"], outcomes[-1]) == ("failed", "failed", "error"), record
        assert errors == item.max_retries + 1, f"{item.id}: {outcomes}"
    else:
        assert (state, record["status"], outcomes[-1]) == ("done", "done", "ok"), record
        assert errors <= item.failures, f"{item.id}: {outcomes}"
    return outcomes


def check_runs(planned: list[Planned], spool: Spool, tmp_path: Path, seed: int) -> None:
    """Each job ran at least once and never more than the attempts its history shows: every
    reported attempt (ok, error) ran once, an interrupted one at most once."""
    quick_runs = Counter(line["label"] for line in read_lines(tmp_path / "runs.jsonl"))
    problems = []
    interrupted_total = 0
    for item in planned:
        state, record = load_record(spool, item)
        outcomes = check_record(state, record, item)
        interrupted = outcomes.count("interrupted")
        interrupted_total += interrupted
        runs = item.runs(tmp_path, quick_runs)
        if not len(outcomes) - interrupted <= runs <= len(outcomes):
            problems.append(f"{item.id} ran {runs} times; history {outcomes}")
    unknown = set(quick_runs) - {item.id for item in planned}
    assert not unknown, f"seed {seed}: runs of unknown jobs {unknown}"
    assert problems == [], f"seed {seed}: " + "; ".join(problems[:20])
    print(f"chaos: seed {seed}: {interrupted_total} interrupted attempt(s) in the records")


def test_chaos_short(spool: Spool, start_daemon: StartDaemon, tmp_path: Path) -> None:
    """200 quick jobs and 20 failing ones through 5 SIGKILLs (fixed seed)."""
    run_chaos(
        spool, start_daemon, tmp_path, jobs=200, failing=20, kills=5, seed=chaos_seed(20261129)
    )


@pytest.mark.chaos
def test_chaos_long(spool: Spool, start_daemon: StartDaemon, tmp_path: Path) -> None:
    """1,000 quick jobs and 60 failing ones through 20 SIGKILLs (seed from the clock)."""
    run_chaos(
        spool,
        start_daemon,
        tmp_path,
        jobs=1000,
        failing=60,
        kills=20,
        seed=chaos_seed(),
        max_delay=3.0,
    )
