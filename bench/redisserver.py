"""The bench's own ``redis-server``: a free port of 127.0.0.1, its own folder, durable settings.

A trimmed copy of tests/redis_server.py (which imports pytest; bench/ does
not). The settings are the ones spoold's Redis backend asks for: every write
in the append-only file and fsynced before the reply (``appendonly yes``,
``appendfsync always``), no RDB snapshots, no eviction. ``start()`` polls
PING over a raw socket until the server answers as the process we started,
within a deadline; ``stop()`` is SIGTERM and wait (SIGKILL if it hangs).

``unavailable()`` says why the Redis workloads cannot run here (redis-server
or redis-py missing), in one line that says how to install it.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

EXECUTABLE = "redis-server"
HOST = "127.0.0.1"
POLL = 0.01
LOG_NAME = "redis.log"
SETTINGS = (
    "--appendonly", "yes",
    "--appendfsync", "always",
    "--save", "",
    "--maxmemory-policy", "noeviction",
    "--bind", HOST,
    "--set-proc-title", "no",  # its own title would overwrite its environment (the leak token)
)  # fmt: skip


def unavailable() -> str | None:
    """Why the Redis workloads are skipped here (one line), or None when they can run."""
    if shutil.which(EXECUTABLE) is None:
        return (
            "redis-server is not installed: the Redis workloads are skipped "
            "(install it with `apt-get install redis-server`)"
        )
    if importlib.util.find_spec("redis") is None:
        return (
            "the Python package redis is not installed: the Redis workloads are skipped "
            "(install it with `.venv/bin/pip install -e '.[redis]'`)"
        )
    return None


def version() -> str:
    """``redis-server --version``'s ``v=`` field (e.g. 7.0.15), or its whole line."""
    out = subprocess.run(
        [EXECUTABLE, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def request(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """One command over a raw socket: a status/error line, or a bulk string's body."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with (
        socket.create_connection((HOST, port), timeout=timeout) as sock,
        sock.makefile("rb") as reply,
    ):
        sock.sendall(b"".join(parts))
        line = reply.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionResetError(f"incomplete reply: {line!r}")
        if line.startswith(b"$"):
            size = int(line[1:])
            return reply.read(size) if size >= 0 else b""
        return line[:-2]


class RedisServer:
    """One ``redis-server`` child with its own port, data folder and log."""

    def __init__(self, directory: Path, env: dict[str, str], start_timeout: float = 10.0) -> None:
        self.directory = directory.resolve()
        self.env = env
        self.start_timeout = start_timeout
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    def command(self) -> list[str]:
        return [
            EXECUTABLE,
            "--port", str(self.port),
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            *SETTINGS,
        ]  # fmt: skip

    def start(self) -> RedisServer:
        """Start it; return once it answers PING as our process, else RuntimeError with its log.

        A start that lost its free port to another process tries a new one (3 tries).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=self.env,
                )
            try:
                self._wait_serving()
                return self
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in self.log_tail():
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL if it hangs. Always reaps."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_serving(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while not self._serves():
            status = self.proc.poll()
            if status is not None:
                raise RuntimeError(
                    f"redis-server exited with {status} before it answered PING on port "
                    f"{self.port}: {self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within "
                    f"{self.start_timeout}s: {self.log_tail()}"
                )
            time.sleep(POLL)

    def _serves(self) -> bool:
        assert self.proc is not None
        try:
            if request(self.port, "PING") != b"+PONG":
                return False  # e.g. -LOADING
            info = request(self.port, "INFO", "server").decode(errors="replace")
        except OSError:
            return False
        return f"process_id:{self.proc.pid}\r\n" in info
