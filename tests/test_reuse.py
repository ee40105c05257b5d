"""Reused workers (``[worker] max_jobs_per_process = N``): a forked worker runs up to N
attempts in turn, and is replaced after N, after a crash or a timeout, or once its memory
use leaves less than half of ``memory_limit`` for the next job. Everything else about an
attempt (outcomes, timeouts, what a job leaves running) is as with a fresh process each.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import StartDaemon
from harness import Spool, children_of, job, pid_alive, read_lines, wait_for

MB = 1024 * 1024


def reusing(n: int, **worker: Any) -> dict[str, Any]:
    return {"max_jobs_per_process": n, "max_retries": 0, "concurrency": 1, **worker}


def run_in_order(spool: Spool, documents: list[dict[str, Any]]) -> list[str]:
    """Submit one job at a time, each after the last one finished; their ids."""
    ids = []
    for number, document in enumerate(documents):
        job_id = f"job-{number:02d}"
        spool.drop_job(job_id, document)
        spool.wait_finished(job_id, timeout=20)
        ids.append(job_id)
    return ids


def test_a_worker_runs_n_jobs_and_keeps_its_module_state_between_them(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """N = 3, seven jobs one after another: three workers take 3, 3 and 1 jobs, and a
    module global lives on from one job to the next inside a worker (the trade-off)."""
    start_daemon(worker=reusing(3))
    log = tmp_path / "calls.jsonl"
    run_in_order(spool, [job("Counter", params=[str(log)]) for _ in range(7)])
    lines = read_lines(log)
    assert [line["calls"] for line in lines] == [1, 2, 3, 1, 2, 3, 1]
    pids = [line["pid"] for line in lines]
    assert list(Counter(pids).values()) == [3, 3, 1]


def test_every_kind_of_failure_in_a_reused_worker_ends_as_with_a_fresh_process(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """An error leaves the worker serving; a crash or a timeout ends it, and the next job
    gets a new worker. Each job's outcome is the same as with one process per attempt."""
    start_daemon(worker=reusing(10))
    log = tmp_path / "calls.jsonl"
    counter = job("Counter", params=[str(log)])
    documents = [
        counter,
        job("Boom"),
        counter,
        job("SelfKill", "segfault"),
        counter,
        job("Sleeper", params=[30], timeout=0.5),
        counter,
        job("HardExit"),
        counter,
    ]
    ids = run_in_order(spool, documents)
    outcomes = []
    for job_id in ids:
        state, record = spool.wait_finished(job_id)
        outcomes.append((state, record["history"][-1]["outcome"]))
    assert outcomes == [
        ("done", "ok"),
        ("failed", "error"),
        ("done", "ok"),
        ("failed", "crashed"),
        ("done", "ok"),
        ("failed", "timeout"),
        ("done", "ok"),
        ("failed", "crashed"),
        ("done", "ok"),
    ]
    calls = [line["calls"] for line in read_lines(log)]
    assert calls == [1, 2, 1, 1, 1]  # the error kept the worker; each death replaced it


def test_what_a_job_leaves_running_is_killed_when_the_job_ends(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A job that returns with a child still running, and one whose grandchild escaped
    into its own session: both are gone once the job's record is filed, while the worker
    that ran them lives on for the next job."""
    start_daemon(worker=reusing(10))
    spawned, escaped = tmp_path / "spawned.jsonl", tmp_path / "escaped.jsonl"
    run_in_order(
        spool,
        [
            job("Spawner", params=[str(spawned), 0]),
            {**job("Escape", params=[str(escaped), 0, True]), "class": "badjobs.Escape"},
        ],
    )
    (child,) = [line["child"] for line in read_lines(spawned)]
    (grandchild,) = [line["pid"] for line in read_lines(escaped) if line["role"] == "escaped"]
    (worker,) = {line["pid"] for line in read_lines(spawned)}
    for pid in (child, grandchild):
        wait_for(lambda pid=pid: not pid_alive(pid), 10, f"{pid} to be killed")
    assert pid_alive(worker)


def test_a_worker_whose_memory_grew_is_replaced_before_the_next_job(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """memory_limit = 400 MB: a job that keeps 250 MB alive leaves less than half the limit,
    so the next job runs in a new worker; small jobs before it shared one worker."""
    start_daemon(worker=reusing(10, memory_limit=400 * MB))
    log = tmp_path / "calls.jsonl"
    counter = job("Counter", params=[str(log)])
    ids = run_in_order(spool, [counter, counter, job("Keeper", params=[str(log), 250]), counter])
    assert spool.wait_finished(ids[2])[0] == "done"
    pids = [line["pid"] for line in read_lines(log)]
    assert pids[0] == pids[1] == pids[2] != pids[3]


def test_idle_workers_do_not_outlive_the_daemon(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Two idle reused workers: SIGTERM ends the daemon at once, and them with it."""
    daemon = start_daemon(worker=reusing(10, concurrency=2))
    log = tmp_path / "calls.jsonl"
    run_in_order(spool, [job("Counter", params=[str(log)])])
    (launcher,) = children_of(daemon.pid)
    workers = children_of(launcher)
    assert workers == [read_lines(log)[0]["pid"]]
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    wait_for(lambda: not any(pid_alive(pid) for pid in workers), 10, "the idle worker to exit")
