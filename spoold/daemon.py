"""The daemon: one loop that owns every decision.

Threads (watchdog's observer) only feed it file names; the launcher only
runs attempts and reports back; signal handlers only set flags. Each turn
of the loop takes in new files, releases jobs whose time has come, starts
what the free worker slots allow, and then waits on one selector for the
next wake-up: a nudge, a signal, a report from the launcher, or a timer.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

from loguru import logger

from spoold import policy, recovery
from spoold.config import Config, ConfigError, load_config
from spoold.intake import Accepted, NotYet, Refused, examine, is_directory
from spoold.job import Job, Rejected, check_allowed
from spoold.launcher import KILL_GRACE
from spoold.launcher_client import LauncherClient, LauncherGone
from spoold.logs import job_logger, setup_logging
from spoold.outcomes import Filer
from spoold.queue import DueQueue, ReadyEntry, ReadyQueue
from spoold.spool import Spool, SpoolLock, is_job_name
from spoold.store import JobStore
from spoold.systemd import notify
from spoold.watcher import Watcher

PARSED_CACHE_LIMIT = 1000  # ready jobs kept parsed in memory; the rest are read again at claim


@dataclass
class Running:
    job: Job
    limits: policy.Limits


@dataclass
class Flags:
    """Set by signal handlers, read by the loop (a handler must not log or lock)."""

    stop: int = 0
    reload: bool = False


def run_daemon(config: Config, *, burst: bool = False) -> int:
    """Run until stopped (with ``burst``: until the ready work is done); return the exit status."""
    setup_logging(config.log)
    return Daemon(config, burst=burst).run()


class Daemon:
    def __init__(self, config: Config, *, burst: bool) -> None:
        self.config = config
        self.burst = burst
        self.spool = Spool(config.spool.dir)
        self.store = JobStore(self.spool, durable=config.spool.fsync)
        self.ready = ReadyQueue()
        self.due = DueQueue()
        self.filer = Filer(self.store, self.due)
        self.running: dict[str, Running] = {}
        self.incomplete: dict[str, float] = {}  # name -> when to look at it again
        self.ignored: set[str] = set()  # folders someone made inside incoming/
        self.flags = Flags()
        self.stopping_since: float | None = None
        self.kills_sent = 0
        self.next_rescan = 0.0

    # -- life cycle --

    def run(self) -> int:
        self.spool.create()
        lock = SpoolLock(self.spool)
        lock.acquire()
        try:
            self._start()
            while True:
                self._turn(time.time())
                if self._finished():
                    break
                self._wait(self._timeout(time.time()))
        finally:
            self._close()
            lock.release()
        return 1 if self.burst and (self.filer.tally.failed or self.filer.tally.rejected) else 0

    def _start(self) -> None:
        recovery.tidy(self.spool)
        self.launcher = LauncherClient()  # a fresh interpreter, started before any thread
        recovery.recover_active(self.spool, self.config, self.filer)
        for name in recovery.load_scheduled(self.spool, self.config, self.filer):
            self._claim_and_reject("scheduled", name)
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")
        self.selector.register(self.launcher.fileno(), selectors.EVENT_READ, "launcher")
        self._install_signal_handlers()
        self.watcher = Watcher(self.spool.folder("incoming"), self.wake_write)
        self.watcher.start()
        self._rescan(time.time())
        notify("READY=1", f"STATUS={self._status()}")
        logger.info("ready: watching {} ({})", self.spool.folder("incoming"), self._status())

    def _install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.flags.stop += 1

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.flags.reload = True

    def _close(self) -> None:
        if hasattr(self, "watcher"):
            self.watcher.stop()
        if hasattr(self, "launcher"):
            self.launcher.close()
        signal.set_wakeup_fd(-1)
        logger.info("stopped")

    def _finished(self) -> bool:
        if self.stopping_since is not None:
            return not self.running
        if not self.burst:
            return False
        waiting_retries = self.filer.rescheduled & self.due.names()
        return not (self.running or self.ready or self.incomplete or waiting_retries)

    def _status(self) -> str:
        return f"{len(self.running)} running, {len(self.ready)} ready, {len(self.due)} scheduled"

    # -- one turn of the loop --

    def _turn(self, now: float) -> None:
        self._handle_flags(now)
        self._take_events(now)
        if now >= self.next_rescan or not self.watcher.healthy():
            self._rescan(now)
        self._look_again(now)
        self._release_due(now)
        self._start_ready()
        self.store.sync_claims()

    def _timeout(self, now: float) -> float:
        times = [self.next_rescan, *self.incomplete.values()]
        next_due = self.due.next_due()
        if next_due is not None:
            times.append(next_due)
        if self.stopping_since is not None and not self.kills_sent:
            times.append(self.stopping_since + self.config.worker.shutdown_timeout)
        return max(0.0, min(times) - now)

    def _wait(self, timeout: float) -> None:
        for key, _mask in self.selector.select(timeout):
            if key.data == "wake":
                _drain_pipe(self.wake_read)
            else:
                self._from_launcher()

    # -- intake --

    def _take_events(self, now: float) -> None:
        for name, closed in self.watcher.take_names():
            if not name:
                self.next_rescan = now  # the folder itself changed: list it again
            elif is_job_name(name):
                self._look_at(name, now, closed=closed)

    def _rescan(self, now: float) -> None:
        if not self.watcher.healthy():
            self._restart_watcher()
        for name in self.spool.job_names("incoming"):
            if name not in self.incomplete:
                self._look_at(name, now, closed=False)
        self.next_rescan = now + self.config.spool.rescan_interval

    def _restart_watcher(self) -> None:
        logger.warning("the watch on incoming/ stopped working; restarting it and rescanning")
        self.spool.create()
        try:
            self.watcher.restart()
        except OSError as exc:
            logger.error("cannot watch incoming/ ({}); relying on rescans", exc)

    def _look_again(self, now: float) -> None:
        for name, when in list(self.incomplete.items()):
            if when <= now:
                self._look_at(name, now, closed=False)

    def _look_at(self, name: str, now: float, *, closed: bool) -> None:
        if ("incoming", name) in self.ready or name in self.ignored:
            return
        verdict = examine(self.spool, "incoming", name, self.config, now=now, closed=closed)
        self.incomplete.pop(name, None)
        if isinstance(verdict, NotYet):
            self.incomplete[name] = verdict.look_again_at
        elif isinstance(verdict, Refused):
            self._claim_and_reject("incoming", name, verdict)
        elif isinstance(verdict, Accepted):
            self._accept(name, verdict.job, now)

    def _accept(self, name: str, job: Job, now: float) -> None:
        job_logger(job.id).info(
            "job {} received: {}.{} (priority {})", job.id, job.class_path, job.method, job.priority
        )
        if job.run_at is not None and job.run_at > now:
            claimed = self._claim("incoming", name, job)
            if claimed is not None:
                self.filer.deferred(claimed)
            return
        cached = job if len(self.ready) < PARSED_CACHE_LIMIT else None
        self.ready.push("incoming", name, job.priority, job.enqueued_at, cached)

    def _claim_and_reject(self, state: str, name: str, refused: Refused | None = None) -> None:
        if is_directory(self.spool, state, name):
            self.ignored.add(name)
            logger.warning("{}/{} is a folder, not a job file; leaving it alone", state, name)
            return
        if refused is None:
            refused = Refused(name.removesuffix(".json"), "the scheduled job file is damaged", b"")
        job_id = self.store.fresh_id() if self.store.id_taken(refused.job_id) else refused.job_id
        try:
            self.store.move_to_active(state, name, job_id)
        except FileNotFoundError:
            return
        self.filer.reject(replace(refused, job_id=job_id), file_name=name)

    # -- scheduling and starting --

    def _release_due(self, now: float) -> None:
        for entry in self.due.pop_due(now):
            self.ready.push("scheduled", entry.name, entry.priority, entry.enqueued_at, None)

    def _start_ready(self) -> None:
        while self.ready and self.stopping_since is None:
            if len(self.running) >= self.config.worker.concurrency:
                return
            entry = self.ready.pop()
            job = self._claim_entry(entry)
            if job is not None:
                self._launch(job)

    def _claim_entry(self, entry: ReadyEntry) -> Job | None:
        """Re-check a ready job (the allowlist may have been reloaded) and claim it."""
        job = entry.job
        if job is None:
            verdict = examine(
                self.spool, entry.state, entry.name, self.config, now=time.time(), closed=True
            )
            if not isinstance(verdict, Accepted):
                if isinstance(verdict, Refused):
                    self._claim_and_reject(entry.state, entry.name, verdict)
                return None
            job = verdict.job
        try:
            check_allowed(job, self.config)
        except Rejected as exc:
            self._claim_and_reject(entry.state, entry.name, Refused(job.id, str(exc), b""))
            return None
        return self._claim(entry.state, entry.name, job)

    def _claim(self, state: str, name: str, job: Job) -> Job | None:
        if self.store.id_taken(job.id, source=(state, name)):
            fresh = self.store.fresh_id()
            job_logger(job.id).warning(
                "job {} renamed to {}: the id is already taken", job.id, fresh
            )
            job = replace(job, id=fresh, clean=False)
        try:
            return self.store.claim(state, name, job)
        except FileNotFoundError:
            return None  # removed by hand meanwhile

    def _launch(self, job: Job) -> None:
        limits = policy.limits_for(job, self.config.worker)
        request = {
            "class": job.class_path,
            "method": job.method,
            "params": job.params,
            "python_path": [str(p) for p in self.config.worker.python_path],
            "memory_limit": limits.memory_limit,
        }
        self.running[job.id] = Running(job, limits)
        try:
            self.launcher.run(job.id, request, limits.timeout)
        except LauncherGone:
            self._launcher_died()

    # -- reports from the launcher --

    def _from_launcher(self) -> None:
        try:
            messages = self.launcher.receive()
        except LauncherGone:
            self._launcher_died()
            return
        for message in messages:
            self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        running = self.running.get(message["key"])
        if running is None:
            return
        job = running.job
        if message["op"] == "started":
            job_logger(job.id).info(
                "job {} started: {}.{} attempt {} (pid {})",
                job.id,
                job.class_path,
                job.method,
                job.attempts + 1,
                message["pid"],
            )
            return
        del self.running[job.id]
        entry = {"attempt": job.attempts + 1, **_without(message, "op", "key")}
        self._route(running, entry)

    def _route(self, running: Running, entry: dict[str, Any]) -> None:
        job = running.job
        try:
            if entry["outcome"] == "ok":
                self.filer.succeeded(job, entry)
            elif entry["outcome"] == "interrupted":
                entry.update(
                    cause=policy.SHUTDOWN, error="killed at shutdown after shutdown_timeout"
                )
                self.filer.interrupted(job, entry, self.config.worker.max_interruptions)
            else:
                self.filer.attempt_failed(job, entry, running.limits)
        except OSError as exc:
            job_logger(job.id).error(
                "job {}: cannot file its outcome ({}); kept in active/; reruns at next start",
                job.id,
                exc,
            )

    def _launcher_died(self) -> None:
        logger.critical("the launcher process died; failing its attempts and starting a new one")
        self.selector.unregister(self.launcher.fileno())
        self.launcher.close(timeout=1)
        now = time.time()
        for running in list(self.running.values()):
            del self.running[running.job.id]
            entry = {
                "attempt": running.job.attempts + 1,
                "started_at": now,
                "finished_at": now,
                "outcome": "crashed",
                "error": "the launcher process died",
            }
            self._route(running, entry)
        self.launcher = LauncherClient()
        self.selector.register(self.launcher.fileno(), selectors.EVENT_READ, "launcher")

    # -- signals --

    def _handle_flags(self, now: float) -> None:
        if self.flags.reload:
            self.flags.reload = False
            self._reload()
        if self.flags.stop and self.stopping_since is None:
            self.stopping_since = now
            notify("STOPPING=1")
            logger.info(
                "stopping: waiting up to {:g}s for {} running job(s)",
                self.config.worker.shutdown_timeout,
                len(self.running),
            )
        if self.stopping_since is None:
            return
        if self.flags.stop > 1 and self.kills_sent < 2:
            self._kill_running(grace=0.0, why="a second stop signal")
            self.kills_sent = 2
        elif (
            not self.kills_sent and now >= self.stopping_since + self.config.worker.shutdown_timeout
        ):
            self._kill_running(grace=KILL_GRACE, why="shutdown_timeout ran out")
            self.kills_sent = 1

    def _kill_running(self, *, grace: float, why: str) -> None:
        if self.running:
            logger.warning(
                "{}: stopping {} running job(s); they will run again", why, len(self.running)
            )
        for job_id in self.running:
            self.launcher.kill(job_id, grace)

    def _reload(self) -> None:
        notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config.path) if self.config.path else self.config
            if new.spool.dir != self.config.spool.dir:
                raise ConfigError("[spool] dir: cannot change while running; restart instead")
            setup_logging(new.log)
        except ConfigError as exc:
            logger.error("reload refused, keeping the running configuration: {}", exc)
        else:
            self.config = new
            self.store.durable = new.spool.fsync
            logger.info("configuration reloaded: {} allowed class(es)", len(new.allow))
        notify("READY=1")


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _without(message: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in keys}
