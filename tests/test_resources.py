"""The daemon's own trouble never fails a job (issue: "Resources run out").

Each test takes a resource away with a real kernel limit while jobs are on their way: the
disk fills up (a tiny tmpfs spool), the daemon runs out of file descriptors (prlimit on
the running daemon), the launcher cannot fork (a cgroup's pids.max). The daemon must log
the trouble, keep every job where it was, back off, and finish every job normally once
the resource is back: no rejection, no failed attempt, no lost job, no second run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Daemon, Spool, children_of, job, read_lines, stays_false, wait_for

from spoold.backends.files.spool import is_job_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these limits need root")
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


def submit_recorders(spool: Spool, log: Path, count: int) -> list[str]:
    return [
        spool.drop_job(f"job-{n}", job("Recorder", params=[str(log), f"job-{n}"]))
        for n in range(count)
    ]


def assert_each_done_once(spool: Spool, ids: list[str], log: Path) -> None:
    records = spool.records("done")
    assert sorted(records) == sorted(ids), spool.summary()
    assert all([h["outcome"] for h in r["history"]] == ["ok"] for r in records.values()), records
    assert spool.job_ids("failed") == []
    assert sorted(line["label"] for line in read_lines(log)) == sorted(ids), "a job ran twice"


# -- disk full --


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at the end."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = folder / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    with contextlib.suppress(OSError), filler.open("ab") as handle:  # the last scraps
        for _ in range(4096):
            handle.write(b"\0" * 512)
            handle.flush()
    return filler


@pytest.mark.parametrize("send_ahead", [False, True])
def test_a_full_disk_holds_outcomes_back_until_there_is_room(
    tiny_disk: Path, tmp_path: Path, start_daemon: StartDaemon, send_ahead: bool
) -> None:
    """While outcomes are held back no new attempt starts (the disk trouble would only
    pile up). Without send_ahead, none starts once an attempt has ended unfiled; with it
    (2 slots), a request the launcher held may start as the slot frees, before the daemon
    knows the outcome cannot be filed: at most one per slot, and none after that."""
    spool = Spool(tiny_disk / "spool").create()
    log = tmp_path / "runs.jsonl"
    ids = submit_recorders(spool, log, 6)
    filler = fill(tiny_disk)
    daemon = start_daemon(spool={"dir": str(spool.root)}, worker={"send_ahead": send_ahead})

    def every_outcome_held() -> bool:  # (so every request the launcher held has started)
        started = len(read_lines(log))
        return daemon.log_text().count("cannot file its outcome") == started >= 2

    def labels() -> list[str]:
        return [line["label"] for line in read_lines(log)]

    wait_for(every_outcome_held, 10, daemon.log_text)
    assert stays_false(lambda: spool.job_ids("done") or spool.job_ids("failed"), 1.5)
    wait_for(every_outcome_held, 10, daemon.log_text)  # those on their way when checked first
    ran = labels()
    assert stays_false(lambda: labels() != ran, 1.5), "a job started long after the hold"
    assert 1 <= len(ran) <= (4 if send_ahead else 2), ran
    # The jobs that ran stay in active/; the others wait in incoming/, or (taken back
    # from the launcher) in scheduled/, or in active/ if that put-back is held too.
    active = spool.job_ids("active")
    assert set(ran) <= set(active), "a job left active/ without a record"
    waiting = spool.job_ids("incoming") + spool.job_ids("scheduled")
    assert sorted(waiting + active) == sorted(ids)
    filler.unlink()
    wait_for(lambda: len(spool.job_ids("done")) == 6, 60, spool.summary)
    assert_each_done_once(spool, ids, log)
    assert daemon.returncode() is None, "the daemon died of a full disk"


@pytest.mark.parametrize("second", ["record", "retry"])
def test_held_outcomes_filed_in_turn_are_each_filed_once(
    tiny_disk: Path, tmp_path: Path, start_daemon: StartDaemon, second: str
) -> None:
    """Two attempts finish on a full disk; then room comes back for the small outcome only
    (graded sizes), then for both. The round that files the small one must not hold it
    again: applied twice, a record was filed twice (under a fresh id) and a retry to
    scheduled/ failed for ever, after which the daemon started no job at all."""
    spool = Spool(tiny_disk / "spool").create()
    log, gate_big, gate_small = tmp_path / "runs.jsonl", tmp_path / "big", tmp_path / "small"
    daemon = start_daemon(spool={"dir": str(spool.root)}, worker={"retry_delay": 0.1})
    big = spool.drop_job("big", job("Gated", params=[str(log), str(gate_big), 400_000]))
    small = spool.drop_job(
        "small", job("Gated", params=[str(log), str(gate_small), 10, second == "retry"])
    )
    wait_for(lambda: len(read_lines(log)) == 2, 15, "both attempts to start")
    filler = fill(tiny_disk)
    gate_big.touch()  # the big outcome is held first, the small one behind it
    daemon.wait_log(f"job {big}: cannot file its outcome")
    gate_small.touch()
    daemon.wait_log(f"job {small}: cannot file its outcome")
    os.truncate(filler, filler.stat().st_size - 128 * 1024)  # room for the small one only
    small_folder = "scheduled" if second == "retry" else "done"
    wait_for(lambda: spool.where(small) == [small_folder], 30, spool.summary)
    assert spool.where(big) == ["active"], spool.summary()
    filler.unlink()
    wait_for(lambda: spool.where(big) == ["done"] and spool.where(small) == ["done"], 60,
             spool.summary)  # fmt: skip
    later = spool.submit("testjobs.Noop")
    spool.wait_record(later, "done", timeout=30)  # the daemon goes on starting jobs
    assert stays_false(lambda: len(spool.job_ids("done")) != 3, 1.0), spool.summary()
    assert sorted(spool.job_ids("done")) == sorted([big, small, later]), "filed twice"
    assert spool.job_ids("failed") == [] and spool.names("active") == []
    record = spool.record(small, "done")
    assert record is not None
    outcomes = [entry["outcome"] for entry in record["history"]]
    assert outcomes == (["error", "ok"] if second == "retry" else ["ok"]), outcomes
    assert daemon.returncode() is None


def test_a_rejection_and_a_wait_that_cannot_be_filed_are_held_until_there_is_room(
    tiny_disk: Path, tmp_path: Path, start_daemon: StartDaemon
) -> None:
    """Not only attempts' outcomes: a refused file and a job whose run_at is ahead also
    leave active/ by a filing, and on a full disk those are held and filed once there is
    room, by the same running daemon. (Before, the daemon did not even start: the first
    scan's failed filing ended it.) A file whose claim must write a cleaned copy (it
    carries daemon-owned fields) is left in incoming/ until there is room."""
    spool = Spool(tiny_disk / "spool").create()
    log = tmp_path / "runs.jsonl"
    refused = spool.drop_job("refused", job("Partial", "forbidden", params=[str(log)]))
    later = spool.drop_job(
        "later", job("Recorder", params=[str(log), "later"], run_at=time.time() + 3)
    )
    # run_at ahead: claimed at once, to wait (a ready job would wait for launches to resume)
    forged = spool.drop_job("forged", job("Recorder", params=[str(log), "forged"], status="ok",
                                          run_at=time.time() + 3))  # fmt: skip
    filler = fill(tiny_disk)
    daemon = start_daemon(spool={"dir": str(spool.root)})
    daemon.wait_log("job refused: cannot file its rejection")
    daemon.wait_log("job later: cannot file its move to scheduled/")
    daemon.wait_log("cannot claim incoming/forged.json")
    # The forged file is not claimed: it waits in incoming/, or is there for an instant as
    # active/forged.claiming while the daemon tries again (and puts it back).
    claimed = [name for name in spool.names("active") if is_job_name(name)]
    assert claimed == ["later.json", "refused.json"], spool.summary()

    def forged_waits() -> bool:  # two listings, not one instant: polled
        found = spool.names("incoming") + spool.names("active")
        return "forged.json" in found or "forged.claiming" in found

    wait_for(forged_waits, 5, spool.summary)
    filler.unlink()
    record = spool.wait_rejected(refused, timeout=30)
    assert "allow" in record["reason"], record
    assert spool.wait_record(forged, "done", timeout=30)["status"] == "done"
    done = spool.wait_record(later, "done", timeout=30)
    assert [entry["outcome"] for entry in done["history"]] == ["ok"]
    labels = sorted(line["label"] for line in read_lines(log))
    assert labels == ["forged", "later"], "a job ran twice, or the refused one ran"
    assert spool.names("active") == [] and daemon.returncode() is None


# -- out of file descriptors --


def test_running_out_of_descriptors_rejects_nothing(
    spool: Spool, tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon()
    soft, hard = resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)
    # A new descriptor takes the lowest free number: a limit at that number refuses it.
    # Only descriptors held across several looks count (a rescan holds one briefly).
    held = held_fds(daemon.pid)
    lowest_free = min(set(range(len(held) + 1)) - held)
    resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
    log = tmp_path / "runs.jsonl"
    try:
        ids = submit_recorders(spool, log, 3)
        daemon.wait_log("cannot read incoming/")
        assert stays_false(lambda: spool.job_ids("failed") or read_lines(log), 1.5)
        assert sorted(spool.job_ids("incoming")) == sorted(ids)
    finally:
        resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (soft, hard))
    wait_for(lambda: len(spool.job_ids("done")) == 3, 60, spool.summary)
    assert_each_done_once(spool, ids, log)
    assert os.strerror(errno.EMFILE) in daemon.log_text()


def open_fds(pid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def held_fds(pid: int, looks: int = 5) -> set[int]:
    """Descriptors open at every one of several looks, 50 ms apart."""
    held = open_fds(pid)
    for _ in range(looks - 1):
        time.sleep(0.05)
        held &= open_fds(pid)
    return held


# -- fork fails --


def launcher_pid(daemon: Daemon) -> int:
    children = children_of(daemon.pid)
    assert len(children) == 1, children
    return children[0]


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A cgroup-v1 pids group, removed at the end (its members moved back to the root)."""
    group = PIDS_CGROUP / f"spoold-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"no writable pids cgroup here: {exc}")
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (PIDS_CGROUP / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            group.rmdir()


def test_a_fork_that_fails_puts_the_job_back_to_wait(
    spool: Spool, tmp_path: Path, start_daemon: StartDaemon, pids_cgroup: Path
) -> None:
    daemon = start_daemon()
    (pids_cgroup / "cgroup.procs").write_text(str(launcher_pid(daemon)))
    (pids_cgroup / "pids.max").write_text("1")  # the launcher itself: no room for a child
    log = tmp_path / "runs.jsonl"
    ids = submit_recorders(spool, log, 2)
    daemon.wait_log("could not start")
    assert stays_false(
        lambda: spool.job_ids("failed") or spool.job_ids("done") or read_lines(log), 1.5
    )
    (pids_cgroup / "pids.max").write_text("max")
    wait_for(lambda: len(spool.job_ids("done")) == 2, 60, spool.summary)
    assert_each_done_once(spool, ids, log)
    assert "launcher process died" not in daemon.log_text()


# -- idling --


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_daemon_and_launcher_use_no_cpu_after_jobs(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    # A launcher once spun on a zero select() timeout for good after its first
    # attempt ended, burning a whole core while the spool sat idle.
    daemon = start_daemon()
    launcher = launcher_pid(daemon)
    ids = [spool.submit("testjobs.Noop") for _ in range(3)]
    wait_for(lambda: len(spool.job_ids("done")) == len(ids), 30, spool.summary)
    before = {pid: cpu_seconds(pid) for pid in (daemon.pid, launcher)}
    time.sleep(2.0)  # the measured idle span itself: nothing to poll for
    used = {pid: cpu_seconds(pid) - before[pid] for pid in before}
    assert all(seconds < 0.3 for seconds in used.values()), used
