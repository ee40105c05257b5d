"""The ``spoold`` command on a Redis spool, run for real against a real ``redis-server``.

``python -m spoold`` subprocesses (as tests/test_cli.py runs them) and the real
daemon (tests/harness.py's ``Daemon``) on a ``[spool] backend = "redis"``
config: submit (the CLI and ``run_background_job``), status, list, show,
retry, purge and check. A record shown from Redis has the keys the file spool
gives the same job. Each test starts its own ``redis-server`` (a small fixture
here: ``--appendonly yes --appendfsync always --save ''`` by default); without
redis-server or redis-py the tests skip, and with ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Spool, wait_for, write_config
from redis_server import RedisServer, free_port
from redis_server import require as require_redis

from spoold.client import run_background_job

ROOT = Path(__file__).resolve().parent.parent
NAME = "clitest"
KEY = f"spoold:{{{NAME}}}:"  # the spool's key prefix
StartRedis = Callable[..., str]


# -- redis-servers of the test's own (tests/redis_server.py) --


@pytest.fixture
def start_redis(tmp_path: Path, leak_check: str) -> Iterator[StartRedis]:
    """``start_redis(appendfsync="always")``: a redis-server on a free port; its URL.

    Each is stopped (and reaped) at teardown, after the daemons (list this
    fixture before ``start_daemon``).
    """
    require_redis()
    started: list[RedisServer] = []

    def start(appendfsync: str = "always") -> str:
        folder = tmp_path / f"redis-{len(started) + 1}"
        server = RedisServer(folder, appendfsync=appendfsync, token=leak_check)
        started.append(server)
        return server.start().url

    yield start
    for server in started:
        server.stop()


# -- the CLI and the spool --


def run_spoold(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "spoold", *args, "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def redis_config(
    tmp_path: Path, url: str, worker: dict[str, Any] | None = None, **spool: Any
) -> Path:
    """The harness's config (test jobs allowed) for a Redis spool; its local folder apart."""
    local = Spool(tmp_path / "redis-spool")
    overrides = {"spool": {"backend": "redis", "url": url, "name": NAME, **spool}}
    path = tmp_path / f"redis-{len(list(tmp_path.glob('redis-*.toml')))}.toml"
    return write_config(path, local, {**overrides, "worker": worker or {}})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("spoold: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


class Redis:
    """A look at the spool's keys, for what the CLI does not print."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, decode_responses=True)

    def state(self, job_id: str) -> str | None:
        value = self.client.hget(f"{KEY}job:{job_id}", "state")
        return str(value) if value is not None else None

    def wait_state(self, job_id: str, *states: str, timeout: float = 15.0) -> str:
        return wait_for(
            lambda: (found := self.state(job_id)) in states and found,
            timeout,
            lambda: f"{job_id} in {states}; it is {self.state(job_id)}",
        )


def submit(config: Path, *args: str) -> str:
    return ok(run_spoold("submit", *args, config=config)).strip()


# -- submitting, listing, showing: no daemon --


def test_submit_status_list_show_without_a_daemon(
    tmp_path: Path, start_redis: StartRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = start_redis()
    config = redis_config(tmp_path, url)
    redis = Redis(url)
    as_json = json.loads(ok(run_spoold("submit", "testjobs.Echo", "run", "a", "1", "--json",
                                       config=config)))  # fmt: skip
    first = as_json["id"]
    assert as_json == {"id": first, "key": f"{KEY}job:{first}"}  # Redis: a key, not a file
    assert json.loads(redis.client.hget(f"{KEY}job:{first}", "spec"))["params"] == ["a", 1]
    later = submit(config, "testjobs.Noop", "run", "--delay", "600", "--priority", "5")
    monkeypatch.delenv("SPOOLD_SPOOL_DIR", raising=False)
    monkeypatch.setenv("SPOOLD_CONFIG", str(config))
    library = run_background_job("testjobs.Echo", "run", {"x": 2})
    # A job file left in this host's incoming/ (the daemon moves it into Redis) counts too.
    local = Spool(tmp_path / "redis-spool").create()
    local.drop_job("20200101T000000.000Z-aaaaaaaaaa", {"class": "testjobs.Noop", "method": "run"})
    assert not (tmp_path / "redis-spool" / "incoming" / f"{first}.json").exists()

    status = json.loads(ok(run_spoold("status", "--json", config=config)))
    assert status["counts"] == {
        "tmp": 0, "incoming": 3, "scheduled": 1, "active": 0, "done": 0, "failed": 0
    }  # fmt: skip
    assert status["oldest_waiting_id"] == first
    assert status["daemon_running"] is False
    assert status["redis"] == f"{url} {KEY}"
    text = ok(run_spoold("status", config=config))
    assert f"redis      {url} {KEY}" in text and "incoming   3" in text

    listed = json.loads(ok(run_spoold("list", "--json", config=config)))
    assert [(job["id"], job["state"]) for job in listed] == [
        ("20200101T000000.000Z-aaaaaaaaaa", "incoming"), (first, "incoming"),
        (library, "incoming"), (later, "scheduled"),
    ]  # fmt: skip
    assert listed[1]["target"] == "testjobs.Echo.run"
    assert listed[1]["attempts"] == 0
    assert [line.split()[:2] for line in ok(run_spoold("list", "scheduled", config=config))
            .splitlines()] == [[later, "scheduled"]]  # fmt: skip

    shown = json.loads(ok(run_spoold("show", library, "--json", config=config)))
    assert shown["state"] == "incoming"
    assert shown["path"] == f"{KEY}job:{library}"
    assert shown["document"]["params"] == {"x": 2}
    assert ok(run_spoold("show", later, config=config)).startswith(f"# {KEY}job:{later}\n")
    dropped = json.loads(ok(run_spoold("show", "20200101T000000.000Z-aaaaaaaaaa", "--json",
                                       config=config)))  # fmt: skip
    assert dropped["path"].endswith("redis-spool/incoming/20200101T000000.000Z-aaaaaaaaaa.json")
    one_line_error(run_spoold("show", "20200101T000000.000Z-bbbbbbbbbb", config=config),
                   "no job 20200101T000000.000Z-bbbbbbbbbb", url)  # fmt: skip
    one_line_error(run_spoold("retry", first, config=config),
                   f"job {first} is in incoming/; only failed jobs can be retried")  # fmt: skip


# -- with the daemon: records, retry, purge --


def test_records_shown_from_redis_have_the_file_spools_keys_and_a_failed_job_retries(
    tmp_path: Path, start_redis: StartRedis, start_daemon: StartDaemon
) -> None:
    url = start_redis()
    config = redis_config(tmp_path, url)
    redis = Redis(url)
    start_daemon(config=config)
    counter = tmp_path / "flaky-counter"
    echoed = submit(config, "testjobs.Echo", "run", "a", "1")
    flaky = submit(config, "testjobs.Flaky", "run", "--kwargs",
                   json.dumps({"counter": str(counter), "failures": 1}),
                   "--max-retries", "0")  # fmt: skip
    redis.wait_state(echoed, "done")
    redis.wait_state(flaky, "failed")

    # The same Echo job on a file spool, for its record's keys.
    files = start_daemon()
    file_spool = Spool(tmp_path / "spool")
    file_id = submit(files.config, "testjobs.Echo", "run", "a", "1")
    file_record = file_spool.wait_record(file_id)

    shown = json.loads(ok(run_spoold("show", echoed, "--json", config=config)))
    assert shown["state"] == "done"
    assert shown["path"] == f"{KEY}job:{echoed}"
    record = shown["document"]
    assert set(record) == set(file_record)
    assert set(record["history"][0]) == set(file_record["history"][0])
    for key in ("status", "attempts", "result", "class", "method", "params"):
        assert record[key] == file_record[key], key
    assert record["id"] == echoed
    assert record["history"][0]["outcome"] == "ok"

    failed = json.loads(ok(run_spoold("show", flaky, "--json", config=config)))
    assert failed["state"] == "failed"
    assert failed["document"]["status"] == "failed"
    assert failed["document"]["history"][0]["outcome"] == "error"
    assert "flaky failure 1 of 1" in failed["document"]["history"][0]["error"]
    text = ok(run_spoold("show", flaky, config=config))
    assert "traceback of attempt 1:" in text and "RuntimeError: flaky failure" in text
    listed = ok(run_spoold("list", "failed", config=config)).splitlines()
    assert len(listed) == 1 and flaky in listed[0] and "RuntimeError: flaky failure" in listed[0]
    assert ok(run_spoold("retry", "--all-failed", config=config)) == f"retried {flaky}\n"
    redis.wait_state(flaky, "done")
    again = json.loads(ok(run_spoold("show", flaky, "--json", config=config)))["document"]
    assert again["result"] == 2  # the second attempt of all: it ran again, attempts afresh
    assert again["attempts"] == 1
    assert ok(run_spoold("list", "failed", config=config)) == ""
    status = json.loads(ok(run_spoold("status", "--json", config=config)))
    assert status["counts"]["done"] == 2 and status["counts"]["failed"] == 0
    assert status["daemon_running"] is True


def test_status_shows_running_jobs_and_purge_removes_old_done_records(
    tmp_path: Path, start_redis: StartRedis, start_daemon: StartDaemon
) -> None:
    url = start_redis()
    config = redis_config(tmp_path, url, worker={"shutdown_timeout": 0.5})  # the sleeper
    redis = Redis(url)
    start_daemon(config=config)
    old, recent = (submit(config, "testjobs.Noop", "run") for _ in range(2))
    for job_id in (old, recent):
        redis.wait_state(job_id, "done")
    started = tmp_path / "started"
    sleeper = submit(config, "testjobs.Sleeper", "run", "--kwargs",
                     json.dumps({"seconds": 30, "started": str(started)}))  # fmt: skip
    wait_for(started.exists, 15, "the sleeper started")
    status = json.loads(ok(run_spoold("status", "--verbose", "--json", config=config)))
    assert status["counts"]["active"] == 1
    (running,) = status["running_jobs"]
    assert running["id"] == sleeper
    assert running["target"] == "testjobs.Sleeper.run"
    assert running["attempt"] == 1
    assert 0 <= running["running_for"] < 30
    assert f"{sleeper}  testjobs.Sleeper.run  attempt 1" in ok(
        run_spoold("status", "-v", config=config)
    )

    # Filed two hours ago, as far as the index of done records knows.
    redis.client.zadd(f"{KEY}idx:done", {old: (time.time() - 7200) * 1000}, xx=True)
    result = ok(run_spoold("purge", "done", "--older-than", "1h", config=config))
    assert result == f"removed 1 record from {url} {KEY}idx:done\n"
    assert redis.state(old) is None
    assert [job["id"] for job in json.loads(ok(run_spoold("list", "done", "--json",
                                                          config=config)))] == [recent]  # fmt: skip
    one_line_error(run_spoold("show", old, config=config), f"no job {old}")
    assert ok(run_spoold("purge", "failed", "--older-than", "1s", config=config)) == (
        f"removed 0 records from {url} {KEY}idx:failed\n"
    )


# -- check, and a Redis that cannot be reached --


def test_check_refuses_a_redis_that_can_lose_jobs_and_passes_a_durable_one(
    tmp_path: Path, start_redis: StartRedis
) -> None:
    durable = redis_config(tmp_path, start_redis("always"))
    result = run_spoold("check", config=durable)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   redis redis://127.0.0.1:" in result.stdout
    assert "appendfsync always" in result.stdout
    assert result.stderr == ""

    lossy_url = start_redis("everysec")
    lossy = redis_config(tmp_path, lossy_url)
    result = run_spoold("check", config=lossy)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"FAIL redis {lossy_url}: appendfsync is everysec, not always" in result.stdout
    assert "ok   testjobs.Echo: run" in result.stdout  # the allowlist is still reported
    assert result.stderr == f"spoold check: the Redis at {lossy_url} can lose acknowledged" \
        " jobs ([spool] require_durable = true)\n"  # fmt: skip
    as_json = run_spoold("check", "--json", config=lossy)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1
    assert report["ok"] is False
    assert report["redis"]["problems"] == ["appendfsync is everysec, not always"]

    accepted = redis_config(tmp_path, lossy_url, require_durable=False)
    result = run_spoold("check", config=accepted)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "appendfsync is everysec, not always" in result.stderr
    assert result.stderr.startswith("spoold: warning: ")


@pytest.mark.parametrize(
    "command",
    [["status"], ["list"], ["show", "20200101T000000.000Z-aaaaaaaaaa"], ["purge", "done",
     "--older-than", "1d"], ["submit", "testjobs.Noop", "run"]],
)  # fmt: skip
def test_an_unreachable_redis_is_one_line(tmp_path: Path, command: list[str]) -> None:
    require_redis()
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    config = redis_config(tmp_path, url, redis_timeout=2.0)
    line = one_line_error(
        run_spoold(*command, config=config), "cannot reach Redis at redis://127.0.0.1:"
    )
    assert "secret" not in line  # the password is never printed


def test_check_of_an_unreachable_redis_fails_in_one_line(tmp_path: Path) -> None:
    require_redis()
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_spoold("check", config=redis_config(tmp_path, url))
    assert result.returncode == 1
    assert f"FAIL redis: cannot reach Redis at {url}" in result.stdout
    assert result.stderr == f"spoold check: the Redis at {url} cannot be reached\n"
