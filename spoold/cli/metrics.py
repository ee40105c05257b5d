"""``spoold metrics``: serve Prometheus's ``/metrics`` over HTTP, from a process of its own.

The daemon stays single-threaded and listens on no network port: this command, run as an
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

The server is ``spoold.httpd``'s, with its limits (request size and time,
connections at once), shared with ``spoold web``; this one answers GET and
HEAD only. SIGTERM and SIGINT stop it (exit status 0).
"""

from __future__ import annotations

import hmac
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, cast
from urllib.parse import urlsplit

from spoold import httpd
from spoold.backends import open_catalog
from spoold.cli import output as cli_output
from spoold.config import Address, Config, ConfigError
from spoold.core.backend import Catalog, CatalogError
from spoold.errors import describe_os_error
from spoold.httpd import is_loopback
from spoold.prometheus import CONTENT_TYPE, render, waiting_age

LANDING = (
    b"<!doctype html>\n<html><head><title>spoold metrics</title></head>\n"
    b'<body><h1>spoold metrics</h1><p><a href="/metrics">/metrics</a>: jobs, attempts,'
    b" workers and latencies in Prometheus's text format.</p></body></html>\n"
)


# -- the address --


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


class _Served(Protocol):
    app: App


class Handler(httpd.GuardedHandler):
    """GET (or HEAD) ``/metrics``, ``/``; anything else is 404."""

    server_version = "spoold-metrics"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        app = cast(_Served, self.server).app
        if not app.authorized(self.headers.get("Authorization")):
            self.send(401, b"401 unauthorized: send Authorization: Bearer <token>\n", body,
                       extra={"WWW-Authenticate": 'Bearer realm="spoold"'})  # fmt: skip
            return
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics(app.exporter, body)
        elif path == "/":
            self.send(200, LANDING, body, content_type="text/html; charset=utf-8")
        else:
            self.send(404, b"404 not found: the metrics are at /metrics\n", body)

    def _metrics(self, exporter: Exporter, body: bool) -> None:
        try:
            text = exporter.scrape()
        except (CatalogError, OSError) as exc:
            reason = str(exc) if isinstance(exc, CatalogError) else describe_os_error(exc)
            reason = " ".join(reason.split())  # one line
            exporter.trouble(reason)
            self.send(503, f"503 cannot read the spool: {reason}\n".encode(), body)
            return
        exporter.trouble(None)
        self.send(200, text, body, content_type=CONTENT_TYPE)


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
    server = httpd.bind(address, Handler, app, "metrics")
    httpd.serve_until_signalled(server, address, "/metrics")
    return 0
