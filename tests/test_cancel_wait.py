"""``spoold cancel``, ``spoold wait`` and the client's ``wait()`` and ``cancel()``, as root.

The real daemon runs on a temp file spool; the real ``spoold`` command runs as
``python -m spoold ... --config CFG`` (root reads the spool itself for ``wait``,
and asks the daemon on ``<spool>/control.sock`` for ``cancel``). A job is
cancelled while it waits in incoming/ (behind a Sleeper, concurrency 1), while
it is scheduled (a delay, a retry's wait), and while it runs (a Sleeper, and a
Stubborn one that ignores SIGTERM and needs the SIGKILL). Each cancel is checked
in the record it leaves in failed/ and in what never ran (or ran no more).
Other users (submitters, watchers) are in test_own_jobs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import ROOT, Daemon, Spool, job, pid_alive, read_lines, stays_false, wait_for

import spoold
from spoold import client
from spoold.exec.launcher import KILL_GRACE

UNKNOWN_ID = "20260101T000000.000Z-aaaaaaaaaa"  # well formed, never submitted
BY_ROOT = "cancelled by root (uid 0)"


def spoold_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Cli:
    """The test's spool, its running daemon, and ``spoold ... --config <its config>``."""

    spool: Spool
    config: Path
    daemon: Daemon

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "spoold", *args, "--config", str(self.config)]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, env=spoold_env(), timeout=60
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``spoold ARGS`` in the background (reap it with ``communicate``)."""
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=spoold_env(),
        )

    def wait_started(self, started: Path, count: int = 1) -> list[dict[str, Any]]:
        """The lines a Sleeper wrote on starting, once there are ``count``."""
        return wait_for(lambda: len(read_lines(started)) >= count and read_lines(started), 15)


@pytest.fixture
def cli(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path]
) -> Callable[..., Cli]:
    """``cli(**overrides)``: start the daemon with those config sections; a Cli for it."""

    def start(**overrides: dict[str, Any]) -> Cli:
        config = daemon_config(**overrides)
        return Cli(spool, config, start_daemon(config=config))

    return start


def assert_cancelled(result: subprocess.CompletedProcess[str], job_id: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cancelled {job_id}\n", "")


def cancelled_record(spool: Spool, job_id: str, attempts: int) -> dict[str, Any]:
    """failed/<id>.json of a job root cancelled; the job is nowhere else."""
    record = spool.record(job_id, "failed")
    assert record is not None, spool.summary()
    assert record["status"] == "cancelled", record
    assert record["reason"] == BY_ROOT
    assert record["cancelled_by"] == 0
    assert record["attempts"] == attempts == len(record.get("history", []))
    assert spool.where(job_id) == ["failed"]
    return record


def in_state(spool: Spool, job_id: str, state: str) -> None:
    wait_for(lambda: spool.where(job_id) == [state], 10, lambda: f"{job_id} in {state}/")


# -- cancel --


def test_cancel_a_waiting_job_files_it_cancelled_and_it_never_runs(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    """A Recorder waiting in incoming/ behind a running Sleeper (concurrency 1) is filed at
    once with no attempt; once the Sleeper is cancelled too, a later job runs and the
    Recorder still never has."""
    run = cli(worker={"concurrency": 1})
    started, log = tmp_path / "started", tmp_path / "recorder.log"
    sleeper = run.spool.submit("testjobs.Sleeper", params=[60, str(started)])
    run.wait_started(started)
    waiting = run.spool.submit("testjobs.Recorder", params=[str(log)])
    assert run.spool.where(waiting) == ["incoming"]

    assert_cancelled(run("cancel", waiting), waiting)
    record = cancelled_record(run.spool, waiting, attempts=0)
    assert record["class"] == "testjobs.Recorder" and record["params"] == [str(log)]
    assert record["history"] == []

    assert_cancelled(run("cancel", sleeper), sleeper)  # the queue moves on
    after = run.spool.submit("testjobs.Noop")
    assert run.spool.wait_record(after)["status"] == "done"
    assert not log.exists()
    assert cancelled_record(run.spool, waiting, attempts=0) == record


def test_cancel_a_delayed_job_takes_it_out_of_scheduled(cli: Callable[..., Cli]) -> None:
    run = cli()
    delayed = run.spool.submit("testjobs.Noop", delay=60)
    in_state(run.spool, delayed, "scheduled")
    assert_cancelled(run("cancel", delayed), delayed)
    cancelled_record(run.spool, delayed, attempts=0)
    assert run.spool.names("scheduled") == []


def test_cancel_a_running_job_stops_it_and_it_is_not_retried(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    """A running Sleeper with retries left: its process goes, its one attempt is recorded as
    cancelled, and no second attempt starts."""
    run = cli()
    started = tmp_path / "started"
    job_id = run.spool.submit("testjobs.Sleeper", params=[60, str(started)], max_retries=3)
    (line,) = run.wait_started(started)
    assert pid_alive(line["pid"])

    assert_cancelled(run("cancel", job_id), job_id)
    record = cancelled_record(run.spool, job_id, attempts=1)
    entry = record["history"][-1]
    assert entry["outcome"] == "cancelled", entry
    assert entry["error"] == BY_ROOT
    assert not pid_alive(line["pid"])
    assert stays_false(lambda: len(read_lines(started)) > 1, 1.0), read_lines(started)
    assert run.spool.where(job_id) == ["failed"]


def test_cancel_a_job_that_ignores_sigterm_files_it_after_the_sigkill(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    """badjobs.Stubborn ignores SIGTERM (so does its child): the cancel answers once the
    SIGKILL came, KILL_GRACE seconds later, and both processes are gone."""
    run = cli()
    pidfile = tmp_path / "pids.jsonl"
    document = {"class": "badjobs.Stubborn", "method": "run", "params": [str(pidfile), 60]}
    job_id = run.spool.drop_job("20260101T000002.000Z-stubbornjb", document)
    wait_for(lambda: len(read_lines(pidfile)) == 2, 15, "the job and its child started")
    pids = [line["pid"] for line in read_lines(pidfile)]

    began = time.monotonic()
    assert_cancelled(run("cancel", job_id), job_id)
    took = time.monotonic() - began
    assert KILL_GRACE - 0.05 <= took < KILL_GRACE + 8, f"the cancel took {took:.2f}s"
    record = cancelled_record(run.spool, job_id, attempts=1)
    entry = record["history"][-1]
    assert entry["outcome"] == "cancelled", entry
    assert entry["finished_at"] - entry["started_at"] >= KILL_GRACE - 0.05, entry
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 5, "the job's processes gone")


def test_cancel_an_ended_job_changes_nothing_and_an_unknown_one_fails(
    cli: Callable[..., Cli],
) -> None:
    run = cli()
    done = run.spool.submit("testjobs.Noop")
    run.spool.wait_record(done)
    path = run.spool.folder("done") / f"{done}.json"
    before = path.read_bytes()

    result = run("cancel", done)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"spoold: job {done} has ended already (done); nothing changed\n"
    assert path.read_bytes() == before
    assert run.spool.where(done) == ["done"]

    unknown = run("cancel", UNKNOWN_ID)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == f"spoold: no job {UNKNOWN_ID} of yours\n"
    assert run.spool.where(UNKNOWN_ID) == []


# -- wait --


def test_wait_prints_the_record_and_exits_by_how_the_job_ended(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    """0 done (the record as show prints it; --json too), 1 failed, rejected or cancelled,
    2 when the timeout runs out first, 3 for no such job."""
    run = cli()
    done = run.spool.submit("testjobs.Echo", params=["hello"])
    failed = run.spool.submit("testjobs.Boom", params=["bad"], max_retries=0)
    cancelled = run.spool.submit("testjobs.Noop", delay=60)
    in_state(run.spool, cancelled, "scheduled")
    assert_cancelled(run("cancel", cancelled), cancelled)
    run.spool.wait_record(done)
    run.spool.wait_record(failed, "failed")

    waited = run("wait", done)
    assert (waited.returncode, waited.stderr) == (0, "")
    shown = run("show", done)
    assert shown.returncode == 0 and waited.stdout == shown.stdout
    assert '"status": "done"' in waited.stdout and "hello" in waited.stdout
    as_json = run("wait", done, "--json")
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert (found["id"], found["state"]) == (done, "done")
    assert found["document"] == run.spool.record(done, "done")
    assert found["path"].endswith(f"done/{done}.json")

    boom = run("wait", failed, "--json")
    assert boom.returncode == 1, boom.stderr
    assert json.loads(boom.stdout)["document"]["status"] == "failed"
    rejected = run.spool.submit("testjobs.Undeclared")
    run.spool.wait_rejected(rejected)
    refused = run("wait", rejected, "--json")
    assert refused.returncode == 1, refused.stderr
    assert json.loads(refused.stdout)["document"]["status"] == "rejected"
    stopped = run("wait", cancelled, "--json")
    assert stopped.returncode == 1, stopped.stderr
    assert json.loads(stopped.stdout)["document"]["status"] == "cancelled"

    started = tmp_path / "started"
    sleeper = run.spool.submit("testjobs.Sleeper", params=[60, str(started)])
    run.wait_started(started)
    timed_out = run("wait", sleeper, "--timeout", "0.5")
    assert (timed_out.returncode, timed_out.stdout) == (2, "")
    assert timed_out.stderr == f"spoold: job {sleeper} has not ended after 0.5s (it is in active)\n"

    unknown = run("wait", UNKNOWN_ID)
    assert (unknown.returncode, unknown.stdout) == (3, "")
    assert unknown.stderr == f"spoold: no job {UNKNOWN_ID}\n"
    assert_cancelled(run("cancel", sleeper), sleeper)  # (not left for the daemon's stop)


def test_a_wait_returns_when_the_job_ends(cli: Callable[..., Cli], tmp_path: Path) -> None:
    """A wait started while a 1 s job runs exits 0 with its record once it is filed; a wait
    for a running job that is then cancelled exits 1 with the cancelled record."""
    run = cli()
    started = tmp_path / "started"
    short = run.spool.submit("testjobs.Sleeper", params=[1.0, str(started)])
    run.wait_started(started)
    assert run.spool.record(short, "done") is None
    with run.start("wait", short, "--json", "--timeout", "30") as waiting:
        out, err = waiting.communicate(timeout=15)
    assert waiting.returncode == 0, err
    assert json.loads(out)["document"]["status"] == "done"

    other = tmp_path / "other"
    long = run.spool.submit("testjobs.Sleeper", params=[60, str(other)])
    run.wait_started(other)
    with run.start("wait", long, "--timeout", "30") as waiting:
        assert stays_false(lambda: waiting.poll() is not None, 0.5)
        assert_cancelled(run("cancel", long), long)
        out, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 1, err
    assert '"status": "cancelled"' in out


def test_a_job_between_active_and_its_record_is_shown_and_waited_for(
    spool: Spool,
    start_daemon: StartDaemon,
    daemon_config: Callable[..., Path],
) -> None:
    """While its record is filed, a job is for a moment only ``active/<id>.to-done``: its
    ``<id>.json`` unlinked, the rename to done/ not yet made (store.py). A daemon killed
    right there (``SPOOLD_FAULT=after_unlink``) holds that moment still. ``show`` finds
    the job in active/, ``wait`` waits rather than say "no job" (a dashboard's retry hit
    that moment once, and its page said the job was gone), and both end on the record
    once a restarted daemon's recovery finishes the move."""
    config = daemon_config()
    run = Cli(spool, config, start_daemon(config=config, env={"SPOOLD_FAULT": "after_unlink"}))
    job_id = spool.submit("testjobs.Echo", params=["between"])
    assert run.daemon.wait_exit(15) == -9, run.daemon.log_text()
    assert spool.names("active") == [f"{job_id}.to-done"], spool.summary()
    assert spool.where(job_id) == []

    shown = run("show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert (found["id"], found["state"]) == (job_id, "active")
    assert found["path"].endswith(f"active/{job_id}.to-done")
    assert found["document"]["status"] == "done"
    timed_out = run("wait", job_id, "--timeout", "0.5")
    assert (timed_out.returncode, timed_out.stdout) == (2, ""), timed_out.stderr
    assert timed_out.stderr == f"spoold: job {job_id} has not ended after 0.5s (it is in active)\n"

    with run.start("wait", job_id, "--json", "--timeout", "30") as waiting:
        assert stays_false(lambda: waiting.poll() is not None, 0.5)
        start_daemon(config=config)
        out, err = waiting.communicate(timeout=20)
    assert waiting.returncode == 0, err
    assert json.loads(out)["document"] == spool.record(job_id, "done")
    assert spool.where(job_id) == ["done"] and spool.names("active") == []


# -- retry --


def test_retry_all_failed_leaves_a_cancelled_job_and_retry_by_id_runs_it_again(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    """A Flaky job cancelled while it waits 60 s for its retry stays in failed/ through
    retry --all-failed (which retries a failed Boom); retry ID puts it back and it is done."""
    run = cli()
    boom = run.spool.submit("testjobs.Boom", max_retries=0)
    counter = tmp_path / "counter"
    flaky = run.spool.submit("testjobs.Flaky", params=[str(counter), 1], retry_delay=60)
    in_state(run.spool, flaky, "scheduled")
    assert len(read_lines(counter)) == 1
    assert_cancelled(run("cancel", flaky), flaky)
    record = cancelled_record(run.spool, flaky, attempts=1)
    assert record["history"][0]["outcome"] == "error"  # the attempt before the retry's wait
    first_boom = run.spool.wait_record(boom, "failed")
    cancelled_bytes = (run.spool.folder("failed") / f"{flaky}.json").read_bytes()

    retried = run("retry", "--all-failed")
    assert (retried.returncode, retried.stdout, retried.stderr) == (0, f"retried {boom}\n", "")
    assert (run.spool.folder("failed") / f"{flaky}.json").read_bytes() == cancelled_bytes
    wait_for(
        lambda: (run.spool.record(boom, "failed") or first_boom) != first_boom,
        15,
        "the retried Boom failed again",
    )
    assert run.spool.record(boom, "failed")["attempts"] == 1

    again = run("retry", flaky)
    assert (again.returncode, again.stdout) == (0, f"retried {flaky}\n"), again.stderr
    done = run.spool.wait_record(flaky)
    assert done["status"] == "done"
    assert done["attempts"] == 1 and done["result"] == 2  # the counter's second line
    assert "cancelled_by" not in done, json.dumps(done)
    assert run.spool.where(flaky) == ["done"]


def test_a_submitted_cancelled_by_is_not_kept(cli: Callable[..., Cli]) -> None:
    """cancelled_by is the daemon's word, like status: a job file's own copy is dropped, so
    a done record never says it was cancelled."""
    run = cli()
    forged = job("Noop", status="cancelled", cancelled_by=0, reason="cancelled by root (uid 0)")
    job_id = run.spool.drop_job("20260101T000003.000Z-forgedjobx", forged)
    record = run.spool.wait_record(job_id)
    assert (record["status"], record["attempts"]) == ("done", 1)
    assert "reason" not in record
    assert "cancelled_by" not in record, json.dumps(record)


# -- the client --


def test_the_client_waits_and_cancels(
    cli: Callable[..., Cli], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait() returns the record, raises TimeoutError, LookupError for an unknown id, and
    OSError with no daemon; cancel() is True for a waiting job, then False for it."""
    assert spoold.wait is client.wait and spoold.cancel is client.cancel
    run = cli(worker={"concurrency": 1})
    root = run.spool.root
    done = run.spool.submit("testjobs.Echo", params=["x"])
    record = client.wait(done, 15, spool=root)
    assert record == run.spool.record(done, "done")
    assert record["status"] == "done" and record["result"] == {"args": ["x"], "kwargs": {}}

    started = tmp_path / "started"
    sleeper = run.spool.submit("testjobs.Sleeper", params=[60, str(started)])
    run.wait_started(started)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        client.wait(sleeper, 0.3, spool=root)
    assert time.monotonic() - began < 5
    with pytest.raises(LookupError):
        client.wait(UNKNOWN_ID, 5, spool=root)

    waiting = run.spool.submit("testjobs.Noop")  # behind the Sleeper
    monkeypatch.setenv("SPOOLD_SPOOL_DIR", str(root))
    assert client.cancel(waiting) is True
    assert cancelled_record(run.spool, waiting, attempts=0)["status"] == "cancelled"
    assert client.cancel(waiting) is False
    assert client.wait(waiting, 5)["status"] == "cancelled"
    with pytest.raises(LookupError):
        client.cancel(UNKNOWN_ID)

    assert client.cancel(sleeper, spool=root) is True
    run.daemon.stop()
    with pytest.raises(OSError):
        client.wait(done, 1, spool=root)


def test_the_clients_wait_goes_on_through_a_daemon_restart(
    cli: Callable[..., Cli], start_daemon: Any, tmp_path: Path
) -> None:
    """A submitter's wait() asks the daemon; the daemon stops (its job is interrupted and
    reruns at the next start) and starts again a moment later: the wait asks the new one and
    returns the record."""
    run = cli(worker={"shutdown_timeout": 0.2})
    log = tmp_path / "slow-first"
    job_id = run.spool.submit("testjobs.SlowFirst", params=[str(log), 30])
    wait_for(lambda: read_lines(log), 15, "the first attempt running")
    found: list[Any] = []
    waiter = threading.Thread(target=lambda: found.append(client.wait(job_id, 30,
                              spool=run.spool.root)))  # fmt: skip
    waiter.start()
    sock = str(run.spool.root / "control.sock")

    def asked() -> bool:  # the daemon's end of the wait: a second socket at that path
        lines = Path("/proc/net/unix").read_text().splitlines()
        return sum(line.endswith(" " + sock) for line in lines) >= 2

    wait_for(asked, 10, "the wait asked of the first daemon")
    run.daemon.stop()
    start_daemon(config=run.config)
    waiter.join(30)
    assert not waiter.is_alive(), "the wait did not come back"
    assert found and found[0]["status"] == "done", found
    assert [entry["outcome"] for entry in found[0]["history"]] == ["interrupted", "ok"]
