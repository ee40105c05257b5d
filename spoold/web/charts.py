"""Bar charts as inline SVG, drawn on the server: no script, nothing a CSP must allow.

This module computes the columns; ``templates/chart.html`` draws them (so
Jinja2 escapes every text): a ``viewBox`` that scales to its box's width,
a ``<title>`` per bar (the browser's tooltip, a screen reader's text) and
the largest value written at the top.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from spoold.snapshot import Snapshot

WIDTH, HEIGHT = 600, 120
TOP = 16  # room for the maximum's label


@dataclass(frozen=True)
class Bar:
    at: float  # the bucket's start, epoch seconds
    value: float  # jobs per minute in it
    failed: float = 0.0  # of which failed for good or rejected


def per_minute(
    snapshots: Sequence[Snapshot], now: float, *, minutes: int, bucket: int
) -> list[Bar]:
    """Jobs finished per minute, summed over the daemons' rings, in buckets of ``bucket``
    minutes (each bar: the bucket's average per minute), the last ``minutes`` minutes."""
    step = bucket * 60
    end = int(now // step * step) + step
    start = end - minutes * 60
    done = [0.0] * (minutes // bucket)
    failed = [0.0] * (minutes // bucket)
    for snapshot in snapshots:
        for minute in snapshot.minutes:
            if start <= minute.at < end:
                index = (minute.at - start) // step
                done[index] += minute.done + minute.failed + minute.rejected
                failed[index] += minute.failed + minute.rejected
    return [Bar(start + i * step, done[i] / bucket, failed[i] / bucket) for i in range(len(done))]


@dataclass(frozen=True)
class Column:
    x: float
    width: float
    height: float  # of the whole bar
    failed: float  # of its red part
    title: str


@dataclass(frozen=True)
class Chart:
    """What ``templates/chart.html`` draws: columns in a WIDTH x HEIGHT box."""

    label: str
    columns: list[Column]
    peak: str  # the largest value, written at the top
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(bars: Sequence[Bar], *, label: str, unit: str = "jobs/min") -> Chart:
    """``bars`` scaled to the box: finished in the accent colour, the failed part in red."""
    highest = max((bar.value for bar in bars), default=0.0)
    scale = (HEIGHT - TOP) / highest if highest > 0 else 0.0
    step = WIDTH / max(1, len(bars))
    columns = []
    for index, bar in enumerate(bars):
        title = f"{_clock(bar.at)}: {_figure(bar.value)} {unit}"
        if bar.failed:
            title += f", {_figure(bar.failed)} failed"
        height, failed = round(bar.value * scale, 2), round(bar.failed * scale, 2)
        columns.append(Column(round(index * step, 2), round(max(step - 1, 0.5), 2), height,
                              failed, title))  # fmt: skip
    return Chart(label, columns, f"max {_figure(highest)} {unit}")


def _figure(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))
