"""``durations.seconds``: a delay or a duration as log lines print it."""

from __future__ import annotations

import pytest

from spoold.durations import seconds


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.25, "1.25s"),  # {:.1f} printed this as 1.2s
        (0.5, "0.5s"),
        (90, "90s"),
        (90.0, "90s"),
        (100.0, "100s"),  # only the decimals' zeros go
        (0.003, "0.003s"),
        (0, "0s"),
        (0.0, "0s"),
        (1234.5678, "1234.568s"),  # rounded to the millisecond, not to six digits ({:g})
        (0.0004, "0s"),
        (-0.0004, "0s"),  # no "-0s" for a clock that stepped back by a hair
        (2.0006, "2.001s"),
    ],
)
def test_seconds_is_the_shortest_form_to_the_millisecond(value: float, text: str) -> None:
    assert seconds(value) == text
