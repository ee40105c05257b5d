"""``spoold run --detach``, ``spoold stop`` and ``spoold status --pidfile/--verbose``
(README "Command line"), with real detached daemons.

A detached daemon is not a child of pytest, so every test stops the daemons it
started itself (``Detached.cleanup`` in a finally); the leak check then finds
any process left behind by the token in its environment.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import Spool, daemon_env, job, pid_alive, wait_for

LogConfig = Callable[..., Path]


@dataclass
class Detached:
    """Runs ``python -m spoold`` commands as a user would, and stops what they left running."""

    workdir: Path
    token: str
    pidfiles: list[Path] = field(default_factory=list)

    def spoold(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """One ``spoold`` command, umask 022 as in a login shell; its output captured."""
        return subprocess.run(
            [sys.executable, "-m", "spoold", *args],
            cwd=self.workdir,
            env=daemon_env(self.workdir, self.token, None),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=lambda: os.umask(0o022),
            check=False,
        )

    def start(self, config: Path, pidfile: Path) -> subprocess.CompletedProcess[str]:
        self.pidfiles.append(pidfile)
        return self.spoold("run", "--detach", "--pidfile", str(pidfile), "--config", str(config))

    def cleanup(self) -> None:
        """Stop every daemon a pidfile names; SIGKILL any that will not go."""
        for pidfile in self.pidfiles:
            pid = pid_in(pidfile)
            self.spoold("stop", "--pidfile", str(pidfile), "--timeout", "20", "--kill")
            if pid is not None and pid_alive(pid) and token_of(pid) == self.token:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def detached(tmp_path: Path, leak_check: str) -> Iterator[Detached]:
    runner = Detached(tmp_path, leak_check)
    try:
        yield runner
    finally:
        runner.cleanup()


@pytest.fixture
def log_config(daemon_config: Callable[..., Path], tmp_path: Path) -> LogConfig:
    """A config that logs to ``tmp_path/logs/spoold.log`` (which --detach requires)."""

    def make(**overrides: dict[str, object]) -> Path:
        log = {"file": str(tmp_path / "logs" / "spoold.log"), "level": "DEBUG"}
        return daemon_config(log={**log, **overrides.pop("log", {})}, **overrides)

    return make


def pid_in(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def token_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"SPOOLD_TEST_TOKEN="):
            return entry.split(b"=", 1)[1].decode()
    return None


def started_pid(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("started (pid "), result.stdout
    return int(result.stdout.split("pid ")[1].rstrip(")\n"))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("spoold: "), result.stderr
    return result.stderr


def test_detach_returns_when_ready_and_stop_stops_it(
    spool: Spool, detached: Detached, log_config: LogConfig, tmp_path: Path
) -> None:
    """The command returns 0 once jobs are taken, the pidfile names the daemon, which holds
    the lock, logs to its file (opened after the fork, umask 027), and stop ends it."""
    pidfile = tmp_path / "spoold.pid"
    pid = started_pid(detached.start(log_config(), pidfile))
    assert pid_in(pidfile) == pid and pid_alive(pid)
    assert os.getsid(pid) != os.getsid(0)  # a session of its own
    job_id = spool.drop_job("right-after", job("Noop"))  # no waiting: it is ready
    record = spool.wait_record(job_id, timeout=10)
    assert record["status"] == "done"
    status = detached.spoold("status", "--config", str(log_config()), "--pidfile", str(pidfile))
    assert f"running (pid {pid})" in status.stdout, status.stdout
    log = tmp_path / "logs" / "spoold.log"
    text = wait_for(lambda: job_id in log.read_text() and log.read_text(), 10, "the job's lines")
    assert "ready: watching" in text
    for path in (log, spool.folder("done") / f"{job_id}.json", pidfile):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    stopped = detached.spoold("stop", "--pidfile", str(pidfile), "--config", str(log_config()))
    assert (stopped.returncode, stopped.stdout) == (0, f"stopped (pid {pid})\n"), stopped.stderr
    assert not pid_alive(pid)
    assert not pidfile.exists()
    assert any(line.endswith(" stopped") for line in log.read_text().splitlines())


def test_a_second_start_fails_with_one_line_naming_the_first(
    spool: Spool, detached: Detached, log_config: LogConfig, tmp_path: Path
) -> None:
    """Same pidfile: refused at once; another pidfile on the same spool: the daemon's own
    refusal reaches the terminal. Neither leaves a process behind."""
    config = log_config()
    pidfile = tmp_path / "spoold.pid"
    pid = started_pid(detached.start(config, pidfile))
    again = detached.start(config, pidfile)
    assert again.returncode == 1
    assert f"already running: pid {pid}" in one_line_error(again)
    other = detached.start(config, tmp_path / "other.pid")
    assert other.returncode == 1
    assert f"another spoold (pid {pid}) is running on this spool" in one_line_error(other)
    assert not (tmp_path / "other.pid").exists()
    assert pid_in(pidfile) == pid and pid_alive(pid)


def test_a_stale_pidfile_does_not_block_the_next_start(
    spool: Spool, detached: Detached, log_config: LogConfig, tmp_path: Path
) -> None:
    """After a SIGKILL the pidfile stays, unlocked: status and stop call it stale (stop
    exits 0, as systemctl stop would), and the next start takes it over."""
    config = log_config()
    pidfile = tmp_path / "spoold.pid"
    first = started_pid(detached.start(config, pidfile))
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not pid_alive(first), 10, "the killed daemon to go")
    assert pid_in(pidfile) == first
    status = detached.spoold("status", "--config", str(config), "--pidfile", str(pidfile))
    assert "not running (stale pidfile" in status.stdout, status.stdout
    stop = detached.spoold("stop", "--pidfile", str(pidfile))
    assert (stop.returncode, stop.stdout) == (0, f"not running (stale pidfile {pidfile})\n")
    second = started_pid(detached.start(config, pidfile))
    assert second != first and pid_in(pidfile) == second
    job_id = spool.drop_job("after-restart", job("Noop"))
    assert spool.wait_record(job_id, timeout=10)["status"] == "done"


def test_stop_on_a_missing_pidfile_says_not_running(detached: Detached, tmp_path: Path) -> None:
    result = detached.spoold("stop", "--pidfile", str(tmp_path / "none.pid"), "--timeout", "1")
    assert result.returncode == 0
    assert result.stdout == f"not running (no pidfile {tmp_path / 'none.pid'})\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"worker": {"concurrency": "many"}}, "concurrency"),
        ({"log": {"file": ""}}, "set [log] file"),
    ],
)
def test_detach_with_a_bad_config_fails_before_forking(
    detached: Detached,
    log_config: LogConfig,
    tmp_path: Path,
    overrides: dict[str, dict[str, object]],
    message: str,
) -> None:
    pidfile = tmp_path / "spoold.pid"
    result = detached.start(log_config(**overrides), pidfile)
    assert result.returncode == 2
    assert message in one_line_error(result)
    assert not pidfile.exists()


def test_a_start_error_after_detaching_reaches_the_terminal(
    detached: Detached, log_config: LogConfig, tmp_path: Path
) -> None:
    """The log file cannot be opened (its folder is a file): the detached side says why."""
    (tmp_path / "blocker").write_text("")
    config = log_config(log={"file": str(tmp_path / "blocker" / "spoold.log")})
    result = detached.start(config, tmp_path / "spoold.pid")
    assert result.returncode == 1
    assert "[log] file" in one_line_error(result)
    assert not (tmp_path / "spoold.pid").exists()


def test_stop_timeout_then_kill_and_status_lists_running_jobs(
    spool: Spool, detached: Detached, log_config: LogConfig, tmp_path: Path
) -> None:
    """A job outlives --timeout: stop exits 1 and leaves the daemon alone; --kill ends a
    daemon that does not answer SIGTERM."""
    config = log_config(worker={"shutdown_timeout": 60.0})
    pidfile = tmp_path / "spoold.pid"
    pid = started_pid(detached.start(config, pidfile))
    marker = tmp_path / "started.jsonl"
    spool.drop_job("sleepy", job("Sleeper", params=[60, str(marker)]))
    wait_for(marker.exists, 10, "the job to start")
    status = detached.spoold("status", "--verbose", "--config", str(config))
    assert "running jobs:" in status.stdout and "sleepy" in status.stdout, status.stdout
    assert "testjobs.Sleeper.run" in status.stdout and "attempt 1" in status.stdout
    slow = detached.spoold("stop", "--pidfile", str(pidfile), "--timeout", "0.5")
    assert slow.returncode == 1
    assert f"pid {pid} still running after 0.5s" in one_line_error(slow)
    assert pid_alive(pid) and spool.where("sleepy") == ["active"]
    os.kill(pid, signal.SIGSTOP)  # else the second SIGTERM makes it kill its jobs and exit
    killed = detached.spoold("stop", "--pidfile", str(pidfile), "--timeout", "0.5", "--kill")
    assert (killed.returncode, killed.stdout) == (0, f"killed (pid {pid})\n"), killed.stderr
    assert not pid_alive(pid)


def test_a_second_stop_makes_the_daemon_kill_its_jobs(
    spool: Spool, detached: Detached, log_config: LogConfig, tmp_path: Path
) -> None:
    """The daemon's rule for a second SIGTERM: running jobs are killed, and it exits."""
    config = log_config(worker={"shutdown_timeout": 60.0})
    pidfile = tmp_path / "spoold.pid"
    pid = started_pid(detached.start(config, pidfile))
    marker = tmp_path / "started.jsonl"
    spool.drop_job("sleepy", job("Sleeper", params=[60, str(marker)]))
    wait_for(marker.exists, 10, "the job to start")
    first = detached.spoold("stop", "--pidfile", str(pidfile), "--timeout", "0.5")
    assert first.returncode == 1
    second = detached.spoold("stop", "--pidfile", str(pidfile), "--timeout", "20")
    assert (second.returncode, second.stdout) == (0, f"stopped (pid {pid})\n"), second.stderr
    assert not pid_alive(pid)
