"""Asking the daemon about one job, over its control socket: the submitter's door.

A submitter may not read the spool's records (they are root's and the
watching group's), so it asks the daemon, which knows who asks by the
kernel's word (``SO_PEERCRED``) and answers a submitter only about its own
jobs (``submitted_by``); root, the daemon's own user and the watching group
may ask about any, and only root and the daemon's user may cancel any. One
request per connection, one JSON line each way::

    {"op": "show" | "wait" | "cancel", "id": "<job id>"}
    {"ok": true, "state": "done", "document": {...}}
    {"ok": false, "code": "unknown", "error": "no job ... of yours"}

``show`` answers at once; ``wait`` when the job's record is filed; ``cancel``
when the cancelled job is filed (or at once, ``"code": "ended"`` with the
record, if it had one already). The socket is ``<[spool] dir>/control.sock``
on either backend: on Redis, each host's daemon answers for the whole spool.

Standard library only: the client imports it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"
OPS = ("show", "wait", "cancel")
MAX_REQUEST = 4096  # bytes of one request line: an op and an id
MAX_ANSWER = 64 * 1024 * 1024  # a record holds params, a result and tracebacks
RECONNECT_EVERY = 1.0  # seconds between tries while a daemon that took a wait is away

# Why an answer is not a document, in fixed words.
UNKNOWN = "unknown"  # no such job, or not the asker's to see
FORBIDDEN = "forbidden"  # cancel: the asker may see the job, not cancel it (a watcher)
ENDED = "ended"  # cancel: it has a record already
NOT_NOW = "not_now"  # cancel: it neither waits nor runs where it can be stopped now
BAD_REQUEST = "bad_request"


class DaemonUnreachable(OSError):
    """No daemon answers on the socket (none runs, or it went away before answering)."""


class DaemonWentAway(DaemonUnreachable):
    """The daemon took the request and stopped before answering (a restart, say)."""


@dataclass(frozen=True)
class Answer:
    ok: bool
    state: str | None = None  # where the job is: incoming, scheduled, active, done, failed
    document: dict[str, Any] | None = None  # the job as stored, or its record
    code: str | None = None  # when not ok: one of the words above
    error: str = ""

    @classmethod
    def from_json(cls, line: bytes) -> Answer:
        said = json.loads(line)
        if not isinstance(said, dict):
            raise ValueError("not an object")
        document = said.get("document")
        return cls(
            ok=bool(said.get("ok")),
            state=said.get("state"),
            document=document if isinstance(document, dict) else None,
            code=said.get("code"),
            error=str(said.get("error") or ""),
        )

    def to_json(self) -> bytes:
        said: dict[str, Any] = {"ok": self.ok}
        for key in ("state", "document", "code"):
            if getattr(self, key) is not None:
                said[key] = getattr(self, key)
        if self.error:
            said["error"] = self.error
        return json.dumps(said, ensure_ascii=False).encode("utf-8") + b"\n"


def socket_path(spool_dir: str | os.PathLike[str]) -> Path:
    return Path(spool_dir) / SOCKET_NAME


def request_line(op: str, job_id: str) -> bytes:
    return json.dumps({"op": op, "id": job_id}).encode("utf-8") + b"\n"


def ask(path: Path, op: str, job_id: str, timeout: float | None = None) -> Answer:
    """Ask the daemon listening on ``path``; TimeoutError after ``timeout`` seconds (None:
    wait as long as it takes), DaemonUnreachable if no daemon answers."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(5.0 if timeout is None else max(0.001, min(timeout, 5.0)))
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnreachable(f"no daemon answers at {path} ({exc.strerror})") from None
        except PermissionError:
            raise DaemonUnreachable(
                f"cannot reach the daemon at {path}: permission denied"
            ) from None
        sock.sendall(request_line(op, job_id))
        return Answer.from_json(_read_line(sock, deadline, path))


def ask_through_restarts(path: Path, job_id: str, timeout: float | None) -> Answer:
    """Ask the daemon to answer when the job's record is filed (``wait``). A daemon that
    took the request and went away (a restart) is asked again every ``RECONNECT_EVERY``
    seconds until ``timeout`` runs out (TimeoutError); DaemonUnreachable if no daemon
    took it in the first place (none runs: better said than waited for)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    heard = False  # a daemon took the request once
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return ask(path, "wait", job_id, left)
        except DaemonUnreachable as exc:
            heard = heard or isinstance(exc, DaemonWentAway)
            if not heard:
                raise
            if left is not None and left <= RECONNECT_EVERY:
                raise TimeoutError("no answer in time: the daemon went away") from None
            time.sleep(RECONNECT_EVERY)


def _read_line(sock: socket.socket, deadline: float | None, path: Path) -> bytes:
    received = bytearray()
    while not received.endswith(b"\n"):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no answer in time") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise DaemonWentAway(f"the daemon at {path} went away before answering")
        received += chunk
        if len(received) > MAX_ANSWER:
            raise DaemonUnreachable(f"the daemon at {path} answered with too much")
    return bytes(received)
