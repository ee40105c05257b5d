"""Rejections: every bad job file ends in failed/ with status "rejected", the exact reason
and its original bytes (SPEC.md "The job file"), and nothing off the allowlist is imported.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import JOBS_DIR, Spool, daemon_env, job, stays_false

NOT_JSON = b'{"class": "testjobs.Noop", "method": "run",, }'

CASES: list[tuple[str, bytes, str]] = [
    ("invalid-json", NOT_JSON, "not valid JSON"),
    (
        "array",
        b'[{"class": "testjobs.Noop", "method": "run"}]',
        "must be a JSON object, not an array",
    ),
    ("no-class", json.dumps({"method": "run"}).encode(), 'missing field "class"'),
    ("no-method", json.dumps({"class": "testjobs.Noop"}).encode(), 'missing field "method"'),
    ("private-method", json.dumps(job("Noop", "_secret")).encode(), "private method"),
    ("dunder-method", json.dumps(job("Noop", "__init__")).encode(), "private method"),
    ("params-string", json.dumps(job("Noop", params="a b")).encode(), 'field "params" must be'),
    ("priority-string", json.dumps(job("Noop", priority="high")).encode(), '"priority" must be'),
    ("retries-float", json.dumps(job("Noop", max_retries=1.5)).encode(), '"max_retries" must be'),
    ("retries-negative", json.dumps(job("Noop", max_retries=-1)).encode(), '"max_retries" must'),
    ("run-at-words", json.dumps(job("Noop", run_at="next week")).encode(), '"run_at" is not an'),
    ("run-at-naive", json.dumps(job("Noop", run_at="2030-01-01T00:00")).encode(), "time zone"),
    ("run-at-list", json.dumps(job("Noop", run_at=[1])).encode(), '"run_at" must be a time'),
    ("not-utf8", b'{"class": "testjobs.Noop", "method": "\xff\xfe"}', "not UTF-8"),
    (
        "method-off-list",
        json.dumps(job("Partial", "forbidden", params=["x"])).encode(),
        'method "forbidden" of class "testjobs.Partial" is not on the allowlist',
    ),
    (
        "class-off-list",
        json.dumps({"class": "testjobs.Undeclared", "method": "run"}).encode(),
        'class "testjobs.Undeclared" is not on the allowlist',
    ),
]


@pytest.fixture
def daemon(start_daemon: StartDaemon) -> Any:
    return start_daemon()


@pytest.mark.usefixtures("daemon")
def test_every_kind_of_bad_file_is_rejected_with_its_reason_and_bytes(spool: Spool) -> None:
    """Each bad file ends as failed/<id>.json: status rejected, the exact reason, raw bytes."""
    for job_id, data, _reason in CASES:
        spool.drop_renamed(f"{job_id}.json", data)
    for job_id, data, reason in CASES:
        record = spool.wait_rejected(job_id)
        assert reason in record["reason"], (job_id, record["reason"])
        assert raw_of(record) == data, job_id
        assert record["id"] == job_id
        assert record["attempts"] == 0
        assert spool.where(job_id) == ["failed"]
    assert spool.job_ids("done") == []


def raw_of(record: dict[str, Any]) -> bytes:
    """The original bytes kept in a rejection record (UTF-8 text or base64)."""
    if record.get("raw_encoding") == "base64":
        return base64.b64decode(record["raw"])
    return str(record["raw"]).encode("utf-8")


def test_a_file_over_max_job_bytes_is_rejected(spool: Spool, start_daemon: StartDaemon) -> None:
    """A job file larger than max_job_bytes is rejected, and the reason says so."""
    start_daemon(spool={"max_job_bytes": 200})
    data = json.dumps(job("Noop", padding="x" * 300)).encode()
    spool.drop_renamed("too-big.json", data)
    record = spool.wait_rejected("too-big")
    assert "max_job_bytes" in record["reason"]
    assert str(len(data)) in record["reason"]
    small = spool.drop_job("small", job("Noop"))
    assert spool.wait_record(small)["status"] == "done"


@pytest.mark.usefixtures("daemon")
def test_a_class_off_the_allowlist_is_never_imported(spool: Spool, tmp_path: Path) -> None:
    """A job naming a class whose module runs code on import is rejected without importing it.

    The control at the end imports the module the same way and sees the
    marker appear, so the check is not vacuous.
    """
    marker = tmp_path / "marker-module-imported"
    data = json.dumps({"class": "marker_module.Marked", "method": "run"}).encode()
    spool.drop_renamed("marked.json", data)
    record = spool.wait_rejected("marked")
    assert 'class "marker_module.Marked" is not on the allowlist' in record["reason"]
    assert raw_of(record) == data
    assert stays_false(marker.exists, 0.5)
    env = daemon_env(tmp_path, "control", None)
    env["PYTHONPATH"] = str(JOBS_DIR)
    subprocess.run([sys.executable, "-c", "import marker_module"], env=env, check=True)
    assert marker.exists()


@pytest.mark.usefixtures("daemon")
def test_a_method_off_the_allowlist_does_not_run(spool: Spool, tmp_path: Path) -> None:
    """An allowed class with a method not listed for it: rejected, the method never called."""
    touched = tmp_path / "forbidden-ran"
    spool.drop_job("forbidden", job("Partial", "forbidden", params=[str(touched)]))
    record = spool.wait_rejected("forbidden")
    assert 'method "forbidden"' in record["reason"]
    assert not touched.exists()


@pytest.mark.usefixtures("daemon")
def test_a_symlink_in_incoming_is_rejected_and_its_target_untouched(
    spool: Spool, tmp_path: Path
) -> None:
    """A symlink is refused without following it: the target stays as it was and never runs."""
    log = tmp_path / "runs.jsonl"
    target = tmp_path / "target.json"
    target_bytes = json.dumps(job("Recorder", params=[str(log), "via-link"])).encode()
    target.write_bytes(target_bytes)
    os.symlink(target, spool.folder("incoming") / "link.json")
    record = spool.wait_rejected("link")
    assert "symbolic link" in record["reason"]
    assert target.read_bytes() == target_bytes
    assert not target.is_symlink()
    assert not log.exists()
    assert spool.job_ids("done") == []


def test_a_fifo_in_incoming_does_not_hang_the_daemon(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A FIFO named like a job is refused without blocking; a job dropped after it still runs."""
    start_daemon()
    os.mkfifo(spool.folder("incoming") / "pipe.json")
    job_id = spool.drop_job("after-fifo", job("Noop"))
    assert spool.wait_record(job_id)["status"] == "done"
    record = spool.wait_rejected("pipe")
    assert "not a regular file" in record["reason"]


@pytest.mark.usefixtures("daemon")
def test_a_hard_linked_file_is_rejected(spool: Spool, tmp_path: Path) -> None:
    """A file with a second hard link (someone else's file linked in) is refused."""
    original = tmp_path / "someone-elses.json"
    original.write_bytes(json.dumps(job("Noop")).encode())
    os.link(original, spool.folder("incoming") / "linked.json")
    record = spool.wait_rejected("linked")
    assert "hard links" in record["reason"]
    assert original.exists()


@pytest.mark.usefixtures("daemon")
def test_a_rejected_job_keeps_its_fields_and_forged_bookkeeping_is_dropped(spool: Spool) -> None:
    """The record holds the submitted fields but not a client's forged status or history."""
    document = job("Noop", priority="urgent", note="keep me", status="done", history=[{"x": 1}])
    spool.drop_job("forged", document)
    record = spool.wait_rejected("forged")
    assert record["note"] == "keep me"
    assert record["status"] == "rejected"
    assert record["history"] == []
    assert record["file"] == "forged.json"
    assert isinstance(record["received_at"], int | float)
