"""Missed events (docs/ARCHITECTURE.md, "inotify is a hint, the folder is the truth"): jobs
still run when the watch on incoming/ is off, when thousands of files land at once, and
after the watch itself dies.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, job, read_lines, wait_for

QUICK = {"class": "tiny.Quick", "method": "run"}


def test_without_the_watch_rescans_alone_find_every_job(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """SPOOLD_FAULT=no_watch, rescan_interval 0.5: jobs renamed in, written in place, and one
    written in place in two steps (so a rescan may see it half-written, and no close
    event will come) all run, once each."""
    daemon = start_daemon(env={"SPOOLD_FAULT": "no_watch"}, spool={"rescan_interval": 0.5})
    daemon.wait_log("running without the watch")
    log = tmp_path / "runs.jsonl"
    renamed = [f"renamed-{n}" for n in range(10)]
    in_place = [f"inplace-{n}" for n in range(10)]
    for job_id in renamed + in_place:
        document = job("Recorder", params=[str(log), job_id])
        spool.drop_job(job_id, document, rename=job_id.startswith("renamed"))
    data = json.dumps(job("Recorder", params=[str(log), "two-steps"])).encode()
    with open(spool.folder("incoming") / "two-steps.json", "wb") as handle:
        handle.write(data[:20])
        handle.flush()
        time.sleep(1.2)  # no event to poll for: let at least two rescans see the half file
        handle.write(data[20:])
    everyone = [*renamed, *in_place, "two-steps"]
    for job_id in everyone:
        spool.wait_record(job_id, timeout=15)
    assert sorted(spool.job_ids("done")) == sorted(everyone), spool.summary()
    assert spool.job_ids("failed") == [], spool.summary()
    assert sorted(line["label"] for line in read_lines(log)) == sorted(everyone)
    assert daemon.returncode() is None


@pytest.mark.slow
def test_a_burst_of_3000_files_all_run(spool: Spool, start_daemon: StartDaemon) -> None:
    """3,000 files written into tmp/ and then renamed into incoming/ in a tight loop, with
    the watch on and the shipped rescan interval: every one ends in done/, once."""
    daemon = start_daemon(spool={"rescan_interval": 5.0}, log={"level": "INFO"})
    count = 3000
    names = [f"burst-{n:05d}.json" for n in range(count)]
    for n, name in enumerate(names):
        (spool.folder("tmp") / name).write_text(json.dumps({**QUICK, "params": [n]}))
    began = time.monotonic()
    for name in names:
        os.rename(spool.folder("tmp") / name, spool.folder("incoming") / name)
    wait_for(
        lambda: len(spool.job_ids("done")) + len(spool.job_ids("failed")) >= count,
        120,
        lambda: f"{len(spool.job_ids('done'))} of {count} done; {spool.summary()}",
    )
    took = time.monotonic() - began
    print(f"burst: {count} jobs filed in {took:.1f}s ({count / took:.0f}/s)")
    assert sorted(spool.job_ids("done")) == sorted(n.removesuffix(".json") for n in names)
    assert spool.job_ids("failed") == []
    wait_for(lambda: spool.names("active") == [], 10, spool.summary)
    for state in ("tmp", "incoming", "scheduled", "active"):
        assert spool.names(state) == [], state
    results = sorted(r["result"]["number"] for r in spool.records("done").values())
    assert results == list(range(count))
    assert daemon.returncode() is None


def test_a_dead_watch_is_noticed_and_restarted(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """SPOOLD_FAULT=watcher_dies:3 stops the watch at the third turn of the loop. The daemon
    says so and restarts it: with rescans only every 30 s, a job dropped afterwards is
    still picked up within a few seconds, so it was seen by a working watch."""
    daemon = start_daemon(env={"SPOOLD_FAULT": "watcher_dies:3"}, spool={"rescan_interval": 30.0})
    log = tmp_path / "runs.jsonl"
    for label in ("before-1", "before-2"):  # each job makes the loop turn a few times
        spool.wait_record(spool.drop_job(label, job("Recorder", params=[str(log), label])))
    daemon.wait_log("the watch on incoming/ stopped working; restarting it")
    # The restart's own rescan could have found a job dropped during it: the first job
    # after it makes sure that turn is over, the second is the proof.
    spool.wait_record(spool.drop_job("after-1", job("Recorder", params=[str(log), "after-1"])))
    dropped = time.monotonic()
    spool.drop_job("after-2", job("Recorder", params=[str(log), "after-2"]))
    spool.wait_record("after-2", timeout=5)
    assert time.monotonic() - dropped < 5, "picked up by a rescan, not by the watch"
    assert [line for line in daemon.log_lines() if "stopped working" in line][1:] == [], (
        "the watch was restarted more than once"
    )
    assert daemon.returncode() is None
