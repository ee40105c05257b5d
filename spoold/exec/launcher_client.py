"""The daemon's end of the launcher: start it, send it requests, read its reports."""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spoold.exec.protocol import READ_SIZE, FrameReader, Op, encode_frame

if TYPE_CHECKING:
    from spoold.exec.messages import (
        AttemptMessage,
        ExitMessage,
        RunMessage,
        RunRequest,
        ToLauncher,
    )

# -P keeps the daemon's working directory off sys.path, so no job import can pick up
# a module from wherever the daemon happened to be started; spoold itself is found
# where the daemon found it.
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder that holds spoold/
_START = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from spoold.exec.launcher import main; main(sys.argv[1:])"
)


class LauncherGone(Exception):
    """The launcher process exited; the attempts it ran are lost."""


class LauncherClient:
    """Starts ``python -m spoold.exec.launcher`` before any thread exists, and talks to it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", _START, _PACKAGE_PARENT, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock = ours
        self._reader: FrameReader = FrameReader()
        self.ready = False  # its imports are done and its loop runs: attempts start at once

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the launcher's hello; True once it came."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if poller.poll(remaining * 1000):
                for _message in self.receive():  # nothing but the hello comes before a request
                    pass
        return True

    def run(self, key: str, request: RunRequest, timeout: float, slots: int) -> None:
        """Start it once fewer than ``slots`` attempts run (in order, after those sent before)."""
        message: RunMessage = {
            "op": Op.RUN,
            "key": key,
            "request": request,
            "timeout": timeout,
            "slots": slots,
        }
        self._send(message)

    def unqueue(self, key: str) -> None:
        """Take back a run that has not started: not_started (without an errno) answers."""
        self._send({"op": Op.UNQUEUE, "key": key})

    def kill(self, key: str, grace: float) -> None:
        self._send({"op": Op.KILL, "key": key, "grace": grace})

    def _send(self, message: ToLauncher) -> None:
        # Blocking is safe: the launcher never blocks, so it always reads.
        try:
            self.sock.sendall(encode_frame(message))
        except (BrokenPipeError, ConnectionResetError):
            raise LauncherGone("the launcher is gone") from None

    def receive(self) -> list[AttemptMessage]:
        """Messages about attempts available now (call when the socket is readable)."""
        try:
            data = self.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        except ConnectionResetError:
            data = b""
        if not data:
            raise LauncherGone(f"the launcher exited (status {self.process.poll()})")
        messages: list[AttemptMessage] = []
        for message in self._reader.feed(data):
            if message["op"] == Op.READY:  # the hello is the client's; the rest, the dispatcher's
                self.ready = True
            else:
                messages.append(message)
        return messages

    def close(self, timeout: float = 10.0) -> None:
        """Ask the launcher to stop (it kills what still runs) and reap it."""
        goodbye: ExitMessage = {"op": Op.EXIT}
        with contextlib.suppress(OSError):
            self.sock.sendall(encode_frame(goodbye))
        self.sock.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
