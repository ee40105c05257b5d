"""A stand-in for the daemon's end of the launcher, for tests that drive the core in process.

It keeps what the dispatcher asks for (runs, kills) and hands back the reports a
test queues, in the launcher protocol's own shapes; ``gone`` makes it behave like
a launcher that died. No process is started: the decisions around it are the
daemon's real ones. Every decision tested through it is also tested once
against the real daemon and launcher (see each test's docstring).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from spoold.exec.launcher_client import LauncherGone
from spoold.exec.protocol import Op, Outcome


class StandInLauncher:
    """Takes requests and hands back the reports a test queues, as the launcher would."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()  # a real descriptor for the selector
        self.requests: list[tuple[str, dict[str, Any], float]] = []  # (key, request, timeout)
        self.kills: list[tuple[str, float]] = []  # (key, grace)
        self.unqueued: list[str] = []  # runs asked back before they started
        self.reports: list[dict[str, Any]] = []
        self.gone = False

    # -- what the dispatcher calls --

    def fileno(self) -> int:
        return self.ours.fileno()

    def wait_ready(self, timeout: float) -> bool:
        return True

    def run(self, key: str, request: dict[str, Any], timeout: float, slots: int = 0) -> None:
        self.requests.append((key, request, timeout))

    def unqueue(self, key: str) -> None:
        self.unqueued.append(key)

    def kill(self, key: str, grace: float) -> None:
        self.kills.append((key, grace))

    def receive(self) -> list[dict[str, Any]]:
        if self.gone:
            raise LauncherGone("the stand-in launcher is gone")
        reports, self.reports = self.reports, []
        return reports

    def close(self, timeout: float | None = None) -> None:
        self.ours.close()
        self.theirs.close()

    # -- what a test calls --

    @property
    def keys(self) -> list[str]:
        return [key for key, _request, _timeout in self.requests]

    def started(self, key: str, pid: int = 4242) -> None:
        self.reports.append({"op": Op.STARTED, "key": key, "pid": pid, "started_at": time.time()})

    def finished(self, key: str, outcome: str = Outcome.OK, **fields: Any) -> None:
        now = time.time()
        self.reports.append({"op": Op.FINISHED, "key": key, "started_at": now,
                             "finished_at": now, "outcome": outcome, **fields})  # fmt: skip

    def not_started(self, key: str, errno: int | None, strerror: str | None) -> None:
        self.reports.append({"op": Op.NOT_STARTED, "key": key, "errno": errno,
                             "strerror": strerror})  # fmt: skip
