"""A private ``redis-server``: a free port of 127.0.0.1, its own folder, durable settings.

The bench's Redis workloads run on it, and so do the tests of the Redis
backend: tests/redis_server.py builds on this module (it adds pytest's skip
or fail and the leak check's token; bench/ imports neither pytest nor tests/).

Nothing is mocked: ``RedisServer`` runs Debian's ``redis-server`` as a child
process on a free port of 127.0.0.1, with its own data folder, so that a
caller can SIGKILL it and start it again on the same port and folder, where it
reloads what it had from its append-only file. The defaults are the durable
ones spoold's Redis backend asks for: every write in the append-only file and
fsynced before the reply (``appendonly yes``, ``appendfsync always``), no RDB
snapshots (``save ''``), no eviction (``maxmemory-policy noeviction``).

``start()`` polls until the server answers PING over a raw socket (and says,
by INFO, that it is the process we started), within a deadline; a server
that dies or does not answer raises ``RuntimeError`` with the tail of its log.
``stop()`` is SIGTERM and wait (SIGKILL if it hangs).

``unavailable()`` says why the Redis workloads cannot run here (redis-server
or redis-py missing), in one line that says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

EXECUTABLE = "redis-server"
PACKAGE = "redis"  # redis-py's import name
HOST = "127.0.0.1"
POLL = 0.01  # seconds between two readiness probes
FSYNC_POLICIES = ("always", "everysec", "no")
LOG_NAME = "redis.log"
AOF_FOLDER = "appendonlydir"  # redis 7's appenddirname, inside ``dir``
PORT_ATTEMPTS = 3  # a first start may lose its free port to another process; pick again


def missing() -> str | None:
    """What Redis needs here and lacks: ``EXECUTABLE``, ``PACKAGE``, or None when neither.

    One check for the bench's ``unavailable()`` and the tests' skip, each
    saying it its own way.
    """
    if shutil.which(EXECUTABLE) is None:
        return EXECUTABLE
    if importlib.util.find_spec(PACKAGE) is None:
        return PACKAGE
    return None


def unavailable() -> str | None:
    """Why the Redis workloads are skipped here (one line), or None when they can run."""
    lacking = missing()
    if lacking == EXECUTABLE:
        return (
            "redis-server is not installed: the Redis workloads are skipped "
            "(install it with `apt-get install redis-server`)"
        )
    if lacking == PACKAGE:
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
    """A TCP port of 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def request(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one command over a raw socket; return the reply.

    A status, error or integer reply comes back as its line (``b"+PONG"``,
    ``b"-LOADING ..."``), a bulk string reply as its body. Raises OSError when
    nothing answers.
    """
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
    """One ``redis-server`` child process with its own port, data folder and log.

    ``RedisServer(folder, env)`` picks a free port; ``start()`` waits until it
    serves; ``kill()`` is a crash (SIGKILL), ``stop()`` a clean shutdown
    (SIGTERM); ``restart()`` starts it again on the same port and folder, where
    it reloads its append-only file. As a context manager it starts on entry
    (if not started) and stops on exit.
    """

    def __init__(
        self,
        directory: Path,
        env: Mapping[str, str] | None = None,
        *,
        appendfsync: str = "always",
        extra: Sequence[str] = (),
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """``directory``: its data folder (made if missing), which holds its log too.

        ``env``: the server's environment (None: this process's). ``appendfsync``:
        ``always``, ``everysec`` or ``no``. ``extra``: more ``--name value``
        arguments, after the defaults (so they win).
        """
        if appendfsync not in FSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {FSYNC_POLICIES}, not {appendfsync!r}")
        self.directory = directory.resolve()
        self.env = None if env is None else dict(env)
        self.appendfsync = appendfsync
        self.extra = list(extra)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._has_served = False  # once it has, its port is its own: restarts keep it

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.proc and self.proc.poll() is None else "stopped"
        return f"<{type(self).__name__} {self.url} in {self.directory} ({state})>"

    # -- where it is --

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, for ``redis.Redis.from_url``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running server's pid."""
        if self.proc is None:
            raise RuntimeError("redis-server was not started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def alive(self) -> bool:
        """``running``, by the name the bench's callers use."""
        return self.running

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def aof_folder(self) -> Path:
        """Where redis 7 keeps its append-only files (the base, the increments, the manifest)."""
        return self.directory / AOF_FOLDER

    def command(self) -> list[str]:
        """The ``redis-server`` command line (no config file: every setting an argument)."""
        return [
            EXECUTABLE,
            "--port", str(self.port),
            "--bind", HOST,
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            # Its own process title would overwrite its environment (the tests' leak token).
            "--set-proc-title", "no",
            *self.extra,
        ]  # fmt: skip

    # -- its life --

    def start(self) -> Self:
        """Start the server; return once it answers PING, or raise RuntimeError with its log.

        Before it has ever served, a start that loses its free port to another
        process (it logs "Address already in use") tries again on a new one.
        """
        if self.running:
            raise RuntimeError(f"redis-server already runs as pid {self.pid}")
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            offset = self._log_size()
            self._spawn()
            try:
                self._wait_serving()
            except RuntimeError:
                lost_port = "Address already in use" in self._log_since(offset)
                if self._has_served or not lost_port or attempt == PORT_ATTEMPTS:
                    raise
                self.port = free_port()
            else:
                self._has_served = True
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def restart(self) -> Self:
        """Start again on the same port and folder (stopping it first if it runs).

        It reloads its data from the append-only file in its folder.
        """
        self.stop()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), wait, SIGKILL if it hangs; always reaps.

        Returns its exit status (None if it was never started).
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- its log --

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- inside --

    def _spawn(self) -> None:
        # Its own log gets what it prints before it opens --logfile (a bad argument).
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self.env,
            )

    def _wait_serving(self) -> None:
        """Poll until it answers PING as the process we started; raise if it dies or is slow."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while not self._serves():
            status = self.proc.poll()
            if status is not None:
                raise RuntimeError(
                    f"redis-server exited with {status} before it answered PING"
                    f" on port {self.port}; the end of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within"
                    f" {self.start_timeout}s; the end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(POLL)

    def _serves(self) -> bool:
        """True once PING gets PONG (not LOADING) and INFO names our pid: not someone else's."""
        assert self.proc is not None
        try:
            if request(self.port, "PING") != b"+PONG":
                return False  # e.g. -LOADING while it reads its append-only file
            info = request(self.port, "INFO", "server").decode(errors="replace")
        except OSError:
            return False
        return f"process_id:{self.proc.pid}\r\n" in info

    def _log_size(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.stat().st_size
        return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
