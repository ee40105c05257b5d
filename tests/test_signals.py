"""Signals an operator sends (SPEC.md "Graceful stop", "Configuration"): a second SIGTERM
stops at once; SIGHUP reloads the config and allowlist without disturbing running jobs,
refuses a broken config, and reopens the log file (after logrotate moved it away)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from conftest import StartDaemon
from harness import Spool, job, pid_alive, read_lines, wait_for, write_config


def test_a_second_sigterm_stops_at_once_and_the_job_reruns_later(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(worker={"shutdown_timeout": 60})
    log = tmp_path / "attempts.jsonl"
    spool.drop_job("long", job("SlowFirst", params=[str(log), 60]))
    (first,) = wait_for(lambda: read_lines(log), 10, "the job to start")
    daemon.send(signal.SIGTERM)
    daemon.wait_log("stopping: waiting up to 60s")
    started = time.monotonic()
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    assert time.monotonic() - started < 10, "the second SIGTERM did not cut the drain short"
    assert not pid_alive(first["pid"])
    start_daemon()
    record = spool.wait_record("long", timeout=15)
    assert [(e["outcome"], e.get("cause")) for e in record["history"]] == [
        ("interrupted", "shutdown"),
        ("ok", None),
    ]


def test_sighup_reloads_the_allowlist_without_disturbing_running_jobs(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "live.toml", spool)
    daemon = start_daemon(config=config)
    log = tmp_path / "runs.jsonl"
    spool.drop_job("running", job("Recorder", params=[str(log), "running", 2.0]))
    wait_for(lambda: read_lines(log), 10, "the job to start")
    without_noop = config.read_text().replace('"testjobs.Noop" = ["run"]\n', "")
    assert without_noop != config.read_text()
    config.write_text(without_noop)
    daemon.send(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    spool.drop_job("now-refused", job("Noop"))
    record = spool.wait_rejected("now-refused")
    assert 'class "testjobs.Noop" is not on the allowlist' in record["reason"]
    done = spool.wait_record("running")
    assert [e["outcome"] for e in done["history"]] == ["ok"], "the reload disturbed the job"
    assert len(read_lines(log)) == 1


def test_sighup_reaches_the_dispatcher_too(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A reload's worker limits hold from the next attempt on: every room reads the one holder."""
    config = write_config(tmp_path / "live.toml", spool)
    daemon = start_daemon(config=config)
    assert spool.wait_record(spool.drop_job("before", job("Noop")))["status"] == "done"
    write_config(config, spool, {"worker": {"timeout": 1.0, "max_retries": 0}})
    daemon.send(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    record = spool.wait_record(spool.drop_job("slow", job("Sleeper", params=[30])), "failed")
    assert [(e["outcome"], e["error"]) for e in record["history"]] == [
        ("timeout", "timed out after 1s and was killed")
    ]


def test_a_broken_config_on_sighup_is_refused_and_the_old_one_kept(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "live.toml", spool)
    daemon = start_daemon(config=config)
    config.write_text(config.read_text().replace("[worker]", "[worker]\nconcurency = 3", 1))
    daemon.send(signal.SIGHUP)
    line = daemon.wait_log("reload refused")
    assert "[worker] concurency: unknown key" in line
    assert spool.wait_record(spool.drop_job("still-allowed", job("Noop")))["status"] == "done"
    assert daemon.returncode() is None


def test_sighup_reopens_a_log_file_that_was_moved_away(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "spoold.log"
    daemon = start_daemon(log={"file": str(log_file), "level": "INFO"})
    wait_for(lambda: log_file.exists() and "ready" in log_file.read_text(), 10, "the log file")
    log_file.rename(log_file.with_suffix(".log.1"))  # what logrotate does
    daemon.send(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    job_id = spool.drop_job("after-rotation", job("Noop"))
    spool.wait_record(job_id)
    wait_for(lambda: log_file.exists() and job_id in log_file.read_text(), 10, "a new log file")
    assert job_id not in log_file.with_suffix(".log.1").read_text()
