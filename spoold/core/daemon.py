"""The daemon: one loop that owns every decision.

It has no other thread: the backend's watch (inotify on incoming/, for the
file spool) is a descriptor read by the loop; the launcher only runs
attempts and reports back; signal handlers only set flags. Each turn of
the loop takes in what the backend received and decides on it, keeps the
leases of running attempts, starts what the free worker slots allow, and
then has the backend make the turn's claims and moves durable; then the
loop waits on one selector for the next wake-up: the backend's descriptor,
a signal, a report from the launcher, or the earliest timer. The loop
talks to the backend only through ``core/backend.py``.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

from loguru import logger

from spoold import __version__, faults
from spoold.backoff import Backoff
from spoold.config import Config, ConfigError, load_config
from spoold.core.answering import Answering
from spoold.core.backend import (
    Arrival,
    Catalog,
    Engine,
    Recovered,
    Refusal,
    Refused,
    Taken,
    Unavailable,
)
from spoold.core.dispatcher import Dispatcher
from spoold.core.events import Broken, Events, Tally
from spoold.core.held import HeldFilings, wait_for_run_at
from spoold.core.judge import Judge
from spoold.core.outcomes import Filer
from spoold.core.policy import DAEMON_DIED
from spoold.core.publisher import Publisher
from spoold.core.scheduler import Scheduler
from spoold.core.stats import Gauges, Identity, Stats
from spoold.durations import age, seconds
from spoold.exec.launcher import KILL_GRACE
from spoold.exec.launcher_client import LauncherClient
from spoold.exec.protocol import Outcome
from spoold.identity import job_identity
from spoold.job import Job, Rejected, check_names_allowed
from spoold.live import Live
from spoold.logs import job_logger, setup_logging
from spoold.systemd import Notifier, notify

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt

# READY=1 waits this long at most for the launcher's interpreter to be up.
LAUNCHER_START_TIMEOUT = 10.0
# Self-fencing: a daemon whose leases went unrenewed for the lease minus this margin
# (at most; a sixth of the lease if that is less) kills its attempts.
FENCE_MARGIN = 5.0
# Retention (``[retention]``): how often records past their time are removed, and how
# many at a time (a full batch comes back at the next turn, not a minute later).
RETENTION_EVERY = 60.0
RETENTION_BATCH = 1000
# Seconds a recorded claim time may trail the clock (file times come from a coarse clock).
COARSE_CLOCK_MARGIN = 0.02


@dataclass
class Flags:
    """Set by signal handlers, read by the loop (a handler must not log or lock)."""

    stop: int = 0
    reload: bool = False
    dump: bool = False


def run_daemon(
    config: Config,
    open_engine: Callable[[Live], Engine],
    *,
    open_catalog: Callable[[Config], Catalog] | None = None,
    burst: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run until stopped (with ``burst``: until the ready work is done); return the exit status.

    ``open_engine`` is ``spoold.backends.open_engine``: the command chooses the
    backend, the core never imports one; ``open_catalog`` (``spoold.backends``'s)
    lets the daemon look jobs up for those who ask on its control socket (without it,
    it does not listen there). ``on_ready`` is called once, when the
    first scan is done and jobs are taken (``--detach`` uses it to let the
    starting command return only then).
    """
    identity, warnings = job_identity(config.worker, os.geteuid())
    live = Live(config, identity)
    # Before the first log line: a second daemon on this spool says only that it is refused.
    engine = open_engine(live)
    try:
        setup_logging(config.log)
        for warning in warnings:
            logger.warning(warning)
        catalog = open_catalog(config) if open_catalog is not None else None
        return Daemon(live, engine, burst=burst, on_ready=on_ready, catalog=catalog).run()
    finally:
        engine.close()


class Daemon:
    """The loop, its signals and its timers; the rooms it drives make the decisions."""

    def __init__(
        self,
        live: Live,
        engine: Engine,
        *,
        burst: bool,
        on_ready: Callable[[], None] | None = None,
        new_launcher: Callable[[], LauncherClient] = LauncherClient,
        monotonic: Callable[[], float] = time.monotonic,
        catalog: Catalog | None = None,
    ) -> None:
        self.live = live
        self.engine = engine
        self.burst = burst
        self.on_ready = on_ready
        self.new_launcher = new_launcher  # a test drives the loop with a stand-in
        self.judge = Judge(live)
        self.held = HeldFilings(engine.places)  # what a resource shortage kept claimed
        self.tally = Tally()  # what this run filed: burst mode's exit status
        self.stats = Stats(_identity(live.config, engine.clock()), live, engine.clock)
        self.selector = selectors.DefaultSelector()
        # Who asks about a job, on the control socket (not in burst mode: it soon leaves).
        self.answering = (
            Answering(live, self.selector, catalog.find, self.cancel, engine)
            if catalog is not None and not burst
            else None
        )
        listeners = [self.tally, self.stats, *([self.answering] if self.answering else [])]
        self.events = Events(*([Broken()] if faults.broken_listener() else []), *listeners)
        self.publisher = Publisher(self.stats, engine, live, self._gauges)
        self.filer = Filer(engine, self.events, live)
        # Burst mode runs what is there and leaves: it fires no schedule.
        self.scheduler = None if burst else _scheduler(engine, live)
        self.next_renewal = 0.0  # when the running attempts' leases are renewed next
        self.monotonic = monotonic  # this host's own clock, for self-fencing (a test's own)
        self.renewed_at = monotonic()  # when the leases were last renewed
        self.renew_trouble = Backoff()  # when renewing began to fail, for the log
        self.next_retention = 0.0  # when records past their time are removed next
        self.watched: set[int] = set()  # the backend's descriptors in the selector
        self.flags = Flags()
        self.trouble = Backoff()
        self.notifier = Notifier(engine.clock())
        self.stopping_since: float | None = None
        self.kills_sent = 0

    @property
    def config(self) -> Config:
        return self.live.config  # read afresh each time: a reload swaps it

    # -- life cycle --

    def run(self) -> int:
        """Run on a backend the caller opened (see ``run_daemon``), and close it."""
        try:
            self._start()
            self._loop()
        finally:
            self.close()
        return 1 if self.burst and self.tally.anything_failed else 0

    def _start(self) -> None:
        self.open(self.engine.clock())
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self._install_signal_handlers()
        self.watch(self.engine.clock())
        self._watch_backend()
        if self.answering is not None:
            self.answering.open()
        self.dispatcher.await_launcher(LAUNCHER_START_TIMEOUT, self.engine.clock())
        notify("READY=1", f"STATUS={self._status()}")
        logger.info("ready: watching {} ({})", self.engine.places.intake, self._status())
        if self.on_ready is not None:
            self.on_ready()

    def open(self, now: float) -> None:
        """Start the launcher, open the backend, and decide on what it recovered.

        ``run`` then installs its signal handlers and calls ``watch``; a test that
        drives ``tick`` itself calls ``open`` and ``watch`` alone (no signals, no selector).
        """
        # The launcher is a fresh interpreter, started first: it comes up while recovery runs.
        self.dispatcher = Dispatcher(
            self.live, self.filer, self.held, self.events, self.selector, self.new_launcher
        )
        for recovered in self.engine.open(self.judge, now):
            self._recover(recovered, now)
        self.engine.end_turn()

    def watch(self, now: float) -> None:
        """Start the backend's watch and take what waits."""
        self.engine.watch(now)
        for arrival in self.engine.receive(now):
            self._arrived(arrival, now)
        self.engine.end_turn()

    def _watch_backend(self) -> None:
        """Wait on the backend's descriptors as they are now (a reconnect changes them)."""
        wanted = set(self.engine.descriptors())
        for fd in self.watched - wanted:
            self.selector.unregister(fd)
        for fd in wanted - self.watched:
            self.selector.register(fd, selectors.EVENT_READ, "watch")
        self.watched = wanted

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
            logger.warning("{} job(s) could not be filed out of {}; recovery files them at the "
                           "next start", len(self.held), self.engine.places.claimed)  # fmt: skip
        if self.answering is not None:
            self.answering.close()
        if hasattr(self, "dispatcher"):
            self.dispatcher.close()
            self.publisher.publish(self.engine.clock())  # the run's last figures
        self.engine.close()
        signal.set_wakeup_fd(-1)
        logger.info("stopped")

    def _status(self) -> str:
        """The status line (systemd's STATUS=, the ready line, SIGUSR1): busy of how many,
        what waits, and, from the latest stats snapshot, the oldest wait and the failures
        of the last hour."""
        counts = self.engine.counts()
        busy, slots = self.dispatcher.busy(), self.config.worker.concurrency
        status = f"{busy}/{slots} busy, {counts.ready} ready, {counts.waiting} scheduled"
        status += self.publisher.summary()
        if counts.held_back:  # ready jobs whose class is at its [limits]
            status += f", {sum(counts.held_back.values())} at their class's limit"
        if self.held:  # outcomes the daemon's own trouble keeps: no attempt starts meanwhile
            status += f", {len(self.held)} held back"
        return status

    def _gauges(self, now: float) -> Gauges:
        """What the stats snapshot reads of the daemon and its backend at ``now``."""
        counts = self.engine.counts()
        return Gauges(
            busy=self.dispatcher.busy(), slots=self.config.worker.concurrency,
            held=len(self.held), ready=counts.ready, scheduled=counts.waiting,
            oldest_ready=self.engine.oldest_ready(now), running=self.dispatcher.attempts(),
            held_back=counts.held_back,
        )  # fmt: skip

    # -- the loop --

    def _loop(self) -> None:
        while True:
            self.tick(self.engine.clock())
            if self.finished():
                return
            self._watch_backend()
            self._wait(self._timeout(self.engine.clock()))

    def tick(self, now: float) -> None:
        """One turn of the loop at ``now``: signals, intake, leases, held filings, launches.

        The loop calls it with the clock's time after each wait; a test may call it
        with any time it likes (huey's ``loop(now)``). What the launcher reports is
        read between turns (``_wait``), by the dispatcher.
        """
        self._handle_flags(now)
        self.notifier.tick(now, self._status)
        self.publisher.tick(now)  # the watchers' figures: never a job's business
        self._keep_claims(now)  # even while waiting out trouble: a lapsed lease reruns a job
        if self.trouble.waiting(now):
            return
        try:
            for arrival in self.engine.receive(now):
                self._arrived(arrival, now)
            for job_id, by in self.engine.cancellations():  # asked of another daemon
                self.dispatcher.cancel(job_id, by)
            if self.answering is not None:
                self.answering.serve(now)
            if self.scheduler is not None and self.stopping_since is None:
                self.scheduler.tick(now)
            self._retain(now)
            self.held.retry(now)
            self._start_ready(now)
            # After the launches, so that a slot's next attempt does not wait for the fsyncs.
            self.engine.end_turn()
        except Unavailable as exc:  # the backend's server is down or cut off
            delay = self.trouble.hit(now, longest=Unavailable.RETRY_LONGEST)
            level = self.trouble.loud(now, "ERROR")
            logger.log(level, "{}; trying again in {}{}", exc, seconds(delay),
                       _so_far(self.trouble, now))  # fmt: skip
        except OSError as exc:  # out of descriptors, disk, memory: wait, then carry on
            delay = self.trouble.hit(now)
            level = self.trouble.loud(now, "ERROR")
            logger.opt(exception=exc if level != "DEBUG" else None).log(
                level, "{}; trying again in {}{}", exc, seconds(delay), _so_far(self.trouble, now)
            )
        else:  # (the end of an outage is said by what needed the server: renewals, filings)
            self.trouble.clear()

    # -- the decisions on what the backend hands over --

    def _arrived(self, arrival: Arrival, now: float) -> None:
        """A judged submission: refuse it, queue it, or have it wait for its ``run_at``."""
        if isinstance(arrival.verdict, Refused):
            self._file_claimed(self.engine.claim_arrival(arrival, now), now)
            return
        job = arrival.verdict.job
        if not arrival.again:
            self._received(job)
        if job.run_at is not None and job.run_at > now:
            self._file_claimed(self.engine.claim_arrival(arrival, now), now)
        else:
            self.engine.accept(arrival)

    def _received(self, job: Job) -> None:
        job_logger(job.id).info(
            "job {} received: {}.{} (priority {})", job.id, job.class_path, job.method, job.priority
        )
        self.events.received(job)

    def _file_claimed(self, claimed: Taken | Refusal | None, now: float) -> None:
        """File a claimed arrival: a refusal as rejected, a job to wait for its ``run_at``."""
        if isinstance(claimed, Refusal):
            self._reject(claimed, now)
        elif claimed is not None:
            wait = partial(self.filer.deferred, claimed.claim, claimed.job)
            self.held.attempt(claimed.claim, wait_for_run_at(self.engine.places), wait, now)

    def _reject(self, refusal: Refusal, now: float) -> None:
        reject = partial(self.filer.reject, refusal.claim, refusal.refused, source=refusal.source)
        self.held.attempt(refusal.claim, "rejection", reject, now)

    def _recover(self, recovered: Recovered, now: float) -> None:
        """A job claimed when its daemon went away: rerun the lost attempt, or file it."""
        claim, verdict = recovered.claim, recovered.verdict
        if isinstance(verdict, Refused):
            self._reject(Refusal(claim, verdict, recovered.source, now), now)
            return
        job = verdict.job
        if _was_on_its_way_to_wait(job, recovered.claimed_at):
            wait = partial(self.filer.deferred, claim, job)
            self.held.attempt(claim, wait_for_run_at(self.engine.places), wait, now)
            return
        entry: Attempt = {
            "attempt": job.attempts + 1,
            "started_at": recovered.claimed_at,
            "finished_at": now,
            "outcome": Outcome.INTERRUPTED,
            "cause": DAEMON_DIED,
            "error": "the daemon stopped or died while this attempt ran"
            # (a request sent ahead may have been waiting for a slot: nothing says which)
            + (" or waited to start" if self.config.worker.send_ahead else ""),
        }
        max_interruptions = self.config.worker.max_interruptions
        rerun = partial(self.filer.interrupted, claim, job, entry, max_interruptions)
        self.held.attempt(claim, "rerun after the daemon's death", rerun, now)

    def _keep_claims(self, now: float) -> None:
        """Renew the running attempts' leases; rerun what lost its lease elsewhere.

        Every third of a lease (never, for a backend whose claims never lapse).
        """
        if now < self.next_renewal:
            return
        try:
            # Held outcomes too: their jobs are still this daemon's until they are filed.
            claims = [*self.dispatcher.claims(), *self.held.claims()]
            lost = self.engine.renew(claims, now)
            expired = self.engine.expired(now)
        except OSError as exc:  # soon again: every second of an outage brings the lease closer
            self.next_renewal = now + min(1.0, self.engine.lease / 3)
            self._fence_self()
            if not claims:  # nothing at stake here: the turn's own line says the outage
                logger.debug("cannot renew this daemon's heartbeat ({})", exc)
                return
            self.renew_trouble.hit(now)
            fence_in = self._fence_in()
            stakes = (f"their attempts are stopped if this lasts {seconds(round(fence_in, 1))} more"
                      if fence_in > 0 else "their attempts are stopped (lease lost)")  # fmt: skip
            logger.log(self.renew_trouble.loud(now),
                       "cannot renew the running jobs' leases ({}); trying again every {}; {}{}",
                       exc, seconds(self.next_renewal - now), stakes,
                       _so_far(self.renew_trouble, now))  # fmt: skip
            return
        began = self.renew_trouble.clear()
        if began is not None:
            logger.info("renewed the running jobs' leases again, after {} without",
                        seconds(round(now - began, 1)))  # fmt: skip
        self.renewed_at = self.monotonic()
        self.next_renewal = now + self.engine.lease / 3
        for claim in lost:
            self.dispatcher.lose(claim)
        for recovered in expired:
            self._recover(recovered, now)

    def _fence_self(self) -> None:
        """Unrenewed for longer than the lease minus a margin, by this host's own monotonic
        clock: another daemon may rerun these jobs any moment, so stop running them here.

        Their outcomes, if they can still be filed, are refused as stale once the jobs
        were claimed again elsewhere; else they are filed (a killed attempt) as usual.
        """
        if self._fence_in() > 0:
            return
        unrenewed = self.monotonic() - self.renewed_at
        for claim in self.dispatcher.claims():
            self.dispatcher.lose(claim, f"not renewed for {seconds(unrenewed)}")

    def _fence_in(self) -> float:
        """How long before this daemon stops its attempts for want of a renewal (≤ 0: now)."""
        lease = self.engine.lease
        unrenewed = self.monotonic() - self.renewed_at
        return lease - min(lease / 6, FENCE_MARGIN) - unrenewed

    def _retain(self, now: float) -> None:
        """Remove the records older than ``[retention]`` says, a batch at a time."""
        if now < self.next_retention:
            return
        self.next_retention = now + RETENTION_EVERY
        keep = self.config.retention.for_backend(self.config.spool.backend)
        for status, seconds_kept in zip(("done", "failed"), keep, strict=True):
            if seconds_kept is None:
                continue
            removed = self.engine.purge_records(status, now - seconds_kept, RETENTION_BATCH)
            if removed:
                logger.info("retention: removed {} {} record(s) finished more than {} ago",
                            removed, status, age(seconds_kept))  # fmt: skip
            if removed >= RETENTION_BATCH:
                self.next_retention = now  # more to remove: go on at the next turn

    def _start_ready(self, now: float) -> None:
        self.dispatcher.take_back(now)
        while self.stopping_since is None and self.dispatcher.room(now) > 0:
            taken = self.engine.take_ready(now)
            if taken is None:
                return
            if isinstance(taken, Refusal):
                self._reject(taken, now)
                continue
            try:
                # The allowlist may have been reloaded. Its follow-ups are checked again
                # when they are submitted, at its filing (``followups.plan``).
                check_names_allowed(taken.job.class_path, taken.job.method, self.config)
            except Rejected as exc:
                refused = Refused(taken.job.id, str(exc), b"", kind=exc.kind)
                self._reject(Refusal(taken.claim, refused, taken.source, now), now)
                continue
            if taken.fresh:  # submitted straight to the backend: judged just now
                self._received(taken.job)
            if taken.cancelled_by is not None:  # cancelled on its way back to wait
                self._file_cancelled(taken, taken.cancelled_by, now)
                continue
            if taken.job.id in self.dispatcher.running:
                self._wait_for_lost_attempt(taken, now)
                continue
            self.dispatcher.launch(taken, now)

    def cancel(self, job_id: str, by: int, now: float) -> bool:
        """A cancel asked for by uid ``by`` (``answering``): stop the attempt running here,
        or claim the job where it waits and file it cancelled, or have the daemon that
        runs it told: True, and whoever asked is answered with the record when it is filed.
        False if it neither waits nor runs (or the daemon is stopping)."""
        if self.dispatcher.cancel(job_id, by):
            return True
        if any(claim.job_id == job_id for claim in self.held.claims()):
            return True  # it has ended; its record, held back, answers once it is filed
        if self.stopping_since is not None:
            return False  # taking nothing out of waiting while stopping
        taken = self.engine.cancel(job_id, by, now)
        if isinstance(taken, Refusal):
            self._reject(taken, now)
            return True
        if isinstance(taken, Taken):
            self._file_cancelled(taken, by, now)
            return True
        return taken

    def _file_cancelled(self, taken: Taken, by: int, now: float) -> None:
        cancel = partial(self.filer.cancelled, taken.claim, taken.job, by)
        self.held.attempt(taken.claim, "cancellation", cancel, now)

    def _wait_for_lost_attempt(self, taken: Taken, now: float) -> None:
        """A job claimed anew while the attempt that lost its lease is still being stopped
        here: put it back for a second (the launcher knows an attempt by its job's id)."""
        job = taken.job

        def put_back(when: float) -> None:
            self.filer.unclaim(taken.claim, job, when + 1.0)

        self.held.attempt(taken.claim, f"put-back to {self.engine.places.waiting}", put_back, now)

    def finished(self) -> bool:
        """True when the loop is done: stopped and drained, or (burst) nothing left to run."""
        if self.stopping_since is not None:
            return not self.dispatcher.running  # held-back outcomes stay claimed, to rerun
        if not self.burst:
            return False
        counts = self.engine.counts()
        return not (self.dispatcher or counts.ready or counts.busy or counts.again)

    def _timeout(self, now: float) -> float:
        times = [self.trouble.until or now + 3600]
        wakeups = (
            self.engine.next_wakeup(now),
            self.dispatcher.next_wakeup(),
            self.held.next_wakeup(),
            self.notifier.next_wakeup(),
            self.publisher.next_wakeup(),
            self.scheduler.next_wakeup() if self.scheduler is not None else None,
            self.answering.next_wakeup() if self.answering is not None else None,
        )
        for moment in wakeups:
            if moment is not None:
                times.append(moment)
        if self.stopping_since is not None and not self.kills_sent:
            times.append(self.stopping_since + self.config.worker.shutdown_timeout)
        return max(0.0, min(times) - now)

    def _wait(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            if key.data is None:
                _drain_pipe(self.wake_read)
            elif key.data == "watch":
                pass  # the watch's events are read at the start of the turn
            elif key.data is self.dispatcher:
                self._on_reports(self.engine.clock())
            elif self.answering is not None:
                self.answering.on_event(key.data, mask)

    def _on_reports(self, now: float) -> None:
        """What the launcher reported: the finishes among it may claim the freed slots'
        next jobs in the same trip (``Engine.prefetch``), taken by this turn's launches,
        which a stop or trouble being waited out (the turn skips them) would not make."""
        launching = self.stopping_since is None and not self.trouble.waiting(now)
        self.engine.prefetch(launching and self.dispatcher.can_launch(now))
        try:
            self.dispatcher.on_readable(now)
        finally:
            self.engine.prefetch(False)

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
            self.dispatcher.take_back(now, every=True)  # nothing starts from now on
            logger.info(
                "stopping: waiting up to {} for {} running job(s)",
                seconds(self.config.worker.shutdown_timeout), self.dispatcher.busy(),
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
            if running.pid is None:
                logger.info(
                    "next: job {} {}.{}, sent ahead {} ago: it starts as a slot frees",
                    job.id, job.class_path, job.method, seconds(now - running.sent_at),
                )  # fmt: skip
                continue
            logger.info(
                "running: job {} {}.{} attempt {} (pid {}) for {}",
                job.id, job.class_path, job.method, job.attempts + 1,
                running.pid, seconds(now - running.sent_at),
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
            # What waits in the launcher was checked and set up by the old config.
            self.dispatcher.take_back(self.engine.clock(), every=True)
            logger.info("configuration reloaded: {} allowed class(es)", len(new.allow))
        notify("READY=1")


def _was_on_its_way_to_wait(job: Job, claimed_at: float) -> bool:
    """A fresh job (no due time yet: it was just submitted) whose run_at was still ahead
    when it was claimed never ran: it was being moved to wait for its run_at.

    Inside the margin of a coarse clock, a rerun is the safe guess.
    """
    fresh = job.due_at is None and not job.history
    return fresh and job.run_at is not None and job.run_at > claimed_at + COARSE_CLOCK_MARGIN


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _so_far(trouble: Backoff, now: float) -> str:
    """ ", for 1m 5s so far" on the lines that say a trouble still lasts."""
    if trouble.since is None or now <= trouble.since:
        return ""
    return f", for {seconds(round(now - trouble.since, 1))} so far"


def _scheduler(engine: Engine, live: Live) -> Scheduler:
    """The scheduler, on the engine's clock (a test's offset added: ``faults``)."""
    offset, starts_at = faults.schedule_clock_offset(), faults.schedule_clock_start()
    return Scheduler(engine, live, offset=offset, starts_at=starts_at)


def _identity(config: Config, now: float) -> Identity:
    """Who this run's stats are from (one daemon of a host: its pid tells its runs apart)."""
    host = config.spool.host_id
    return Identity(f"{host}:{os.getpid()}", host, os.getpid(), config.spool.backend,
                    __version__, now)  # fmt: skip
