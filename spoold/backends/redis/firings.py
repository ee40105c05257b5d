"""Periodic jobs on Redis: the schedules' marks, as ``library.lua`` keeps them.

Firing and skipping are functions of the library (``spoold_fire``,
``spoold_skip_firings``), atomic on the server, so that any number of
daemons on any number of hosts firing one schedule submit each firing once.
This module reads the marks back, for the scheduler and ``spoold schedule``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from spoold.backends.redis.connection import call
from spoold.core.backend import Mark

if TYPE_CHECKING:
    import redis


def read_marks(client: redis.Redis, key: str) -> dict[str, Mark]:
    """Every schedule's mark in the spool whose prefix is ``key``; one that cannot be read
    is left out (the next firing writes it anew)."""
    stored: dict[bytes, bytes] = call(client.hgetall, key + "schedules")
    marks = {}
    for name, raw in stored.items():
        mark = _mark(raw)
        if mark is not None:
            marks[name.decode("utf-8", "replace")] = mark
    return marks


def _mark(raw: bytes) -> Mark | None:
    try:
        entry: dict[str, Any] = json.loads(raw)
        last_fired = entry.get("last_fired")
        return Mark(
            considered=float(entry["considered"]) / 1000,
            last_job=str(entry["last_job"]) if entry.get("last_job") else None,
            last_fired=float(last_fired) / 1000 if last_fired is not None else None,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def millis(moment: float) -> int:
    return round(moment * 1000)
