"""Records (SPEC.md "The record", docs/CONTRACTS.md "Records"): their exact fields, no temp
files left behind, and a reused id getting a fresh one instead of overwriting a record.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from conftest import StartDaemon
from harness import Spool, job, wait_for

HISTORY_KEYS = {"attempt", "started_at", "finished_at", "outcome"}


def check_history_entry(entry: dict[str, Any], number: int, outcome: str) -> None:
    assert set(entry) >= HISTORY_KEYS, entry
    assert entry["attempt"] == number
    assert entry["outcome"] == outcome
    assert isinstance(entry["started_at"], float | int)
    assert entry["started_at"] <= entry["finished_at"]


def test_a_done_record_has_exactly_the_documented_fields(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """done/<id>.json: the submitted fields (unknown ones too) + id, status, attempts, result,
    history, finished_at; nothing else, and the daemon's own keys not forged."""
    start_daemon()
    before = time.time()
    submitted = job("Echo", params=["a", 1], priority=3, max_retries=2, trace="t-1", meta={"k": 1})
    spool.drop_job("fields", submitted)
    record = spool.wait_record("fields")
    expected = set(submitted) | {"id", "status", "attempts", "result", "history", "finished_at"}
    assert set(record) == expected | {"submitted_by"}
    assert record["submitted_by"] == os.geteuid()
    for key, value in submitted.items():
        assert record[key] == value, key
    assert record["id"] == "fields"
    assert record["status"] == "done"
    assert record["attempts"] == 1
    assert record["result"] == {"args": ["a", 1], "kwargs": {}}
    (entry,) = record["history"]
    check_history_entry(entry, 1, "ok")
    assert set(entry) == HISTORY_KEYS
    assert before <= entry["started_at"]
    assert entry["finished_at"] <= record["finished_at"] <= time.time()


def test_a_failed_record_has_a_reason_and_error_details(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """failed/<id>.json: status failed, a reason, one history entry per attempt with its error."""
    start_daemon(worker={"max_retries": 1})
    spool.drop_job("failing", job("Boom", params=["bad"], note="kept"))
    record = spool.wait_record("failing", "failed", timeout=20)
    assert record["status"] == "failed"
    assert record["note"] == "kept"
    assert record["attempts"] == len(record["history"]) == 2
    assert "ValueError: bad" in record["reason"]
    assert "result" not in record
    for number, entry in enumerate(record["history"], start=1):
        check_history_entry(entry, number, "error")
        assert entry["error"] == "ValueError: bad"
        assert "Traceback" in entry["traceback"]


def test_a_client_job_keeps_enqueued_at(spool: Spool, start_daemon: StartDaemon) -> None:
    """The client's enqueued_at is one of the submitted fields kept in the record."""
    start_daemon()
    before = time.time()
    job_id = spool.submit("testjobs.Noop", "run")
    record = spool.wait_record(job_id)
    assert before <= record["enqueued_at"] <= time.time()


def test_no_temporary_files_are_left_in_the_record_folders(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """After 20 jobs done and failed, done/ and failed/ hold only <id>.json files."""
    start_daemon(worker={"max_retries": 0})
    ids = [spool.drop_job(f"ok-{n}", job("Noop")) for n in range(10)]
    ids += [spool.drop_job(f"bad-{n}", job("Boom")) for n in range(10)]
    for job_id in ids:
        spool.wait_finished(job_id)
    assert spool.names("done") == sorted(f"ok-{n}.json" for n in range(10))
    assert spool.names("failed") == sorted(f"bad-{n}.json" for n in range(10))
    for state in ("incoming", "scheduled", "active", "tmp"):
        assert spool.names(state) == [], state


def test_a_reused_id_gets_a_fresh_one_and_the_old_record_is_kept(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A second job with the id of a done record runs under a fresh id; the log says so."""
    daemon = start_daemon()
    spool.drop_job("taken", job("Echo", params=["first"]))
    spool.wait_record("taken")
    original = (spool.folder("done") / "taken.json").read_bytes()
    spool.drop_job("taken", job("Echo", params=["second"]))
    wait_for(lambda: len(spool.job_ids("done")) == 2, 15, spool.summary)
    assert (spool.folder("done") / "taken.json").read_bytes() == original
    records = spool.records("done")
    (fresh,) = set(records) - {"taken"}
    assert records[fresh]["id"] == fresh
    assert records[fresh]["result"] == {"args": ["second"], "kwargs": {}}
    assert json.loads(original)["result"] == {"args": ["first"], "kwargs": {}}
    line = daemon.wait_log("renamed to")
    assert "taken" in line
    assert fresh in line


def test_a_reused_id_of_a_failed_record_gets_a_fresh_one(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """An id already used by a rejection in failed/ is not reused for a good job."""
    start_daemon()
    spool.drop_renamed("dup.json", b"not json at all")
    spool.wait_rejected("dup")
    spool.drop_job("dup", job("Noop"))
    wait_for(lambda: len(spool.job_ids("done")) == 1, 15, spool.summary)
    assert spool.job_ids("done") != ["dup"]
    assert spool.record("dup", "failed")["status"] == "rejected"  # type: ignore[index]
