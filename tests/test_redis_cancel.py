"""``spoold cancel``, ``spoold wait``, ``spoold retry`` of a cancelled job, and the client's
``wait()`` and ``cancel()``, on Redis with several daemons as hosts.

Each host is a real ``spoold run`` with its own folder (where its ``control.sock`` is),
its own ``host_id`` and one shared ``redis-server`` (``redis_server``); the commands run
as subprocesses with one host's config, the client in-process (``SPOOLD_CONFIG`` names
the last config made). A job is made to run on a given host by starting only that host
until the job has started (its ``Sleeper`` line, and the host's "job <id> started" log
line), or by running no other. What became of a job is read out of Redis itself:
its record, its state and the ready, due and active sets. Nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, pid_alive, read_lines, stays_false, wait_for
from redis_server import KEY, RedisSpool

from spoold.client import cancel, run_background_job, wait

ROOT_REASON = "cancelled by root (uid 0)"
UNKNOWN_ID = "20260101T000000.000Z-0123456789"  # well formed, never submitted

Hosts = Callable[..., Path]


@pytest.fixture
def host_config(host_config: Hosts) -> Hosts:
    """conftest's ``host_config``, with one slot per host unless a test says otherwise."""

    def make(host: str, **overrides: dict[str, Any]) -> Path:
        worker = {"concurrency": 1, **overrides.pop("worker", {})}
        return host_config(host, worker=worker, **overrides)

    return make


def spoold(*args: str, config: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``python -m spoold ARGS --config CONFIG``, its output captured."""
    command = [sys.executable, "-m", "spoold", *args, "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def started_by(daemon: Daemon, job_id: str) -> bool:
    return f"job {job_id} started" in daemon.log_text()


def sleeper(seconds: float, started: Path, **options: Any) -> str:
    return run_background_job("testjobs.Sleeper", "run", [seconds, str(started)], **options)


def waiting(redis_spool: RedisSpool) -> dict[str, list[str]]:
    """What waits or runs in Redis: its ready, due and active sets."""
    return {index: redis_spool.ids(index) for index in ("ready", "due", "active")}


def assert_cancelled(record: dict[str, Any], job_id: str) -> None:
    assert record["id"] == job_id
    assert record["status"] == "cancelled", record
    assert record["reason"] == ROOT_REASON, record
    assert record["cancelled_by"] == 0, record


def test_a_job_running_on_another_host_is_cancelled_stopped_and_never_rerun(
    start_daemon: Callable[..., Daemon],
    host_config: Hosts,
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """Host b runs a 30 s Sleeper (b alone is up until it has started); ``spoold cancel``
    with host a's config: a marks the job in Redis and b is told, SIGTERMs the attempt and
    files it cancelled; a answers once it is filed. One record, no rerun, no process."""
    config_a, config_b = host_config("a"), host_config("b")
    b = start_daemon(config=config_b)
    started = tmp_path / "started"
    job_id = sleeper(30.0, started)
    wait_for(lambda: read_lines(started), message="the job never started")
    assert started_by(b, job_id)
    a = start_daemon(config=config_a)
    (line,) = read_lines(started)

    began = time.monotonic()
    done = spoold("cancel", job_id, config=config_a)
    took = time.monotonic() - began
    assert (done.returncode, done.stdout) == (0, f"cancelled {job_id}\n"), done
    assert took < 5.0, f"the cancel took {took:.1f}s"  # SIGTERM stops a sleep at once

    record = redis_spool.record(job_id)
    assert record is not None, "cancel answered before the record was filed"
    assert_cancelled(record, job_id)
    assert record["attempts"] == 1
    assert [entry["outcome"] for entry in record["history"]] == ["cancelled"]
    assert record["history"][-1]["error"] == ROOT_REASON
    assert redis_spool.state(job_id) == "failed"
    assert redis_spool.ids("idx:failed") == [job_id] and redis_spool.ids("idx:done") == []
    assert waiting(redis_spool) == {"ready": [], "due": [], "active": []}
    assert not pid_alive(line["pid"]), "the cancelled attempt's process still runs"
    b.wait_log(f"job {job_id}: cancelled by root (uid 0); stopping its attempt")
    assert not started_by(a, job_id)
    assert stays_false(lambda: len(read_lines(started)) > 1, 0.5), "the cancelled job reran"

    shown = spoold("show", job_id, "--json", config=config_a)
    assert shown.returncode == 0, shown
    assert json.loads(shown.stdout)["document"]["status"] == "cancelled"


def test_a_ready_and_a_scheduled_job_are_cancelled_where_they_wait(
    start_daemon: Callable[..., Daemon],
    host_config: Hosts,
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """The only slot is busy: a Noop waits ready, another is due in a minute; one
    ``spoold cancel`` takes both out of Redis's sets and files them cancelled, no attempt.
    Then the busy job is cancelled too, on its own host (the local path)."""
    config = host_config("a")
    start_daemon(config=config)
    started = tmp_path / "started"
    busy = sleeper(30.0, started)
    wait_for(lambda: read_lines(started), message="the busy job never started")
    ready = run_background_job("testjobs.Noop", "run")
    due = run_background_job("testjobs.Noop", "run", delay=60)
    assert (redis_spool.state(ready), redis_spool.state(due)) == ("ready", "due")

    done = spoold("cancel", ready, due, config=config)
    assert (done.returncode, done.stdout) == (0, f"cancelled {ready}\ncancelled {due}\n"), done
    for job_id in (ready, due):
        record = redis_spool.record(job_id)
        assert record is not None, f"{job_id} has no record"
        assert_cancelled(record, job_id)
        assert record["attempts"] == 0 and record["history"] == []
        assert redis_spool.state(job_id) == "failed"
    assert waiting(redis_spool) == {"ready": [], "due": [], "active": [busy]}

    done = spoold("cancel", busy, config=config)
    assert (done.returncode, done.stdout) == (0, f"cancelled {busy}\n"), done
    assert waiting(redis_spool) == {"ready": [], "due": [], "active": []}
    assert sorted(redis_spool.ids("idx:failed")) == sorted([busy, ready, due])


def test_cancelling_a_done_job_changes_nothing_and_exits_1(
    start_daemon: Callable[..., Daemon],
    host_config: Hosts,
    redis_spool: RedisSpool,
) -> None:
    config = host_config("a")
    start_daemon(config=config)
    job_id = run_background_job("testjobs.Noop", "run")
    redis_spool.wait_record(job_id)
    before = redis_spool.client.hgetall(f"{KEY}job:{job_id}")

    done = spoold("cancel", job_id, config=config)
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert f"job {job_id} has ended already (done); nothing changed" in done.stderr, done
    assert redis_spool.client.hgetall(f"{KEY}job:{job_id}") == before
    assert redis_spool.ids("idx:done") == [job_id] and redis_spool.ids("idx:failed") == []


def test_wait_on_one_host_follows_a_job_another_host_runs(
    start_daemon: Callable[..., Daemon],
    host_config: Hosts,
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """``spoold wait`` with host b's config (no daemon on b: root reads Redis straight,
    told of the filing on ``filed:<id>``) for a 1 s job host a runs: exit 0 within
    half a second of its record being filed (its fallback look is every 2 s). A job still due
    with ``--timeout 0.3``: exit 2; an id never submitted: 3; a job that failed: 1."""
    config_a, config_b = host_config("a", worker={"max_retries": 0}), host_config("b")
    a = start_daemon(config=config_a)
    started = tmp_path / "started"
    job_id = sleeper(1.0, started)
    waiter = subprocess.Popen(
        [sys.executable, "-m", "spoold", "wait", job_id, "--json", "--config", str(config_b)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = waiter.communicate(timeout=15)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    returned = time.time()
    assert waiter.returncode == 0, (out, err)
    shown = json.loads(out)
    assert (shown["id"], shown["state"], shown["document"]["status"]) == (job_id, "done", "done")
    assert started_by(a, job_id)
    lag = returned - shown["document"]["finished_at"]
    print(f"\n[wait] returned {lag:.3f}s after the record was filed")
    assert lag < 0.5, f"wait returned {lag:.2f}s after the record was filed"

    due = run_background_job("testjobs.Noop", "run", delay=60)
    began = time.monotonic()
    timed_out = spoold("wait", due, "--timeout", "0.3", config=config_b)
    assert timed_out.returncode == 2, timed_out
    assert f"job {due} has not ended after 0.3s (it is in scheduled)" in timed_out.stderr
    assert time.monotonic() - began >= 0.3

    unknown = spoold("wait", UNKNOWN_ID, config=config_b)
    assert unknown.returncode == 3, unknown
    assert f"no job {UNKNOWN_ID}" in unknown.stderr

    boom = run_background_job("testjobs.Boom", "run", max_retries=0)
    failed = spoold("wait", boom, "--json", "--timeout", "10", config=config_b)
    assert failed.returncode == 1, failed
    assert json.loads(failed.stdout)["document"]["status"] == "failed"


def test_retry_of_a_cancelled_job_runs_it_again_to_done(
    start_daemon: Callable[..., Daemon],
    host_config: Hosts,
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """A SlowFirst job (its first attempt sleeps 30 s) is cancelled while it runs, then
    ``spoold retry``: it waits again without its cancel mark, runs, and is done."""
    config = host_config("a")
    start_daemon(config=config)
    log = tmp_path / "attempts.log"
    job_id = run_background_job("testjobs.SlowFirst", "run", [str(log), 30.0])
    wait_for(lambda: read_lines(log), message="the job never started")
    assert spoold("cancel", job_id, config=config).returncode == 0
    assert redis_spool.record(job_id)["status"] == "cancelled"  # type: ignore[index]

    retried = spoold("retry", job_id, config=config)
    assert (retried.returncode, retried.stdout) == (0, f"retried {job_id}\n"), retried
    record = wait_for(
        lambda: (r := redis_spool.record(job_id)) and r["status"] != "cancelled" and r,
        message="the retried job has no new record",
    )
    assert record["status"] == "done", record
    assert record["result"] == 2  # the second attempt: it ran again
    assert [line["attempt"] for line in read_lines(log)] == [1, 2]
    assert redis_spool.client.hget(f"{KEY}job:{job_id}", "cancel") is None
    assert redis_spool.ids("idx:done") == [job_id] and redis_spool.ids("idx:failed") == []


def test_the_clients_wait_and_cancel_on_a_redis_spool(
    start_daemon: Callable[..., Daemon],
    host_config: Hosts,
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """``wait()`` and ``cancel()`` ask the daemon on ``<[spool] dir>/control.sock`` (the
    config's, or ``spool=``): a running job is cancelled (True), again (False), waited
    for; a done job is waited for; a due one times out; an unknown id is a LookupError;
    with no daemon, OSError."""
    config = host_config("a")
    daemon = start_daemon(config=config)
    started = tmp_path / "started"
    job_id = sleeper(30.0, started)
    wait_for(lambda: read_lines(started), message="the job never started")

    assert cancel(job_id) is True
    record = wait(job_id, timeout=5)
    assert_cancelled(record, job_id)
    assert record == redis_spool.record(job_id)
    assert cancel(job_id) is False

    quick = run_background_job("testjobs.Noop", "run")
    assert wait(quick, timeout=10, spool=tmp_path / "host-a")["status"] == "done"
    assert cancel(quick) is False

    due = run_background_job("testjobs.Noop", "run", delay=60)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        wait(due, timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 2.0
    with pytest.raises(LookupError):
        wait(UNKNOWN_ID, timeout=5)
    with pytest.raises(LookupError):
        cancel(UNKNOWN_ID)
    assert cancel(due) is True
    assert redis_spool.record(due)["status"] == "cancelled"  # type: ignore[index]

    daemon.stop()
    with pytest.raises(OSError, match="no daemon answers"):
        wait(quick, timeout=5)
