"""The link + unlink fallback of no-clobber moves, against the real daemon (issue 10).

On a file system without ``renameat2(RENAME_NOREPLACE)`` (bindfs, a FUSE
passthrough, answers EINVAL) the client moves ``tmp/<id>.json`` into
``incoming/`` as ``link`` then ``unlink``: for a moment the job file has two
names, tmp/ and incoming/, and so two hard links. The daemon must not take
that moment for a hard-link attack: a fast client racing a busy daemon gets
every acknowledged job run once, with no rejection. The defence itself
stays: a job file linked from outside the spool is refused at once, and a
tmp/ twin that is never unlinked only delays its refusal by a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Daemon, Spool, daemon_env, job, stays_false, wait_for

# The client: N acknowledged submits as fast as one process can, each id on its own line.
CLIENT = """
import sys
from spoold.client import run_background_job
root, count = sys.argv[1], int(sys.argv[2])
write = sys.stdout.write
for _ in range(count):
    write(run_background_job("testjobs.Noop", "run", spool=root, durable=False) + "\\n")
sys.stdout.flush()
"""
WAITING = ("incoming", "scheduled", "active", "tmp")


def race_config(spool: Spool) -> dict[str, dict[str, Any]]:
    """Reused workers and no fsync: the daemon as fast as it goes, so it reads every
    file while the client may still be between its link and its unlink."""
    return {
        "spool": {"dir": str(spool.root), "fsync": False},
        "worker": {"concurrency": 2, "max_jobs_per_process": 1000, "max_retries": 0},
        "log": {"level": "INFO"},  # a debug line per move would slow the daemon down
    }


def count_names(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.endswith(".json") and e.name[0] != ".")


def run_client(spool: Spool, count: int, workdir: Path, token: str) -> list[str]:
    """Run the client in its own process until it ends; the ids it was given, in order."""
    ids_path, err_path = workdir / "client-ids.txt", workdir / "client-stderr.txt"
    with ids_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(spool.root), str(count)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env=daemon_env(workdir, token, None),  # this checkout first on PYTHONPATH
        )
    try:
        wait_for(lambda: proc.poll() is not None, max(60.0, count * 0.01), "the client's end")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, err_path.read_text()
    return ids_path.read_text().split()


def all_accounted(spool: Spool, daemon: Daemon, count: int) -> bool:
    """Every job has its record and nothing waits any more (the daemon still alive)."""
    assert daemon.returncode() is None, f"the daemon died:\n{daemon.log_text()[-5000:]}"
    finished = count_names(spool.folder("done")) + count_names(spool.folder("failed"))
    return finished >= count and not any(count_names(spool.folder(s)) for s in WAITING)


def race(spool: Spool, start_daemon: StartDaemon, workdir: Path, token: str, count: int) -> None:
    """``count`` acknowledged submits racing the daemon: each one done once, none rejected."""
    daemon = start_daemon(**race_config(spool))
    began = time.monotonic()
    submitted = run_client(spool, count, workdir, token)
    client_s = time.monotonic() - began
    assert len(submitted) == count and len(set(submitted)) == count, "the client lost an id"
    wait_for(
        lambda: all_accounted(spool, daemon, count),
        max(60.0, count * 0.02),
        lambda: f"all {count} jobs filed; {spool.summary()}",
    )
    total_s = time.monotonic() - began
    print(f"\n{count} jobs on bindfs: client {client_s:.1f} s, all filed after {total_s:.1f} s")
    failed = spool.records("failed")
    rejected = {i: r.get("reason") for i, r in failed.items() if r.get("status") == "rejected"}
    assert not rejected, (
        f"{len(rejected)} acknowledged job(s) rejected: {sorted(rejected.items())[:5]}"
    )
    assert not failed, f"{len(failed)} job(s) failed: {list(failed)[:5]}"
    done = spool.job_ids("done")
    assert len(done) == count and set(done) == set(submitted), (
        f"{len(set(submitted) - set(done))} ids without a record, "
        f"{len(set(done) - set(submitted))} records of no submitted id"
    )
    assert {s: spool.names(s) for s in WAITING} == {s: [] for s in WAITING}
    assert daemon.returncode() is None, "the daemon died"
    lines = [line for line in daemon.log_lines() if "hard link" in line]
    assert not lines, f"{len(lines)} hard-link line(s) in the daemon's log, e.g. {lines[:3]}"


def test_a_fast_client_racing_the_daemon_on_bindfs_gets_every_job_run(
    bindfs_spool: Spool, start_daemon: StartDaemon, tmp_path: Path, leak_check: str
) -> None:
    """2,000 jobs (make test); the long version below is in make chaos."""
    race(bindfs_spool, start_daemon, tmp_path, leak_check, 2000)


@pytest.mark.chaos
def test_twenty_thousand_jobs_racing_the_daemon_on_bindfs(
    bindfs_spool: Spool, start_daemon: StartDaemon, tmp_path: Path, leak_check: str
) -> None:
    race(bindfs_spool, start_daemon, tmp_path, leak_check, 20_000)


# -- the hard-link defence still holds, on bindfs and on a plain spool --


@pytest.fixture(params=["plain", "bindfs"])
def either_spool(request: pytest.FixtureRequest) -> Spool:
    """The test's tmp_path spool, or one on bindfs. Asked for before start_daemon, so
    the daemon stops before bindfs is unmounted."""
    name = "spool" if request.param == "plain" else "bindfs_spool"
    spool: Spool = request.getfixturevalue(name)
    return spool


def document() -> bytes:
    return json.dumps(job("Noop")).encode()


def test_a_file_linked_from_outside_the_spool_is_rejected_at_once(
    either_spool: Spool, start_daemon: StartDaemon
) -> None:
    spool = either_spool
    start_daemon(spool={"dir": str(spool.root)})
    outside = spool.root.parent / "someone-elses.json"  # the same file system, not the spool
    outside.write_bytes(document())
    os.link(outside, spool.folder("incoming") / "linked.json")
    record = spool.wait_rejected("linked", timeout=3.0)
    assert "hard links" in record["reason"], record
    assert outside.read_bytes() == document()
    assert spool.job_ids("done") == []


def test_a_tmp_twin_never_unlinked_is_rejected_after_a_few_seconds(
    either_spool: Spool, start_daemon: StartDaemon
) -> None:
    """A client that died between its link and its unlink (or anyone linking a tmp/
    file in): not refused at once, as a client still moving it would be harmed, but not
    left waiting for ever either."""
    spool = either_spool
    start_daemon(spool={"dir": str(spool.root)})
    twin = spool.folder("tmp") / "twin.json"
    twin.write_bytes(document())
    os.link(twin, spool.folder("incoming") / "twin.json")
    linked_at = time.monotonic()
    assert stays_false(lambda: spool.record("twin", "failed"), 1.0), "rejected at once"
    record = spool.wait_rejected("twin", timeout=15.0)
    waited = time.monotonic() - linked_at
    assert "hard link" in record["reason"], record
    assert spool.job_ids("done") == []
    print(f"\ntmp/ twin rejected after {waited:.1f} s")


def test_retries_and_held_back_jobs_on_bindfs_run_and_are_not_rejected(
    bindfs_spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """The daemon's own moves take the fallback too: active/ to scheduled/ is a link and
    an unlink, and the job is read there again when due, within a second for a retry
    0.2 s later or a job held back 0.3 s. Each must run, not be taken for a hard link."""
    spool = bindfs_spool
    start_daemon(spool={"dir": str(spool.root)}, worker={"max_retries": 2, "retry_delay": 0.2})
    counter = tmp_path / "attempts.jsonl"
    # In by a plain rename (one link all along): only the daemon's own moves are tested.
    spool.drop_job("flaky", job("Flaky", params=[str(counter), 1]))
    spool.drop_job("later", job("Noop", run_at=time.time() + 0.3))
    wait_for(
        lambda: len(spool.job_ids("done") + spool.job_ids("failed")) >= 2,
        20,
        spool.summary,
    )
    failed = spool.records("failed")
    assert not failed, [(r.get("file"), r.get("reason")) for r in failed.values()]
    done = spool.records("done")
    assert sorted(done) == ["flaky", "later"], done
    assert [h["outcome"] for h in done["flaky"]["history"]] == ["error", "ok"]
