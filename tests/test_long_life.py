"""Long life: 50,000 quick jobs through ONE daemon, and its footprint stays flat.

The daemon's and the launcher's RSS, open descriptors and children are sampled once the
spool is idle after 1,000 jobs, after a fifth of the run and at the end; they are
printed as one JSON line and written to bench/results/long_life.json. Set
``SPOOLD_LONG_LIFE_JOBS`` to try a shorter run (e.g. 5000).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import ROOT, Spool, children_of, process_state, wait_for

BATCH = 1000
MAX_WAITING = 2000  # submit the next batch once no more than this many jobs wait
RESULTS = ROOT / "bench" / "results" / "long_life.json"


def count(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for entry in entries if entry.name.endswith(".json"))


def status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} for {pid}")


def sample(daemon_pid: int, after: int) -> dict[str, Any]:
    """The daemon's and the launcher's footprint, once no attempt runs."""
    (launcher,) = wait_for(lambda: children_of(daemon_pid) or None, 10, "the launcher")
    # Once the last attempts are reaped, the launcher's one child is the spare worker
    # it keeps forked ahead for the next attempt.
    wait_for(lambda: len(children_of(launcher)) == 1, 10, "the last attempts to be reaped")
    kids = children_of(daemon_pid) + children_of(launcher)
    return {
        "after_jobs": after,
        "daemon_rss_kb": status_field(daemon_pid, "VmRSS"),
        "launcher_rss_kb": status_field(launcher, "VmRSS"),
        "daemon_fds": len(os.listdir(f"/proc/{daemon_pid}/fd")),
        "launcher_fds": len(os.listdir(f"/proc/{launcher}/fd")),
        "daemon_threads": status_field(daemon_pid, "Threads"),
        "daemon_children": len(children_of(daemon_pid)),
        "launcher_children": len(children_of(launcher)),
        "zombies": sum(process_state(pid) == "Z" for pid in kids),
        "launcher_pid": launcher,
    }


@pytest.mark.chaos
def test_fifty_thousand_jobs_through_one_daemon(spool: Spool, start_daemon: StartDaemon) -> None:
    total = int(os.environ.get("SPOOLD_LONG_LIFE_JOBS", "50000"))
    checkpoints = sorted({BATCH, total // 5, total})
    daemon = start_daemon(
        spool={"rescan_interval": 5.0}, worker={"concurrency": 2}, log={"level": "WARNING"}
    )
    done, failed = spool.folder("done"), spool.folder("failed")
    began = time.monotonic()
    submitted = 0
    samples = []
    for checkpoint in checkpoints:
        while submitted < checkpoint:
            for _ in range(min(BATCH, checkpoint - submitted)):
                spool.submit("tiny.Quick", "run", [submitted], durable=False)
                submitted += 1
            while submitted - count(done) - count(failed) > MAX_WAITING:
                time.sleep(0.2)  # a listing of 50,000 names: poll gently
        deadline = time.monotonic() + 120
        while count(done) + count(failed) < checkpoint:
            assert time.monotonic() < deadline, f"stuck at {count(done)} of {checkpoint}"
            assert daemon.returncode() is None, daemon.log_text()[-5000:]
            time.sleep(0.2)
        samples.append({**sample(daemon.pid, checkpoint), "seconds": time.monotonic() - began})
        print(json.dumps(samples[-1]), flush=True)
    wall = time.monotonic() - began

    first, last = samples[0], samples[-1]
    figures = {
        "jobs": total,
        "concurrency": 2,
        "wall_seconds": round(wall, 1),
        "jobs_per_second": round(total / wall, 1),
        "daemon_rss_growth_kb": last["daemon_rss_kb"] - first["daemon_rss_kb"],
        "launcher_rss_growth_kb": last["launcher_rss_kb"] - first["launcher_rss_kb"],
        "samples": samples,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(figures), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")

    assert count(failed) == 0, f"{count(failed)} jobs failed"
    assert count(done) == total
    for state in ("incoming", "scheduled", "active"):
        assert spool.names(state) == [], state
    assert {s["launcher_pid"] for s in samples} == {first["launcher_pid"]}, "launcher replaced"
    for later in samples[1:]:
        assert abs(later["daemon_fds"] - first["daemon_fds"]) <= 2, samples
        assert abs(later["launcher_fds"] - first["launcher_fds"]) <= 2, samples
    for s in samples:
        assert s["zombies"] == 0, s
        assert (s["daemon_children"], s["launcher_children"]) == (1, 1), s
        assert s["daemon_threads"] == 1, s
    assert figures["daemon_rss_growth_kb"] < 5 * 1024, figures
    assert daemon.stop() == 0
