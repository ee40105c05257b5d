"""Moves out of active/ cut short by a crash (docs/ARCHITECTURE.md, "The rule that makes
crashes harmless"): the state a crash can leave at each step of the marker protocol is
made by hand, and a restarted daemon finishes every move exactly once.

The steps of a move: (1) write ``active/<id>.to-<state>`` whole, (2) unlink
``active/<id>.json``, (3) rename the marker to ``<state>/<id>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Spool, job, read_lines, stays_false, wait_for


def record_of(document: dict[str, Any], job_id: str, status: str) -> dict[str, Any]:
    return {**document, "id": job_id, "status": status, "attempts": 1, "history": [
        {"attempt": 1, "started_at": 1.0, "finished_at": 2.0, "outcome": "ok"}]}  # fmt: skip


@pytest.mark.parametrize("status", ["done", "failed"])
@pytest.mark.parametrize("old_copy_left", [True, False], ids=["after-step-1", "after-step-2"])
def test_a_record_move_cut_short_is_finished_not_rerun(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, status: str, old_copy_left: bool
) -> None:
    """A marker holding the record, with or without the old active copy: the record ends in
    done/ or failed/ byte for byte, active/ is emptied, and the job does not run again."""
    runs = tmp_path / "runs.jsonl"
    document = job("Recorder", params=[str(runs), "cut"])
    record = json.dumps(record_of(document, "cut", status)).encode()
    (spool.folder("active") / f"cut.to-{status}").write_bytes(record)
    if old_copy_left:
        (spool.folder("active") / "cut.json").write_text(json.dumps(document))
    start_daemon()
    wait_for(lambda: spool.names("active") == [], 10, spool.summary)
    assert (spool.folder(status) / "cut.json").read_bytes() == record
    assert spool.where("cut") == [status]
    assert stays_false(runs.exists, 1.0), "a finished job ran again"


def test_a_retry_move_cut_short_waits_in_scheduled_then_runs_once(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A ``to-scheduled`` marker (a retry being put back to wait) and the old active copy:
    the job continues from scheduled/ with its history kept, and runs exactly once more."""
    runs = tmp_path / "runs.jsonl"
    document = job("Recorder", params=[str(runs), "retry"])
    earlier = {"attempt": 1, "started_at": 1.0, "finished_at": 2.0, "outcome": "error",
               "error": "ValueError: first try"}  # fmt: skip
    waiting = {**document, "id": "retry", "history": [earlier], "due_at": 0}
    (spool.folder("active") / "retry.to-scheduled").write_text(json.dumps(waiting))
    (spool.folder("active") / "retry.json").write_text(json.dumps(document))
    start_daemon()
    record = spool.wait_record("retry")
    assert [entry["outcome"] for entry in record["history"]] == ["error", "ok"]
    assert [line["label"] for line in read_lines(runs)] == ["retry"]
    assert spool.names("active") == []


def test_a_marker_whose_move_already_happened_is_dropped(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """After a power cut a filesystem may keep the final rename and also the marker's old
    name; the marker then duplicates the record: it is removed, the record kept as it is."""
    document = job("Recorder", params=[str(tmp_path / "runs.jsonl"), "twice"])
    record = json.dumps(record_of(document, "twice", "done")).encode()
    (spool.folder("done") / "twice.json").write_bytes(record)
    (spool.folder("active") / "twice.to-done").write_bytes(record)
    start_daemon()
    wait_for(lambda: spool.names("active") == [], 10, spool.summary)
    assert (spool.folder("done") / "twice.json").read_bytes() == record
    assert spool.job_ids("done") == ["twice"]


def test_a_job_is_in_exactly_one_folder_while_it_finishes(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """Polling fast while many jobs pass through, no job id is ever seen in two folders.

    The folders are listed against the direction of travel (these jobs never retry), so
    a move between two listings can only hide a job, never show it twice.
    """
    start_daemon(worker={"concurrency": 2})
    ids = [spool.drop_job(f"one-{n}", job("Noop")) for n in range(150)]
    seen_twice = []

    def all_done() -> bool:
        folders: dict[str, list[str]] = {}
        for state in ("failed", "done", "active", "scheduled", "incoming"):
            for job_id in spool.job_ids(state):
                folders.setdefault(job_id, []).append(state)
        seen_twice.extend(f"{i}: {s}" for i, s in folders.items() if len(s) > 1)
        return len(spool.job_ids("done")) == len(ids)

    wait_for(all_done, 60, spool.summary)
    assert seen_twice == []
