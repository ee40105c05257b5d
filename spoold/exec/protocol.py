"""Messages between the daemon, its launcher and the workers: their shapes, and the frames.

Each message is declared here once: its ``op`` (``Op``), its keys (a
TypedDict), and an attempt's ``outcome`` (``Outcome``). StrEnum members
encode as plain strings, and the plain strings a decoded message holds
compare (and hash) equal to them. Everything here is the standard library
the launcher loads anyway (enum comes with signal, typing with the rest).

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
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Literal, NotRequired, TypedDict, TypeVar

if TYPE_CHECKING:
    import socket  # for a type only: the client API imports this module too (write_all)

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
# Bytes asked for per read: below malloc's mmap threshold, so a read does not
# map and unmap a fresh buffer each time (a 1 MiB buffer cost three system
# calls and its page faults per message).
READ_SIZE = 64 * 1024


class Op(StrEnum):
    """What a message is: its ``op``."""

    RUN = "run"  # daemon -> launcher: start an attempt
    KILL = "kill"  # daemon -> launcher: stop one (SIGTERM, a grace period, SIGKILL)
    EXIT = "exit"  # daemon -> launcher: kill what runs and leave
    READY = "ready"  # launcher -> daemon: the hello, its loop runs
    NOT_STARTED = "not_started"  # launcher -> daemon: no process for it (fork failed)
    STARTED = "started"  # launcher -> daemon: a process runs it
    FINISHED = "finished"  # launcher -> daemon: it ended, and how


class Outcome(StrEnum):
    """How an attempt ended: the ``outcome`` of its history entry."""

    OK = "ok"
    ERROR = "error"  # the job raised
    TIMEOUT = "timeout"  # it overran its timeout and was killed
    CRASHED = "crashed"  # its process died without a report (or the launcher did)
    INTERRUPTED = "interrupted"  # the daemon stopped it, or died while it ran


# The shapes of the messages are for the type checker only: as classes they
# would cost the launcher, and so every fork of it, some 66 kB of heap that no
# code reads. Import them under TYPE_CHECKING too (and cast to their names).
if TYPE_CHECKING:
    # -- what the daemon asks for --

    # What the worker needs of the job itself ("class" is a keyword, hence this form).
    JobRequest = TypedDict(
        "JobRequest",
        {"job_id": str, "class": str, "method": str, "params": list[Any] | dict[str, Any]},
    )

    class JobUser(TypedDict, total=False):
        """The job user, for a root daemon (identity.job_identity); no keys otherwise."""

        uid: int
        gid: int
        user: str
        home: str

    class WorkerSetup(JobUser):
        """How a worker is set up before any job code: the request without the job."""

        python_path: list[str]
        memory_limit: int
        max_jobs_per_process: int

    class RunRequest(JobRequest, WorkerSetup):
        """One attempt's request, as Dispatcher.launch builds it: the job and its worker's setup."""

    class RunMessage(TypedDict):
        op: Literal[Op.RUN]
        key: str  # the job id: every later message about this attempt carries it
        request: RunRequest
        timeout: float  # seconds; 0 for none

    class KillMessage(TypedDict):
        op: Literal[Op.KILL]
        key: str
        grace: float  # seconds between SIGTERM and SIGKILL

    class ExitMessage(TypedDict):
        op: Literal[Op.EXIT]

    ToLauncher = RunMessage | KillMessage | ExitMessage

    # -- what the launcher answers --

    class AttemptEnd(TypedDict):
        """How one attempt ended, as the launcher saw it: facts the daemon words and files."""

        started_at: float
        finished_at: float
        outcome: Outcome
        result: NotRequired[Any]  # ok: what the job returned
        error: NotRequired[str | None]  # error: the job's exception; crashed: how it died
        traceback: NotRequired[str | None]  # error
        signal: NotRequired[int]  # crashed: the signal that killed it
        exit_code: NotRequired[int]  # crashed: the status it exited with, without a report

    class Attempt(AttemptEnd):
        """One entry of a job's history: launcher -> dispatcher -> outcomes -> the record.

        Its keys are written in the order they were set (``attempt`` first), and
        the record keeps that order.
        """

        attempt: int  # 1 for the first
        cause: NotRequired[str]  # interrupted: policy.SHUTDOWN or policy.DAEMON_DIED

    class ReadyMessage(TypedDict):
        op: Literal[Op.READY]

    class NotStartedMessage(TypedDict):
        op: Literal[Op.NOT_STARTED]
        key: str
        errno: int | None  # why fork (or a pipe) failed; the daemon words it
        strerror: str | None

    class StartedMessage(TypedDict):
        op: Literal[Op.STARTED]
        key: str
        pid: int
        started_at: float

    class FinishedMessage(AttemptEnd):
        op: Literal[Op.FINISHED]
        key: str

    AttemptMessage = NotStartedMessage | StartedMessage | FinishedMessage  # for the dispatcher
    FromLauncher = ReadyMessage | AttemptMessage

    # -- between the launcher and a worker --

    class WorkerReport(TypedDict):
        """A worker's answer to one job: ``ok`` with the result, or the error and traceback."""

        ok: bool
        result: NotRequired[Any]
        error: NotRequired[str]
        traceback: NotRequired[str]
        last: NotRequired[bool]  # the worker exits after it (recycled, or over its memory)

    Frame = ToLauncher | FromLauncher | JobRequest | WorkerReport


M = TypeVar("M", bound="Frame")  # what one reader's peer sends


def encode_frame(message: Frame) -> bytes:
    body = _ENCODER.encode(message).encode("utf-8")
    return _HEADER.pack(len(body)) + body


# One encoder for every frame: json.dumps builds a new one whenever an option is given.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=repr)


class FrameReader(Generic[M]):
    """Accumulates bytes and yields complete messages (``FrameReader[WhatThePeerSends]``)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[M]:
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
