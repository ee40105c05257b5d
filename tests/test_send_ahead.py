"""Requests sent ahead ([worker] send_ahead): a slot's next job waits in the launcher and
starts the moment the slot frees, with the real launcher and the real daemon.

The launcher tests talk to it through the daemon's own client (LauncherClient), as the
dispatcher does; the daemon tests drop real files and send real signals. The daemon's
decisions around it (a held filing, a stale request, a cancel, a dead launcher) are also
driven in process in tests/test_core_in_process.py.
"""

from __future__ import annotations

import select
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import JOBS_DIR, Daemon, Spool, job, read_lines, spoold_cli, stays_false, wait_for
from redis_server import RedisSpool

from spoold.client import run_background_job
from spoold.exec.launcher_client import LauncherClient
from spoold.exec.protocol import Op, Outcome


@pytest.fixture
def launcher() -> Iterator[LauncherClient]:
    client = LauncherClient()
    assert client.wait_ready(30.0)
    yield client
    client.close()


def request(job_id: str, class_name: str, params: list[Any]) -> Any:
    return {"job_id": job_id, "class": f"testjobs.{class_name}", "method": "run",
            "params": params, "python_path": [str(JOBS_DIR)], "memory_limit": 0,
            "max_jobs_per_process": 1}  # fmt: skip


def messages_until(launcher: LauncherClient, wanted: Any, timeout: float = 15.0) -> list[Any]:
    """Every report read until one for which ``wanted(message)`` is true (inclusive)."""
    seen: list[Any] = []

    def arrived() -> bool:
        if select.select([launcher.sock], [], [], 0.05)[0]:
            seen.extend(launcher.receive())
        return any(wanted(message) for message in seen)

    wait_for(arrived, timeout, lambda: f"reports so far: {seen}")
    return seen


def ops(messages: list[Any]) -> list[tuple[str, str]]:
    return [(message["op"], message["key"]) for message in messages]


def test_a_run_sent_ahead_starts_the_moment_its_slot_frees(
    launcher: LauncherClient, tmp_path: Path
) -> None:
    log, gate = tmp_path / "runs.jsonl", tmp_path / "gate"
    launcher.run("a", request("a", "Gated", [str(log), str(gate), 1]), 30.0, 1)
    launcher.run("b", request("b", "Recorder", [str(log), "b"]), 30.0, 1)
    messages_until(launcher, lambda m: m["op"] == Op.STARTED and m["key"] == "a")
    assert stays_false(lambda: len(read_lines(log)) > 1, 1.0), "b started beside a"
    gate.touch()
    seen = messages_until(launcher, lambda m: m["op"] == Op.FINISHED and m["key"] == "b")
    assert ops(seen) == [(Op.FINISHED, "a"), (Op.STARTED, "b"), (Op.FINISHED, "b")]
    assert seen[0]["outcome"] == seen[2]["outcome"] == Outcome.OK
    assert seen[1]["started_at"] >= seen[0]["finished_at"] - 0.001


@pytest.mark.parametrize("how", ["unqueue", "kill"])
def test_a_run_taken_back_before_it_started_never_starts(
    launcher: LauncherClient, tmp_path: Path, how: str
) -> None:
    log, gate = tmp_path / "runs.jsonl", tmp_path / "gate"
    launcher.run("a", request("a", "Gated", [str(log), str(gate), 1]), 30.0, 1)
    launcher.run("b", request("b", "Recorder", [str(log), "b"]), 30.0, 1)
    messages_until(launcher, lambda m: m["op"] == Op.STARTED and m["key"] == "a")
    launcher.unqueue("b") if how == "unqueue" else launcher.kill("b", 0.0)
    seen = messages_until(launcher, lambda m: m["op"] == Op.NOT_STARTED)
    assert seen[-1] == {"op": Op.NOT_STARTED, "key": "b", "errno": None, "strerror": None}
    gate.touch()
    seen = messages_until(launcher, lambda m: m["op"] == Op.FINISHED and m["key"] == "a")
    assert (seen[-1]["outcome"], len(read_lines(log))) == (Outcome.OK, 1)
    assert stays_false(lambda: len(read_lines(log)) > 1, 0.5), "b started after all"


def one_running_one_ahead(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> tuple[Daemon, Path, Path]:
    """One slot: "first" runs until ``gate`` exists, "second" is sent ahead (in active/)."""
    log, gate = tmp_path / "runs.jsonl", tmp_path / "gate"
    daemon = start_daemon(worker={"concurrency": 1, "send_ahead": True})
    spool.drop_job("first", job("Gated", params=[str(log), str(gate), 1]))
    wait_for(lambda: read_lines(log), 15, spool.summary)
    spool.drop_job("second", job("Recorder", params=[str(log), "second"]))
    wait_for(lambda: spool.where("second") == ["active"], 15, spool.summary)
    return daemon, log, gate


def test_the_daemon_sends_ahead_and_a_stop_puts_what_waits_back_unchanged(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """One slot: the second job waits in the launcher (SIGUSR1 says so) and does not
    count as running; SIGTERM takes it back to wait, unchanged, while the first one
    finishes; the next start runs it."""
    daemon, log, gate = one_running_one_ahead(spool, start_daemon, tmp_path)
    daemon.send(signal.SIGUSR1)
    daemon.wait_log("status: 1/1 busy")
    daemon.wait_log("next: job second testjobs.Recorder.run, sent ahead")
    daemon.send(signal.SIGTERM)
    daemon.wait_log("taken back before it started")
    gate.touch()
    assert daemon.wait_exit() == 0
    assert spool.record("first", "done") is not None
    assert spool.where("second") == ["scheduled"]
    waiting = spool.record("second", "scheduled")
    assert waiting is not None and waiting.get("history", []) == []
    assert [line.get("label") for line in read_lines(log)] == [None], "second ran"
    start_daemon(worker={"concurrency": 1, "send_ahead": True})
    second = spool.wait_record("second", timeout=15)
    assert [entry["outcome"] for entry in second["history"]] == ["ok"]


def test_a_cancelled_job_that_waits_in_the_launcher_is_filed_without_an_attempt(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon, log, gate = one_running_one_ahead(spool, start_daemon, tmp_path)
    done = spoold_cli(daemon.config, tmp_path, "cancel", "second")
    assert done.returncode == 0, done.stderr
    record = spool.wait_record("second", "failed", timeout=15)
    assert (record["status"], record["attempts"], record["history"]) == ("cancelled", 0, [])
    gate.touch()
    assert spool.wait_record("first", timeout=15)["status"] == "done"
    assert [line.get("label") for line in read_lines(log)] == [None]


def test_on_redis_a_job_sent_ahead_runs_once_and_a_stop_gives_it_back_to_ready(
    start_daemon: StartDaemon,
    redis_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """The claim of a request sent ahead is an ordinary Redis claim: its lease is kept
    while it waits, and taken back at a stop it is ready again, with no attempt."""
    config = redis_config(worker={"concurrency": 1, "send_ahead": True})
    log, gate = tmp_path / "runs.jsonl", tmp_path / "gate"
    daemon = start_daemon(config=config)
    first = run_background_job("testjobs.Gated", "run", [str(log), str(gate), 1])
    wait_for(lambda: read_lines(log), 15, "the first job to start")
    second = run_background_job("testjobs.Recorder", "run", [str(log), "second"])
    wait_for(lambda: redis_spool.state(second) == "active", 15, "the second to be sent ahead")
    daemon.send(signal.SIGTERM)
    daemon.wait_log("taken back before it started")
    gate.touch()
    assert daemon.wait_exit() == 0
    assert redis_spool.wait_record(first)["status"] == "done"
    assert redis_spool.state(second) in ("ready", "due"), redis_spool.state(second)
    start_daemon(config=config)
    record = redis_spool.wait_record(second)
    assert [entry["outcome"] for entry in record["history"]] == ["ok"]
    assert [line.get("label") for line in read_lines(log)] == [None, "second"]
