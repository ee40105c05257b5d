"""Cron expressions: checked and walked by cronsim, a well-kept library, not by a parser of ours.

Five standard fields only (minute, hour, day of month, month, day of
week). cronsim follows Debian's cron across daylight-saving changes: a time
that does not exist on the day the clocks go forward fires at the first
minute that does (``30 2 * * *`` at 03:00), and a time that happens twice on
the day they go back fires once, the first time. Loaded only for a config
with ``[[schedule]]`` tables, inside a function (the client imports no
third-party package otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo

from cronsim import CronSim, CronSimError

FIELDS = 5


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a usable 5-field cron expression; None if it is."""
    if len(expression.split()) != FIELDS:
        return "expected 5 fields (minute hour day-of-month month day-of-week)"
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        return str(exc).lower() or "not a cron expression"
    except (ValueError, IndexError) as exc:  # what cronsim lets through on odd input
        return str(exc) or "not a cron expression"
    return None


def cron_times(expression: str, zone: tzinfo, after: float) -> Iterator[float]:
    """The firing times of ``expression`` in ``zone`` strictly after ``after``, in order.

    Each instant once: on the day the clocks go forward, a wall-clock walk can name
    one instant twice (``0 * * * *``: a 02:00 that does not exist is 03:00).
    """
    start = datetime.fromtimestamp(after, zone)
    last = after
    for moment in CronSim(expression, start):
        instant = moment.timestamp()
        if instant > last:
            last = instant
            yield instant


def cron_time_back(expression: str, zone: tzinfo, before: float, steps: int) -> float:
    """An instant at or before the ``steps``-th firing counting back from ``before``: where
    a forward walk may start to meet the newest ``steps`` firings, without walking all the
    ones since a long-gone ``after``. (Only a starting point: the firing times themselves
    are always the forward walk's, which handles daylight-saving days as Debian does.)"""
    moment = datetime.fromtimestamp(before, zone)
    walk = CronSim(expression, moment, reverse=True)
    instant = before
    for _ in range(steps):
        try:
            instant = min(instant, next(walk).timestamp())
        except StopIteration:
            break
    return instant - 3600  # before it by more than a daylight-saving shift
