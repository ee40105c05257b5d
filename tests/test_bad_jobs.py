"""Badly behaved jobs (SPEC.md "Isolation"): a job that hogs memory or CPU, forks a tree,
escapes its process group, ignores SIGTERM or breaks its own descriptors ends as one attempt
with a clear outcome, none of its processes outlives the attempt, and the daemon goes on
running jobs. (Errors, segfaults, SIGKILL, os._exit and a timed-out grandchild are in
test_workers.py.) The jobs are in tests/jobs/badjobs.py; each records the pid of every
process it makes before it misbehaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Daemon, Spool, describe, job, pid_alive, read_lines, stays_false, wait_for

from spoold.exec.launcher import KILL_GRACE

MB = 1 << 20
GONE_WITHIN = 5.0  # seconds a job's processes may take to disappear once its record is filed


def bad_job(class_name: str, method: str = "run", params: Any = None, **fields: Any) -> dict:
    """A job document for a class of tests/jobs/badjobs.py."""
    document: dict[str, Any] = {"class": f"badjobs.{class_name}", "method": method, **fields}
    if params is not None:
        document["params"] = params
    return document


def only_attempt(record: dict[str, Any]) -> dict[str, Any]:
    """The single history entry of a one-attempt job."""
    assert record["attempts"] == 1, record
    (entry,) = record["history"]
    assert entry["started_at"] <= entry["finished_at"], entry
    return dict(entry)


def recorded(pidfile: Path, *roles: str) -> list[dict[str, Any]]:
    """The lines the job wrote for processes with one of ``roles``."""
    return [line for line in read_lines(pidfile) if line["role"] in roles]


def assert_all_gone(pids: list[int], timeout: float = GONE_WITHIN) -> None:
    """Every pid is gone (or a zombie) within ``timeout`` seconds."""
    assert pids

    def alive() -> list[int]:
        return [pid for pid in pids if pid_alive(pid)]

    wait_for(
        lambda: not alive(),
        timeout,
        lambda: "job processes gone; still alive: " + "; ".join(describe(p) for p in alive()),
    )


def assert_daemon_still_works(spool: Spool, daemon: Daemon, name: str = "after") -> None:
    """A normal job after the bad ones runs to done; the daemon still runs, active/ is empty."""
    spool.drop_job(name, job("Echo", params=[name]))
    assert spool.wait_record(name)["result"] == {"args": [name], "kwargs": {}}
    assert daemon.returncode() is None
    assert spool.names("active") == []


# -- memory --


def test_unbounded_allocation_stops_at_the_memory_limit(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """With memory_limit = 200 MB, a job that allocates (and writes) 10 MB blocks without end
    fails with MemoryError before its blocks reach 200 MB; without the limit it would reach
    its 2 GB safety stop and succeed."""
    daemon = start_daemon(worker={"max_retries": 0, "memory_limit": 200 * MB})
    progress = tmp_path / "progress.jsonl"
    spool.drop_job("hog", bad_job("Hog", params=[str(progress)]))
    record = spool.wait_record("hog", "failed", timeout=30)
    assert record["status"] == "failed"
    entry = only_attempt(record)
    assert entry["outcome"] == "error", entry
    assert entry["error"].startswith("MemoryError"), entry
    assert "MemoryError" in entry["traceback"]
    reached = max(line["mb"] for line in read_lines(progress))
    assert 50 <= reached < 200, f"the job held {reached} MB of blocks when it was stopped"
    assert_all_gone([line["pid"] for line in recorded(progress, "job")])
    assert_daemon_still_works(spool, daemon)


def test_a_job_memory_limit_overrides_the_config(spool: Spool, start_daemon: StartDaemon) -> None:
    """One 300 MB block: fine with the config's memory_limit = 0 (none), a MemoryError with
    the job's own memory_limit of 100 MB."""
    daemon = start_daemon(worker={"max_retries": 0, "memory_limit": 0})
    spool.drop_job("unlimited", bad_job("Hog", "once", params=[300]))
    spool.drop_job("limited", bad_job("Hog", "once", params=[300], memory_limit=100 * MB))
    assert only_attempt(spool.wait_record("unlimited", timeout=30))["outcome"] == "ok"
    assert spool.record("unlimited", "done")["result"] == 300
    entry = only_attempt(spool.wait_record("limited", "failed", timeout=30))
    assert entry["outcome"] == "error", entry
    assert entry["error"].startswith("MemoryError"), entry
    assert_daemon_still_works(spool, daemon)


# -- CPU --


def test_a_spinning_job_is_killed_at_its_timeout(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A job that spins the CPU forever with timeout 1 s: outcome timeout, its process gone."""
    daemon = start_daemon(worker={"max_retries": 0})
    pidfile = tmp_path / "pids.jsonl"
    spool.drop_job("spin", bad_job("Spin", params=[str(pidfile)], timeout=1))
    entry = only_attempt(spool.wait_record("spin", "failed", timeout=15))
    assert entry["outcome"] == "timeout", entry
    assert entry["error"] == "timed out after 1s and was killed"
    assert 1.0 <= entry["finished_at"] - entry["started_at"] < 1.0 + KILL_GRACE + 5, entry
    assert_all_gone([line["pid"] for line in recorded(pidfile, "job")])
    assert_daemon_still_works(spool, daemon)


# -- process trees --


@pytest.mark.parametrize(
    ("seconds", "timeout", "outcome"),
    [(60, 1, "timeout"), (0, 30, "ok")],
    ids=["sleeps-past-timeout", "returns-at-once"],
)
def test_a_forked_tree_dies_with_its_attempt(
    spool: Spool,
    start_daemon: StartDaemon,
    tmp_path: Path,
    seconds: float,
    timeout: float,
    outcome: str,
) -> None:
    """A job forks 3 levels of 3 children each (39 sleeping processes), then either sleeps
    past its timeout or returns at once: either way every process of the tree is gone when
    the attempt ends ("its children are killed with it")."""
    daemon = start_daemon(worker={"max_retries": 0})
    pidfile = tmp_path / "pids.jsonl"
    spool.drop_job("tree", bad_job("Tree", params=[str(pidfile), 3, 3, seconds], timeout=timeout))
    state, record = spool.wait_finished("tree", timeout=20)
    entry = only_attempt(record)
    assert entry["outcome"] == outcome, entry
    if outcome == "ok":
        assert state == "done"
        assert record["result"] == 39
    else:
        assert state == "failed"
        assert entry["error"] == "timed out after 1s and was killed"
    (root,) = recorded(pidfile, "job")
    nodes = recorded(pidfile, "node")
    assert len({line["pid"] for line in nodes}) == 39
    assert {line["pgid"] for line in nodes} == {root["pid"]}, "the tree is in the job's group"
    assert_all_gone([root["pid"], *(line["pid"] for line in nodes)])
    assert_daemon_still_works(spool, daemon)


# -- descriptors --


def test_closed_or_redirected_stdio_does_not_lose_the_report(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """The report does not travel through stdout: a job that closes its stdout and stderr, or
    dup2s /dev/null over them and prints, still ends ok with its result."""
    daemon = start_daemon(worker={"max_retries": 0})
    spool.drop_job("closed", bad_job("Mute", "close_stdio", params=[{"kept": 1}]))
    spool.drop_job("devnull", bad_job("Mute", "devnull_stdio", params=[[2, "kept"]]))
    closed = spool.wait_record("closed", timeout=15)
    assert only_attempt(closed)["outcome"] == "ok"
    assert closed["result"] == {"kept": 1}
    devnull = spool.wait_record("devnull", timeout=15)
    assert only_attempt(devnull)["outcome"] == "ok"
    assert devnull["result"] == [2, "kept"]
    assert_daemon_still_works(spool, daemon)


def test_a_job_that_closes_every_descriptor_is_a_crash_without_a_report(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A job that closes descriptors 0 to 1024 (its report pipe among them) and returns cannot
    report: no hang, outcome crashed, "exited ... without reporting" (SPEC: crashed = killed
    by a signal or exited without reporting)."""
    daemon = start_daemon(worker={"max_retries": 0, "timeout": 60.0})
    spool.drop_job("no-fds", bad_job("Mute", "close_all_fds", params=["lost"]))
    record = spool.wait_record("no-fds", "failed", timeout=10)
    entry = only_attempt(record)
    assert entry["outcome"] == "crashed", entry
    assert "without reporting" in entry["error"], entry
    assert "result" not in record
    assert entry["finished_at"] - entry["started_at"] < 10
    assert_daemon_still_works(spool, daemon)


# -- escaping the process group --


@pytest.mark.parametrize("exec_", [False, True], ids=["forked", "exec-sleep"])
@pytest.mark.parametrize(
    ("seconds", "timeout", "outcome"),
    [(0, 30, "ok"), (60, 1, "timeout")],
    ids=["job-returns", "job-times-out"],
)
def test_a_process_that_escaped_with_setsid_dies_with_its_attempt(
    spool: Spool,
    start_daemon: StartDaemon,
    tmp_path: Path,
    seconds: float,
    timeout: float,
    outcome: str,
    exec_: bool,
) -> None:
    """A job daemonizes a grandchild (fork, fork, setsid: a session and group of its own)
    that sleeps 300 s, as a forked Python copy or by exec'ing ``sleep``; once the attempt has
    ended (returned, or timed out), the escaped process is gone within a few seconds too."""
    daemon = start_daemon(worker={"max_retries": 0})
    pidfile = tmp_path / "pids.jsonl"
    params = [str(pidfile), seconds, exec_]
    spool.drop_job("escape", bad_job("Escape", params=params, timeout=timeout))
    _state, record = spool.wait_finished("escape", timeout=20)
    entry = only_attempt(record)
    assert entry["outcome"] == outcome, entry
    (root,) = recorded(pidfile, "job")
    (escaped,) = recorded(pidfile, "escaped")
    assert escaped["sid"] == escaped["pgid"] == escaped["pid"] != root["pgid"], (root, escaped)
    assert_all_gone([root["pid"], escaped["pid"]])
    assert_daemon_still_works(spool, daemon)


@pytest.mark.parametrize("exec_", [False, True], ids=["forked", "exec-sleep"])
def test_an_escaped_process_lives_while_its_own_attempt_runs(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, exec_: bool
) -> None:
    """The sweep that follows another job's end must not touch a process escaped from an
    attempt that is still running (a forked copy carries no mark a /proc reader could
    see); it goes only when its own attempt ends."""
    start_daemon(worker={"concurrency": 2, "max_retries": 0})
    pidfile = tmp_path / "pids.jsonl"
    spool.drop_job("long", bad_job("Escape", params=[str(pidfile), 4, exec_], timeout=30))
    wait_for(lambda: recorded(pidfile, "escaped"), 10, spool.summary)
    (escaped,) = recorded(pidfile, "escaped")
    other = spool.drop_job("short", job("Noop"))
    spool.wait_record(other)
    assert stays_false(lambda: not pid_alive(escaped["pid"]), 1.0), "killed while its job ran"
    assert spool.where("long") == ["active"]
    assert spool.wait_record("long")["status"] == "done"
    assert_all_gone([escaped["pid"]])


# -- SIGTERM ignored --


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A job (and the child it forked) ignoring SIGTERM, sleeping past its 1 s timeout: outcome
    timeout, ended by SIGKILL after the grace period (so it lasted at least timeout + grace),
    and both processes are gone."""
    daemon = start_daemon(worker={"max_retries": 0})
    pidfile = tmp_path / "pids.jsonl"
    spool.drop_job("stubborn", bad_job("Stubborn", params=[str(pidfile), 60], timeout=1))
    entry = only_attempt(spool.wait_record("stubborn", "failed", timeout=20))
    assert entry["outcome"] == "timeout", entry
    assert entry["error"] == "timed out after 1s and was killed"
    lasted = entry["finished_at"] - entry["started_at"]
    assert 1.0 + KILL_GRACE - 0.05 <= lasted < 1.0 + 10, f"lasted {lasted:.2f}s"
    pids = [line["pid"] for line in recorded(pidfile, "job", "child")]
    assert len(pids) == 2
    assert_all_gone(pids)
    assert_daemon_still_works(spool, daemon)
