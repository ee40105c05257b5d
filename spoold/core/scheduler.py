"""Periodic jobs: when each schedule is due, what becomes of firings that were missed,
and what the log says of each.

The scheduler decides; the engine keeps each schedule's *mark* (the newest
firing dealt with) and submits a firing atomically (``Engine.fire``): a
firing whose mark is past it, or whose derived id is taken, was fired
already, by this daemon before a restart or by another daemon of the
spool. So any number of daemons may run the same schedules.

Missed firings. The firings due since the mark are on time if they are at
most ``ON_TIME`` old (a busy turn, a slow disk), missed otherwise (no daemon
was running, or the backend was down). ``catch_up`` says what becomes of
them: ``skip`` fires only an on-time one, ``latest`` fires the newest of
them all, ``all`` fires each (the newest ``MOST_CAUGHT_UP`` at most). What
is not fired is skipped: the mark moves past it, and the log says so (a
warning for missed firings; a line of information when a stalled turn let
several on-time firings come due at once and ``latest`` or ``skip`` fired
the newest only). A schedule changed by a reload counts from the change.

A schedule that has no mark yet (never fired) counts from when this daemon
first read it: nothing before that is missed. The clock is the engine's,
plus an offset that only a test sets (``faults.schedule_clock_offset``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from loguru import logger

from spoold.core.backend import ALREADY, FIRED, Engine, Firing, Mark
from spoold.live import Live
from spoold.schedules import Schedule
from spoold.schedules import local_time as _local

ON_TIME = 60.0  # seconds after its time a firing is still on time, not missed
MOST_CAUGHT_UP = 1000  # firings that catch_up = "all" fires at most after an outage


@dataclass
class Planned:
    schedule: Schedule
    due: float  # its next firing time, on the schedule clock


class Scheduler:
    """Fires the config's schedules through the engine; the daemon calls ``tick`` each turn."""

    def __init__(
        self, engine: Engine, live: Live, *, offset: float = 0.0, starts_at: float | None = None
    ) -> None:
        self.engine = engine
        self.live = live
        self.offset = offset  # the schedule clock is the engine's plus this (tests only)
        self.starts_at = starts_at  # ... or reads this at the first tick (tests only)
        self.plan: dict[str, Planned] = {}
        self.first_read: dict[str, float] = {}  # when each schedule was first read here
        self.changed_at: dict[str, float] = {}  # when a reload last changed it
        self.read_from: Sequence[Schedule] | None = None  # the config's, as last planned

    def tick(self, now: float) -> None:
        """Fire what is due at ``now`` (the engine's clock)."""
        if self.starts_at is not None:
            self.offset, self.starts_at = self.starts_at - now, None
        now += self.offset
        schedules = self.live.config.schedules
        if schedules is not self.read_from:
            self._replan(schedules, now)
        for planned in list(self.plan.values()):
            if planned.due <= now:
                self._due(planned, now)

    def next_wakeup(self) -> float | None:
        """When the next firing is due, on the engine's clock."""
        if not self.plan:
            return None
        return min(planned.due for planned in self.plan.values()) - self.offset

    # -- planning --

    def _replan(self, schedules: Sequence[Schedule], now: float) -> None:
        """Plan new and changed schedules from their marks; forget removed ones."""
        marks = self.engine.schedule_marks() if schedules else {}
        before = self.plan
        self.plan = {}
        for schedule in schedules:
            kept = before.get(schedule.name)
            if kept is not None and kept.schedule == schedule:
                self.plan[schedule.name] = kept
                continue
            self.first_read.setdefault(schedule.name, now)
            if kept is not None:  # its old firings are not the new schedule's to catch up
                self.changed_at[schedule.name] = now
            mark = marks.get(schedule.name)
            since = self._since(schedule, mark)
            if mark is not None and since > now + ON_TIME:
                logger.warning("schedule {}: fired up to {}, later than now (was the clock set"
                               " back?): it fires again after that", schedule.name,
                               _local(schedule, since))  # fmt: skip
            self.plan[schedule.name] = Planned(schedule, schedule.next_after(since))
            news = "" if self.read_from is None else "changed: " if kept else "added: "
            due = self.plan[schedule.name].due
            upcoming = "due now" if due <= now else f"next firing {_local(schedule, due)}"
            logger.info("schedule {}: {}{} {}; {}", schedule.name, news, schedule.target,
                        schedule.when, upcoming)  # fmt: skip
        for name in sorted(before.keys() - self.plan.keys()):
            logger.info("schedule {}: removed from the config; it fires no more", name)
        self.read_from = schedules

    def _since(self, schedule: Schedule, mark: Mark | None) -> float:
        """Where its firings are counted from: its mark, or when it was first read; for a
        schedule changed by a reload, not before the change."""
        since = mark.considered if mark is not None else self.first_read[schedule.name]
        return max(since, self.changed_at.get(schedule.name, since))

    # -- firing --

    def _due(self, planned: Planned, now: float) -> None:
        schedule = planned.schedule
        mark = self.engine.schedule_marks().get(schedule.name)  # another daemon may have moved it
        since = self._since(schedule, mark)
        times, more = schedule.due_between(since, now, MOST_CAUGHT_UP)
        if not times:  # fired by another daemon meanwhile
            planned.due = schedule.next_after(max(since, now))
            return
        chosen = self._chosen(schedule, times, now)
        missed = [t for t in times if now - t > ON_TIME]
        if missed or more:
            self._say_missed(schedule, times, missed, more, chosen)
        crowded = [t for t in times if now - t <= ON_TIME and t not in chosen]
        if crowded:  # a stalled turn, a period shorter than the stall: on time, yet let go
            logger.info("schedule {}: {} more firing(s) came due in this turn ({} to {});"
                        " catch_up = {}: the newest only", schedule.name, len(crowded),
                        _local(schedule, crowded[0]), _local(schedule, times[-1]),
                        schedule.catch_up)  # fmt: skip
        for moment in chosen:
            self._fire(schedule, moment)
        if not chosen or chosen[-1] < times[-1]:
            self.engine.skip_firings(schedule.name, times[-1])
        planned.due = schedule.next_after(times[-1])

    @staticmethod
    def _chosen(schedule: Schedule, times: list[float], now: float) -> list[float]:
        if schedule.catch_up == "all":
            return times
        if schedule.catch_up == "latest":
            return times[-1:]
        return [t for t in times[-1:] if now - t <= ON_TIME]  # skip: only if on time

    def _say_missed(
        self, schedule: Schedule, times: list[float], missed: list[float], more: bool,
        chosen: list[float],
    ) -> None:  # fmt: skip
        count = f"more than {len(times)}" if more else str(len(missed))
        span = _local(schedule, missed[0] if missed else times[0])
        if len(missed) > 1 or more:
            span += f" to {_local(schedule, missed[-1] if missed else times[-1])}"
        what = {"all": f"firing {'the newest ' if more else ''}{len(chosen)}",
                "latest": "firing the latest",
                "skip": "skipping them"}[schedule.catch_up]  # fmt: skip
        logger.warning("schedule {}: {} firing(s) missed ({}) while no daemon fired them;"
                       " catch_up = {}: {}", schedule.name, count, span, schedule.catch_up,
                       what)  # fmt: skip

    def _fire(self, schedule: Schedule, moment: float) -> None:
        job_id = schedule.job_id(moment)
        payload = json.dumps(schedule.document(moment), ensure_ascii=False).encode()
        firing = Firing(schedule.name, moment, job_id, payload, exclusive=not schedule.overlap)
        answer = self.engine.fire(firing)
        when = _local(schedule, moment)
        if answer == FIRED:
            logger.info("schedule {}: fired job {} ({}) for {}", schedule.name, job_id,
                        schedule.target, when)  # fmt: skip
        elif answer == ALREADY:
            logger.info("schedule {}: the firing for {} was fired or skipped already (its id:"
                        " {}): dropped", schedule.name, when, job_id)  # fmt: skip
        else:
            last = self.engine.schedule_marks().get(schedule.name)
            logger.warning("schedule {}: the firing for {} skipped: its last job {} still waits"
                           " or runs (overlap = false)", schedule.name, when,
                           last.last_job if last else "?")  # fmt: skip
