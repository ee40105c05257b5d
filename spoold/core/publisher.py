"""Publishing the stats: a snapshot every ``[metrics] interval`` and at stop, and what
the daemon itself says of a long wait.

The loop calls ``tick`` each turn; every interval it takes a ``Snapshot`` of
the ``Stats`` listener with the gauges read at that moment (busy slots, what
waits, since when the longest-waiting due job has waited) and hands it to
the backend (``Engine.publish_stats``): a file on the file spool, a key that
expires on Redis. A failure to publish is the watchers' loss only, never a
job's: it is logged (once, then once a minute) and tried at the next interval.
The same moment decides the long-wait WARNING (the oldest due job has waited
longer than ``[metrics] long_wait``) and the INFO when that ends, and, with
``[metrics] textfile``, writes node_exporter's textfile.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from spoold.atomic import replace_file
from spoold.backoff import Backoff
from spoold.core.backend import Engine
from spoold.core.stats import Gauges, Stats
from spoold.durations import seconds
from spoold.live import Live
from spoold.snapshot import Snapshot

HOUR = 3600.0


class Publisher:
    """Takes and publishes the snapshots; keeps what the status line says of the latest."""

    def __init__(
        self, stats: Stats, engine: Engine, live: Live, gauges: Callable[[float], Gauges]
    ) -> None:
        self.stats = stats
        self.engine = engine
        self.live = live
        self.gauges = gauges  # the daemon's reading of itself and its backend, at a time
        self.next_at = 0.0
        self.said = ""  # the status line's part from the latest snapshot (made once per snapshot)
        self.trouble = Backoff()
        self.long_wait_since: float | None = None  # when the current long wait was first seen

    def next_wakeup(self) -> float:
        return self.next_at

    def tick(self, now: float) -> None:
        if now >= self.next_at:
            self.publish(now)

    def publish(self, now: float) -> None:
        """Take a snapshot now and publish it (also at stop: the last word of this run)."""
        interval = self.live.config.metrics.interval
        self.next_at = now + interval
        try:
            snapshot = self.stats.snapshot(now, self.gauges(now))
            self.engine.publish_stats(snapshot.to_json(), keep_for=3 * interval + 1.0)
        except OSError as exc:
            self.trouble.hit(now)
            logger.log(self.trouble.loud(now), "cannot publish the stats for watchers ({}); "
                       "trying again in {}", exc, seconds(interval))  # fmt: skip
            return
        if self.trouble.clear() is not None:
            logger.info("publishing the stats for watchers again")
        self.said = _summary(snapshot)
        self._watch_the_wait(snapshot)
        self._write_textfile(snapshot)

    def summary(self) -> str:
        """For the status line (asked every turn): the oldest wait and the failures of the
        last hour, as of the latest snapshot (``""`` before the first)."""
        return self.said

    def _watch_the_wait(self, snapshot: Snapshot) -> None:
        """A WARNING when the oldest due job has waited longer than ``long_wait``; an INFO
        when no job waits that long any more (Horizon's "long wait", measured)."""
        limit = self.live.config.metrics.long_wait
        waited = snapshot.oldest_wait
        if waited is not None and waited > limit:
            if self.long_wait_since is None:
                self.long_wait_since = snapshot.taken_at - waited
                logger.warning("a job has waited {} for a slot, longer than [metrics] long_wait "
                               "({}): {}/{} busy, {} ready", seconds(round(waited, 1)),
                               seconds(limit), snapshot.busy, snapshot.slots,
                               snapshot.ready)  # fmt: skip
        elif self.long_wait_since is not None:
            lasted = snapshot.taken_at - self.long_wait_since
            self.long_wait_since = None
            logger.info("no job waits longer than [metrics] long_wait ({}) any more; the long "
                        "wait lasted {}", seconds(limit), seconds(round(lasted, 1)))  # fmt: skip

    def _write_textfile(self, snapshot: Snapshot) -> None:
        """node_exporter's textfile collector reads ``*.prom`` files whole: write, rename."""
        path = self.live.config.metrics.textfile
        if path is None:
            return
        from spoold.prometheus import render  # only for those who asked for a textfile

        # What the daemon knows without listing its records (done and failed are left out).
        counts = {"incoming": snapshot.ready, "scheduled": snapshot.scheduled,
                  "active": snapshot.busy + snapshot.held}  # fmt: skip
        text = render([snapshot], counts, snapshot.oldest_wait, snapshot.taken_at,
                      classes=self.live.config.allow.keys())  # fmt: skip
        try:
            replace_file(path, text.encode(), mode=0o644)  # node_exporter runs as its own user
        except OSError as exc:
            self.trouble.hit(snapshot.taken_at)
            logger.log(self.trouble.loud(snapshot.taken_at),
                       "cannot write [metrics] textfile {} ({})", path, exc)  # fmt: skip


def _summary(snapshot: Snapshot) -> str:
    failed = snapshot.failed_since(snapshot.taken_at - HOUR)
    waited = snapshot.oldest_wait
    wait = f", oldest waited {seconds(round(waited, 1))}" if waited is not None else ""
    return f"{wait}, {failed} failed in the last hour"
