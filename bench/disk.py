"""The disk's speed right before a run, and a gate that waits for it to be back.

This kind of VM's ext4 root has no journal, and without one ext4 does not
reuse an inode deleted in the last 60 s (300 s while its inode table block is
dirty): each new file checks the free inodes one by one and skips those
(``recently_deleted`` in fs/ext4/ialloc.c). After thousands of deletions,
making a file costs about 1 ms of kernel CPU instead of 30 us, for a minute
or more. A system timed then is timed on the deletions before it, not on
its own work. So bench.peers deletes nothing between runs, and
``DiskGate.settle`` probes until the disk is back to at least half the best
speed seen in the invocation: every system starts at speed and pays for its
own deletions only. docs/PERFORMANCE.md has the measurements;
``python -m bench.disk`` makes the one after a deletion.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.ceilings import write_file

PROBE_PAIRS = 200  # create + write + rename pairs in one probe
PROBE_BODY = b'{"class": "probe.Probe", "method": "probe", "params": {}}\n'
SHARE = 0.5  # a run starts once a probe is at least this share of the best so far
PAUSE = 0.2  # seconds between probes
BASELINE = 10.0  # seconds of probes before the first run: where "the best so far" starts


def probe(folder: Path) -> float:
    """Create + write + rename pairs per second in a fresh ``folder``, as the file
    client's (``bench.ceilings.write_file``, no fsync); kept: deleting its files would
    slow the disk again."""
    folder.mkdir(parents=True)
    started = time.perf_counter()
    for i in range(PROBE_PAIRS):
        write_file(folder, f"{i}.json", PROBE_BODY, fsync=False)
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
        first: a slow spell lasts seconds to minutes, and the best must not start inside
        one if a faster moment comes soon."""
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


def after_deleting(root: Path, files: int, seconds: float) -> list[dict[str, float]]:
    """Make ``files`` files of one byte in ``root``, sync, delete them, and probe
    the disk every PAUSE s for ``seconds``: [{"t": seconds since the deletion,
    "pairs_per_s": ...}]. ``files`` 0: the disk with nothing deleted."""
    doomed = root / "doomed"
    doomed.mkdir(parents=True)
    for i in range(files):
        (doomed / str(i)).write_bytes(b"x")
    os.sync()
    shutil.rmtree(doomed)
    deleted = time.monotonic()
    timeline: list[dict[str, float]] = []
    count = itertools.count()
    while (at := time.monotonic() - deleted) < seconds:
        timeline.append({"t": round(at, 3), "pairs_per_s": round(probe(root / str(next(count))))})
        time.sleep(PAUSE)  # as the gate probes: the probes' own files are load too
    return timeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.disk",
        description="How fast the disk makes files, probe by probe, after deleting "
        "--files files (0: none). One JSON line per probe. It deletes its own files at "
        "the end: on an ext4 without a journal, wait some minutes before timing anything.",
    )
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tmp", type=Path, default=None, help="where the temp folder goes")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="spoold-disk-", dir=args.tmp))
    try:
        for point in after_deleting(root, args.files, args.seconds):
            print(json.dumps(point), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
