"""Limits per class (``[limits]``): how many attempts of a class run at once, and how often
one may start.

``[limits] "app.jobs.Report" = { concurrency = 1, rate = "10/m" }``. The
concurrency counts running attempts (claims taken to run), across every
daemon of a spool; the rate is a token bucket of ``count`` tokens that
refills at ``count`` per period, one token taken when an attempt starts
(retries count). A job whose class is at its limit is passed over, without
holding a worker slot, for the best job of a class that is not: it is
*held back* until a slot or a token frees up.

This module holds the words (``Rate``, ``ClassLimit``, ``parse_limit``) and
``Gate``, the limits kept in memory for a backend that one daemon holds
(the file spool, the test's memory backend). The Redis backend keeps the
same counts in Redis, in its library's claim (``backends/redis/library.lua``),
so that they hold across daemons; both follow ``Bucket``'s arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h|d)\s*")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` attempts per ``per`` seconds, with bursts of up to ``count``."""

    count: int
    per: float

    def __str__(self) -> str:
        return f"{self.count}/{_period(self.per)}"


@dataclass(frozen=True, slots=True)
class ClassLimit:
    concurrency: int | None = None  # running attempts at once, None: no limit
    rate: Rate | None = None

    def __str__(self) -> str:
        said = []
        if self.concurrency is not None:
            said.append(f"concurrency {self.concurrency}")
        if self.rate is not None:
            said.append(f"rate {self.rate}")
        return ", ".join(said)


def parse_rate(text: Any) -> Rate:
    """``"10/m"``, ``"5/s"``, ``"100/h"``, ``"2/30s"``; ValueError naming the form."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f'rate must look like "10/m" (count / s, m, h or d), got {text!r:.60}')
    count, number, unit = int(match[1]), match[2], match[3]
    per = float(number or 1) * _UNITS[unit]
    if count < 1 or per <= 0:
        raise ValueError(f"rate must allow at least 1 attempt in a period, got {text!r:.60}")
    return Rate(count, per)


def parse_limit(table: Any) -> ClassLimit:
    """One class's ``{ concurrency = N, rate = "N/unit" }``; ValueError naming the problem."""
    if not isinstance(table, dict):
        raise ValueError('expected a table such as { concurrency = 1, rate = "10/m" }')
    unknown = set(table) - {"concurrency", "rate"}
    if unknown:
        raise ValueError(f'unknown key "{sorted(unknown)[0]}" (concurrency, rate)')
    concurrency = table.get("concurrency")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r:.60}")
    rate = parse_rate(table["rate"]) if "rate" in table else None
    if concurrency is None and rate is None:
        raise ValueError("set concurrency, rate or both")
    return ClassLimit(concurrency, rate)


@dataclass(slots=True)
class Bucket:
    """A token bucket: full at first; ``take`` one token per attempt started."""

    tokens: float
    at: float  # when ``tokens`` was counted

    def level(self, rate: Rate, now: float) -> float:
        """The tokens at ``now``: refilled at ``count`` per ``per``, never over ``count``."""
        return min(float(rate.count), self.tokens + max(0.0, now - self.at) * rate.count / rate.per)

    def take(self, rate: Rate, now: float) -> None:
        self.tokens, self.at = self.level(rate, now) - 1.0, now

    def next_token(self, rate: Rate, now: float) -> float:
        """When the bucket next holds a whole token (``now`` if it does)."""
        missing = 1.0 - self.level(rate, now)
        return now if missing <= 0 else now + missing * rate.per / rate.count


@dataclass
class Gate:
    """Each limited class's running attempts and bucket, for one daemon's backend."""

    running: dict[str, set[str]] = field(default_factory=dict)  # class -> job ids
    classes: dict[str, str] = field(default_factory=dict)  # job id -> its class, while it runs
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def blocked(self, limits: Mapping[str, ClassLimit], class_path: str, now: float) -> bool:
        """True while ``class_path`` is at its limit: nothing of it may start now."""
        limit = limits.get(class_path)
        if limit is None:
            return False
        if self._full(limit, class_path):
            return True
        if limit.rate is not None:
            bucket = self.buckets.get(class_path)
            return bucket is not None and bucket.level(limit.rate, now) < 1.0
        return False

    def started(
        self, limits: Mapping[str, ClassLimit], class_path: str, job_id: str, now: float
    ) -> None:
        """An attempt of ``class_path`` was claimed to run: count it, take its token."""
        limit = limits.get(class_path)
        if limit is None:
            return
        self.running.setdefault(class_path, set()).add(job_id)
        self.classes[job_id] = class_path
        if limit.rate is not None:
            bucket = self.buckets.setdefault(class_path, Bucket(float(limit.rate.count), now))
            bucket.take(limit.rate, now)

    def ended(self, job_id: str) -> None:
        """The claim taken to run ``job_id`` ended (filed, sent to wait, put back)."""
        class_path = self.classes.pop(job_id, None)
        if class_path is not None:
            self.running[class_path].discard(job_id)

    def next_free(
        self, limits: Mapping[str, ClassLimit], classes: Iterable[str], now: float
    ) -> float | None:
        """When the earliest of ``classes`` held back by its rate alone gets a token (a
        class held back by its concurrency is freed by an attempt's end, not a time)."""
        times = []
        for class_path in classes:
            limit = limits.get(class_path)
            bucket = self.buckets.get(class_path)
            if limit is None or limit.rate is None or bucket is None:
                continue
            # A class with a token is not held back by its rate: nothing to wake for (a
            # time of now would spin the loop while every slot is busy).
            if not self._full(limit, class_path) and bucket.level(limit.rate, now) < 1.0:
                times.append(bucket.next_token(limit.rate, now))
        return min(times, default=None)

    def _full(self, limit: ClassLimit, class_path: str) -> bool:
        """As many attempts of the class run as its concurrency allows."""
        running = len(self.running.get(class_path, ()))
        return limit.concurrency is not None and running >= limit.concurrency


def _period(seconds: float) -> str:
    for unit, length in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds % length == 0:
            count = seconds / length
            return unit if count == 1 else f"{count:g}{unit}"
    return f"{seconds:g}s"
