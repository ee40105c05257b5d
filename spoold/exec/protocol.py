"""Messages between the daemon and its launcher: length-prefixed JSON frames.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Readers
are fed whatever bytes a non-blocking read returned and yield whole
messages; writers either block (the daemon, whose launcher always reads) or
queue and flush when the socket is writable (the launcher, which must never
block on a busy daemon).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
# Bytes asked for per read: below malloc's mmap threshold, so a read does not
# map and unmap a fresh buffer each time (a 1 MiB buffer cost three system
# calls and its page faults per message).
READ_SIZE = 64 * 1024

Message = dict[str, Any]


def encode_frame(message: Message) -> bytes:
    body = _ENCODER.encode(message).encode("utf-8")
    return _HEADER.pack(len(body)) + body


# One encoder for every frame: json.dumps builds a new one whenever an option is given.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=repr)


class FrameReader:
    """Accumulates bytes and yields complete messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Message]:
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
    """A non-blocking writer with an outgoing buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pending = bytearray()
        self.broken = False  # the peer is gone; what is left to send is dropped

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def send(self, message: Message) -> None:
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
