"""The real daemon on a real Redis: the same jobs, order, retries and records as on files.

Each test starts its own ``redis-server`` (``redis_server`` fixture: a free
port, its own folder, ``appendfsync always``), writes a config with
``[spool] backend = "redis"``, starts ``spoold run`` as a subprocess, submits
with the real client (``SPOOLD_CONFIG`` names the config, so
``run_background_job`` talks to Redis) or by dropping a file into the local
``incoming/``, and reads the records out of Redis. Nothing is mocked.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Spool, wait_for
from redis_server import KEY, RedisSpool

from spoold.client import run_background_job


def submit(class_name: str, *params: Any, **options: Any) -> str:
    return run_background_job(f"testjobs.{class_name}", "run", list(params), **options)


def test_client_jobs_run_by_priority_then_age_and_are_recorded_as_on_files(
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """The record document has the file spool's keys; the order is strict priority, then FIFO."""
    config = redis_config(worker={"concurrency": 1})
    log = tmp_path / "order.log"
    low = submit("Recorder", str(log), "low")
    high = [submit("Recorder", str(log), f"high{i}", priority=5) for i in range(2)]
    assert redis_spool.state(low) == "ready", "the client returned before Redis had the job"
    start_daemon(config=config)
    record = redis_spool.wait_record(low)
    labels = [json.loads(line)["label"] for line in log.read_text().splitlines()]
    assert labels == ["high0", "high1", "low"]
    assert record["status"] == "done" and record["result"] == "low"
    assert record["attempts"] == 1 and [e["outcome"] for e in record["history"]] == ["ok"]
    assert {"id", "class", "method", "params", "enqueued_at", "finished_at"} <= set(record)
    assert record["id"] == low and all(redis_spool.record(job_id) for job_id in high)


def test_each_finish_claims_the_slots_next_job_in_the_same_call(
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """With jobs waiting, the daemon files an outcome and claims the freed slot's next job
    in one call (``spoold_finish_claim``; the server's slow log, set to log every
    command, lists the calls): each job still runs once, in order, and nothing is left
    claimed."""
    config = redis_config(worker={"concurrency": 1})
    log = tmp_path / "order.log"
    ids = [submit("Recorder", str(log), f"job{i}") for i in range(4)]
    redis_spool.client.config_set("slowlog-log-slower-than", 0)
    redis_spool.client.config_set("slowlog-max-len", 10000)
    start_daemon(config=config)
    records = [redis_spool.wait_record(job_id) for job_id in ids]
    assert [json.loads(line)["label"] for line in log.read_text().splitlines()] == [
        f"job{i}" for i in range(4)
    ]
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in records), records
    called = [entry["command"].split()[1] for entry in redis_spool.client.slowlog_get(10000)
              if entry["command"].startswith(b"FCALL ")]  # fmt: skip
    assert called.count(b"spoold_finish_claim") >= 3, called
    assert redis_spool.ids("active") == []


def test_a_failing_job_is_retried_after_its_delay_without_holding_a_slot(
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """While the failed job waits its retry delay, another job runs in the only slot."""
    config = redis_config(worker={"concurrency": 1, "retry_delay": 1.0, "max_retries": 2})
    daemon = start_daemon(config=config)
    counter = tmp_path / "counter"
    flaky = run_background_job("testjobs.Flaky", "run", [str(counter), 1])
    daemon.wait_log(f"job {flaky} failed (attempt 1")
    quick = submit("Noop")
    assert redis_spool.wait_record(quick, timeout=0.9)["status"] == "done"
    assert redis_spool.record(flaky) is None, "the retry ran before its delay"
    record = redis_spool.wait_record(flaky)
    assert record["status"] == "done"
    assert [e["outcome"] for e in record["history"]] == ["error", "ok"]


def test_a_job_over_its_timeout_is_killed_and_fails_for_good_with_a_reason(
    start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path], redis_spool: RedisSpool
) -> None:
    start_daemon(config=redis_config(worker={"max_retries": 0}))
    job_id = run_background_job("testjobs.Sleeper", "run", [30], timeout=0.5)
    record = redis_spool.wait_record(job_id)
    assert record["status"] == "failed"
    assert record["reason"].startswith("timeout on attempt 1 (retries exhausted): timed out after")


def test_a_job_with_a_run_at_waits_in_redis_until_then(
    start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path], redis_spool: RedisSpool
) -> None:
    start_daemon(config=redis_config())
    started = time.time()
    job_id = submit("Noop", delay=1.5)
    assert redis_spool.state(job_id) == "due"
    record = redis_spool.wait_record(job_id)
    assert record["history"][0]["started_at"] >= started + 1.4


def test_a_job_off_the_allowlist_is_rejected_with_a_reason_and_never_imported(
    start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path], redis_spool: RedisSpool
) -> None:
    start_daemon(config=redis_config())
    job_id = run_background_job("testjobs.Partial", "forbidden", ["marker"])
    record = redis_spool.wait_record(job_id)
    assert record["status"] == "rejected" and "not on the allowlist" in record["reason"]
    assert redis_spool.ids("idx:failed") == [job_id]


def test_a_file_dropped_into_incoming_is_submitted_to_redis_once(
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    spool: Spool,
) -> None:
    start_daemon(config=redis_config())
    job_id = run_background_job("testjobs.Noop", "run", spool=spool.root)
    assert redis_spool.wait_record(job_id)["status"] == "done"
    assert spool.names("incoming") == []


@pytest.mark.parametrize("point", ["after_redis_submit", "after_redis_adopt"])
def test_a_crash_between_submitting_a_file_to_redis_and_removing_it_submits_it_once(
    point: str,
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    spool: Spool,
) -> None:
    """SIGKILL after Redis has the job and before the file is gone: the restarted daemon
    reads the file again, Redis answers "dup", and the job runs and is recorded once."""
    config = redis_config()
    first = start_daemon(config=config, env={"SPOOLD_FAULT": point})
    if point == "after_redis_submit":
        job_id = run_background_job("testjobs.Noop", "run", spool=spool.root)
    else:  # adopted: a refused file is claimed into Redis to be filed as rejected
        job_id = run_background_job("testjobs.NotOnTheList", "run", spool=spool.root)
    assert first.wait_exit() == -signal.SIGKILL
    assert spool.names("incoming") == [f"{job_id}.json"], "the crash came too late"
    start_daemon(config=config)
    record = redis_spool.wait_record(job_id)
    wait_for(lambda: spool.names("incoming") == [], message="the file was not removed")
    assert record["status"] == ("done" if point == "after_redis_submit" else "rejected")
    assert len(redis_spool.ids("idx:done")) + len(redis_spool.ids("idx:failed")) == 1
    history = record["history"]
    assert len(history) <= 2  # a rerun of the adopted one is an interruption, never a copy


def test_a_restarted_daemon_reruns_its_previous_instances_jobs_at_once_as_interrupted(
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """SIGKILL mid-attempt; the next daemon on this host does not wait for the lease."""
    config = redis_config(spool={"lease": 600.0})
    first = start_daemon(config=config)
    started = tmp_path / "started"
    job_id = run_background_job("testjobs.Sleeper", "run", [0.5, str(started)])
    wait_for(started.exists, message="the job never started")
    first.kill()
    start_daemon(config=config)
    record = redis_spool.wait_record(job_id, timeout=10.0)  # far less than the lease
    assert [(e["outcome"], e.get("cause")) for e in record["history"]] == [
        ("interrupted", "daemon_died"),
        ("ok", None),
    ]


def test_the_daemon_refuses_a_redis_that_can_lose_acknowledged_jobs(
    redis_config: Callable[..., Path], redis_spool: RedisSpool, tmp_path: Path, leak_check: str
) -> None:
    """appendfsync everysec (the test server's is always: set so for the test), by name."""
    path = redis_config()
    redis_spool.client.config_set("appendfsync", "everysec")
    daemon = Daemon(path, tmp_path, leak_check, name="refused").start()
    assert daemon.wait_exit() == 2
    assert "appendfsync is everysec, not always" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


def test_the_client_raises_a_clear_error_within_its_timeout_when_redis_is_down(
    redis_config: Callable[..., Path], redis_server: Any
) -> None:
    redis_config(spool={"redis_timeout": 1.0})
    redis_server.kill()
    began = time.monotonic()
    with pytest.raises(OSError, match=r"cannot reach Redis: .*\(redis://127\.0\.0\.1:\d+/0\)"):
        submit("Noop")
    assert time.monotonic() - began < 3.0


def test_retention_removes_old_records_from_redis_at_start_and_keeps_the_rest(
    start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path], redis_spool: RedisSpool
) -> None:
    """``[retention] done = "1h"``: a record filed two hours ago (its index time set back)
    is removed, in the daemon's first turn, with a log line; a fresh one stays."""
    config = redis_config(retention={"done": "1h"})
    first = start_daemon(config=config)
    old, new = submit("Noop"), submit("Noop")
    redis_spool.wait_record(old)
    redis_spool.wait_record(new)
    first.stop()
    two_hours_ago = (time.time() - 7200) * 1000
    redis_spool.client.zadd(KEY + "idx:done", {old: two_hours_ago})
    second = start_daemon(config=config)
    second.wait_log("retention: removed 1 done record(s) finished more than 1h ago")
    assert redis_spool.record(old) is None and redis_spool.state(old) is None
    assert redis_spool.ids("idx:done") == [new]
    assert redis_spool.record(new) is not None


def test_a_starting_daemon_forgets_daemons_not_heard_of_for_an_hour(
    start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path], redis_spool: RedisSpool
) -> None:
    """A killed daemon never says goodbye: its heartbeat would stay in ``daemons`` for good
    (and be asked for stats at every scrape). The next daemon to start removes those two
    hours old, and leaves a recent one and an entry it cannot read."""
    seconds, micros = redis_spool.client.time()
    server_ms = seconds * 1000 + micros // 1000
    beat = {"host": "gone", "pid": 1, "max": 1, "lease": 30.0}
    redis_spool.client.hset(KEY + "daemons", mapping={
        "gone:1:old": json.dumps({**beat, "seen": server_ms - 7_200_000}),
        "recent:2:new": json.dumps({**beat, "host": "recent", "seen": server_ms - 60_000}),
        "stranger": "not JSON",
    })  # fmt: skip
    daemon = start_daemon(config=redis_config())
    owners = {owner.decode() for owner in redis_spool.client.hkeys(KEY + "daemons")}
    assert "gone:1:old" not in owners
    assert {"recent:2:new", "stranger"} <= owners and len(owners) == 3, owners
    assert daemon.returncode() is None
