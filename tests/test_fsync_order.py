"""The order of the daemon's renames and fsyncs, read from its real system calls.

"Nothing lost" through a power cut rests on an order that no crash test can see
(a crash keeps what the kernel has, a power cut only what was fsynced): a
record may be durable only once the claim that led to it is, or the job could
come back to wait after its record survived, and run twice. This test attaches
strace to a running daemon, lets it run jobs whose reports come in batches (two
slots, jobs that end together), and checks, for every job, the order the file
store promises (spoold/backends/files/store.py):

* its claim (incoming/ -> active/) is followed by fsyncs of incoming/ and active/
  before its record reaches done/;
* its marker (``active/<id>.to-done``) is fsynced before that rename;
* done/ is fsynced after it.

strace is a real tool on the real daemon: nothing here is mocked. Without strace
the test skips (with ``CI=true`` it fails: .ci/run installs strace).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, job, wait_for

JOBS = 24
RENAME = re.compile(r'rename(?:at2?)?\([^"]*"([^"]+)",[^"]*"([^"]+)"')
FSYNC = re.compile(r"fsync\(\d+<([^>]+)>\) = 0")


def require_strace() -> str:
    path = shutil.which("strace")
    if path is not None:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("strace is missing; .ci/run installs it", pytrace=False)
    pytest.skip("strace is not installed")


def traced_calls(strace: str, pid: int, out: Path, err: Path) -> subprocess.Popen[bytes]:
    """strace on every thread of ``pid``: renames and fsyncs, with the paths of fds."""
    with err.open("wb") as stderr:
        tracer = subprocess.Popen(
            [strace, "-f", "-y", "-e", "trace=rename,renameat,renameat2,fsync",
             "-o", str(out), "-p", str(pid)],
            stderr=stderr,
        )  # fmt: skip
    return tracer


def events(trace: Path, spool: Spool) -> list[tuple[str, str, str]]:
    """(kind, first path, second path) in the order the calls returned, paths relative
    to the spool: ("rename", "incoming/x.json", "active/x.json"), ("fsync", "active", "")."""
    root = str(spool.root) + "/"
    found = []
    for line in trace.read_text().splitlines():
        if "resumed" in line or "unfinished" in line:
            continue  # -f interleaves threads: a call cut in two is not one of ours
        if (rename := RENAME.search(line)) and line.rstrip().endswith("= 0"):
            found.append(("rename", *(p.removeprefix(root) for p in rename.groups())))
        elif fsync := FSYNC.search(line):
            found.append(("fsync", fsync.group(1).removeprefix(root), ""))
    return found


def test_a_record_is_durable_only_after_its_claim(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    strace = require_strace()
    gate = tmp_path / "gate"
    gate.mkdir()
    daemon = start_daemon(worker={"concurrency": 2})
    out, err = tmp_path / "strace.out", tmp_path / "strace.err"
    tracer = traced_calls(strace, daemon.pid, out, err)
    try:
        wait_for(lambda: "attached" in err.read_text(), 20, err.read_text)
        spool.drop_job("first", job("Noop"))
        # Pairs of jobs that wait for the same moment, so that their reports come together.
        ids = [f"j{n:02d}" for n in range(JOBS)]
        for n, job_id in enumerate(ids):
            spool.drop_job(job_id, job("Rendezvous", params=[str(gate / job_id),
                                                            str(gate / ids[n ^ 1])]))  # fmt: skip
        for job_id in ids:
            assert spool.wait_record(job_id, timeout=60)["status"] == "done", daemon.log_text()
        daemon.stop()
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    calls = events(out, spool)
    for job_id in ["first", *ids]:
        check_order(calls, job_id)


def check_order(calls: list[tuple[str, str, str]], job_id: str) -> None:
    claim = calls.index(("rename", f"incoming/{job_id}.json", f"active/{job_id}.json"))
    filed = calls.index(("rename", f"active/{job_id}.to-done", f"done/{job_id}.json"))
    between = calls[claim + 1 : filed]
    for folder in ("incoming", "active"):
        assert ("fsync", folder, "") in between, (
            f"{job_id}: {folder}/ not fsynced before its record"
        )
    assert ("fsync", f"active/{job_id}.to-done", "") in between, f"{job_id}: marker not fsynced"
    assert ("fsync", "done", "") in calls[filed + 1 :], f"{job_id}: done/ never fsynced after"
