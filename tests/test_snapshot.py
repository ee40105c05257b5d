"""The stats snapshot's format (spoold/snapshot.py): buckets, the JSON round trip, and what
a reader refuses."""

from __future__ import annotations

import json

import pytest
from snapshots import snapshot

from spoold.snapshot import DURATION_BUCKETS, FORMAT, Histogram, Minute, Snapshot


def test_an_observation_on_a_bound_is_counted_at_or_below_it() -> None:
    """Prometheus's ``le``: a value equal to a bound is in that bound's bucket; above every
    bound is +Inf; a negative duration (clocks) counts as 0."""
    histogram = Histogram((0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 7.0, -3.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1]
    assert histogram.cumulative() == [2, 4, 5] and histogram.count == 5
    assert histogram.total == pytest.approx(8.6)


def test_a_snapshot_reads_back_as_written() -> None:
    duration = Histogram(DURATION_BUCKETS)
    duration.observe(0.02)
    written = snapshot(received={"a.B": 2}, duration={"a.B": duration},
                       minutes=[Minute(120, started=2, done=1)])  # fmt: skip
    assert Snapshot.from_json(written.to_json()) == written


@pytest.mark.parametrize(
    "data",
    [b"[]", b"not json", json.dumps({"format": FORMAT + 1}).encode(), b'{"format": 1}'],
    ids=["not an object", "not JSON", "a newer format", "fields missing"],
)
def test_what_is_not_a_snapshot_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        Snapshot.from_json(data)


def test_a_snapshot_is_stale_after_three_intervals_and_failures_count_by_minute() -> None:
    taken = snapshot(
        taken_at=200.0,
        minutes=[Minute(0, failed=5), Minute(3600, failed=2), Minute(3660, failed=1)],
    )
    assert not taken.stale(200.0 + 15.0) and taken.stale(200.0 + 16.5)
    assert taken.failed_since(3600.0) == 3 and taken.failed_since(3630.0) == 3
    assert taken.failed_since(3661.0) == 1
