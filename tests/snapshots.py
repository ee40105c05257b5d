"""Hand-built stats snapshots (spoold/snapshot.py) for the tests of their readers: the
Prometheus renderer, ``spoold top``'s view and the format's own tests."""

from __future__ import annotations

from typing import Any

from spoold.snapshot import Snapshot

NOW = 1_800_000_000.0  # a minute's start: 30,000,000 minutes after the epoch


def snapshot(host: str = "web1", **fields: Any) -> Snapshot:
    """A fresh snapshot (taken a second before NOW) of an idle daemon on ``host``, up for
    an hour, with ``fields`` changed."""
    values: dict[str, Any] = {
        "daemon": f"{host}:100", "host": host, "pid": 100, "backend": "files",
        "version": "0.1.0", "python": "3.11.2", "started_at": NOW - 3600.0,
        "taken_at": NOW - 1.0, "interval": 5.0, "busy": 0, "slots": 4, "held": 0,
        "ready": 0, "scheduled": 0, "oldest_wait": None,
    }  # fmt: skip
    return Snapshot(**{**values, **fields})
