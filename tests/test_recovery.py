"""Nothing lost (SPEC.md "Nothing lost", "Graceful stop"): SIGKILL at chosen moments, a
restart, and every job ending in exactly one record; SIGTERM draining running jobs.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from conftest import StartDaemon
from harness import Spool, job, pid_alive, read_lines, stays_false, wait_for


def labels(log: Path) -> list[str]:
    return sorted(line["label"] for line in read_lines(log))


def records_everywhere(spool: Spool) -> list[str]:
    """Ids of every record in done/ and failed/ (a job filed twice shows up twice)."""
    return sorted(spool.job_ids("done") + spool.job_ids("failed"))


def test_a_job_running_at_sigkill_is_rerun_after_restart(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """SIGKILL mid-job: the job stays in active/, its process dies, and after a restart it ends
    with one done record whose history is [interrupted, ok]."""
    config = {"worker": {"concurrency": 1}}
    daemon = start_daemon(**config)
    log = tmp_path / "runs.jsonl"
    spool.drop_job("victim", job("Recorder", params=[str(log), "victim", 1.5]))
    (first,) = wait_for(lambda: read_lines(log), 10, "the job to start")
    daemon.kill()
    assert spool.where("victim") == ["active"]
    wait_for(lambda: not pid_alive(first["pid"]), 10, "the killed attempt's process to go")
    start_daemon(**config)
    record = spool.wait_record("victim", timeout=20)
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "ok"]
    assert record["history"][0]["cause"] == "daemon_died"
    assert record["attempts"] == 2
    assert records_everywhere(spool) == ["victim"]
    assert spool.where("victim") == ["done"]
    assert labels(log) == ["victim", "victim"]


def test_a_stale_active_copy_of_a_finished_job_is_removed_not_rerun(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A record in done/ (or failed/) plus a leftover copy in active/: the copy is removed,
    the job is not run again, and the record is unchanged."""
    log = tmp_path / "runs.jsonl"
    finished = {}
    for job_id, state in (("was-done", "done"), ("was-failed", "failed")):
        document = job("Recorder", params=[str(log), job_id])
        record = {**document, "id": job_id, "status": state, "attempts": 1, "history": []}
        finished[job_id] = json.dumps(record).encode()
        (spool.folder(state) / f"{job_id}.json").write_bytes(finished[job_id])
        (spool.folder("active") / f"{job_id}.json").write_text(json.dumps(document))
    start_daemon()
    wait_for(lambda: spool.names("active") == [], 10, spool.summary)
    assert stays_false(log.exists, 1.0), "a finished job ran again"
    assert (spool.folder("done") / "was-done.json").read_bytes() == finished["was-done"]
    assert (spool.folder("failed") / "was-failed.json").read_bytes() == finished["was-failed"]
    assert records_everywhere(spool) == ["was-done", "was-failed"]


def test_a_move_marker_written_only_in_part_is_dropped_and_the_job_reruns(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """The record's marker is written in place beside the job in active/; a crash in the
    middle of that write leaves a short marker. The job is still there, so the move never
    began: the marker is removed and the job runs again, ending in one record."""
    log = tmp_path / "runs.jsonl"
    document = job("Recorder", params=[str(log), "cut"])
    (spool.folder("active") / "cut.json").write_text(json.dumps(document))
    whole = json.dumps({**document, "id": "cut", "status": "done", "history": []})
    (spool.folder("active") / "cut.to-done").write_text(whole[: len(whole) // 2])
    daemon = start_daemon()
    record = spool.wait_record("cut")
    assert [entry["outcome"] for entry in record["history"]] == ["interrupted", "ok"]
    assert labels(log) == ["cut"]
    assert spool.names("active") == []
    assert "written only in part" in daemon.log_text()


def test_jobs_waiting_at_sigkill_all_complete_once_after_restart(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Jobs in incoming/, in scheduled/ (a run_at and a retry) and in active/ at a SIGKILL
    all end in done/ after a restart, each exactly once."""
    config = {"worker": {"concurrency": 1, "retry_delay": 1.5, "max_retries": 2}}
    daemon = start_daemon(**config)
    log = tmp_path / "runs.jsonl"
    counter = tmp_path / "flaky.jsonl"
    spool.drop_job("flaky", job("Flaky", params=[str(counter), 1]))
    wait_for(lambda: spool.where("flaky") == ["scheduled"], 10, spool.summary)
    spool.drop_job("blocker", job("Recorder", params=[str(log), "blocker", 3.0]))
    wait_for(lambda: read_lines(log), 10, "the blocker to start")
    waiting = [f"waiting-{n}" for n in range(4)]
    for job_id in waiting:
        spool.drop_job(job_id, job("Recorder", params=[str(log), job_id]))
    run_at = time.time() + 1.0
    spool.drop_job("timed", job("Recorder", params=[str(log), "timed"], run_at=run_at))
    wait_for(lambda: spool.where("timed") == ["scheduled"], 10, spool.summary)
    daemon.kill()
    assert spool.where("blocker") == ["active"]
    assert sorted(spool.job_ids("incoming")) == waiting
    assert sorted(spool.job_ids("scheduled")) == ["flaky", "timed"]
    start_daemon(**config)
    everyone = ["blocker", "flaky", "timed", *waiting]
    for job_id in everyone:
        spool.wait_record(job_id, timeout=30)
    assert records_everywhere(spool) == sorted(everyone)
    assert labels(log) == sorted(["blocker", "blocker", "timed", *waiting])
    assert len(read_lines(counter)) == 2
    for state in ("incoming", "scheduled", "active"):
        assert spool.names(state) == [], state


def test_a_job_that_keeps_dying_with_the_daemon_is_failed(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """max_interruptions 2: a job running at two SIGKILLs in a row goes to failed/, with a
    reason saying so, instead of crash-looping the daemon."""
    config = {"worker": {"max_interruptions": 2}}
    log = tmp_path / "runs.jsonl"
    spool.drop_job("deadly", job("Recorder", params=[str(log), "deadly", 30]))
    for runs in (1, 2):
        daemon = start_daemon(**config)
        wait_for(lambda n=runs: len(read_lines(log)) == n, 10, "the job to start")
        daemon.kill()
    start_daemon(**config)
    record = spool.wait_record("deadly", "failed", timeout=15)
    assert "interrupted" in record["reason"]
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "interrupted"]
    assert stays_false(lambda: len(read_lines(log)) > 2, 0.5)


def test_sigterm_lets_a_running_job_finish(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """SIGTERM while a job runs: it finishes and is filed, then the daemon exits 0."""
    daemon = start_daemon(worker={"shutdown_timeout": 10})
    log = tmp_path / "runs.jsonl"
    spool.drop_job("finishing", job("Recorder", params=[str(log), "finishing", 1.0]))
    wait_for(lambda: read_lines(log), 10, "the job to start")
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    record = spool.record("finishing", "done")
    assert record is not None, spool.summary()
    assert [e["outcome"] for e in record["history"]] == ["ok"]


def test_sigterm_stops_intake(spool: Spool, start_daemon: StartDaemon, tmp_path: Path) -> None:
    """A job dropped after SIGTERM is not started; it waits in incoming/ for the next start."""
    daemon = start_daemon(worker={"shutdown_timeout": 10, "concurrency": 2})
    log = tmp_path / "runs.jsonl"
    spool.drop_job("running", job("Recorder", params=[str(log), "running", 1.5]))
    wait_for(lambda: read_lines(log), 10, "the job to start")
    daemon.send(signal.SIGTERM)
    daemon.wait_log("stopping")
    spool.drop_job("late", job("Recorder", params=[str(log), "late"]))
    assert daemon.wait_exit(15) == 0
    assert labels(log) == ["running"]
    assert spool.where("late") == ["incoming"]
    start_daemon()
    spool.wait_record("late")


def test_sigterm_on_an_idle_daemon_exits_promptly(spool: Spool, start_daemon: StartDaemon) -> None:
    """With nothing running, SIGTERM ends the daemon at once, not at its next timer."""
    daemon = start_daemon(spool={"rescan_interval": 60.0}, worker={"shutdown_timeout": 30})
    spool.wait_record(spool.drop_job("one", job("Noop")))
    asked = time.monotonic()
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0
    assert time.monotonic() - asked < 3.0, "an idle daemon waited for a timer before exiting"


def test_a_job_past_shutdown_timeout_is_killed_and_rerun(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """SIGTERM with shutdown_timeout 1 and a 30 s job: the job is killed, the daemon exits,
    and after a restart the job runs again (history: interrupted by shutdown, then ok)."""
    daemon = start_daemon(worker={"shutdown_timeout": 1})
    log = tmp_path / "attempts.jsonl"
    spool.drop_job("long", job("SlowFirst", params=[str(log), 30]))
    (first,) = wait_for(lambda: read_lines(log), 10, "the job to start")
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    assert not pid_alive(first["pid"])
    assert spool.where("long") in (["active"], ["scheduled"])
    start_daemon()
    record = spool.wait_record("long", timeout=15)
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "ok"]
    assert record["history"][0].get("cause") == "shutdown"
    assert record["result"] == 2
