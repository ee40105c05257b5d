"""Order and timing (SPEC.md priority, run_at, "Not blocking"): priorities, scheduled
jobs that wait for their time, and retry delays that hold no worker.
"""

from __future__ import annotations

import time
from pathlib import Path

from conftest import StartDaemon
from harness import Spool, job, read_lines, stays_false, wait_for


def started_labels(log: Path) -> list[str]:
    """Labels of the Recorder jobs in the order they started."""
    lines = sorted(read_lines(log), key=lambda line: line["time"])
    return [line["label"] for line in lines]


def test_waiting_jobs_start_by_priority_then_age(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Concurrency 1, a slow job holding the worker: the jobs dropped meanwhile start by
    priority (higher first), and within a priority by enqueued_at (older first)."""
    start_daemon(worker={"concurrency": 1})
    log = tmp_path / "starts.jsonl"
    spool.drop_job("blocker", job("Recorder", params=[str(log), "blocker", 2.0]))
    wait_for(lambda: read_lines(log), 10, "the blocker to start")
    now = time.time()
    waiting = [
        # (id, label, priority, enqueued_at): dropped in an order unlike the expected one
        ("j1", "low-new", -1, now - 1),
        ("j2", "mid-newer", 0, now - 2),
        ("j3", "high", 10, now - 1),
        ("j4", "mid-oldest", 0, now - 30),
        ("j5", "low-old", -1, now - 20),
        ("j6", "mid-older", 0, now - 10),
        ("j7", "higher", 20, now),
    ]
    for job_id, label, priority, enqueued_at in waiting:
        document = job("Recorder", params=[str(log), label], priority=priority)
        spool.drop_job(job_id, {**document, "enqueued_at": enqueued_at})
    assert spool.where("blocker") == ["active"], "the blocker must still run while jobs arrive"
    for job_id, *_ in waiting:
        spool.wait_record(job_id, timeout=20)
    assert started_labels(log) == [
        "blocker",
        "higher",
        "high",
        "mid-oldest",
        "mid-older",
        "mid-newer",
        "low-old",
        "low-new",
    ]


def test_a_job_with_run_at_waits_in_scheduled_until_its_time(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """run_at 2 s ahead: the job sits in scheduled/, does not start early, then runs."""
    start_daemon()
    log = tmp_path / "starts.jsonl"
    run_at = time.time() + 2.0
    spool.drop_job("later", job("Recorder", params=[str(log), "later"], run_at=run_at))
    wait_for(lambda: spool.where("later") == ["scheduled"], 5, spool.summary)
    assert stays_false(log.exists, max(0.0, run_at - time.time() - 0.3))
    record = spool.wait_record("later", timeout=15)
    (line,) = read_lines(log)
    assert line["time"] >= run_at
    assert record["history"][0]["started_at"] >= run_at


def test_a_delay_from_the_client_holds_the_job_back(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """run_background_job(delay=1.5) runs the job no sooner than 1.5 s after submission."""
    start_daemon()
    log = tmp_path / "starts.jsonl"
    submitted = time.time()
    job_id = spool.submit("testjobs.Recorder", "run", [str(log), "delayed"], delay=1.5)
    spool.wait_record(job_id, timeout=15)
    (line,) = read_lines(log)
    assert line["time"] >= submitted + 1.5


def test_a_job_due_in_the_future_does_not_block_others(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """With concurrency 1, a job due in an hour holds no worker: a job after it runs."""
    start_daemon(worker={"concurrency": 1})
    spool.drop_job("far", job("Noop", run_at=time.time() + 3600))
    spool.drop_job("now", job("Noop"))
    spool.wait_record("now")
    assert spool.where("far") == ["scheduled"]


def test_a_retry_delay_does_not_block_another_job(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Concurrency 1, a failing job with retry_delay 3 s: a job submitted right after it
    finishes before the retry starts."""
    start_daemon(worker={"concurrency": 1, "retry_delay": 3.0, "max_retries": 1})
    counter = tmp_path / "flaky.jsonl"
    spool.drop_job("failing", job("Flaky", params=[str(counter), 1]))
    wait_for(lambda: read_lines(counter), 10, "the first attempt")
    spool.drop_job("other", job("Noop"))
    other = spool.wait_record("other", timeout=10)
    first_attempt = read_lines(counter)[0]["time"]
    assert other["history"][0]["finished_at"] < first_attempt + 3.0
    assert len(read_lines(counter)) == 1, "the retry ran before its delay"
    failing = spool.wait_record("failing", timeout=15)
    assert [e["outcome"] for e in failing["history"]] == ["error", "ok"]
    assert failing["history"][1]["started_at"] >= other["history"][0]["finished_at"]
