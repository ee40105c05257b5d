"""Retry policy as pure functions: what happens after an attempt ends.

Kept free of I/O so the arithmetic (backoff, caps, interruption counting) is
tested on its own. A job field overrides the config default, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spoold.config import WorkerSettings
from spoold.exec.protocol import Outcome
from spoold.job import Job

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt

# Records hold plain strings, which compare and hash equal to these members.
FAILED_OUTCOMES = frozenset({Outcome.ERROR, Outcome.TIMEOUT, Outcome.CRASHED})
DAEMON_DIED = "daemon_died"  # the ``cause`` of an attempt cut short by the daemon's death
SHUTDOWN = "shutdown"  # ... or by a clean stop that ran out of shutdown_timeout


@dataclass(frozen=True)
class Limits:
    """One job's effective limits: its own fields, else the config's."""

    max_retries: int
    retry_delay: float
    backoff: str
    max_delay: float
    timeout: float
    memory_limit: int
    max_interruptions: int  # read with the rest at launch: a reload meanwhile changes nothing


def limits_for(job: Job, worker: WorkerSettings) -> Limits:
    return Limits(
        max_retries=_first(job.max_retries, worker.max_retries),
        retry_delay=_first(job.retry_delay, worker.retry_delay),
        backoff=_first(job.backoff, worker.backoff),
        max_delay=worker.max_delay,
        timeout=_first(job.timeout, worker.timeout),
        memory_limit=_first(job.memory_limit, worker.memory_limit),
        max_interruptions=worker.max_interruptions,
    )


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


def retry_delay(retry_number: int, limits: Limits) -> float:
    """Seconds to wait before retry number ``retry_number`` (1 = the first retry)."""
    delay = limits.retry_delay
    if limits.backoff == "exponential":
        delay *= 2 ** min(retry_number - 1, 64)
    return min(delay, limits.max_delay)


def failed_attempts(history: Sequence[Attempt]) -> int:
    """Attempts that count against max_retries (interruptions do not)."""
    return sum(1 for entry in history if entry.get("outcome") in FAILED_OUTCOMES)


def interruptions_in_a_row(history: Sequence[Attempt]) -> int:
    """Trailing attempts cut short by the daemon's death; clean-stop kills are skipped."""
    count = 0
    for entry in reversed(history):
        if entry.get("outcome") != Outcome.INTERRUPTED:
            break
        if entry.get("cause") == DAEMON_DIED:
            count += 1
    return count


def should_retry(history: Sequence[Attempt], limits: Limits) -> bool:
    return failed_attempts(history) <= limits.max_retries
