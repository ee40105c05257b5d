"""Backoff: how long the daemon waits before trying again what its own trouble stopped.

Shared by the core (held filings, launches, the loop) and the backends (a
listing or a read that failed for want of a resource): it decides nothing
about a job, only when to look again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REMIND_EVERY = 60.0  # seconds between the lines that say a trouble still lasts


@dataclass
class Backoff:
    """Waits that double while a resource stays short (0.1 s up to 30 s); cleared on success.

    It also keeps when the trouble began, for the log: an outage is said when it begins,
    once a minute while it lasts and once when it ends (``loud``, ``clear``), not at each
    try, so that a 3 a.m. reader sees how long it lasted rather than scrolling past it.
    """

    first: float = 0.1
    longest: float = 30.0
    delay: float = 0.0
    until: float = 0.0
    since: float | None = None  # when this run of failures began
    said: float = -math.inf  # when it was last said out loud

    def hit(self, now: float, *, longest: float | None = None) -> float:
        """Note a failure at ``now``; return how long to wait before trying again.

        Failures while already waiting (several files in one round) count once.
        ``longest`` caps this wait lower (a server that may be back any moment).
        """
        if self.since is None:
            self.since = now
        if not self.waiting(now):
            cap = self.longest if longest is None else min(longest, self.longest)
            self.delay = min(max(self.delay * 2, self.first), cap)
            self.until = now + self.delay
        return self.until - now

    def loud(self, now: float, level: str = "WARNING") -> str:
        """The level to log this failure at: ``level`` at the first and once a minute, else
        DEBUG (the tries in between)."""
        if now - self.said < REMIND_EVERY:
            return "DEBUG"
        self.said = now
        return level

    def clear(self) -> float | None:
        """Note a success; return when the trouble it ends began (None: there was none)."""
        began, self.since = self.since, None
        self.delay = self.until = 0.0
        self.said = -math.inf
        return began

    def waiting(self, now: float) -> bool:
        return now < self.until
