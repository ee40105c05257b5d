"""The launcher: a small single-threaded process that forks, watches and reaps job processes.

Fork gets slower as the parent grows, and a process that loaded loguru or
may hold threads is no place to fork from. So the daemon starts this
process once, as a fresh interpreter, and asks it over a socket to run each
attempt. A request may come ahead of need (``slots``): it waits here, in
order, until fewer than that many attempts run, so that a slot that frees
starts its next attempt at once rather than after a trip to the daemon; the
daemon may take a waiting one back (``unqueue``). The launcher hands the
attempt to a worker process it forked (see
worker.py): with max_jobs_per_process = 1 a spare forked ahead of need, which
runs that one attempt and exits; with N > 1 an idle worker that has run
fewer than N. It watches the attempt's deadline, kills the worker's process
group when it overruns (SIGTERM, a grace period, SIGKILL), reaps workers,
and reports each outcome. It is the only process that signals or reaps job
processes, so a process group id is never signalled after it could have
been reused.

If the daemon goes away (end of file on the socket) the launcher kills every
attempt it runs and every idle worker, and exits: the daemon's next start
reruns those jobs, and they must not still be running then. Standard
library only, and as little of it as will do: each fork copies the
launcher's page tables, and each page it shares costs a fault when written.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from spoold.exec.protocol import (
    READ_SIZE,
    FrameReader,
    FrameWriter,
    Op,
    Outcome,
    encode_frame,
    write_all,
)
from spoold.exec.sweep import become_subreaper, sweep_escaped
from spoold.exec.worker import MAX_REPORT, serve_attempts

if TYPE_CHECKING:
    from spoold.exec.messages import (
        AttemptEnd,
        ExitMessage,
        JobRequest,
        KillMessage,
        OutcomeName,
        RunMessage,
        RunRequest,
        ToLauncher,
        UnqueueMessage,
        WorkerReport,
        WorkerSetup,
    )

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for an attempt that overran
SWEEP_WINDOW = 3.0  # seconds after an attempt ends during which escaped processes are hunted
SWEEP_EVERY = 0.2


# Plain classes, compared by identity (the selector's tags and the pools hold
# them): dataclasses would import inspect into the launcher, and every fork of
# it would carry that.
class Proc:
    """A process the launcher forked: a worker for one attempt, or for several in turn.

    It reads requests from ``request_fd`` and answers each with one frame on
    its report pipe. A spare was forked before any request came.
    """

    __slots__ = ("attempt", "frames", "jobs_left", "pid", "pidfd", "profile", "report",
                 "report_fd", "request_fd")  # fmt: skip

    def __init__(
        self, pid: int, pidfd: int, report_fd: int, request_fd: int, profile: str, jobs_left: int
    ) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.report_fd = report_fd
        self.request_fd: int | None = request_fd
        self.profile = profile
        self.jobs_left = jobs_left
        self.report = bytearray()
        self.frames: FrameReader = FrameReader()
        self.attempt: Child | None = None


class Child:
    """One running attempt, as the launcher sees it."""

    __slots__ = ("deadline", "key", "kill_at", "proc", "started_at", "stop_reason")

    def __init__(self, key: str, proc: Proc, started_at: float, deadline: float | None) -> None:
        self.key = key
        self.proc = proc
        self.started_at = started_at
        self.deadline = deadline
        self.stop_reason: OutcomeName | None = None  # TIMEOUT, or INTERRUPTED (by the daemon)
        self.kill_at: float | None = None


class Launcher:
    """The launcher's loop: requests in, forks and reports out."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reader: FrameReader = FrameReader()
        self.writer = FrameWriter(sock)
        self.handlers: dict[str, Callable[[Any], None]] = {
            Op.RUN: self._on_run,
            Op.UNQUEUE: self._on_unqueue,
            Op.KILL: self._on_kill,
            Op.EXIT: self._on_exit,
        }
        self.children: dict[str, Child] = {}
        self.waiting: list[RunMessage] = []  # sent ahead: each starts when a slot frees
        self.idle: list[Proc] = []  # workers waiting for an attempt: spares, reused workers
        self.retiring: list[Proc] = []  # workers let go, not reaped yet
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ, "daemon")
        self.running = True
        # After an attempt ends, what it left behind is hunted at once and then
        # every SWEEP_EVERY until SWEEP_WINDOW has passed with nothing found.
        self.sweep_until = 0.0
        self.next_sweep = 0.0
        self.writer.send({"op": Op.READY})  # imports done: the daemon may say READY=1 now

    def serve(self) -> None:
        while self.running or self.children or self.retiring:
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
                kind, proc = tag
                # One batch can hold a process's exit and then its pipe's end of
                # file: after the exit closed the pipe, that event is stale (and
                # its fd number may already belong to a new process).
                if self._is_live(proc):
                    self._on_report_data(proc) if kind == "report" else self._on_process_exit(proc)

    def _is_live(self, proc: Proc) -> bool:
        key = self.selector.get_map().get(proc.pidfd)
        return key is not None and key.data[1] is proc

    def _sweep_if_due(self, now: float) -> None:
        if not self.sweep_until or now < self.next_sweep:
            return
        if sweep_escaped(set(self._processes())):
            self.sweep_until = now + SWEEP_WINDOW  # some are still dying: keep at it
        if now >= self.sweep_until:
            self.sweep_until = 0.0  # the window is over: no more wake-ups for it
        self.next_sweep = now + SWEEP_EVERY

    def _processes(self) -> list[int]:
        """Pids of every process the launcher forked and still watches."""
        procs = [child.proc for child in self.children.values()] + self.idle + self.retiring
        return [proc.pid for proc in procs]

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
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._daemon_gone()
            return
        for message in self.reader.feed(data):
            self._handle(message)

    def _handle(self, message: ToLauncher) -> None:
        self.handlers[message["op"]](message)

    def _on_run(self, message: RunMessage) -> None:
        self.waiting.append(message)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start the runs that wait, in order, while fewer attempts run than their slots."""
        while self.waiting and self.running:
            message = self.waiting[0]
            if len(self.children) >= message.get("slots", len(self.children) + 1):
                return
            del self.waiting[0]
            self._start(message["key"], message["request"], float(message.get("timeout") or 0))

    def _on_unqueue(self, message: UnqueueMessage | KillMessage) -> None:
        """Take back a run that waits: it never starts, and the daemon hears so."""
        for index, waiting in enumerate(self.waiting):
            if waiting["key"] == message["key"]:
                del self.waiting[index]
                self.writer.send(
                    {"op": Op.NOT_STARTED, "key": message["key"], "errno": None, "strerror": None}
                )
                return  # (else it started, or ended: its reports are on their way)

    def _on_kill(self, message: KillMessage) -> None:
        child = self.children.get(message["key"])
        if child is not None:  # else it waits (taken back), or ended: its report is on its way
            self._stop(child, Outcome.INTERRUPTED, float(message.get("grace", KILL_GRACE)))
        else:
            self._on_unqueue(message)

    def _on_exit(self, _message: ExitMessage) -> None:
        self._daemon_gone()

    def _daemon_gone(self) -> None:
        """No daemon to report to: nothing may keep running unwatched."""
        self.running = False
        self.selector.unregister(self.sock)
        self.waiting.clear()  # never started: the daemon's next start runs them
        for child in self.children.values():
            self._stop(child, Outcome.INTERRUPTED, 0.0)
        while self.idle:
            self._retire(self.idle.pop())

    # -- attempts --

    def _start(self, key: str, request: RunRequest, timeout: float) -> None:
        job, setup = _split(request)
        profile = _PROFILE_ENCODER.encode(setup)
        try:
            proc = self._process_for(job, setup, profile)
        except OSError as exc:
            # Out of processes, descriptors or memory: the launcher's trouble, not
            # the job's. The daemon puts the job back to wait and tries again later.
            self.writer.send(
                {"op": Op.NOT_STARTED, "key": key, "errno": exc.errno, "strerror": exc.strerror}
            )
            return
        now = time.monotonic()
        child = Child(
            key=key,
            proc=proc,
            started_at=time.time(),
            deadline=now + timeout if timeout > 0 else None,
        )
        proc.attempt = child
        proc.jobs_left -= 1
        self.children[key] = child
        self.writer.send(
            {"op": Op.STARTED, "key": key, "pid": proc.pid, "started_at": child.started_at}
        )
        # A process per attempt: have the next one ready meanwhile (idle workers
        # of other profiles were let go above, so any idle one would do).
        if _max_jobs(setup) == 1 and not self.idle:
            self._fork_spare(setup, profile)

    def _process_for(self, job: JobRequest, setup: WorkerSetup, profile: str) -> Proc:
        """A process that is running ``job`` now: an idle worker, or a new fork.

        Idle workers are reused workers between attempts, and spares: with
        max_jobs_per_process = 1, a process forked and set up (its own
        session, limits, user) ahead of its one attempt, so that an attempt
        starts without waiting for a fork. ``profile`` is ``setup`` as text, what
        a worker is set up with; another one needs another worker.
        """
        for proc in [p for p in self.idle if p.profile != profile]:  # the config changed
            self.idle.remove(proc)
            self._retire(proc)
        while self.idle:
            proc = self.idle.pop()
            if _hand_over(proc, job):
                return proc
            self._retire(proc)  # it died between attempts; its exit is reaped as usual
        return self._watch(_fork_worker(setup, job, _max_jobs(setup), profile=profile))

    def _fork_spare(self, setup: WorkerSetup, profile: str) -> None:
        try:
            spare = _fork_worker(setup, None, 1, profile=profile)
        except OSError:
            return  # no room for it now: the next attempt forks its own process
        self.idle.append(self._watch(spare))

    def _watch(self, proc: Proc) -> Proc:
        self.selector.register(proc.pidfd, selectors.EVENT_READ, ("exit", proc))
        self.selector.register(proc.report_fd, selectors.EVENT_READ, ("report", proc))
        return proc

    def _retire(self, proc: Proc) -> None:
        """Let a reused worker go: end of file on its requests makes it exit."""
        if proc.request_fd is not None:
            os.close(proc.request_fd)
            proc.request_fd = None
        self.retiring.append(proc)
        if not self.running:
            _signal_group(proc.pid, signal.SIGKILL)

    def _stop(self, child: Child, reason: OutcomeName, grace: float) -> None:
        if child.stop_reason is None:
            child.stop_reason = reason
        _signal_group(child.proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        kill_at = time.monotonic() + grace
        child.kill_at = min(child.kill_at or kill_at, kill_at)
        child.deadline = None

    def _enforce_deadlines(self, now: float) -> None:
        for child in list(self.children.values()):
            if child.deadline is not None and now >= child.deadline:
                self._stop(child, Outcome.TIMEOUT, KILL_GRACE)
            elif child.kill_at is not None and now >= child.kill_at:
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.kill_at = None

    def _on_report_data(self, proc: Proc) -> None:
        if not _drain(proc):
            self.selector.unregister(proc.report_fd)
        self._take_reports(proc)

    def _take_reports(self, proc: Proc) -> None:
        """A worker's frame is its attempt's report: the attempt is over."""
        data = bytes(proc.report)
        proc.report.clear()
        try:
            reports = list(proc.frames.feed(data))
        except ValueError:  # not our worker's frame: something in the job wrote there
            _signal_group(proc.pid, signal.SIGKILL)  # its exit reports the attempt as crashed
            return
        for report in reports:
            child = proc.attempt
            if child is None or child.stop_reason is not None:
                continue  # being killed: its outcome is the kill's, reported at exit
            self._finish(child, describe_outcome(child, 0, report))
            last = bool(report.get("last"))  # it exits now: recycled, or over its memory
            if not last and proc.jobs_left > 0 and proc.request_fd is not None and self.running:
                self.idle.append(proc)
            else:
                self._retire(proc)
            self._start_waiting()  # a slot is free: the next run, on this worker if it stays

    def _on_process_exit(self, proc: Proc) -> None:
        # Signal the group before reaping its leader: until the leader is
        # reaped its pid (and so the group id) cannot be reused. This also
        # kills whatever the job left running in its group.
        _signal_group(proc.pid, signal.SIGKILL)
        _pid, status = os.waitpid(proc.pid, 0)
        if proc.report_fd in self.selector.get_map():
            _drain(proc)
            self.selector.unregister(proc.report_fd)
        self._take_reports(proc)
        self.selector.unregister(proc.pidfd)
        for fd in (proc.pidfd, proc.report_fd, proc.request_fd):
            if fd is not None:
                os.close(fd)
        proc.request_fd = None
        for pool in (self.idle, self.retiring):
            if proc in pool:
                pool.remove(proc)
        child = proc.attempt
        if child is not None:
            self._finish(child, describe_outcome(child, os.waitstatus_to_exitcode(status), None))
            self._start_waiting()
        self.sweep_until = time.monotonic() + SWEEP_WINDOW
        self.next_sweep = 0.0  # at once: its orphans are the launcher's children already

    def _finish(self, child: Child, outcome: AttemptEnd) -> None:
        del self.children[child.key]
        child.proc.attempt = None
        self.writer.send({"op": Op.FINISHED, "key": child.key, **outcome})


# A worker's setup as text (``profile``): json.dumps(setup, sort_keys=True, default=repr)
# without building an encoder at every start.
_PROFILE_ENCODER = json.JSONEncoder(sort_keys=True, default=repr)


def _max_jobs(setup: WorkerSetup) -> int:
    return max(1, int(setup.get("max_jobs_per_process") or 1))


JOB_FIELDS = ("job_id", "class", "method", "params", "parent")


def _split(request: RunRequest) -> tuple[JobRequest, WorkerSetup]:
    """The job (what a worker is sent per attempt), and the rest: how a worker is set up."""
    job: JobRequest = {
        "job_id": request["job_id"],
        "class": request["class"],
        "method": request["method"],
        "params": request["params"],
    }
    if "parent" in request:
        job["parent"] = request["parent"]
    setup = {key: value for key, value in request.items() if key not in JOB_FIELDS}
    return job, cast("WorkerSetup", setup)


def _hand_over(proc: Proc, job: JobRequest) -> bool:
    """Send the next job to an idle reused worker; False if it is gone."""
    assert proc.request_fd is not None
    try:
        write_all(proc.request_fd, encode_frame(job))
    except OSError:  # EPIPE: it exited (crashed, or was killed) while idle
        return False
    return True


def _fork_worker(
    setup: WorkerSetup, job: JobRequest | None, max_jobs: int, *, profile: str
) -> Proc:
    """Fork a worker, set up from ``setup``, for up to ``max_jobs`` attempts: ``job``
    first, or (a spare, no job) waiting for its first attempt on the request pipe.

    Raises OSError with nothing left behind (no fds, no process) if any step fails.
    """
    report_read, report_write = os.pipe()
    try:
        request_read, request_write = os.pipe()
    except OSError:
        _close(report_read, report_write)
        raise
    try:
        pid = os.fork()
    except OSError:
        _close(report_read, report_write, request_read, request_write)
        raise
    if pid == 0:  # the worker
        try:
            _close(report_read, request_write)
            serve_attempts(setup, job, report_write, request_read, max_jobs)
        finally:
            os._exit(70)
    _close(report_write, request_read)
    try:
        pidfd = _pidfd_or_kill(pid, report_read)
    except OSError:
        os.close(request_write)
        raise
    return Proc(
        pid=pid,
        pidfd=pidfd,
        report_fd=report_read,
        request_fd=request_write,
        profile=profile,
        jobs_left=max_jobs,
    )


def _pidfd_or_kill(pid: int, report_read: int) -> int:
    os.set_blocking(report_read, False)
    try:
        return os.pidfd_open(pid)
    except OSError:
        os.kill(pid, signal.SIGKILL)  # it cannot be watched, so it must not run
        os.waitpid(pid, 0)
        os.close(report_read)
        raise


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _drain(proc: Proc) -> bool:
    """Read what the process wrote; False at end of file."""
    while True:
        try:
            data = os.read(proc.report_fd, READ_SIZE)
        except BlockingIOError:
            return True
        if not data:
            return False
        if len(proc.report) < MAX_REPORT:
            proc.report += data


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def describe_outcome(child: Child, exit_code: int, report: WorkerReport | None) -> AttemptEnd:
    """Turn how the attempt ended, and what it reported, into (most of) a history entry.

    A timeout gets no text: the daemon words it, with the limit it set.
    """
    # Crashed unless something says otherwise: the process ended without a report.
    entry: AttemptEnd = {
        "started_at": child.started_at,
        "finished_at": time.time(),
        "outcome": Outcome.CRASHED,
    }
    if child.stop_reason is Outcome.TIMEOUT:
        entry["outcome"] = Outcome.TIMEOUT
    elif child.stop_reason is Outcome.INTERRUPTED:
        entry.update({"outcome": Outcome.INTERRUPTED, "error": "stopped by the daemon"})
    elif report is not None and report.get("ok"):
        entry.update({"outcome": Outcome.OK, "result": report.get("result")})
    elif report is not None:
        entry.update(
            {
                "outcome": Outcome.ERROR,
                "error": report.get("error"),
                "traceback": report.get("traceback"),
            }
        )
    else:
        _add_crash_details(entry, exit_code)
    return entry


def _add_crash_details(entry: AttemptEnd, exit_code: int) -> None:
    if exit_code < 0:
        name = signal.Signals(-exit_code).name if -exit_code in signal.valid_signals() else "?"
        entry.update({"error": f"killed by signal {-exit_code} ({name})", "signal": -exit_code})
        return
    entry.update(
        {
            "error": f"exited with status {exit_code} without reporting a result",
            "exit_code": exit_code,
        }
    )


def _give_back_freed_heap() -> None:
    """Hand back to the kernel the heap pages the imports used and freed (glibc's malloc_trim).

    Each attempt is a fork of this process, and each resident page is one more
    to map in every child: at the hello this takes the launcher from about 14.1
    to 13.4 MB (bench/launcher.py).
    """
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def main(argv: list[str]) -> None:
    # Ctrl-C and a service manager's SIGTERM are the daemon's to handle: it
    # drains its jobs and then tells the launcher to stop.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    become_subreaper()  # see sweep.py: what ended attempts leave behind comes to this process
    _give_back_freed_heap()
    Launcher(socket.socket(fileno=int(argv[1]))).serve()


if __name__ == "__main__":
    main(sys.argv)
