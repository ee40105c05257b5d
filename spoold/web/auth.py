"""Who is asking, and whether a POST really comes from our own page.

Auth is by a bearer token (``[web] token_file``) or HTTP Basic
(``[web] basic_auth_file``, ``user:password`` lines), every secret compared
with ``hmac.compare_digest``. A browser brings the token once as
``?token=``; it is swapped for an HttpOnly, SameSite=Strict cookie holding a
value derived from the token (never the token), and the URL is cleaned.

Every POST must pass two checks (cross-site request forgery): the browser's
``Sec-Fetch-Site`` must say ``same-origin`` (where it sends none, the
``Origin`` must name this host), and the form must carry a token derived
from a secret of this process and the viewer; Basic auth is no defence on
its own, since the browser resends it by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from spoold.config import ConfigError, WebSettings
from spoold.errors import describe_os_error

COOKIE = "spoold_session"
ANONYMOUS = ""  # the viewer when no auth is configured


@dataclass(frozen=True)
class Auth:
    token: bytes | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # Basic: user -> password
    secret: bytes = field(default_factory=lambda: os.urandom(32))  # this process's, for forms

    @property
    def configured(self) -> bool:
        return self.token is not None or bool(self.users)

    def session(self) -> str:
        """The cookie's value: derived from the token, so the cookie is not the token."""
        assert self.token is not None
        return hmac.new(self.token, b"spoold web session", hashlib.sha256).hexdigest()

    def viewer(self, authorization: str | None, cookies: Mapping[str, str]) -> str | None:
        """Who this request is (a user name, "token"), None if it proves nothing."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and self.token_matches(credentials):
            return "token"
        if scheme == "basic" and self.users:
            return self._basic(credentials)
        cookie = cookies.get(COOKIE)
        if cookie is None or self.token is None:
            return None
        matched = hmac.compare_digest(cookie.encode("utf-8", "replace"), self.session().encode())
        return "token" if matched else None

    def token_matches(self, given: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token)

    def _basic(self, credentials: str) -> str | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        # An unknown user costs the same comparison as a known one.
        expected = self.users.get(user, self.secret)
        matched = hmac.compare_digest(password.encode(), expected)
        return user if matched and user in self.users else None

    def form_token(self, viewer: str) -> str:
        return hmac.new(self.secret, viewer.encode(), hashlib.sha256).hexdigest()

    def form_token_ok(self, viewer: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode("utf-8", "replace"), self.form_token(viewer).encode()
        )


def same_origin(headers: Mapping[str, str]) -> bool:
    """The browser says the request comes from a page of this origin."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = headers.get("origin")
    host = headers.get("host")
    if not origin or origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def load_auth(settings: WebSettings) -> Auth:
    """The secrets of ``[web] token_file`` and ``basic_auth_file``; ConfigError (one line)
    if one is set and unreadable, empty, malformed or readable by others."""
    token = None
    if settings.token_file is not None:
        token = _secret_text(settings.token_file, "token_file").strip().encode()
        if not token:
            raise ConfigError(f"[web] token_file {settings.token_file} is empty")
    users: dict[str, bytes] = {}
    if settings.basic_auth_file is not None:
        users = _users(settings.basic_auth_file)
    return Auth(token, users)


def _users(path: Path) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, raw in enumerate(_secret_text(path, "basic_auth_file").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not (colon and user and password):
            raise ConfigError(f"[web] basic_auth_file {path} line {number}: expected user:password")
        users[user] = password.encode()
    if not users:
        raise ConfigError(f"[web] basic_auth_file {path} names no user")
    return users


def _secret_text(path: Path, key: str) -> str:
    try:
        mode = os.stat(path).st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[web] {key}: {describe_os_error(exc)}") from None
    if mode & stat.S_IROTH:
        raise ConfigError(f"[web] {key} {path} is readable by everyone: chmod o-r {path}")
    return text
