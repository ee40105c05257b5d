"""Backoff: how long the daemon waits before trying again what its own trouble stopped.

Shared by the core (held filings, launches, the loop) and the backends (a
listing or a read that failed for want of a resource): it decides nothing
about a job, only when to look again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Waits that double while a resource stays short (0.1 s up to 30 s); cleared on success."""

    first: float = 0.1
    longest: float = 30.0
    delay: float = 0.0
    until: float = 0.0

    def hit(self, now: float, *, longest: float | None = None) -> float:
        """Note a failure at ``now``; return how long to wait before trying again.

        Failures while already waiting (several files in one round) count once.
        ``longest`` caps this wait lower (a server that may be back any moment).
        """
        if not self.waiting(now):
            cap = self.longest if longest is None else min(longest, self.longest)
            self.delay = min(max(self.delay * 2, self.first), cap)
            self.until = now + self.delay
        return self.until - now

    def clear(self) -> None:
        self.delay = self.until = 0.0

    def waiting(self, now: float) -> bool:
        return now < self.until
