"""Retry policy arithmetic (spoold/core/policy.py): delays, counting, the retry decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spoold.backoff import Backoff
from spoold.config import config_from_mapping
from spoold.core.policy import (
    DAEMON_DIED,
    SHUTDOWN,
    Limits,
    failed_attempts,
    interruptions_in_a_row,
    limits_for,
    retry_delay,
    should_retry,
)
from spoold.job import parse_job


def limits(**changes: Any) -> Limits:
    values: dict[str, Any] = {
        "max_retries": 3,
        "retry_delay": 2.0,
        "backoff": "fixed",
        "max_delay": 3600.0,
        "timeout": 0.0,
        "memory_limit": 0,
        "max_interruptions": 3,
    }
    return Limits(**{**values, **changes})


def outcomes(*names: str) -> list[dict[str, Any]]:
    """A history with one entry per outcome; ``interrupted:cause`` sets the cause."""
    history = []
    for number, name in enumerate(names, start=1):
        outcome, _, cause = name.partition(":")
        entry: dict[str, Any] = {"attempt": number, "outcome": outcome}
        if cause:
            entry["cause"] = cause
        history.append(entry)
    return history


def test_fixed_delay_is_the_same_for_every_retry() -> None:
    """backoff "fixed": every retry waits retry_delay."""
    assert [retry_delay(n, limits()) for n in (1, 2, 5)] == [2.0, 2.0, 2.0]


def test_exponential_delay_doubles_each_retry() -> None:
    """backoff "exponential": retry_delay, then twice that, then four times..."""
    exp = limits(backoff="exponential", retry_delay=0.5)
    assert [retry_delay(n, exp) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_delays_are_capped_at_max_delay() -> None:
    """No delay exceeds max_delay, fixed or exponential, even for huge retry numbers."""
    assert retry_delay(1, limits(retry_delay=10.0, max_delay=3.0)) == 3.0
    exp = limits(backoff="exponential", retry_delay=1.0, max_delay=60.0)
    assert retry_delay(7, exp) == 60.0
    assert retry_delay(10_000, exp) == 60.0


def test_failed_attempts_count_errors_timeouts_and_crashes_only() -> None:
    """Interruptions and successes do not count against max_retries."""
    history = outcomes("error", "interrupted:daemon_died", "timeout", "crashed", "ok")
    assert failed_attempts(history) == 3
    assert failed_attempts([]) == 0


def test_interruptions_in_a_row_counts_trailing_daemon_deaths() -> None:
    """Only the trailing run of daemon_died interruptions counts."""
    died = f"interrupted:{DAEMON_DIED}"
    assert interruptions_in_a_row(outcomes(died, "error", died, died)) == 2
    assert interruptions_in_a_row(outcomes(died, died, "error")) == 0
    assert interruptions_in_a_row([]) == 0


def test_interruptions_in_a_row_skips_clean_shutdown_kills() -> None:
    """A shutdown interruption neither counts nor breaks the run."""
    died = f"interrupted:{DAEMON_DIED}"
    shut = f"interrupted:{SHUTDOWN}"
    assert interruptions_in_a_row(outcomes(died, shut, died, shut)) == 2
    assert interruptions_in_a_row(outcomes(shut, shut)) == 0


@pytest.mark.parametrize(
    ("history", "max_retries", "expected"),
    [
        ([], 0, True),
        (["error"], 0, False),
        (["error"], 1, True),
        (["error", "error"], 1, False),
        (["error", "timeout", "crashed"], 3, True),
        (["error", "timeout", "crashed", "error"], 3, False),
        (["error", "interrupted:daemon_died", "interrupted:shutdown"], 1, True),
    ],
)
def test_should_retry(history: list[str], max_retries: int, expected: bool) -> None:
    """A job is retried while its failed attempts do not exceed max_retries."""
    assert should_retry(outcomes(*history), limits(max_retries=max_retries)) is expected


def test_a_job_field_overrides_the_config_default(tmp_path: Path) -> None:
    """limits_for takes the job's own value when set, else the config's."""
    worker = config_from_mapping(
        {"worker": {"max_retries": 3, "retry_delay": 2, "timeout": 60, "max_delay": 100}},
        base=tmp_path,
    ).worker
    plain = parse_job(b'{"class": "a.B", "method": "m"}', job_id="j", mtime=0)
    assert limits_for(plain, worker) == Limits(3, 2.0, "fixed", 100.0, 60.0, 0, 5)
    own = json.dumps(
        {
            "class": "a.B",
            "method": "m",
            "max_retries": 0,
            "retry_delay": 0,
            "backoff": "exponential",
            "timeout": 0,
            "memory_limit": 4096,
        }
    ).encode()
    job = parse_job(own, job_id="j", mtime=0)
    assert limits_for(job, worker) == Limits(0, 0.0, "exponential", 100.0, 0.0, 4096, 5)


def test_backoff_doubles_from_its_first_wait_up_to_its_longest() -> None:
    backoff = Backoff(first=0.1, longest=0.5)
    waits = []
    now = 0.0
    for _ in range(5):
        waits.append(round(backoff.hit(now), 3))
        now = backoff.until  # the next failure comes when the wait is over
    assert waits == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_failures_within_one_wait_count_once() -> None:
    backoff = Backoff(first=1.0, longest=60.0)
    assert backoff.hit(10.0) == 1.0
    assert backoff.hit(10.5) == 0.5  # same round: the wait already set, not doubled
    assert backoff.waiting(10.9) and not backoff.waiting(11.0)
    assert backoff.hit(11.0) == 2.0


def test_clearing_a_backoff_starts_it_over() -> None:
    backoff = Backoff(first=1.0)
    backoff.hit(0.0)
    backoff.hit(1.0)
    backoff.clear()
    assert not backoff.waiting(1.5)
    assert backoff.hit(2.0) == 1.0


def test_a_trouble_is_said_when_it_begins_once_a_minute_and_when_it_ends() -> None:
    """An outage retried every second is one loud line, a reminder a minute, and its end
    with when it began; the tries in between go to DEBUG."""
    backoff = Backoff(first=1.0, longest=1.0)
    levels = []
    for now in range(100, 231):  # a failure a second for 130 s
        backoff.hit(float(now))
        levels.append(backoff.loud(float(now), "ERROR"))
    loud = [100 + i for i, level in enumerate(levels) if level != "DEBUG"]
    assert loud == [100, 160, 220]
    assert {levels[i] for i in (0, 60, 120)} == {"ERROR"}
    assert backoff.clear() == 100.0  # when the trouble began
    assert backoff.clear() is None  # no trouble: nothing ended
    backoff.hit(300.0)
    assert backoff.loud(300.0) == "WARNING"  # a new trouble is said again at once
