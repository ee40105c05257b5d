"""Least privilege (SPEC.md [worker] user/group): a root daemon runs jobs as the configured
user, refuses to start without one, and warns when told to run them as root. A job running
as that user cannot write into the spool's state folders nor read another job's record.

These tests run as root (as CI does) and create a real unprivileged user for the jobs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, children_of, daemon_env, job, pid_alive, wait_for, write_config

JOB_USER = "spoold-testjob"
JOBS_DIR = Path(__file__).resolve().parent / "jobs"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture(scope="module")
def job_user() -> pwd.struct_passwd:
    """A real unprivileged system user for the jobs, created if missing."""
    try:
        return pwd.getpwnam(JOB_USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not available to create an unprivileged user")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", JOB_USER],
        check=True,
    )
    return pwd.getpwnam(JOB_USER)


@pytest.fixture
def open_spool() -> Iterator[Spool]:
    """A spool whose parent folders anyone may traverse (pytest's tmp folders are root-only,
    which would deny the job for the wrong reason), and beside it, in ``jobs/``, a copy of
    the job module the job user can read wherever the checkout lives (a clone in a
    0700 folder would otherwise fail the import, not the privilege check)."""
    base = Path(f"/tmp/spoold-privileges-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    jobs = base / "jobs"
    jobs.mkdir(mode=0o755)
    shutil.copy(JOBS_DIR / "privjobs.py", jobs / "privjobs.py")
    (jobs / "privjobs.py").chmod(0o644)
    try:
        yield Spool(base / "spool").create()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def readable_jobs(spool: Spool) -> str:
    """The job-user-readable copy of the job modules that ``open_spool`` made."""
    return str(spool.root.parent / "jobs")


def run_refused(config: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """``spoold run`` with a config it must refuse: run to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "spoold", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=30, cwd=workdir,
        env=daemon_env(workdir, "privileges", None),
    )  # fmt: skip


def test_a_root_daemon_without_a_job_user_refuses_to_start(spool: Spool, tmp_path: Path) -> None:
    """Started as root with [worker] user unset: one line naming the key, nothing started."""
    config = write_config(tmp_path / "nouser.toml", spool, {"worker": {"user": ""}})
    result = run_refused(config, tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert "[worker] user" in lines[0] and "root" in lines[0]
    assert not (spool.root / ".spoold.lock").exists()


def test_an_unknown_job_user_is_refused(spool: Spool, tmp_path: Path) -> None:
    config = write_config(tmp_path / "ghost.toml", spool, {"worker": {"user": "no-such-user-x"}})
    result = run_refused(config, tmp_path)
    assert result.returncode != 0
    assert "[worker] user: no such user 'no-such-user-x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_running_jobs_as_root_is_an_explicit_choice_with_a_warning(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(worker={"user": "root"})
    assert 'jobs run as root ([worker] user = "root")' in daemon.log_text()
    job_id = spool.drop_job("as-root", job("Noop"))
    assert spool.wait_record(job_id)["status"] == "done"


def test_a_job_runs_as_the_configured_user_and_cannot_touch_the_spool(
    open_spool: Spool, start_daemon: StartDaemon, job_user: pwd.struct_passwd
) -> None:
    """The job's uid, gid and groups are the job user's alone; the spool's state folders
    (owned by root, no access for others) refuse it writes, listings and reads."""
    secret = open_spool.folder("done") / "secret.json"
    secret.write_text('{"id": "secret", "status": "done"}')
    secret.chmod(0o640)
    start_daemon(
        spool={"dir": str(open_spool.root)},
        worker={"user": JOB_USER, "group": "", "python_path": [readable_jobs(open_spool)]},
        allow={"privjobs.Whoami": ["run"]},
    )
    job_id = open_spool.drop_job(
        "whoami",
        job("Whoami", params=[str(open_spool.root), "secret"]) | {"class": "privjobs.Whoami"},
    )
    record = open_spool.wait_record(job_id)
    seen = record["result"]
    assert record["status"] == "done", record
    assert (seen["uid"], seen["euid"], seen["gid"]) == (
        job_user.pw_uid,
        job_user.pw_uid,
        job_user.pw_gid,
    )
    assert seen["groups"] == [job_user.pw_gid]
    assert seen["home"] == job_user.pw_dir
    assert seen["see_spool_root"] is True, (
        "the test spool must be reachable, or the rest proves nothing"
    )
    denied = {
        k: seen[k]
        for k in ("write_done", "write_failed", "read_record", "list_done", "write_active")
    }
    assert set(denied.values()) == {"PermissionError"}, denied
    assert not (open_spool.folder("done") / "intruder.json").exists()


def test_a_job_running_as_another_user_dies_with_the_launcher(
    open_spool: Spool, start_daemon: StartDaemon, job_user: pwd.struct_passwd
) -> None:
    """Changing user clears a process's parent-death signal; the worker sets it again, so a
    job running as the job user still dies when the launcher does (and is not left running
    unwatched while the daemon starts a new launcher)."""
    drop_box = open_spool.root.parent / "outbox"
    drop_box.mkdir(mode=0o777)
    drop_box.chmod(0o777)
    daemon = start_daemon(
        spool={"dir": str(open_spool.root)},
        worker={
            "user": JOB_USER,
            "group": "",
            "max_retries": 0,
            "python_path": [readable_jobs(open_spool)],
        },
        allow={"privjobs.Napper": ["run"]},
    )
    pidfile = drop_box / "napper.pid"
    open_spool.drop_job(
        "napper", {"class": "privjobs.Napper", "method": "run", "params": [str(pidfile)]}
    )
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), 10, open_spool.summary)
    job_pid = int(pidfile.read_text())
    assert Path(f"/proc/{job_pid}").stat().st_uid == job_user.pw_uid
    (launcher,) = children_of(daemon.pid)
    os.kill(launcher, signal.SIGKILL)
    wait_for(lambda: not pid_alive(job_pid), 5, lambda: f"job {job_pid} outlived its launcher")
    record = open_spool.wait_record("napper", "failed")
    assert record["history"][-1]["outcome"] == "crashed"
