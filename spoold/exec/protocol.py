"""Messages between the daemon, its launcher and the workers: their shapes, and the frames.

Each message is declared once: its ``op`` (``Op``) and an attempt's
``outcome`` (``Outcome``) here, as typed constants, and its keys as a
TypedDict in messages.py (for the type checker only). Constants rather
than enum classes: the plain strings of a decoded message are the values
themselves, and the launcher, forked for every attempt, holds no more
than the few strings (an ``Enum`` would cost it some 12 kB of heap).

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Readers
are fed whatever bytes a non-blocking read returned and yield whole
messages; writers either block (the daemon, whose launcher always reads) or
queue and flush when the socket is writable (the launcher, which must never
block on a busy daemon).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import socket  # for a type only: the client API imports this module too (write_all)

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
# Bytes asked for per read: below malloc's mmap threshold, so a read does not
# map and unmap a fresh buffer each time (a 1 MiB buffer cost three system
# calls and its page faults per message).
READ_SIZE = 64 * 1024


class Op:
    """What a message is: its ``op`` (messages.OpName is their type)."""

    RUN: Final = "run"  # daemon -> launcher: start an attempt (once one of its slots is free)
    UNQUEUE: Final = "unqueue"  # daemon -> launcher: take back a run that has not started
    KILL: Final = "kill"  # daemon -> launcher: stop one (SIGTERM, a grace period, SIGKILL)
    EXIT: Final = "exit"  # daemon -> launcher: kill what runs and leave
    READY: Final = "ready"  # launcher -> daemon: the hello, its loop runs
    # launcher -> daemon: no process for it (fork failed), or (no errno) taken back unstarted
    NOT_STARTED: Final = "not_started"
    STARTED: Final = "started"  # launcher -> daemon: a process runs it
    FINISHED: Final = "finished"  # launcher -> daemon: it ended, and how


class Outcome:
    """How an attempt ended: the ``outcome`` of its history entry (messages.OutcomeName)."""

    OK: Final = "ok"
    ERROR: Final = "error"  # the job raised
    TIMEOUT: Final = "timeout"  # it overran its timeout and was killed
    CRASHED: Final = "crashed"  # its process died without a report (or the launcher did)
    INTERRUPTED: Final = "interrupted"  # the daemon stopped it, or died while it ran
    CANCELLED: Final = "cancelled"  # stopped by a cancel (spoold cancel): never retried


# The shapes of the messages live in messages.py, for the type checker only: as
# classes here they would cost the launcher, and so every fork of it, heap that
# no code reads (and even unexecuted, their code would be loaded with this module).
if TYPE_CHECKING:
    from spoold.exec.messages import Frame, FromLauncher


def encode_frame(message: Frame) -> bytes:
    body = _ENCODER.encode(message).encode("utf-8")
    return _HEADER.pack(len(body)) + body


# One encoder for every frame: json.dumps builds a new one whenever an option is given.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=repr)


class FrameReader:
    """Accumulates bytes and yields complete messages: whatever ``Frame`` the peer sends."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes is over the limit")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            yield json.loads(body)


class FrameWriter:
    """The launcher's writer to the daemon: non-blocking, with an outgoing buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pending = bytearray()
        self.broken = False  # the peer is gone; what is left to send is dropped

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def send(self, message: FromLauncher) -> None:
        self._pending += encode_frame(message)
        self.flush()

    def flush(self) -> None:
        while self._pending:
            try:
                sent = self._sock.send(self._pending)
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):
                self._pending.clear()
                self.broken = True
                return
            del self._pending[:sent]


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking ``fd``: os.write may take only part of it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
