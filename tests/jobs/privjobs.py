"""A job that reports who it runs as and what it may touch in the spool."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def attempt(action: Callable[[], Any]) -> str:
    """ "ok", or the name of the error the action raised."""
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "ok"


def create(path: str) -> None:
    with open(path, "x"):
        pass


def read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


class Whoami:
    def run(self, spool: str, record_id: str) -> dict[str, Any]:
        return {
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "gid": os.getgid(),
            "groups": os.getgroups(),
            "home": os.environ.get("HOME"),
            "see_spool_root": os.access(spool, os.X_OK),
            "write_done": attempt(lambda: create(f"{spool}/done/intruder.json")),
            "write_failed": attempt(lambda: create(f"{spool}/failed/intruder.json")),
            "read_record": attempt(lambda: read(f"{spool}/done/{record_id}.json")),
            "list_done": attempt(lambda: os.listdir(f"{spool}/done")),
            "write_active": attempt(lambda: create(f"{spool}/active/intruder.json")),
        }


class Napper:
    """Writes its pid to ``pidfile`` (in a folder the job user may write), then sleeps."""

    def run(self, pidfile: str, seconds: float = 30.0) -> None:
        import time

        with open(pidfile, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(seconds)
