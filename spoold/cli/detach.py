"""``spoold run --detach`` and ``spoold stop``: a self-daemonizing daemon and its pidfile.

Starting: the command forks a child that enters python-daemon's
``DaemonContext`` (which forks twice more and leaves the daemon in a new
session, cwd ``/``, umask 027, standard streams on ``/dev/null``). The
original command waits on a pipe until the daemon has done its first scan
and says ``ready``, so its exit status 0 means "jobs are being taken". An
error before that (the pidfile or the spool held by another daemon, a log
file that cannot be opened) travels through the same pipe as text, and the
command prints it and exits 1.

The pidfile is ``spoold.cli.pidfile``: ``flock``-held for the daemon's whole life.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoold.cli.pidfile import DetachError, FlockPidfile, PidfileState, held_message, pidfile_state
from spoold.config import Config, ConfigError
from spoold.durations import seconds
from spoold.errors import describe_os_error

READY_TIMEOUT = 30.0  # seconds the starting command waits for the first scan
STOP_POLL = 0.05
KILL_WAIT = 10.0  # seconds to wait for a SIGKILLed daemon to be gone


# -- starting --

DaemonMain = Callable[[Config, Callable[[], None]], int]


def start_detached(config: Config, pidfile: Path, run: DaemonMain) -> int:
    """Detach ``run(config, on_ready)`` as a daemon; return its pid once it is ready.

    Raises DetachError with the daemon's own reason if it could not start.
    In the daemon itself this function never returns: it exits with the
    status ``run`` returned.
    """
    if config.log.file is None:
        raise ConfigError(
            "--detach needs a log file: set [log] file in the config"
            " (a detached daemon has no terminal to log to)"
        )
    pidfile = Path(os.path.abspath(pidfile))  # the daemon works in /
    state = pidfile_state(pidfile)
    if state.running:
        raise DetachError(held_message(state))
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os._exit(_daemon_side(config, pidfile, write_end, run))
    os.close(write_end)
    try:
        return _await_ready(read_end, READY_TIMEOUT, config.log.file)
    finally:
        os.close(read_end)
        os.waitpid(child, 0)  # the first fork inside DaemonContext exits at once


class _Reporter:
    """The daemon's end of the readiness pipe: one text line per message."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, kind: str, text: str = "") -> None:
        if self.fd is None:
            return
        line = f"{kind} {text}".strip().replace("\n", " ") + "\n"
        with contextlib.suppress(OSError):  # the starting command gave up waiting
            os.write(self.fd, line.encode("utf-8", "replace"))

    def ready(self) -> None:
        self.send("ready")
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _daemon_side(config: Config, pidfile: Path, write_end: int, run: DaemonMain) -> int:
    """In the forked child: become the daemon and run; return the exit status."""
    reporter = _Reporter(write_end)
    try:
        context = _daemon_context(pidfile, write_end)
        context.open()  # forks twice: from here on this is the daemon
    except BaseException as exc:  # every reason must reach the command
        reporter.send("error", describe_os_error(exc))
        return 1
    reporter.send("pid", str(os.getpid()))
    try:
        return run(config, reporter.ready)
    except BaseException as exc:  # logged, or reported to the command
        _report_failure(reporter, exc)
        return 1
    finally:
        context.close()
        _close_log_sinks()


def _daemon_context(pidfile: Path, write_end: int) -> Any:
    import daemon  # only for --detach

    return daemon.DaemonContext(
        detach_process=True,  # never auto-detected: under systemd, run in the foreground
        umask=0o027,  # records and logs are not world-readable
        working_directory="/",
        files_preserve=[write_end],  # everything else is opened after the forks
        stdin=None,  # None: /dev/null
        stdout=None,
        stderr=None,  # the log file is [log] file; the terminal is gone
        signal_map={
            # Not python-daemon's terminate() (SystemExit at any line): until the
            # daemon installs its flag-only handlers, SIGTERM ends it outright, as
            # it would the foreground `spoold run` at the same point.
            signal.SIGTERM: signal.SIG_DFL,
            signal.SIGHUP: None,  # ignored until the daemon's reload handler is in
            signal.SIGTSTP: None,
            signal.SIGTTIN: None,
            signal.SIGTTOU: None,
        },
        pidfile=FlockPidfile(pidfile),
    )


def _report_failure(reporter: _Reporter, exc: BaseException) -> None:
    """Before ready, the starting command prints it; after, only the log can say it."""
    if reporter.fd is not None:
        reporter.send("error", describe_os_error(exc))
        return
    with contextlib.suppress(Exception):
        from loguru import logger

        logger.opt(exception=exc).critical("the daemon failed: {}", describe_os_error(exc))


def _close_log_sinks() -> None:
    if "loguru" in sys.modules:
        with contextlib.suppress(Exception):
            from loguru import logger

            logger.remove()  # flushes and closes the file before os._exit


def _await_ready(read_end: int, timeout: float, log_file: Path | None) -> int:
    """Read the daemon's messages until ``ready``; return its pid, or raise DetachError."""
    deadline = time.monotonic() + timeout
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([read_end], [], [], max(0.0, remaining))
        if not readable:
            pid = _field(buffer, "pid")
            raise DetachError(
                f"the daemon (pid {pid or '?'}) was not ready within {seconds(timeout)};"
                f" it may still be starting: see {log_file}"
            )
        chunk = os.read(read_end, 4096)
        buffer += chunk
        if not chunk or _field(buffer, "ready") is not None:
            return _outcome(buffer, log_file)


def _field(buffer: bytes, kind: str) -> str | None:
    for line in buffer.decode("utf-8", "replace").splitlines():
        word, _, rest = line.partition(" ")
        if word == kind:
            return rest
    return None


def _outcome(buffer: bytes, log_file: Path | None) -> int:
    error = _field(buffer, "error")
    if error is not None:
        raise DetachError(error)
    pid = _field(buffer, "pid")
    if _field(buffer, "ready") is None or not pid:
        raise DetachError(f"the daemon exited before it was ready: see {log_file}")
    return int(pid)


# -- stopping --


@dataclass(frozen=True)
class StopOutcome:
    """What ``spoold stop`` did: ``pid`` None when nothing was running."""

    state: PidfileState
    pid: int | None
    killed: bool = False


def stop_daemon(pidfile: Path, timeout: float, *, kill: bool = False) -> StopOutcome:
    """SIGTERM the daemon holding ``pidfile`` and wait until it is gone.

    Nothing running (no pidfile, or a stale one) is not an error, as with
    ``systemctl stop``. After ``timeout`` seconds: DetachError, or with
    ``kill`` a SIGKILL and a wait for the process to go.
    """
    state = pidfile_state(pidfile)
    if not state.running:
        return StopOutcome(state, None)
    pid = _pid_of_running(pidfile, state)
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pidfile, pid, timeout):
        return StopOutcome(state, pid)
    if not kill:
        raise DetachError(
            f"pid {pid} still running after {seconds(timeout)} (add --kill to SIGKILL it)"
        )
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(pidfile, pid, KILL_WAIT):
        raise DetachError(f"pid {pid} still running {seconds(KILL_WAIT)} after SIGKILL")
    return StopOutcome(state, pid, killed=True)


def _pid_of_running(pidfile: Path, state: PidfileState) -> int:
    """The pid in a locked pidfile (the daemon writes it just after locking)."""
    deadline = time.monotonic() + 1.0
    while state.pid is None and state.running and time.monotonic() < deadline:
        time.sleep(STOP_POLL)
        state = pidfile_state(pidfile)
    if state.pid is None or state.pid <= 0:
        raise DetachError(f"{pidfile} is locked but holds no pid")
    return state.pid


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it went by itself
    except PermissionError:
        raise DetachError(f"not allowed to signal pid {pid}: run as its user or root") from None


def _wait_gone(pidfile: Path, pid: int, timeout: float) -> bool:
    """Poll until the pidfile lock is free and ``pid`` has exited; False on timeout."""
    deadline = time.monotonic() + timeout
    while pidfile_state(pidfile).running or process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(STOP_POLL)
    return True


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited daemon nobody reaped yet)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2 :].split()[0] not in ("Z", "X")
