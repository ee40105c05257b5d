"""Receiving: notice files in incoming/ and have them judged; the core says what follows.

Watchdog's events name the files to look at; a listing of the folder at
start, every ``rescan_interval`` and whenever the watch has stopped working
catches whatever the events missed. A file that is not yet a whole
document is looked at again when its writer closes it, or after a grace
period.
"""

from __future__ import annotations

from loguru import logger

from spoold import faults
from spoold.backends.files.intake import NotYet, Trouble, examine
from spoold.backends.files.queue import ReadyQueue
from spoold.backends.files.spool import Spool, is_job_name
from spoold.backends.files.watcher import Watcher
from spoold.backoff import Backoff
from spoold.core.backend import Arrival, Judge
from spoold.durations import seconds
from spoold.live import Live

# Names from a listing looked at per turn, so that with 100,000 files waiting the
# first jobs start within the first turns instead of after every file was read.
SCAN_SLICE = 200


class Receiver:
    """Notices what arrives in incoming/ and has it judged, for the core to decide on."""

    def __init__(
        self, live: Live, spool: Spool, judge: Judge, ready: ReadyQueue, ignored: set[str]
    ) -> None:
        self.live = live
        self.spool = spool
        self.judge = judge
        self.ready = ready  # a file queued already is not looked at again
        self.ignored = ignored  # folders made inside incoming/
        # Judged since the last turn, by name: a file both listed and named by an event
        # is handed out once.
        self.arrivals: dict[str, Arrival] = {}
        self.incomplete: dict[str, float] = {}  # name -> when to look at it again
        self.judged_before: set[str] = set()  # put back by ``look_again``: received already
        self.next_rescan = 0.0
        self.unread: list[str] = []  # listed by the last rescan, not looked at yet (oldest last)
        self.trouble = Backoff()  # reading or listing failed for a reason of the daemon's own

    def start(self) -> Watcher:
        """Start watching incoming/; the watcher's descriptor belongs in the loop's selector."""
        self.watcher = Watcher(self.spool.folder("incoming"))
        if faults.watch_disabled():
            logger.warning("test fault: running without the watch on incoming/ (rescans only)")
            return self.watcher
        self.watcher.start()
        return self.watcher

    def stop(self) -> None:
        if hasattr(self, "watcher"):
            self.watcher.close()

    def turn(self, now: float) -> list[Arrival]:
        """Look at everything that may have arrived since the last turn; what was judged."""
        self._take_events(now)
        if faults.reached("watcher_dies"):
            self.watcher.stop()
        if now >= self.next_rescan or not self._watch_healthy():
            self.rescan(now)
        else:
            self._read_listed(now)
        for name, when in list(self.incomplete.items()):
            if when <= now:
                self._look_at(name, now, closed=False)
        arrivals, self.arrivals = list(self.arrivals.values()), {}
        return arrivals

    def next_wakeup(self) -> float:
        if self.unread:
            return 0.0  # more of the listing to read: no sleeping meanwhile
        return min([self.next_rescan, *self.incomplete.values()])

    @property
    def busy(self) -> bool:
        """Files are waiting to be looked at (listed, or written only in part so far)."""
        return bool(self.unread or self.incomplete)

    def _watch_healthy(self) -> bool:
        return self.watcher.healthy() or faults.watch_disabled()

    def rescan(self, now: float) -> None:
        if not self._watch_healthy():
            self._restart_watcher()
        try:
            names = self.spool.job_names("incoming")
        except OSError as exc:
            delay = self.trouble.hit(now)
            logger.error("cannot list incoming/ ({}); trying again in {}", exc, seconds(delay))
            self.next_rescan = now + delay
            return
        # Job ids begin with their UTC time, so name order (the listing's) is
        # roughly age order; reversed, the oldest are popped first.
        names.reverse()  # in place: a second list of 100,000 names is memory for nothing
        self.unread = names
        self.next_rescan = now + self.live.config.spool.rescan_interval
        self._read_listed(now)

    def _read_listed(self, now: float) -> None:
        """Look at the next slice of the last listing."""
        for _ in range(min(SCAN_SLICE, len(self.unread))):
            name = self.unread.pop()
            if name not in self.incomplete:
                self._look_at(name, now, closed=False)

    def _take_events(self, now: float) -> None:
        for name, closed in self.watcher.take_names():
            if not name:
                self.next_rescan = now  # the folder itself changed: list it again
            elif is_job_name(name):
                self._look_at(name, now, closed=closed)

    def _restart_watcher(self) -> None:
        logger.warning("the watch on incoming/ stopped working; restarting it and rescanning")
        self.spool.create()
        try:
            self.watcher.restart()
        except OSError as exc:
            logger.error("cannot watch incoming/ ({}); relying on rescans", exc)

    def _look_at(self, name: str, now: float, *, closed: bool) -> None:
        if ("incoming", name) in self.ready or name in self.ignored or name in self.arrivals:
            return
        config = self.live.config
        verdict = examine(self.spool, "incoming", name, self.judge, config.spool.max_job_bytes,
                          now=now, closed=closed)  # fmt: skip
        self.incomplete.pop(name, None)
        if isinstance(verdict, Trouble):
            self.not_now(name, now, verdict.error, "read")
            return
        self.trouble.clear()
        if isinstance(verdict, NotYet):
            self.incomplete[name] = verdict.look_again_at
            return
        again = name in self.judged_before
        self.judged_before.discard(name)
        if verdict is not None:
            self.arrivals[name] = Arrival(name, verdict, now, again=again)

    def look_again(self, name: str, at: float) -> None:
        """Judge ``name`` anew at ``at``, a file that was received already (its arrival
        then says ``again``, so the core does not say it was received twice)."""
        self.judged_before.add(name)
        self.incomplete[name] = at

    def not_now(self, name: str, now: float, error: OSError, step: str) -> None:
        """The daemon could not take the file (its own trouble): leave it, look again later."""
        delay = self.trouble.hit(now)
        self.incomplete[name] = now + delay
        logger.warning("cannot {} incoming/{} ({}); leaving it there, trying again in {}",
                       step, name, error, seconds(delay))  # fmt: skip
