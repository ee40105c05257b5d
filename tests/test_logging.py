"""Logging (SPEC.md "Logging", docs/CONTRACTS.md "Log lines"): a line for each job received,
started, succeeded, retried, failed and rejected, each with the job id, on stderr and in the
[log] file, plain or serialized.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Spool, job, wait_for

# (text the line contains, level), per CONTRACTS.md, for the jobs dropped by drop_jobs().
EXPECTED = [
    ("job log-ok received", "INFO"),
    ("job log-ok started", "INFO"),
    ("job log-ok succeeded in ", "SUCCESS"),
    ("job log-bad failed", "WARNING"),
    ("retry 1 of 1 in ", "WARNING"),
    ("job log-bad failed for good", "ERROR"),
    ("job log-rejected rejected: not valid JSON", "WARNING"),
]


def drop_jobs(spool: Spool) -> None:
    """One job that succeeds, one that fails twice for good (max_retries 1), one rejected."""
    spool.drop_job("log-ok", job("Noop"))
    spool.drop_job("log-bad", job("Boom", params=["logged error"], max_retries=1))
    spool.drop_renamed("log-rejected.json", b"{broken")
    spool.wait_record("log-ok")
    spool.wait_record("log-bad", "failed", timeout=20)
    spool.wait_rejected("log-rejected")


def line_with(lines: list[str], text: str) -> str:
    found = [line for line in lines if text in line]
    assert found, f"no log line contains {text!r}:\n" + "\n".join(lines)
    return found[0]


def test_stderr_has_a_line_for_every_job_event(spool: Spool, start_daemon: StartDaemon) -> None:
    """received, started, succeeded (with duration), retry (with delay), failed for good,
    rejected (with reason): each on stderr, at its level, with the job id."""
    daemon = start_daemon(worker={"retry_delay": 0.2})
    drop_jobs(spool)
    daemon.wait_log("failed for good")
    lines = daemon.log_lines()
    for text, level in EXPECTED:
        assert level in line_with(lines, text).split(text)[0], (text, level)
    retry = line_with(lines, "retry 1 of 1 in ")
    assert "job log-bad failed" in retry
    assert "0.2s" in retry
    assert "logged error" in line_with(lines, "job log-bad failed (")
    succeeded = line_with(lines, "job log-ok succeeded in ")
    seconds = succeeded.split("succeeded in ")[1].split("s")[0]
    assert float(seconds) >= 0


def test_the_failure_traceback_is_logged(spool: Spool, start_daemon: StartDaemon) -> None:
    """A job that fails for good has its error and traceback in the log (level DEBUG here)."""
    daemon = start_daemon(worker={"max_retries": 0})
    spool.drop_job("tb", job("Boom", params=["with traceback"]))
    spool.wait_record("tb", "failed")
    wait_for(lambda: "Traceback" in daemon.log_text(), 10, daemon.log_text)
    text = daemon.log_text()
    assert "ValueError: with traceback" in text
    assert "testjobs.py" in text


def test_the_log_file_gets_the_same_lines(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """[log] file set: the file has the same job lines as stderr."""
    log_file = tmp_path / "logs" / "spoold.log"
    start_daemon(log={"file": str(log_file)}, worker={"retry_delay": 0.2})
    drop_jobs(spool)
    wait_for(lambda: log_file.exists() and "failed for good" in log_file.read_text(), 10)
    lines = log_file.read_text().splitlines()
    for text, level in EXPECTED:
        assert level in line_with(lines, text), (text, level)


def serialized(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_a_serialized_log_file_has_one_json_object_per_line_with_the_job_id(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, level: str
) -> None:
    """serialize = true: every line of the file is a JSON object, and each job event's
    record carries its job id in extra.job_id."""
    log_file = tmp_path / "spoold.json.log"
    start_daemon(log={"file": str(log_file), "serialize": True, "level": level})
    drop_jobs(spool)
    wait_for(lambda: any("failed for good" in e["text"] for e in serialized(log_file)), 10)
    entries = serialized(log_file)
    for text, level_name in EXPECTED:
        matching = [e for e in entries if text in e["record"]["message"]]
        assert matching, f"no serialized line with {text!r}"
        record = matching[0]["record"]
        assert record["level"]["name"] == level_name
        job_id = text.split()[1] if text.startswith("job ") else "log-bad"
        assert record["extra"]["job_id"] == job_id, record["extra"]
