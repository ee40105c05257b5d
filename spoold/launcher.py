"""The launcher: a small single-threaded process that forks, watches and reaps attempts.

The daemon runs threads (watchdog's observer), and forking from a threaded
process can deadlock the child; fork also gets slower as the parent grows.
So the daemon starts this process once, as a fresh interpreter, and asks it
over a socket to run each attempt. The launcher forks the attempt's process,
watches its deadline through a pidfd, kills its process group when it
overruns (SIGTERM, a grace period, SIGKILL), reaps it, and reports the
outcome. It is the only process that signals or reaps job processes, so a
process group id is never signalled after it could have been reused.

If the daemon goes away (end of file on the socket) the launcher kills every
attempt it runs and exits: the daemon's next start reruns those jobs, and
they must not still be running then. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from spoold.protocol import FrameReader, FrameWriter, Message
from spoold.sweep import sweep_escaped
from spoold.worker import run_attempt

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for an attempt that overran
SWEEP_WINDOW = 3.0  # seconds after an attempt ends during which escaped processes are hunted
SWEEP_EVERY = 0.2
_PR_SET_CHILD_SUBREAPER = 36
MAX_REPORT = 16 * 1024 * 1024  # a report larger than this is cut; the attempt is an error


@dataclass
class Child:
    """One running attempt, as the launcher sees it."""

    key: str
    pid: int
    pidfd: int
    report_fd: int
    started_at: float
    deadline: float | None
    timeout: float
    report: bytearray = field(default_factory=bytearray)
    stop_reason: str | None = None  # "timeout" or "stopped"
    kill_at: float | None = None


class Launcher:
    """The launcher's loop: requests in, forks and reports out."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reader = FrameReader()
        self.writer = FrameWriter(sock)
        self.children: dict[str, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ, "daemon")
        self.running = True
        # After an attempt ends, what it left behind is hunted at once and then
        # every SWEEP_EVERY until SWEEP_WINDOW has passed with nothing found.
        self.sweep_until = 0.0
        self.next_sweep = 0.0

    def serve(self) -> None:
        while self.running or self.children:
            self._wait_and_dispatch()
            if self.writer.broken and self.running:
                self._daemon_gone()
            now = time.monotonic()
            self._enforce_deadlines(now)
            self._sweep_if_due(now)
            self._watch_writes()
        sweep_escaped(set())

    def _wait_and_dispatch(self) -> None:
        for key, _mask in self.selector.select(self._next_timeout()):
            tag = key.data
            if tag == "daemon":
                self._from_daemon()
            elif isinstance(tag, tuple):
                kind, child = tag
                # One batch can hold a child's exit and then its pipe's end of file:
                # after the exit closed the pipe, that event is stale (and its fd
                # number may already belong to a new attempt).
                if self._is_live(child):
                    self._on_report_data(child) if kind == "report" else self._on_exit(child)

    def _sweep_if_due(self, now: float) -> None:
        if not self.sweep_until or now < self.next_sweep:
            return
        if sweep_escaped(set(self._leaders())):
            self.sweep_until = now + SWEEP_WINDOW  # some are still dying: keep at it
        if now >= self.sweep_until:
            self.sweep_until = 0.0  # the window is over: no more wake-ups for it
        self.next_sweep = now + SWEEP_EVERY

    def _is_live(self, child: Child) -> bool:
        return self.children.get(child.key) is child

    def _leaders(self) -> list[int]:
        return [child.pid for child in self.children.values()]

    def _next_timeout(self) -> float | None:
        times = [
            t for c in self.children.values() for t in (c.kill_at, c.deadline) if t is not None
        ]
        if self.sweep_until:
            times.append(self.next_sweep)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _watch_writes(self) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.writer.pending else 0)
        if self.running:
            self.selector.modify(self.sock, events, "daemon")

    # -- requests from the daemon --

    def _from_daemon(self) -> None:
        self.writer.flush()
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            self._daemon_gone()
            return
        for message in self.reader.feed(data):
            self._handle(message)

    def _handle(self, message: Message) -> None:
        op = message["op"]
        if op == "run":
            self._start(message["key"], message["request"], float(message.get("timeout") or 0))
        elif op == "kill" and message["key"] in self.children:
            self._stop(
                self.children[message["key"]], "stopped", float(message.get("grace", KILL_GRACE))
            )
        elif op == "exit":
            self._daemon_gone()

    def _daemon_gone(self) -> None:
        """No daemon to report to: nothing may keep running unwatched."""
        self.running = False
        self.selector.unregister(self.sock)
        for child in self.children.values():
            self._stop(child, "stopped", 0.0)

    # -- attempts --

    def _start(self, key: str, request: dict[str, Any], timeout: float) -> None:
        try:
            pid, pidfd, report_read = _fork_attempt(request)
        except OSError as exc:
            # Out of processes, descriptors or memory: the launcher's trouble, not
            # the job's. The daemon puts the job back to wait and tries again later.
            self.writer.send({"op": "not_started", "key": key, "error": _os_error(exc)})
            return
        now = time.monotonic()
        child = Child(
            key=key,
            pid=pid,
            pidfd=pidfd,
            report_fd=report_read,
            started_at=time.time(),
            deadline=now + timeout if timeout > 0 else None,
            timeout=timeout,
        )
        self.children[key] = child
        self.selector.register(child.pidfd, selectors.EVENT_READ, ("exit", child))
        self.selector.register(child.report_fd, selectors.EVENT_READ, ("report", child))
        self.writer.send({"op": "started", "key": key, "pid": pid, "started_at": child.started_at})

    def _stop(self, child: Child, reason: str, grace: float) -> None:
        if child.stop_reason is None:
            child.stop_reason = reason
        _signal_group(child.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        kill_at = time.monotonic() + grace
        child.kill_at = min(child.kill_at or kill_at, kill_at)
        child.deadline = None

    def _enforce_deadlines(self, now: float) -> None:
        for child in list(self.children.values()):
            if child.deadline is not None and now >= child.deadline:
                self._stop(child, "timeout", KILL_GRACE)
            elif child.kill_at is not None and now >= child.kill_at:
                _signal_group(child.pid, signal.SIGKILL)
                child.kill_at = None

    def _on_report_data(self, child: Child) -> None:
        if not _drain(child):
            self.selector.unregister(child.report_fd)

    def _on_exit(self, child: Child) -> None:
        # Signal the group before reaping its leader: until the leader is
        # reaped its pid (and so the group id) cannot be reused. This also
        # kills whatever the job left running in its group.
        _signal_group(child.pid, signal.SIGKILL)
        _pid, status = os.waitpid(child.pid, 0)
        if child.report_fd in self.selector.get_map():
            _drain(child)
            self.selector.unregister(child.report_fd)
        self.selector.unregister(child.pidfd)
        os.close(child.pidfd)
        os.close(child.report_fd)
        del self.children[child.key]
        outcome = describe_outcome(child, os.waitstatus_to_exitcode(status))
        self.writer.send({"op": "finished", "key": child.key, **outcome})
        self.sweep_until = time.monotonic() + SWEEP_WINDOW
        self.next_sweep = 0.0  # at once: its orphans are the launcher's children already


def _fork_attempt(request: dict[str, Any]) -> tuple[int, int, int]:
    """Fork the attempt's process; return its pid, a pidfd and the read end of its report pipe.

    Raises OSError with nothing left behind (no fds, no process) if any step fails.
    """
    report_read, report_write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(report_read)
        os.close(report_write)
        raise
    if pid == 0:  # the attempt's process
        try:
            os.close(report_read)
            run_attempt(request, report_write)
        finally:
            os._exit(70)
    os.close(report_write)
    os.set_blocking(report_read, False)
    try:
        return pid, os.pidfd_open(pid), report_read
    except OSError:
        os.kill(pid, signal.SIGKILL)  # it cannot be watched, so it must not run
        os.waitpid(pid, 0)
        os.close(report_read)
        raise


def _os_error(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "?")
    return f"{name}: {exc.strerror}"


def _drain(child: Child) -> bool:
    """Read what the attempt wrote; False at end of file."""
    while True:
        try:
            data = os.read(child.report_fd, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        if len(child.report) < MAX_REPORT:
            child.report += data


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def describe_outcome(child: Child, exit_code: int) -> dict[str, Any]:
    """Turn how the process ended, and what it reported, into a history entry."""
    entry: dict[str, Any] = {"started_at": child.started_at, "finished_at": time.time()}
    report = _parse_report(child.report)
    if child.stop_reason == "timeout":
        entry.update(outcome="timeout", error=f"timed out after {child.timeout:g}s and was killed")
    elif child.stop_reason == "stopped":
        entry.update(outcome="interrupted", error="stopped by the daemon")
    elif report is not None and report.get("ok"):
        entry.update(outcome="ok", result=report.get("result"))
    elif report is not None:
        entry.update(outcome="error", error=report.get("error"), traceback=report.get("traceback"))
    else:
        entry.update(outcome="crashed", **_crash_details(exit_code))
    return entry


def _parse_report(data: bytearray) -> dict[str, Any] | None:
    if not data:
        return None
    if len(data) >= MAX_REPORT:
        return {"ok": False, "error": f"the job's report was larger than {MAX_REPORT} bytes"}
    try:
        report = json.loads(data)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _crash_details(exit_code: int) -> dict[str, Any]:
    if exit_code < 0:
        name = signal.Signals(-exit_code).name if -exit_code in signal.valid_signals() else "?"
        return {"error": f"killed by signal {-exit_code} ({name})", "signal": -exit_code}
    return {
        "error": f"exited with status {exit_code} without reporting a result",
        "exit_code": exit_code,
    }


def main(argv: list[str]) -> None:
    # Ctrl-C and a service manager's SIGTERM are the daemon's to handle: it
    # drains its jobs and then tells the launcher to stop.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    Launcher(socket.socket(fileno=int(argv[1]))).serve()


if __name__ == "__main__":
    main(sys.argv)
