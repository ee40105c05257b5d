"""Retries (SPEC.md job fields max_retries, retry_delay, backoff): counts, records, delays,
and a retry waiting in scheduled/ rather than in a sleeping worker.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from conftest import StartDaemon
from harness import Spool, job, read_lines, wait_for


def outcomes(record: dict[str, object]) -> list[object]:
    history = record["history"]
    assert isinstance(history, list)
    return [entry["outcome"] for entry in history]


def test_fail_twice_then_succeed_ends_done_after_three_attempts(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """max_retries 3, two failures then success: done, attempts 3, [error, error, ok]."""
    start_daemon(worker={"max_retries": 3, "retry_delay": 0.2})
    counter = tmp_path / "flaky.jsonl"
    spool.drop_job("flaky", job("Flaky", params=[str(counter), 2]))
    record = spool.wait_record("flaky", timeout=20)
    assert record["status"] == "done"
    assert record["attempts"] == 3
    assert outcomes(record) == ["error", "error", "ok"]
    assert [e["attempt"] for e in record["history"]] == [1, 2, 3]
    assert record["history"][0]["error"] == "RuntimeError: flaky failure 1 of 2"
    assert record["result"] == 3
    assert len(read_lines(counter)) == 3
    assert spool.where("flaky") == ["done"]


def test_always_failing_with_one_retry_fails_after_two_attempts(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """max_retries 1: two attempts, then failed/ with a reason."""
    start_daemon(worker={"max_retries": 1, "retry_delay": 0.2})
    spool.drop_job("doomed", job("Boom", params=["nope"]))
    record = spool.wait_record("doomed", "failed", timeout=20)
    assert record["status"] == "failed"
    assert record["attempts"] == 2
    assert outcomes(record) == ["error", "error"]
    assert "ValueError: nope" in record["reason"]
    assert spool.where("doomed") == ["failed"]


def test_a_job_max_retries_overrides_the_config(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Config max_retries 0; a job with max_retries 2 gets three attempts, one without gets one."""
    start_daemon(worker={"max_retries": 0, "retry_delay": 0.2})
    counter = tmp_path / "flaky.jsonl"
    spool.drop_job("own", job("Flaky", params=[str(counter), 2], max_retries=2))
    spool.drop_job("default", job("Boom"))
    assert spool.wait_record("own", timeout=20)["attempts"] == 3
    assert spool.wait_record("default", "failed")["attempts"] == 1


def test_exponential_backoff_makes_the_gaps_grow(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """retry_delay 0.3 exponential: the second gap between attempts is longer than the first."""
    start_daemon(worker={"max_retries": 3, "retry_delay": 0.3, "backoff": "exponential"})
    counter = tmp_path / "flaky.jsonl"
    spool.drop_job("backoff", job("Flaky", params=[str(counter), 3]))
    record = spool.wait_record("backoff", timeout=30)
    starts = [entry["started_at"] for entry in record["history"]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.3
    assert gaps[1] > gaps[0]
    assert gaps[2] > gaps[1]
    assert gaps[2] >= 1.2


def test_fixed_retry_delay_is_respected(spool: Spool, start_daemon: StartDaemon) -> None:
    """A per-job retry_delay of 1 s: the second attempt starts at least 1 s after the first ends."""
    start_daemon(worker={"max_retries": 1, "retry_delay": 0.1})
    spool.drop_job("delayed", job("Boom", retry_delay=1))
    first, second = spool.wait_record("delayed", "failed", timeout=20)["history"]
    assert second["started_at"] - first["finished_at"] >= 1.0


def test_a_retry_waits_in_scheduled(spool: Spool, start_daemon: StartDaemon) -> None:
    """Between attempts the job file sits in scheduled/, with its history so far."""
    start_daemon(worker={"max_retries": 1, "retry_delay": 3.0})
    spool.drop_job("waiting", job("Boom"))
    waiting = wait_for(lambda: spool.record("waiting", "scheduled"), 10, spool.summary)
    assert spool.where("waiting") == ["scheduled"]
    assert [e["outcome"] for e in waiting["history"]] == ["error"]
    record = spool.wait_record("waiting", "failed", timeout=20)
    assert record["attempts"] == 2
    assert spool.where("waiting") == ["failed"]


def test_the_retry_log_line_gives_the_delay_to_the_millisecond(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A job's retry_delay 1.25: the log says "in 1.25s" (it said "in 1.2s", rounded to 0.1 s)."""
    daemon = start_daemon()
    spool.drop_job("late", job("Boom", params=["again"], max_retries=1, retry_delay=1.25))
    line = daemon.wait_log("retry 1 of 1 in ")
    assert line.endswith("retry 1 of 1 in 1.25s"), line
