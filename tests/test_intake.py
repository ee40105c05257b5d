"""Intake: how job files get into the daemon (SPEC.md "The spool").

Real daemon, real files: renamed in, written in place, present before the
start, half-written, ignored names, and a burst of many writers at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, job, read_lines, stays_false, wait_for


def test_a_job_renamed_into_incoming_runs_and_leaves_a_done_record(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """tmp/ then rename into incoming/: the job runs and done/<id>.json appears."""
    start_daemon()
    job_id = spool.drop_job("renamed-1", job("Echo", params=["hello"]))
    record = spool.wait_record(job_id)
    assert record["status"] == "done"
    assert record["result"] == {"args": ["hello"], "kwargs": {}}
    assert spool.names("incoming") == []
    assert spool.names("active") == []


def test_a_job_submitted_by_the_client_runs(spool: Spool, start_daemon: StartDaemon) -> None:
    """run_background_job(spool=...) writes a job the daemon runs."""
    start_daemon()
    job_id = spool.submit("testjobs.Echo", "run", [1, 2])
    assert spool.wait_record(job_id)["result"] == {"args": [1, 2], "kwargs": {}}


def test_a_backlog_present_before_the_start_is_run(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Jobs waiting in incoming/ when the daemon starts all run, each once."""
    log = tmp_path / "runs.jsonl"
    ids = [
        spool.drop_job(f"backlog-{n}", job("Recorder", params=[str(log), f"job{n}"]))
        for n in range(5)
    ]
    start_daemon()
    for job_id in ids:
        assert spool.wait_record(job_id)["status"] == "done"
    assert sorted(line["label"] for line in read_lines(log)) == [f"job{n}" for n in range(5)]


def test_dotfiles_and_other_names_are_left_alone(spool: Spool, start_daemon: StartDaemon) -> None:
    """Names starting with "." or not ending in ".json" are neither run nor rejected."""
    good = json.dumps(job("Noop")).encode()
    ignored = [".hidden.json", "job.json.part", "notes.txt", "README", ".json"]
    for name in ignored:
        spool.drop(name, good)
    start_daemon()
    control = spool.drop_job("control", job("Noop"))  # proves the daemon is taking files
    spool.wait_record(control)
    assert stays_false(lambda: set(spool.names("incoming")) != set(ignored), 1.2)
    for name in ignored:
        assert (spool.folder("incoming") / name).read_bytes() == good
    assert spool.job_ids("done") == ["control"]
    assert spool.job_ids("failed") == []


def cut_inside_a_string(data: bytes) -> int:
    return data.index(b"xxxx") + 2


def cut_between_tokens(data: bytes) -> int:
    return data.index(b", 1") + 1


@pytest.mark.parametrize("cut", [cut_inside_a_string, cut_between_tokens])
def test_a_half_written_file_runs_only_after_it_is_closed(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path, cut: Callable[[bytes], int]
) -> None:
    """A file written in place is neither run nor rejected while still open; it runs once closed.

    The first part is written and flushed, the file kept open for 1.5 s
    (three rescans), then the rest is written and the file closed.
    """
    start_daemon()
    log = tmp_path / "runs.jsonl"
    data = json.dumps(job("Recorder", params=[str(log), "x" * 200], extra=[1] * 20)).encode()
    path = spool.folder("incoming") / "half.json"
    with open(path, "wb") as handle:
        handle.write(data[: cut(data)])
        handle.flush()
        touched = lambda: spool.names("failed") or spool.names("done") or log.exists()  # noqa: E731
        assert stays_false(touched, 1.5), f"acted on a half-written file: {spool.summary()}"
        assert spool.names("incoming") == ["half.json"]
        handle.write(data[cut(data) :])
    assert spool.wait_record("half")["status"] == "done"
    assert len(read_lines(log)) == 1


def test_a_file_dropped_while_running_is_picked_up_quickly(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """With the watcher's events, a job dropped into a running daemon is done well before a
    rescan interval of 30 s would have found it."""
    start_daemon(spool={"rescan_interval": 30.0})
    first = spool.drop_job("early", job("Noop"))
    spool.wait_record(first, timeout=10)  # the first rescan is over; events only from now
    started = time.monotonic()
    job_id = spool.drop_job("quick", job("Noop"))
    spool.wait_record(job_id, timeout=10)
    assert time.monotonic() - started < 10
    written_in_place = spool.drop_job("in-place", job("Noop"), rename=False)
    spool.wait_record(written_in_place, timeout=10)


def test_jobs_from_many_writers_at_once_all_end_in_done(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """300 jobs from 6 concurrent writers (renames and in-place writes) all end in done/.

    Whatever events the watcher misses under that load, the rescan finds.
    """
    start_daemon(worker={"concurrency": 2})
    writers = 6
    per_writer = 50

    def write(writer: int) -> None:
        for n in range(per_writer):
            spool.drop_job(f"w{writer}-{n:03d}", job("Noop"), rename=writer % 2 == 0)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = writers * per_writer
    wait_for(lambda: len(spool.job_ids("done")) == expected, 120, spool.summary)
    assert spool.job_ids("failed") == []
    assert spool.names("incoming") == []
    assert spool.names("active") == []


def test_a_file_the_watcher_cannot_see_is_found_by_the_rescan(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """incoming/ deleted and recreated under the daemon: a job dropped there still runs."""
    daemon = start_daemon()
    spool.wait_record(spool.drop_job("before", job("Noop")))
    incoming = spool.folder("incoming")
    os.rmdir(incoming)
    incoming.mkdir(exist_ok=True)  # the daemon may have noticed and recreated it already
    job_id = spool.drop_job("after-recreate", job("Noop"))
    spool.wait_record(job_id, timeout=15)
    assert daemon.returncode() is None
