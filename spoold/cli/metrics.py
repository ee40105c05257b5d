"""``spoold metrics``: serve Prometheus's ``/metrics`` over HTTP, from a process of its own.

The daemon stays single-threaded and never listens: this command, run as an
unprivileged member of the group that may read the spool, reads the backend
at each scrape (``Catalog.stats()`` for the daemons' snapshots,
``Catalog.status()`` for the jobs per state) and answers with
``prometheus.render``. A backend it cannot read (Redis down, a permission
missing) is a 503 with the reason on one line; the next scrape tries again.

What it listens on is ``[metrics] listen`` or ``--listen``: ``host:port`` or
``unix:/path`` (a stale socket file is removed; the socket is made 0660, so
that its group, the process's, may connect). Off loopback a scraper must send
``Authorization: Bearer <token>`` with the token of ``[metrics] token_file``
(Prometheus's ``authorization: credentials_file``); without a token file it
refuses to start. A token file set for a loopback or unix address is
required there too.

The stdlib's ThreadingHTTPServer, with limits, since anyone who can reach
the port can talk to it: a request line and headers of at most
``MAX_REQUEST`` bytes, read within ``REQUEST_TIMEOUT`` seconds, at most
``MAX_CONNECTIONS`` at once (more are closed at once), one request per
connection, GET and HEAD only. SIGTERM and SIGINT stop it (exit status 0).
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import ipaddress
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from spoold.backends import open_catalog
from spoold.cli import output as cli_output
from spoold.config import Address, Config, ConfigError
from spoold.core.backend import Catalog, CatalogError
from spoold.errors import describe_os_error
from spoold.prometheus import CONTENT_TYPE, render, waiting_age

MAX_REQUEST = 8192  # bytes of request line and headers; a scraper sends a few hundred
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request
SEND_TIMEOUT = 10.0  # seconds each write of the answer may block on a client not reading
MAX_CONNECTIONS = 16  # at once; a scraper needs one
SOCKET_MODE = 0o660

LANDING = (
    b"<!doctype html>\n<html><head><title>spoold metrics</title></head>\n"
    b'<body><h1>spoold metrics</h1><p><a href="/metrics">/metrics</a>: jobs, attempts,'
    b" workers and latencies in Prometheus's text format.</p></body></html>\n"
)


# -- the address --


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


def read_token(config: Config, address: Address) -> str | None:
    """The bearer token of ``[metrics] token_file``; ConfigError (exit 2) if it is needed
    (a listen address off loopback) and missing, or set and unreadable or empty."""
    path = config.metrics.token_file
    if path is None:
        if is_loopback(address):
            return None
        raise ConfigError(
            f"[metrics] listen {address.text} is not loopback: set [metrics] token_file to a"
            " file holding the token scrapers must send (Authorization: Bearer)"
        )
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[metrics] token_file: {describe_os_error(exc)}") from None
    if not token:
        raise ConfigError(f"[metrics] token_file {path} is empty")
    return token


# -- a scrape --


@dataclass
class Exporter:
    """What one scrape reads and renders; one scrape at a time reaches the backend."""

    config: Config
    catalog: Catalog
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_trouble: str | None = None

    def scrape(self) -> bytes:
        """The text exposition; CatalogError or OSError if the backend cannot be read."""
        with self.lock:
            now = time.time()
            snapshots = self.catalog.stats()
            status = self.catalog.status(now)
        oldest = waiting_age(snapshots, now, status.oldest_waiting_age)
        classes = self.config.allow.keys()
        return render(snapshots, status.counts, oldest, now, classes=classes).encode()

    def trouble(self, reason: str | None) -> None:
        """Say on stderr when reading the backend starts failing (once) and works again."""
        with self.lock:
            before, self.last_trouble = self.last_trouble, reason
        if reason is not None and reason != before:
            print(f"spoold: metrics: cannot read the spool: {reason}", file=sys.stderr, flush=True)
        elif reason is None and before is not None:
            print("spoold: metrics: reading the spool again", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class App:
    exporter: Exporter
    token: bytes | None  # None: every request is served

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").strip().partition(" ")
        given = credentials.strip().encode("utf-8", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self.token)


# -- HTTP --


class _Capped(BufferedIOBase):
    """A request's input, of which at most ``budget`` bytes are read: past that, headers
    are too large (431); a request line cut short reads as a bad request (400)."""

    def __init__(self, raw: BufferedIOBase, budget: int) -> None:
        super().__init__()
        self.raw_input = raw
        self.left = budget

    def readline(self, size: int | None = -1) -> bytes:
        if self.left <= 0:
            raise http.client.LineTooLong(f"request over {MAX_REQUEST} bytes")
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


class _Served(Protocol):
    app: App


class Handler(BaseHTTPRequestHandler):
    """GET (or HEAD) ``/metrics``, ``/``; anything else is 404."""

    server_version = "spoold-metrics"
    sys_version = ""
    timeout = SEND_TIMEOUT  # each read and write of the connection

    def setup(self) -> None:
        super().setup()
        self.rfile = _Capped(self.rfile, MAX_REQUEST)
        # The socket timeout bounds each read; this bounds the whole request, so that a
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
        self.deadline.cancel()  # the request is in: the scrape may take its time
        return parsed and not self.cut  # cut off half-way: nobody to answer

    def finish(self) -> None:
        self.deadline.cancel()
        super().finish()

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        app = cast(_Served, self.server).app
        if not app.authorized(self.headers.get("Authorization")):
            self._send(401, b"401 unauthorized: send Authorization: Bearer <token>\n", body,
                       extra={"WWW-Authenticate": 'Bearer realm="spoold"'})  # fmt: skip
            return
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics(app.exporter, body)
        elif path == "/":
            self._send(200, LANDING, body, content_type="text/html; charset=utf-8")
        else:
            self._send(404, b"404 not found: the metrics are at /metrics\n", body)

    def _metrics(self, exporter: Exporter, body: bool) -> None:
        try:
            text = exporter.scrape()
        except (CatalogError, OSError) as exc:
            reason = str(exc) if isinstance(exc, CatalogError) else describe_os_error(exc)
            reason = " ".join(reason.split())  # one line
            exporter.trouble(reason)
            self._send(503, f"503 cannot read the spool: {reason}\n".encode(), body)
            return
        exporter.trouble(None)
        self._send(200, text, body, content_type=CONTENT_TYPE)

    def _send(
        self,
        code: int,
        data: bytes,
        body: bool,
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
        fill the log. Trouble reading the spool is said once (``Exporter.trouble``)."""


class _Limits(socketserver.BaseServer):
    """At most MAX_CONNECTIONS requests at once; a client's own trouble (a reset, a
    timeout, a request cut off) is no error of ours and prints nothing."""

    app: App
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
        print(f"spoold: metrics: a request failed: {error!r}", file=sys.stderr, flush=True)


class TCPServer(_Limits, ThreadingHTTPServer):
    daemon_threads = True


class TCP6Server(TCPServer):
    address_family = socket.AF_INET6


class UnixServer(_Limits, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


Server = TCPServer | UnixServer


def bind(address: Address, app: App) -> Server:
    """The listening server; OSError naming the address if it cannot listen there."""
    server: Server
    try:
        server = _bind_unix(address.path) if address.path is not None else _bind_tcp(address)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), address.text) from None
    server.app = app
    server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    return server


def _bind_tcp(address: Address) -> TCPServer:
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    kind = TCP6Server if family == socket.AF_INET6 else TCPServer
    return kind((str(sockaddr[0]), int(sockaddr[1])), Handler)


def _bind_unix(path: Path) -> UnixServer:
    _remove_stale_socket(path)
    mask = os.umask(0o117)  # born 0660: never a moment open to others
    try:
        server = UnixServer(str(path), Handler)
    finally:
        os.umask(mask)
    os.chmod(path, SOCKET_MODE)
    return server


def _remove_stale_socket(path: Path) -> None:
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
    raise OSError(98, "in use by another process (another spoold metrics?)")


def where(server: Server, address: Address) -> str:
    """What the start line says: the URL, with the port the system chose for port 0."""
    if address.path is not None:
        return f"/metrics on unix:{address.path}"
    bound = cast(tuple[str, int], server.server_address)
    host, port = bound[0], bound[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


# -- the command --


def serve(config: Config, address: Address) -> int:
    """Serve until SIGTERM or SIGINT; 0 then. ConfigError (no token where one is needed)
    or OSError (cannot listen there) before it serves."""
    token = read_token(config, address)
    if os.geteuid() == 0:
        cli_output.warn(
            "metrics runs as root; it is meant to run as a member of the group that may"
            " read the spool"
        )
    app = App(Exporter(config, open_catalog(config)), token.encode() if token else None)
    stop = threading.Event()
    with _stopped_by_signals(stop):
        server = bind(address, app)
        try:
            thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
            thread.start()
            print(f"serving {where(server, address)}", flush=True)
            while not stop.wait(1.0):
                pass
            server.shutdown()
            thread.join()
        finally:
            server.server_close()
            if address.path is not None:
                address.path.unlink(missing_ok=True)
    return 0


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
