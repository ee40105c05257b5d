"""Periodic jobs: the ``[[schedule]]`` tables, when each fires, and the id of each firing.

A firing is an ordinary job whose id is derived from the schedule's name and
the firing time (``20261205T143000.000Z-sched-nightly``), so one firing is
one id on every daemon, on every host and after every restart: a derived id
that is already taken means "already fired", and the submission is dropped
(never given a fresh id, as a client's chosen id would be). ``every``
schedules fire at the multiples of their period since the epoch (``5m``:
:00, :05, ...), so every daemon agrees on them too. Cron expressions are
walked by ``spoold.cron`` (cronsim), imported only when a schedule has one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

CATCH_UP = ("skip", "latest", "all")
_EVERY = re.compile(r"(\d{1,12})([smhd])")  # more digits: past MOST_EVERY anyway
MOST_EVERY = 36500 * 86400  # a century: the longest period ``every`` may have
_EVERY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ID_MARK = "-sched-"  # what every derived id holds after its time
KEYS = ("name", "class", "method", "params", "cron", "every", "timezone", "catch_up",
        "overlap", "priority", "timeout", "max_retries")  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """One ``[[schedule]]`` table, checked."""

    name: str
    class_path: str
    method: str
    params: Any  # a list (positional) or an object (keywords), as in a job file
    cron: str | None  # a 5-field expression, or None with ``every``
    every: int | None  # seconds, or None with ``cron``
    timezone: str  # "" = the host's
    catch_up: str = "latest"
    overlap: bool = True
    priority: int | None = None
    timeout: float | None = None
    max_retries: int | None = None

    @property
    def target(self) -> str:
        return f"{self.class_path}.{self.method}"

    @property
    def when(self) -> str:
        """``cron "30 2 * * *" (Europe/Berlin)`` or ``every 5m``, for people."""
        if self.cron is not None:
            return f'cron "{self.cron}" ({self.timezone or host_zone_name()})'
        return f"every {every_text(self.every or 0)}"

    def times_after(self, after: float) -> Iterator[float]:
        """Its firing times strictly after ``after``, in order, for ever."""
        if self.every is not None:
            moment = (math.floor(after / self.every) + 1) * self.every
            while True:
                yield float(moment)
                moment += self.every
        assert self.cron is not None
        from spoold.cron import cron_times  # cronsim: only for a config that has a cron

        yield from cron_times(self.cron, zone(self.timezone), after)

    def next_after(self, after: float) -> float:
        return next(self.times_after(after))

    def due_between(self, after: float, upto: float, most: int) -> tuple[list[float], bool]:
        """The firing times in (``after``, ``upto``], oldest first: all of them, or the
        newest ``most`` and True when there were more (a long outage of a frequent
        schedule is not walked firing by firing)."""
        times = _times_upto(self.times_after(after), upto, most + 1)
        if len(times) <= most:
            return times, False
        start = max(after, self._before_newest(upto, most))
        return _times_upto(self.times_after(start), upto, 2 * most + 2)[-most:], True

    def _before_newest(self, upto: float, count: int) -> float:
        if self.every is not None:
            return (math.floor(upto / self.every) - count) * self.every - 1
        assert self.cron is not None
        from spoold.cron import cron_time_back

        return cron_time_back(self.cron, zone(self.timezone), upto, count)

    def job_id(self, at: float) -> str:
        return firing_id(self.name, at)

    def document(self, at: float) -> dict[str, Any]:
        """The job file of the firing for ``at``; ``schedule`` says where it came from."""
        job: dict[str, Any] = {"class": self.class_path, "method": self.method,
                               "params": self.params}  # fmt: skip
        for key in ("priority", "timeout", "max_retries"):
            value = getattr(self, key)
            if value is not None:
                job[key] = value
        job["schedule"] = {"name": self.name, "at": at}
        return job


def _times_upto(times: Iterator[float], upto: float, most: int) -> list[float]:
    found: list[float] = []
    for moment in times:
        if moment > upto or len(found) >= most:
            break
        found.append(moment)
    return found


def firing_id(name: str, at: float) -> str:
    """The id of ``name``'s firing for ``at``: sorts by time with other ids, and is a safe
    file name. A name that is not already safe is slugged and given a hash of itself, so
    that two names never share ids."""
    millis = round(at * 1000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(millis // 1000))
    if _SAFE_NAME.fullmatch(name):
        safe = name
    else:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:40] or "x"
        safe = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return f"{stamp}.{millis % 1000:03d}Z{ID_MARK}{safe}"


def local_time(schedule: Schedule, moment: float) -> str:
    """``2027-03-28 03:00:00 CEST``: a firing time in its schedule's zone (cron) or the
    host's (every)."""
    if schedule.cron is not None:
        stamp = datetime.fromtimestamp(moment, zone(schedule.timezone))
    else:
        stamp = datetime.fromtimestamp(moment).astimezone()
    return stamp.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def every_text(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % _EVERY_UNITS[unit] == 0:
            return f"{seconds // _EVERY_UNITS[unit]}{unit}"
    return f"{seconds}s"


def zone(name: str) -> tzinfo:
    """The zone ``name`` (IANA, "Europe/Berlin"), or the host's for ""."""
    return zoneinfo.ZoneInfo(name) if name else host_zone()


def host_zone() -> tzinfo:
    """The host's zone, with its daylight-saving rules: ``$TZ``, else /etc/localtime,
    else UTC (a fixed offset from ``time.localtime`` would miss the next change)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as file:
            return zoneinfo.ZoneInfo.from_file(file, key=host_zone_name())
    except OSError:
        return UTC


def host_zone_name() -> str:
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    try:
        return os.readlink("/etc/localtime").split("zoneinfo/", 1)[1]
    except (OSError, IndexError):
        return "the host's zone"


# -- reading [[schedule]] tables: each problem is a ValueError naming the table --


def parse_schedules(tables: Any, is_allowed: Callable[[str, str], bool]) -> tuple[Schedule, ...]:
    """The checked schedules of ``[[schedule]]``; ValueError("what is wrong") otherwise.
    ``is_allowed(class, method)`` is the allowlist's own test."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError("[[schedule]]: expected tables ([[schedule]] headers)")
    schedules: list[Schedule] = []
    for index, table in enumerate(tables, 1):
        name = table.get("name")  # quoted as JSON: a name with a newline stays one line
        label = (f"[[schedule]] {json.dumps(name, ensure_ascii=False)}"
                 if isinstance(name, str) else f"[[schedule]] number {index}")  # fmt: skip
        try:
            schedule = _schedule(table)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        if not is_allowed(schedule.class_path, schedule.method):
            raise ValueError(f"{label}: {schedule.target} is not on the allowlist ([allow])")
        if any(s.name == schedule.name for s in schedules):
            raise ValueError(f"{label}: a second schedule of that name")
        if any(s.job_id(0) == schedule.job_id(0) for s in schedules):
            raise ValueError(f"{label}: its ids would be another schedule's")
        schedules.append(schedule)
    return tuple(schedules)


def _schedule(table: Mapping[str, Any]) -> Schedule:
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    name = _text(table, "name")
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise ValueError("name: expected 1 to 100 printable characters")
    cron, every = table.get("cron"), table.get("every")
    if (cron is None) == (every is None):
        raise ValueError('expected either cron = "m h dom mon dow" or every = "30s"')
    params = table.get("params", [])
    if not isinstance(params, list | dict):
        raise ValueError("params: expected a list or a table")
    schedule = Schedule(
        name=name,
        class_path=_text(table, "class"),
        method=_text(table, "method"),
        params=params,
        cron=_cron(cron) if cron is not None else None,
        every=_every(every) if every is not None else None,
        timezone=_timezone(table.get("timezone", "")),
        catch_up=_choice(table, "catch_up", CATCH_UP, "latest"),
        overlap=_flag(table, "overlap", True),
        priority=_optional_int(table, "priority", minimum=None),
        timeout=_optional_seconds(table, "timeout"),
        max_retries=_optional_int(table, "max_retries", minimum=0),
    )
    if schedule.timezone and schedule.every is not None:
        raise ValueError("timezone: only for cron (every counts seconds, in no zone)")
    return schedule


def _text(table: Mapping[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected a string, got {value!r}")
    return value


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"cron: expected a string, got {value!r}")
    from spoold.cron import cron_problem  # cronsim: only for a config that has a cron

    problem = cron_problem(value)
    if problem:
        raise ValueError(f"cron: {problem}, got {value!r}")
    return " ".join(value.split())


def _every(value: Any) -> int:
    match = _EVERY.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f'every: expected a period such as "30s", "5m", "1h" or "1d", got {value!r}'
        )
    seconds = int(match[1]) * _EVERY_UNITS[match[2]]
    if seconds > MOST_EVERY:  # its firing times would soon be past the year 9999
        raise ValueError(f"every: at most {every_text(MOST_EVERY)}, got {value!r}")
    return seconds


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f'timezone: expected a zone name such as "Europe/Berlin", got {value!r}')
    if value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: no zone {value!r} on this host") from None
    return value


def _choice(table: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
    value = table.get(key, default)
    if value not in options:
        raise ValueError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
    return str(value)


def _flag(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def _optional_int(table: Mapping[str, Any], key: str, *, minimum: int | None) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}: expected at least {minimum}, got {value!r}")
    return value


def _optional_seconds(table: Mapping[str, Any], key: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key}: expected seconds (a number, 0 for no limit), got {value!r}")
    return float(value)
