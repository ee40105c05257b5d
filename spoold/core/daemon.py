"""The daemon: one loop that owns every decision.

It has no other thread: the watch on incoming/ is an inotify descriptor
read by the loop; the launcher only runs attempts and reports back; signal
handlers only set flags. Each turn of the loop takes in new files, releases
jobs whose time has come, starts what the free worker slots allow, and
then makes the turn's claims and moves durable; then the loop waits on one
selector for the next wake-up: a new file, a signal, a report from the
launcher, or the earliest timer.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from loguru import logger

from spoold import faults
from spoold.backends.files import recovery
from spoold.backends.files.claims import Claims
from spoold.backends.files.intake import Refused
from spoold.backends.files.queue import DueQueue, ReadyQueue
from spoold.backends.files.receiver import Receiver
from spoold.backends.files.spool import Spool, SpoolLock
from spoold.backends.files.store import JobStore
from spoold.backends.files.watcher import Watcher
from spoold.config import Config, ConfigError, load_config
from spoold.core.dispatcher import Dispatcher
from spoold.core.events import Broken, Events, Tally
from spoold.core.held import HeldFilings
from spoold.core.outcomes import Filer
from spoold.core.policy import Backoff
from spoold.durations import seconds
from spoold.exec.launcher import KILL_GRACE
from spoold.exec.launcher_client import LauncherClient
from spoold.identity import job_identity
from spoold.live import Live
from spoold.logs import setup_logging
from spoold.systemd import Notifier, notify

# READY=1 waits this long at most for the launcher's interpreter to be up.
LAUNCHER_START_TIMEOUT = 10.0


@dataclass
class Flags:
    """Set by signal handlers, read by the loop (a handler must not log or lock)."""

    stop: int = 0
    reload: bool = False
    dump: bool = False


def run_daemon(
    config: Config, *, burst: bool = False, on_ready: Callable[[], None] | None = None
) -> int:
    """Run until stopped (with ``burst``: until the ready work is done); return the exit status.

    ``on_ready`` is called once, when the first scan is done and jobs are taken
    (``--detach`` uses it to let the starting command return only then).
    """
    identity, warnings = job_identity(config.worker, os.geteuid())
    spool = Spool(config.spool.dir)
    spool.create()
    lock = SpoolLock(spool)
    # Before the first log line: a second daemon on this spool says only that it is refused.
    lock.acquire()
    try:
        setup_logging(config.log)
        for warning in warnings:
            logger.warning(warning)
        return Daemon(Live(config, identity), burst=burst, on_ready=on_ready).run()
    finally:
        lock.release()


class Daemon:
    """The loop, its signals and its timers; the rooms it drives make the decisions."""

    def __init__(
        self,
        live: Live,
        *,
        burst: bool,
        on_ready: Callable[[], None] | None = None,
        new_launcher: Callable[[], LauncherClient] = LauncherClient,
    ) -> None:
        self.live = live
        self.burst = burst
        self.on_ready = on_ready
        self.new_launcher = new_launcher  # a test drives the loop with a stand-in
        self.spool = Spool(live.config.spool.dir)
        self.store = JobStore(self.spool, live, defer_moves=True)
        self.ready = ReadyQueue()
        self.due = DueQueue()
        self.held = HeldFilings()  # what a resource shortage kept from leaving active/
        self.tally = Tally()  # what this run filed: burst mode's exit status
        self.events = Events(*([Broken()] if faults.broken_listener() else []), self.tally)
        self.filer = Filer(self.store, self.due, self.events)
        self.claims = Claims(self.spool, self.store, self.due, self.filer, self.held)
        self.receiver = Receiver(live, self.spool, self.claims, self.ready, self.events)
        self.selector = selectors.DefaultSelector()
        self.flags = Flags()
        self.trouble = Backoff()
        self.notifier = Notifier(time.time())
        self.stopping_since: float | None = None
        self.kills_sent = 0

    @property
    def config(self) -> Config:
        return self.live.config  # read afresh each time: a reload swaps it

    # -- life cycle --

    def run(self) -> int:
        """Run on a spool whose lock the caller holds (see ``run_daemon``)."""
        try:
            self._start()
            self._loop()
        finally:
            self.close()
        return 1 if self.burst and self.tally.anything_failed else 0

    def _start(self) -> None:
        self.open(time.time())
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self._install_signal_handlers()
        watcher = self.watch(time.time())
        self.selector.register(watcher.fileno(), selectors.EVENT_READ, "watch")
        self.dispatcher.await_launcher(LAUNCHER_START_TIMEOUT, time.time())
        notify("READY=1", f"STATUS={self._status()}")
        logger.info("ready: watching {} ({})", self.spool.folder("incoming"), self._status())
        if self.on_ready is not None:
            self.on_ready()

    def open(self, now: float) -> None:
        """Take the spool over: tidy, start the launcher, recover active/, index scheduled/.

        ``run`` then installs its signal handlers and calls ``watch``; a test that
        drives ``tick`` itself calls ``open`` and ``watch`` alone (no signals, no selector).
        """
        recovery.tidy(self.spool)
        # The launcher is a fresh interpreter, started before the watch on incoming/.
        self.dispatcher = Dispatcher(
            self.live, self.filer, self.held, self.events, self.selector, self.new_launcher
        )
        recovery.recover_active(self.spool, self.store, self.config, self.filer, self.held, now)
        for name in recovery.load_scheduled(self.spool, self.config, self.due, now):
            damaged = Refused(name[:-5], "the job file is damaged", b"")
            self.claims.reject("scheduled", name, damaged, now)
        self.store.sync_pending()

    def watch(self, now: float) -> Watcher:
        """Watch incoming/ and read what is there; the watch's descriptor is the loop's."""
        watcher = self.receiver.start()
        self.receiver.rescan(now)
        return watcher

    def _install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        signal.signal(signal.SIGUSR1, self._on_dump_signal)

    def _on_stop_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.flags.stop += 1

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.flags.reload = True

    def _on_dump_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.flags.dump = True

    def close(self) -> None:
        if self.held:
            logger.warning("{} job(s) could not be filed out of active/; recovery files them at "
                           "the next start", len(self.held))  # fmt: skip
        try:
            self.store.sync_pending()
        except OSError as exc:  # the markers are durable: recovery finishes these moves
            logger.error("the last moves out of active/ may not be durable: {}", exc)
        self.receiver.stop()
        if hasattr(self, "dispatcher"):
            self.dispatcher.close()
        signal.set_wakeup_fd(-1)
        logger.info("stopped")

    def _status(self) -> str:
        return f"{len(self.dispatcher)} running, {len(self.ready)} ready, {len(self.due)} scheduled"

    # -- the loop --

    def _loop(self) -> None:
        while True:
            self.tick(time.time())
            if self.finished():
                return
            self._wait(self._timeout(time.time()))

    def tick(self, now: float) -> None:
        """One turn of the loop at ``now``: signals, intake, due jobs, held filings, launches.

        The loop calls it with the clock's time after each wait; a test may call it
        with any time it likes (huey's ``loop(now)``). What the launcher reports is
        read between turns (``_wait``), by the dispatcher.
        """
        self._handle_flags(now)
        self.notifier.tick(now, self._status())
        if self.trouble.waiting(now):
            return
        try:
            self.receiver.turn(now)
            for entry in self.due.pop_due(now):
                self.ready.push("scheduled", entry.name, entry.priority, entry.enqueued_at, None)
            self.held.retry(now)
            self._start_ready(now)
            # After the launches, so that a slot's next attempt does not wait for the fsyncs.
            self.store.sync_pending()
        except OSError as exc:  # out of descriptors, disk, memory: wait, then carry on
            delay = self.trouble.hit(now)
            logger.opt(exception=exc).error("{}; trying again in {}", exc, seconds(delay))
        else:
            self.trouble.clear()

    def _start_ready(self, now: float) -> None:
        while self.ready and self.stopping_since is None:
            if len(self.dispatcher) >= self.config.worker.concurrency:
                return
            if not self.dispatcher.can_launch(now):
                return
            job = self.claims.claim_ready(self.ready.pop(), self.config, now)
            if job is not None:
                self.dispatcher.launch(job, now)

    def finished(self) -> bool:
        """True when the loop is done: stopped and drained, or (burst) nothing left to run."""
        if self.stopping_since is not None:
            return not self.dispatcher.running  # held-back outcomes stay in active/, to rerun
        if not self.burst:
            return False
        return not (self.dispatcher or self.ready or self.receiver.busy or self.due.again)

    def _timeout(self, now: float) -> float:
        times = [self.receiver.next_wakeup(), self.trouble.until or now + 3600]
        wakeups = (
            self.due.next_due(),
            self.dispatcher.next_wakeup(),
            self.held.next_wakeup(),
            self.notifier.next_wakeup(),
        )
        for moment in wakeups:
            if moment is not None:
                times.append(moment)
        if self.stopping_since is not None and not self.kills_sent:
            times.append(self.stopping_since + self.config.worker.shutdown_timeout)
        return max(0.0, min(times) - now)

    def _wait(self, timeout: float) -> None:
        for key, _mask in self.selector.select(timeout):
            if key.data is None:
                _drain_pipe(self.wake_read)
            elif key.data != "watch":  # the watch's events are read at the start of the turn
                self.dispatcher.on_readable(time.time())

    # -- signals --

    def _handle_flags(self, now: float) -> None:
        if self.flags.dump:
            self.flags.dump = False
            self._dump_running(now)
        if self.flags.reload:
            self.flags.reload = False
            self._reload()
        if self.flags.stop and self.stopping_since is None:
            self.stopping_since = now
            notify("STOPPING=1")
            logger.info(
                "stopping: waiting up to {} for {} running job(s)",
                seconds(self.config.worker.shutdown_timeout), len(self.dispatcher),
            )  # fmt: skip
        if self.stopping_since is not None:
            self._escalate_stop(now)

    def _escalate_stop(self, now: float) -> None:
        assert self.stopping_since is not None
        if self.flags.stop > 1 and self.kills_sent < 2:
            self.dispatcher.stop_all(grace=0.0, why="a second stop signal")
            self.kills_sent = 2
        elif (
            not self.kills_sent and now >= self.stopping_since + self.config.worker.shutdown_timeout
        ):
            self.dispatcher.stop_all(grace=KILL_GRACE, why="shutdown_timeout ran out")
            self.kills_sent = 1

    def _dump_running(self, now: float) -> None:
        """SIGUSR1: say in the log what runs now, and for how long."""
        logger.info("status: {}", self._status())
        for running in self.dispatcher.running.values():
            job = running.job
            logger.info(
                "running: job {} {}.{} attempt {} (pid {}) for {}",
                job.id, job.class_path, job.method, job.attempts + 1,
                running.pid or "?", seconds(now - running.sent_at),
            )  # fmt: skip

    def _reload(self) -> None:
        notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config.path) if self.config.path else self.config
            if new.spool.dir != self.config.spool.dir:
                raise ConfigError("[spool] dir: cannot change while running; restart instead")
            identity, warnings = job_identity(new.worker, os.geteuid())
            setup_logging(new.log)
            for warning in warnings:
                logger.warning(warning)
        except ConfigError as exc:
            logger.error("reload refused, keeping the running configuration: {}", exc)
        else:
            self.live.swap(new, identity)
            logger.info("configuration reloaded: {} allowed class(es)", len(new.allow))
        notify("READY=1")


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
