"""``spoold web``: the dashboard served over HTTP by ``spoold.httpd``'s hardened server.

It refuses to start on an address off loopback without auth (``[web]
token_file`` or ``basic_auth_file``), and with ``--allow-actions`` but no
auth, so that nobody can act as this user without proving who they are. It
warns when started as root: it is meant to run as a member of the watching
group (``spoold init --view-group``), which may read the spool but not change
it, so that read-only holds even if the web process is fooled.
"""

from __future__ import annotations

import os
import sys
from typing import cast
from urllib.parse import parse_qsl, urlsplit

from spoold import httpd
from spoold.backends import open_catalog
from spoold.config import Address, Config, ConfigError
from spoold.errors import describe_os_error
from spoold.web.app import SECURITY_HEADERS, App, Request
from spoold.web.auth import load_auth

MAX_FORM = 16 * 1024  # bytes of a POST's form: a filter and a token


class Handler(httpd.GuardedHandler):
    server_version = "spoold-web"
    max_request = 8192 + MAX_FORM

    def do_GET(self) -> None:
        self._answer("GET", body=True)

    def do_HEAD(self) -> None:
        self._answer("GET", body=False)

    def do_POST(self) -> None:
        self._answer("POST", body=True)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (a request too large or malformed, a method not
        served) in plain text with the security headers, not as its HTML page without them."""
        self.close_connection = True
        text = f"{code} {message or self.responses.get(code, ('error',))[0]}\n"
        self.send(code, text.encode("utf-8", "replace"), self.command != "HEAD",
                  extra={**SECURITY_HEADERS, "Connection": "close"})  # fmt: skip

    def _answer(self, method: str, *, body: bool) -> None:
        app = cast(App, getattr(self.server, "app"))  # noqa: B009 (set by httpd.bind)
        form = {}
        if method == "POST":
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit() or int(length) > MAX_FORM:
                self.send(413, b"413 the form is too large\n", body)
                return
            raw = self.rfile.read(int(length)).decode("utf-8", "replace")
            form = dict(parse_qsl(raw, keep_blank_values=True))
        parts = urlsplit(self.path)
        request = Request(
            method=method,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            form=form,
        )
        answer = app.handle(request)
        self.send(answer.status, answer.body, body, content_type=answer.content_type,
                  extra=answer.headers)  # fmt: skip


def serve(config: Config, address: Address, *, actions: bool) -> int:
    """Serve until SIGTERM or SIGINT; 0 then. ConfigError (auth missing where it is
    needed, a secret file unreadable) or OSError (cannot listen there) before it serves."""
    auth = load_auth(config.web)
    if not auth.configured and not httpd.is_loopback(address):
        raise ConfigError(
            f"--listen {address.text} is not loopback: set [web] token_file or"
            " [web] basic_auth_file so that viewers must sign in"
        )
    if actions and not auth.configured:
        raise ConfigError(
            "--allow-actions needs [web] token_file or [web] basic_auth_file: actions are"
            " for a viewer who signed in"
        )
    if os.geteuid() == 0:
        print(
            "spoold: web: warning: running as root; run it as a member of the watching"
            " group (spoold init --view-group), which may read the spool but not change it",
            file=sys.stderr,
            flush=True,
        )
    app = App(config, open_catalog(config), auth, actions=actions,
              metrics_token=_metrics_token(config))  # fmt: skip
    server = httpd.bind(address, Handler, app, "web")
    httpd.serve_until_signalled(server, address)
    return 0


def _metrics_token(config: Config) -> bytes | None:
    path = config.metrics.token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[metrics] token_file: {describe_os_error(exc)}") from None
    return token.encode() or None
