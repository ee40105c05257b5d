"""Burst mode (``spoold run --burst``): run everything ready, retries included, then exit;
the exit status says whether anything failed; jobs due later stay where they are.
"""

from __future__ import annotations

import time
from pathlib import Path

from conftest import StartDaemon
from harness import Spool, job, read_lines


def test_burst_runs_everything_with_retries_and_exits_zero(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Ready jobs and a job needing two retries all end in done/, then exit 0."""
    counter = tmp_path / "flaky.jsonl"
    ids = [spool.drop_job(f"ready-{n}", job("Noop")) for n in range(5)]
    ids.append(spool.drop_job("flaky", job("Flaky", params=[str(counter), 2])))
    daemon = start_daemon("--burst", ready=False, worker={"max_retries": 3, "retry_delay": 0.2})
    assert daemon.wait_exit(30) == 0
    assert sorted(spool.job_ids("done")) == sorted(ids)
    assert spool.record("flaky", "done")["attempts"] == 3  # type: ignore[index]
    assert len(read_lines(counter)) == 3
    for state in ("incoming", "scheduled", "active", "failed"):
        assert spool.names(state) == [], state


def test_burst_exits_non_zero_when_a_job_fails_for_good(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """One job failing for good makes the exit status non-zero; the others still run."""
    spool.drop_job("good", job("Noop"))
    spool.drop_job("bad", job("Boom"))
    daemon = start_daemon("--burst", ready=False, worker={"max_retries": 1, "retry_delay": 0.2})
    assert daemon.wait_exit(30) != 0
    assert spool.job_ids("done") == ["good"]
    assert spool.record("bad", "failed")["attempts"] == 2  # type: ignore[index]


def test_burst_exits_non_zero_when_a_job_is_rejected(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A rejected file counts as a failure of the burst."""
    spool.drop_job("good", job("Noop"))
    spool.drop_renamed("broken.json", b"{nope")
    daemon = start_daemon("--burst", ready=False)
    assert daemon.wait_exit(30) != 0
    assert spool.job_ids("done") == ["good"]
    assert spool.record("broken", "failed")["status"] == "rejected"  # type: ignore[index]


def test_burst_leaves_a_far_future_job_in_scheduled(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A job due in an hour stays in scheduled/; burst runs the rest and exits 0."""
    spool.drop_job("later", job("Noop", run_at=time.time() + 3600))
    spool.drop_job("now", job("Noop"))
    daemon = start_daemon("--burst", ready=False)
    assert daemon.wait_exit(30) == 0
    assert spool.job_ids("done") == ["now"]
    assert spool.where("later") == ["scheduled"]


def test_burst_on_an_empty_spool_exits_zero(spool: Spool, start_daemon: StartDaemon) -> None:
    """Nothing to do: exit 0 at once."""
    daemon = start_daemon("--burst", ready=False)
    assert daemon.wait_exit(20) == 0
    assert spool.job_ids("done") == []
