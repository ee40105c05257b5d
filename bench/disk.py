"""The disk's speed right before a run, and a gate that waits for it to be back.

On this kind of VM the ext4 root (mounted with ``discard``) swings from about
35,000 create-and-rename pairs per second to 1,000 within seconds: by itself,
and for seconds after thousands of files that hold data are deleted (as many
empty files do not slow it). A system timed in such a spell is timed on the
disk, not on its own work, and it may be paying for the run before it.
``DiskGate.settle`` probes until the disk is back to at least half the best
speed seen in the invocation, so that every system starts at speed and pays
for its own writes and deletions only. docs/PERFORMANCE.md has the
measurements.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_PAIRS = 200  # create + write + rename pairs in one probe
PROBE_BODY = b'{"class": "probe.Probe", "method": "probe", "params": {}}\n'
SHARE = 0.5  # a run starts once a probe is at least this share of the best so far
PAUSE = 0.2  # seconds between probes
BASELINE = 10.0  # seconds of probes before the first run: where "the best so far" starts


def probe(folder: Path) -> float:
    """Create + write + rename pairs per second in a fresh ``folder`` (kept: deleting its
    files would slow the disk again)."""
    (folder / "in").mkdir(parents=True)
    started = time.perf_counter()
    for i in range(PROBE_PAIRS):
        path = folder / f"{i}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, PROBE_BODY)
        finally:
            os.close(fd)
        os.rename(path, folder / "in" / path.name)
    return PROBE_PAIRS / (time.perf_counter() - started)


@dataclass
class DiskGate:
    """Waits, before each run, for the disk to be at speed; at most ``limit`` seconds
    (0: one probe, no wait)."""

    limit: float
    best: float = 0.0  # the fastest probe of this invocation

    def settle(self, folder: Path) -> tuple[float, float]:
        """Probe in ``folder`` until the disk is at speed: (the last probe's pairs/s,
        seconds waited). The first call probes for BASELINE seconds (at most ``limit``)
        first: the slow spells last seconds, and the best must not start inside one."""
        started = time.monotonic()
        count = itertools.count()
        if not self.best and self.limit > 0:
            while time.monotonic() - started < min(BASELINE, self.limit):
                self.best = max(self.best, probe(folder / f"baseline-{next(count)}"))
                time.sleep(PAUSE)
        while True:
            rate = probe(folder / str(next(count)))
            self.best = max(self.best, rate)
            waited = time.monotonic() - started
            if rate >= SHARE * self.best or waited >= self.limit:
                return rate, waited
            time.sleep(PAUSE)
