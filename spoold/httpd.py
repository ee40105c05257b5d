"""The small HTTP server the watcher processes share: ``spoold metrics`` and ``spoold web``.

The daemon listens on no network port (only its local control socket); these
commands do, as unprivileged members of the group that may read the spool.
Anyone who can reach the port can talk to
them, so the stdlib's ThreadingHTTPServer is wrapped in limits: a request of
at most ``max_request`` bytes (request line, headers and any body), its
head read within ``REQUEST_TIMEOUT`` seconds, each write of the answer
bounded by ``SEND_TIMEOUT``, at most ``MAX_CONNECTIONS`` at once (more are
closed at once), one request per connection, no line per request in the log.

It listens on ``host:port`` or ``unix:/path`` (a stale socket file is
removed; the socket is born 0660, so its group, the process's, may
connect). SIGTERM and SIGINT stop it.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from types import FrameType
from typing import Any, cast

from spoold.config import Address

REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request's head
SEND_TIMEOUT = 10.0  # seconds each read and write of the connection may block
MAX_CONNECTIONS = 16  # at once; a scraper needs one, a dashboard a few
SOCKET_MODE = 0o660


def is_loopback(address: Address) -> bool:
    """A unix socket, or a host whose every address is a loopback one (a name is resolved)."""
    if address.path is not None:
        return True
    try:
        found = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(found) and all(
        ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]).is_loopback
        for _family, _type, _proto, _name, sockaddr in found
    )


class CappedInput(BufferedIOBase):
    """A request's input, of which at most ``budget`` bytes are read: past that, headers
    are too large (431); a request line cut short reads as a bad request (400)."""

    def __init__(self, raw: BufferedIOBase, budget: int) -> None:
        super().__init__()
        self.raw_input = raw
        self.budget = budget
        self.left = budget

    def readline(self, size: int | None = -1) -> bytes:
        if self.left <= 0:
            raise http.client.LineTooLong(f"request over {self.budget} bytes")
        limit = self.left if size is None or size < 0 else min(size, self.left)
        line = self.raw_input.readline(limit)
        self.left -= len(line)
        return line

    def read(self, size: int | None = -1) -> bytes:
        limit = self.left if size is None or size < 0 else min(size, self.left)
        data = self.raw_input.read(limit)
        self.left -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw_input.close()
        super().close()


class GuardedHandler(BaseHTTPRequestHandler):
    """A handler whose client cannot hold a connection or send more than ``max_request``
    bytes; ``send`` answers with a body of known length."""

    server_version = "spoold"
    sys_version = ""
    timeout = SEND_TIMEOUT  # each read and write of the connection
    max_request = 8192  # bytes of request line, headers and body

    def setup(self) -> None:
        super().setup()
        self.rfile = CappedInput(self.rfile, self.max_request)
        # The socket timeout bounds each read; this bounds the whole head, so that a
        # client sending a byte at a time cannot hold a connection for long.
        self.cut = False
        self.deadline = threading.Timer(REQUEST_TIMEOUT, self._cut_off)
        self.deadline.daemon = True
        self.deadline.start()

    def _cut_off(self) -> None:
        self.cut = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.deadline.cancel()  # the head is in: the answer may take its time
        return parsed and not self.cut  # cut off half-way: nobody to answer

    def finish(self) -> None:
        self.deadline.cancel()
        super().finish()

    def send(
        self,
        code: int,
        data: bytes,
        body: bool = True,
        *,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def address_string(self) -> str:
        address = self.client_address
        return str(address[0]) if isinstance(address, tuple) and address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        """No line per request: a scraper comes every few seconds, and a scanner would
        fill the log. What goes wrong is said by the application, once."""


class _Limits(socketserver.BaseServer):
    """At most MAX_CONNECTIONS requests at once; a client's own trouble (a reset, a
    timeout, a request cut off) is no error of ours and prints nothing."""

    app: Any  # what the handlers serve, set by ``bind``
    label: str  # "metrics", "web": for the one line a failed request prints
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return
        print(f"spoold: {self.label}: a request failed: {error!r}", file=sys.stderr, flush=True)


class TCPServer(_Limits, ThreadingHTTPServer):
    daemon_threads = True


class TCP6Server(TCPServer):
    address_family = socket.AF_INET6


class UnixServer(_Limits, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


Server = TCPServer | UnixServer


def bind(address: Address, handler: type[GuardedHandler], app: Any, label: str) -> Server:
    """The listening server; OSError naming the address if it cannot listen there."""
    server: Server
    try:
        if address.path is not None:
            server = _bind_unix(address.path, handler, label)
        else:
            server = _bind_tcp(address, handler)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), address.text) from None
    server.app = app
    server.label = label
    server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    return server


def _bind_tcp(address: Address, handler: type[GuardedHandler]) -> TCPServer:
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    kind = TCP6Server if family == socket.AF_INET6 else TCPServer
    return kind((str(sockaddr[0]), int(sockaddr[1])), handler)


def _bind_unix(path: Path, handler: type[GuardedHandler], label: str) -> UnixServer:
    _remove_stale_socket(path, label)
    mask = os.umask(0o117)  # born 0660: never a moment open to others
    try:
        server = UnixServer(str(path), handler)
    finally:
        os.umask(mask)
    os.chmod(path, SOCKET_MODE)
    return server


def _remove_stale_socket(path: Path, label: str) -> None:
    """A socket file left by a process that died is removed; one that answers is not."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(17, "exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
            return
        except FileNotFoundError:
            return
    raise OSError(98, f"in use by another process (another spoold {label}?)")


def where(server: Server, address: Address, path: str = "/") -> str:
    """What the start line says: the URL, with the port the system chose for port 0."""
    if address.path is not None:
        return f"{path} on unix:{address.path}"
    bound = cast(tuple[str, int], server.server_address)
    host, port = bound[0], bound[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def serve_until_signalled(server: Server, address: Address, path: str = "/") -> None:
    """Say where it serves on stdout, serve until SIGTERM or SIGINT, then close (and
    remove a unix socket's file)."""
    stop = threading.Event()
    with _stopped_by_signals(stop):
        try:
            thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
            thread.start()
            print(f"serving {where(server, address, path)}", flush=True)
            while not stop.wait(1.0):
                pass
            server.shutdown()
            thread.join()
        finally:
            server.server_close()
            if address.path is not None:
                address.path.unlink(missing_ok=True)


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
