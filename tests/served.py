"""A ``spoold`` subcommand that serves HTTP (``metrics``, ``web``) as a subprocess.

``Served(config, workdir, token, name, command).start(*args).wait_serving()``
runs ``python -m spoold COMMAND --config C ARGS`` with ``--listen 127.0.0.1:0``
unless ``args`` has a ``--listen``, learns its URL from the start line
``serving http://127.0.0.1:PORT/`` and ``stop()`` ends it with SIGTERM
(SIGKILL if it does not go). ``token`` is the leak check's (tests/conftest.py),
put into the process's environment so that a leaked one is found.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

from harness import daemon_env, wait_for


@dataclass
class Served:
    """One ``python -m spoold COMMAND`` subprocess; its stdout and stderr in files."""

    config: Path
    workdir: Path
    token: str  # the leak check's
    name: str
    command: str  # "metrics", "web"
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""  # what its start line says it serves

    @property
    def out(self) -> Path:
        return self.workdir / f"{self.name}.out"

    @property
    def err(self) -> Path:
        return self.workdir / f"{self.name}.err"

    def start(self, *args: str) -> Self:
        """Start it (on 127.0.0.1:0 unless ``args`` has a --listen); no wait."""
        listen = [] if "--listen" in args else ["--listen", "127.0.0.1:0"]
        command = [sys.executable, "-m", "spoold", self.command, "--config", str(self.config),
                   *listen, *args]  # fmt: skip
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env=daemon_env(self.workdir, self.token, None),
            )
        return self

    def wait_serving(self, timeout: float = 15.0) -> Self:
        """Wait for the start line; fail with its stderr if it exits first."""

        def line() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}: {self.stderr()}")
            text = self.out.read_text()
            return text.split()[1] if text.startswith("serving ") and "\n" in text else None

        self.url = str(wait_for(line, timeout, lambda: f"no start line; stderr: {self.stderr()}"))
        return self

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM, then its exit status (SIGKILL if it does not go); always reaps."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


S = TypeVar("S", bound=Served)


@contextmanager
def servers(kind: type[S], workdir: Path, token: str) -> Iterator[Callable[[Path], S]]:
    """``new(config)``: a fresh, not yet started ``kind`` (named ``<command>-N``) on that
    config; every one made is stopped (and reaped) when the block ends."""
    made: list[S] = []

    def new(config: Path) -> S:
        server = kind(config, workdir, token, f"{kind.command}-{len(made) + 1}")
        made.append(server)
        return server

    try:
        yield new
    finally:
        for server in made:
            server.stop()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over AF_UNIX, as a reverse proxy or a scraper in front of the socket speaks it."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=15)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(str(self.socket_path))
