"""The real daemon on a real Redis that crashes, restarts, or comes back empty.

Each test starts its own ``redis-server`` (``redis_server`` fixture: its own
port and folder, ``appendfsync always``), the real daemon (``spoold run`` as a
subprocess) and submits with the real client; then SIGKILLs or stops the
server and starts it again on the same port and folder (``restart()``, which
reloads the append-only file), and reads what Redis kept. Nothing is mocked.

What must hold: a job the client acknowledged (``run_background_job``
returned its id) is never lost and never run twice; an outage shorter than
the lease reruns nothing; the daemon says what is wrong in one log line per
occurrence, without a traceback, and carries on once Redis is back.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, wait_for
from redis_server import BUSY_SCRIPT, KEY, RedisServer, RedisSpool

from spoold.client import job_payload, run_background_job
from spoold.ids import new_job_id

# A daemon's log line: "2024-05-01 12:00:00.000 ERROR    message" (harness: no log file,
# stderr without a terminal). Anything else in the log is a continuation: a traceback.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ +\S")
UNREACHABLE = "cannot reach Redis"


def lines_with(daemon: Daemon, text: str) -> list[str]:
    return [line for line in daemon.log_lines() if text in line]


def assert_one_line_each(daemon: Daemon) -> None:
    """No traceback, and every line of the log is a log line of its own (no continuation)."""
    text = daemon.log_text()
    assert "Traceback" not in text, text[-5000:]
    strays = [line for line in text.splitlines() if not LOG_LINE.match(line)]
    assert strays == [], "lines that are not log lines:\n" + "\n".join(strays[:20])


@pytest.fixture
def start_redis_daemon(
    redis_server: RedisServer,
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
) -> Callable[..., Daemon]:
    """``start_redis_daemon(**overrides)``: a daemon on the test's Redis, with the config
    ``redis_config(**overrides)`` writes.

    It asks for ``redis_server`` before ``start_daemon``: pytest sets the server up first,
    so at teardown it stops after the daemons, wherever a test that kills or restarts the
    server names ``redis_server`` (a test naming ``start_daemon`` ahead of this fixture
    would undo that: it is not named in this file's tests).
    """

    def start(**overrides: dict[str, Any]) -> Daemon:
        return start_daemon(config=redis_config(**overrides))

    return start


def library_names(redis_spool: RedisSpool) -> list[str]:
    """The functions libraries loaded in the server (FUNCTION LIST: flat name/value pairs)."""
    libraries = redis_spool.client.function_list()
    return [
        dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"].decode() for lib in libraries
    ]


def pending(redis_spool: RedisSpool) -> dict[str, int]:
    """How many jobs wait or run: the ready, due and active sets."""
    return {name: redis_spool.client.zcard(KEY + name) for name in ("ready", "due", "active")}


@pytest.mark.chaos
def test_redis_killed_under_load_loses_no_acknowledged_job(
    redis_server: Any, start_redis_daemon: Callable[..., Daemon], redis_spool: RedisSpool
) -> None:
    """300 acknowledged jobs, with a SIGKILL of redis-server after the first 100.

    Submits during the outage raise OSError within ``redis_timeout`` and are not
    acknowledged; once the server is back (from its AOF), the submits go on to 300.
    """
    total, kill_after, timeout = 300, 100, 1.0
    daemon = start_redis_daemon(worker={"concurrency": 2}, spool={"redis_timeout": timeout})
    acknowledged: list[str] = []
    refused: list[str] = []  # what the client raised while the server was down

    def submit() -> bool:
        """One submit; True if acknowledged (an id came back)."""
        began = time.monotonic()
        try:
            acknowledged.append(run_background_job("testjobs.Noop", "run"))
        except OSError as exc:
            elapsed = time.monotonic() - began
            assert elapsed < timeout + 1.0, f"the client took {elapsed:.2f}s to raise {exc}"
            refused.append(str(exc))
            return False
        return True

    while len(acknowledged) < kill_after:
        assert submit(), f"refused while Redis was up: {refused[-1]}"
    redis_server.kill()
    killed_at = time.monotonic()

    def outage_seen() -> bool:
        # The client keeps submitting until the daemon has noticed the outage too.
        assert not submit(), "acknowledged by a Redis that was killed"
        return bool(lines_with(daemon, UNREACHABLE)) and len(refused) >= 50  # a second or so

    wait_for(outage_seen, 10.0, lambda: f"the daemon never logged {UNREACHABLE!r}")
    redis_server.restart()
    outage = time.monotonic() - killed_at
    while len(acknowledged) < total:
        assert submit(), f"refused once Redis was back: {refused[-1]}"

    def all_recorded() -> bool:
        return len(redis_spool.ids("idx:done")) >= len(acknowledged)

    wait_for(all_recorded, 60.0, lambda: f"{len(redis_spool.ids('idx:done'))} of {total} done")
    wait_for(lambda: not any(pending(redis_spool).values()), 10.0, "jobs left to run")

    assert len(set(acknowledged)) == total
    done = redis_spool.ids("idx:done")
    assert redis_spool.client.zcard(KEY + "idx:done") == len(set(done)) == len(done)
    assert set(done) == set(acknowledged), (
        f"lost: {sorted(set(acknowledged) - set(done))[:10]}; "
        f"never acknowledged yet done: {sorted(set(done) - set(acknowledged))[:10]}"
    )
    assert redis_spool.ids("idx:failed") == []
    for job_id in acknowledged:
        record = redis_spool.record(job_id)
        assert record is not None and record["status"] == "done", (job_id, record)
        assert redis_spool.state(job_id) == "done"
        outcomes = [entry["outcome"] for entry in record["history"]]
        assert outcomes == ["ok"], f"job {job_id} ran as {outcomes} (outage {outage:.1f}s)"
    assert pending(redis_spool) == {"ready": 0, "due": 0, "active": 0}

    assert refused, "no submit was refused while Redis was down"
    assert all(UNREACHABLE in message for message in refused), refused[:3]
    assert daemon.returncode() is None, f"the daemon exited:\n{daemon.log_text()[-5000:]}"
    assert lines_with(daemon, UNREACHABLE)
    assert_one_line_each(daemon)


@pytest.mark.chaos
@pytest.mark.parametrize("how", ["kill", "stop"])
def test_an_outage_shorter_than_the_lease_loses_and_reruns_nothing(
    how: str,
    redis_server: Any,
    start_redis_daemon: Callable[..., Daemon],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """The attempt ends while Redis is down: its outcome is held, and filed once it is back."""
    lease = 6.0
    daemon = start_redis_daemon(spool={"lease": lease, "redis_timeout": 1.0})
    started = tmp_path / "started"
    job_id = run_background_job("testjobs.Sleeper", "run", [2.0, str(started)])
    wait_for(started.exists, 10.0, "the job never started")
    down_at = time.monotonic()
    getattr(redis_server, how)()
    held = daemon.wait_log(f"job {job_id}: cannot file its outcome", timeout=lease)
    redis_server.restart()
    outage = time.monotonic() - down_at
    assert outage < lease - 1.0, f"the outage took {outage:.1f}s, not less than the lease"

    record = redis_spool.wait_record(job_id, timeout=lease)
    filed_again = daemon.wait_log("filing works again")
    assert record["status"] == "done" and record["attempts"] == 1, record
    assert [entry["outcome"] for entry in record["history"]] == ["ok"], record["history"]
    assert redis_spool.ids("idx:done") == [job_id]
    assert redis_spool.state(job_id) == "done"
    assert pending(redis_spool) == {"ready": 0, "due": 0, "active": 0}
    assert len(started.read_text().splitlines()) == 1, "the job ran again"

    lines = daemon.log_lines()
    assert lines.index(held) < lines.index(filed_again)
    assert UNREACHABLE in held
    assert not lines_with(daemon, "interrupted")
    assert daemon.returncode() is None
    assert_one_line_each(daemon)


def test_a_redis_restart_without_its_data_does_not_wedge_the_daemon(
    redis_server: Any,
    start_redis_daemon: Callable[..., Daemon],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """The server comes back empty while a job runs: the daemon loads the functions
    library again, says in one line that the vanished job's outcome cannot be filed,
    and runs what is submitted next."""
    daemon = start_redis_daemon(spool={"redis_timeout": 1.0})
    started = tmp_path / "started"
    vanished = run_background_job("testjobs.Sleeper", "run", [1.0, str(started)])
    wait_for(started.exists, 10.0, "the job never started")
    redis_server.kill()
    shutil.rmtree(redis_server.aof_folder)
    redis_server.restart()
    assert library_names(redis_spool) == [], "the server kept its data"

    stale = daemon.wait_log(f"job {vanished}: its outcome was not filed")
    assert "no longer holds it" in stale
    assert library_names(redis_spool) == ["spoold_v1"], "the daemon did not load its library"
    assert redis_spool.record(vanished) is None

    job_id = run_background_job("testjobs.Noop", "run")
    record = redis_spool.wait_record(job_id)
    assert record["status"] == "done"
    assert [entry["outcome"] for entry in record["history"]] == ["ok"]
    assert len(lines_with(daemon, "its outcome was not filed")) == 1
    assert daemon.returncode() is None
    assert_one_line_each(daemon)


def test_a_daemon_started_while_redis_is_down_says_so_in_one_line(
    redis_server: Any, start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path]
) -> None:
    config = redis_config(spool={"redis_timeout": 1.0})
    redis_server.kill()
    began = time.monotonic()
    daemon = start_daemon(config=config, ready=False)
    status = daemon.wait_exit(timeout=15.0)
    took = time.monotonic() - began
    text = daemon.log_text()
    assert status != 0, text
    assert "Traceback" not in text, text
    # Other lines are the daemon's usual ones ("jobs run as root", "stopped"): log lines.
    errors = [line for line in text.splitlines() if not LOG_LINE.match(line)]
    assert len(errors) == 1, text
    assert errors[0].startswith("spoold: ") and "Redis" in errors[0], text
    assert redis_server.url in errors[0], f"the error does not name {redis_server.url}: {text}"
    assert took < 10.0, f"the daemon took {took:.1f}s to give up"


@pytest.mark.chaos
def test_a_claim_whose_answer_is_lost_neither_waits_for_the_lease_nor_counts_an_attempt(
    start_redis_daemon: Callable[..., Daemon], redis_spool: RedisSpool
) -> None:
    """A stalled server runs the daemon's claim after the daemon gave up on its answer.

    What SIGKILL under load does at random (the claim executed and persisted, its
    reply lost), made certain: one pipeline submits a job (its bell is delivered
    only after the pipeline) and then keeps the server busy past ``redis_timeout``;
    the daemon's once-a-second claim waits, times out, and is executed when the
    server is free. The job never ran, so it must run once, soon, with one attempt.
    """
    lease, timeout, stall = 6.0, 0.3, 2.0
    daemon = start_redis_daemon(spool={"lease": lease, "redis_timeout": timeout})
    now = time.time()  # the client's submit, on the test's own connection:
    job_id, payload = new_job_id(now), job_payload("testjobs.Noop", "run", None, now=now)
    pipe = redis_spool.client.pipeline(transaction=False)
    pipe.fcall("spoold_submit", 1, KEY, job_id, payload)
    pipe.eval(BUSY_SCRIPT, 0, round(stall * 1000))
    answer, _iterations = pipe.execute()
    free_at = time.monotonic()
    assert answer == b"ok"

    claim_lost = re.compile(r" ERROR +cannot reach Redis: .*; trying again in ")
    assert any(claim_lost.search(line) for line in daemon.log_lines()), (
        f"no claim was waiting while the server was busy:\n{daemon.log_text()}"
    )
    record = redis_spool.wait_record(job_id, timeout=lease + 5.0)
    took = time.monotonic() - free_at
    history = [(entry["outcome"], entry.get("cause")) for entry in record["history"]]
    assert history == [("ok", None)], f"{history}, filed {took:.1f}s after the stall"
    assert took < lease / 2, f"the job waited {took:.1f}s for a lease to lapse"
    assert_one_line_each(daemon)
