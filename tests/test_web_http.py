"""``spoold web`` over HTTP, end to end, without a browser: the real daemon runs real jobs on
a temporary spool, real ``spoold web`` subprocesses serve it, and the tests talk to them with
urllib (http.client and a raw socket where the request itself is the point).

Shown here: the refusals at start-up; sign-in by token (``?token=`` swapped for a cookie,
Bearer) and by HTTP Basic; every POST refused without the form's token or from another
site, and refused altogether without ``--allow-actions``; retry of one job, bulk retry and
purge changing exactly what they say; the lists paged newest first with filters in the
address and a capped search that goes on; job contents hidden without sign-in and secrets
masked with it; everything escaped; ``/metrics``; a unix socket; the security headers and
static files; a Redis spool with two daemons shown as a file spool is; and the limits of the
HTTP server. Nothing is mocked: records made by hand are written in the daemon's own shape,
cloned from records the daemon wrote.

Most tests share one daemon and a few ``spoold web`` processes per module (``site``), each
test with jobs of its own, so that the whole file stays quick.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import re
import signal
import socket
import stat
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from harness import Daemon, Spool, default_sections, job, toml_text, wait_for
from served import UnixHTTPConnection, servers
from test_prometheus import parse, value
from web_harness import Web

from spoold.client import cancel
from spoold.ids import new_job_id
from spoold.prometheus import CONTENT_TYPE
from spoold.web.redact import MASK

TOKEN = "web-token-3e1f0c9a"  # [web] token_file's
USER, PASSWORD = "alice", "s3cret"  # [web] basic_auth_file's
METRICS_TOKEN = "scrape-token-77b2"  # [metrics] token_file's
FAST = {"interval": 0.2}  # a stats snapshot five times a second
PAGE = 50  # rows of a list page


# -- HTTP --


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 303 is an answer to look at, not to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes

    @property
    def html(self) -> str:
        return self.body.decode()

    @property
    def page(self) -> Page:
        return Page(self.html)


def fetch(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    form: dict[str, str] | None = None,
    method: str | None = None,
) -> Answer:
    """One request (a POST when ``form`` is given); an error status is an Answer too."""
    data = urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with OPENER.open(request, timeout=15) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def raw_exchange(url: str, data: bytes) -> bytes:
    """Send ``data`` as it is on a fresh connection; everything the server sends until it
    closes (what it sent before a reset, if it resets)."""
    parts = urlsplit(url)
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as connection:
        try:
            connection.sendall(data)
            while chunk := connection.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    return received


def get_path(url: str, path: str) -> int:
    """The status of GET ``path`` sent exactly as written (no client normalises it)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# -- HTML --

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


class Page(HTMLParser):
    """What the tests read of a page: elements by id (attributes and text), texts by class,
    every start tag, and the job ids of the list's table (``#job-table``)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.attrs: dict[str, dict[str, str]] = {}
        self.texts: dict[str, str] = {}
        self.by_class: dict[str, list[str]] = {}
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: list[str] = []
        self._open: list[tuple[str, dict[str, str], list[str]]] = []
        self.feed(html)
        self.close()
        while self._open:
            self._finish(self._open.pop())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.tags.append((tag, found))
        if "id" in found:
            self.attrs[found["id"]] = found
        href = found.get("href", "")
        if tag == "a" and href.startswith("/job/") and self._inside("job-table"):
            self.rows.append(href.removeprefix("/job/"))
        if tag not in VOID:
            self._open.append((tag, found, []))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                while len(self._open) > index:
                    self._finish(self._open.pop())
                return

    def handle_data(self, data: str) -> None:
        for _tag, _attrs, text in self._open:
            text.append(data)

    def _inside(self, ident: str) -> bool:
        return any(attrs.get("id") == ident for _tag, attrs, _text in self._open)

    def _finish(self, element: tuple[str, dict[str, str], list[str]]) -> None:
        _tag, attrs, parts = element
        text = " ".join("".join(parts).split())
        if "id" in attrs:
            self.texts[attrs["id"]] = text
        for name in attrs.get("class", "").split():
            self.by_class.setdefault(name, []).append(text)

    def text(self, ident: str) -> str:
        assert ident in self.texts, f"no #{ident} in the page:\n{self.html[:3000]}"
        return self.texts[ident]

    def has(self, ident: str) -> bool:
        return ident in self.attrs

    def csrf(self) -> str:
        tokens = {a["value"] for tag, a in self.tags if tag == "input" and a.get("name") == "csrf"}
        assert len(tokens) == 1, f"form tokens on the page: {tokens}"
        return tokens.pop()

    def forms(self) -> list[str]:
        return [attrs.get("action", "") for tag, attrs in self.tags if tag == "form"]

    def daemon_states(self) -> list[str]:
        """The state dot of each daemon in the overview's #card-daemons."""
        return [
            attrs["class"].split()[1]
            for tag, attrs in self.tags
            if tag == "span" and attrs.get("class", "").startswith("dot ")
        ]

    def older(self) -> str | None:
        return self.attrs["older"]["href"] if self.has("older") else None


def before_of(href: str) -> str:
    return parse_qs(urlsplit(href).query)["before"][0]


# -- the shared site: one spool, one daemon, several dashboards --


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@dataclass
class Site:
    """A module's spool and daemon, and the dashboards started on it."""

    root: Path
    spool: Spool
    token: str  # in every process's environment: a leaked one is findable
    sections: dict[str, dict[str, Any]]
    daemon: Daemon | None = None
    webs: list[Web] = field(default_factory=list)

    def config(self, name: str, **overrides: dict[str, Any]) -> Path:
        sections = copy.deepcopy(self.sections)
        for key, table in overrides.items():
            sections[key] = {**sections.get(key, {}), **table}
        path = self.root / f"{name}.toml"
        path.write_text(toml_text(sections))
        return path

    def serve(self, name: str, *args: str, spool: Spool | None = None,
              **overrides: dict[str, Any]) -> Web:  # fmt: skip
        if spool is not None:
            overrides = {**overrides, "spool": {**self.sections["spool"], "dir": str(spool.root)}}
        web = Web(self.config(name, **overrides), self.root, self.token, name)
        self.webs.append(web)
        return web.start(*args).wait_serving()

    def run(self, prefix: str, document: dict[str, Any]) -> str:
        """Drop a job with an id of its own; return the id (not waiting)."""
        return self.spool.drop_job(f"{prefix}-{uuid.uuid4().hex[:10]}", document)

    def record_bytes(self, state: str, job_id: str) -> bytes:
        return (self.spool.folder(state) / f"{job_id}.json").read_bytes()

    def folder_bytes(self, state: str) -> dict[str, bytes]:
        return {name: (self.spool.folder(state) / name).read_bytes()
                for name in self.spool.names(state) if name.endswith(".json")}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web")
    spool = Spool(root / "spool").create()
    sections = default_sections(spool)
    sections["spool"]["fsync"] = False
    sections["worker"].update(max_retries=0, retry_delay=0.1)
    sections["metrics"] = dict(FAST)
    secret_file(root / "token", TOKEN + "\n")
    secret_file(root / "users", f"# viewers\n{USER}:{PASSWORD}\nbob:other-password\n")
    secret_file(root / "metrics-token", METRICS_TOKEN + "\n")
    made = Site(root, spool, f"web-module-{uuid.uuid4().hex}", sections)
    made.daemon = Daemon(made.config("daemon"), root, made.token, "daemon").start()
    try:
        made.daemon.wait_ready()
        yield made
    finally:
        for web in made.webs:
            web.stop()
        made.daemon.stop()


@pytest.fixture(scope="module")
def anon(site: Site) -> Web:
    """No auth, loopback, read-only."""
    return site.serve("anon")


@pytest.fixture(scope="module")
def actions(site: Site) -> Web:
    """[web] token_file, --allow-actions."""
    return site.serve("actions", "--allow-actions", web={"token_file": str(site.root / "token")})


@pytest.fixture(scope="module")
def readonly(site: Site) -> Web:
    """[web] token_file, without --allow-actions."""
    return site.serve("readonly", web={"token_file": str(site.root / "token")})


@pytest.fixture(scope="module")
def basic_web(site: Site) -> Web:
    return site.serve("basic", web={"basic_auth_file": str(site.root / "users")})


@pytest.fixture(scope="module")
def scrape_locked(site: Site) -> Web:
    """No web auth, but [metrics] token_file: /metrics wants its bearer."""
    return site.serve("scrape-locked", metrics={"token_file": str(site.root / "metrics-token")})


@pytest.fixture
def start_web(tmp_path: Path, leak_check: str) -> Iterator[Callable[..., Web]]:
    """``start_web(config, *args, ready=True)``: a test's own ``spoold web``, stopped at the end."""
    with servers(Web, tmp_path, leak_check) as new:

        def start(config: Path, *args: str, ready: bool = True) -> Web:
            web = new(config).start(*args)
            return web.wait_serving() if ready else web

        yield start


# -- records in the daemon's shape, many at once --

DONE_COUNT = 310  # six full pages and ten rows
OLD_COUNT = 10  # the oldest ten are app.Old: what the capped search looks for
OUTCOMES = ("error", "error", "error", "timeout", "timeout", "crashed")


def done_kind(index: int) -> tuple[str, str]:
    if index < OLD_COUNT:
        return "app.Old", "run"
    return (("app.Mail", "send"), ("app.Mail", "bounce"), ("app.Report", "run"))[index % 3]


@dataclass
class Records:
    """A spool nobody runs, its done/ and failed/ written with records cloned from real ones;
    each list oldest first."""

    spool: Spool
    done: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    web: Web  # default [web] scan_limit
    scan: Web  # scan_limit = 100

    def newest(
        self, records: list[dict[str, Any]], test: Callable[[dict[str, Any]], bool]
    ) -> list[str]:
        return [r["id"] for r in reversed(records) if test(r)]


def write_record(spool: Spool, state: str, record: dict[str, Any]) -> None:
    path = spool.folder(state) / f"{record['id']}.json"
    path.write_text(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def records(site: Site) -> Records:
    # Templates: what the daemon itself writes for a job done, failed and rejected.
    counter = site.root / "template-flaky.count"
    done_id = site.spool.submit("testjobs.Noop")  # the real client: enqueued_at too
    failed_id = site.run("template-failed", job("Flaky", params=[str(counter), 99]))
    rejected_id = site.spool.drop_job(f"template-rejected-{uuid.uuid4().hex[:8]}", {})
    done = site.spool.wait_record(done_id, "done")
    failed = site.spool.wait_record(failed_id, "failed")
    rejected = site.spool.wait_rejected(rejected_id)
    assert {"enqueued_at", "finished_at", "history"} <= done.keys()
    assert failed["history"][-1]["traceback"] and rejected["raw"] is not None

    spool = Spool(site.root / "records").create()
    now = time.time()
    made_done = []
    for index in range(DONE_COUNT):
        finished = now - (DONE_COUNT - index) * 60.0
        cls, method = done_kind(index)
        record = copy.deepcopy(done)
        attempt = {**done["history"][-1], "started_at": finished - 0.4, "finished_at": finished}
        record.update({"class": cls, "method": method, "id": new_job_id(finished - 0.5),
                       "enqueued_at": finished - 0.5, "finished_at": finished,
                       "history": [attempt]})  # fmt: skip
        made_done.append(record)
        write_record(spool, "done", record)
    made_failed = []
    for index, outcome in enumerate(OUTCOMES):
        finished = now - 7200.0 + index * 60.0
        record = copy.deepcopy(failed)
        attempt = {**failed["history"][-1], "started_at": finished - 1.0,
                   "finished_at": finished, "outcome": outcome}  # fmt: skip
        record.update({"class": "app.Mail", "method": "send", "id": new_job_id(finished - 2.0),
                       "finished_at": finished, "history": [attempt]})  # fmt: skip
        made_failed.append(record)
        write_record(spool, "failed", record)
    made_rejected = []
    for index in range(2):
        finished = now - 5000.0 + index * 60.0
        record = {**copy.deepcopy(rejected), "id": new_job_id(finished), "finished_at": finished,
                  "received_at": finished}  # fmt: skip
        made_rejected.append(record)
        write_record(spool, "failed", record)
    return Records(
        spool,
        made_done,
        made_failed,
        made_rejected,
        site.serve("records", spool=spool),
        site.serve("records-scan", spool=spool, web={"scan_limit": 100}),
    )


# -- 1. start-up --


REFUSALS = {  # case: (arguments, what the one line says)
    "off-loopback": (["--listen", "0.0.0.0:0"], "spoold: --listen 0.0.0.0:0 is not loopback"),
    "actions-no-auth": (["--allow-actions"], "spoold: --allow-actions needs [web] token_file"),
    "token-0644": ([], "is readable by everyone"),
    "basic-malformed": ([], "line 2: expected user:password"),
    "listen-garbage": (["--listen", "garbage"], "spoold: --listen 'garbage': expected host:port"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_at_start_are_one_line_and_exit_status_2(
    daemon_config: Callable[..., Path], start_web: Callable[..., Web], tmp_path: Path, case: str
) -> None:
    args, said = REFUSALS[case]
    web: dict[str, str] = {}
    if case == "token-0644":
        web["token_file"] = str(secret_file(tmp_path / "token", TOKEN, 0o644))
    if case == "basic-malformed":
        web["basic_auth_file"] = str(secret_file(tmp_path / "users", "alice:s3cret\nbob\n"))
    started = start_web(daemon_config(web=web), *args, ready=False)
    assert started.wait_exit() == 2
    lines = started.stderr().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("spoold: ") and said in lines[0], lines
    assert "Traceback" not in started.stderr()
    assert started.out.read_text() == ""


def test_on_loopback_without_auth_it_starts_and_serves_the_overview(anon: Web) -> None:
    answer = fetch(anon.base + "/")
    assert answer.status == 200
    assert answer.page.has("card-daemons")
    assert "not signed in: job contents are hidden" in answer.html
    assert "Traceback" not in anon.stderr()


# -- 2, 3. sign-in --


def test_the_token_signs_in_by_bearer_or_once_in_the_address_then_by_cookie(actions: Web) -> None:
    assert fetch(actions.base + "/").status == 401
    assert fetch(actions.base + "/?token=wrong").status == 401
    assert fetch(actions.base + "/", bearer("wrong")).status == 401

    signed = fetch(actions.base + "/?token=" + TOKEN)
    assert signed.status == 303 and signed.headers["Location"] == "/"
    cookie = signed.headers["Set-Cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    name, _, session = name_value.partition("=")
    assert name == "spoold_session" and session and TOKEN not in cookie
    assert {"HttpOnly", "SameSite=Strict"} <= set(attributes), cookie

    deep = fetch(actions.base + f"/jobs/done?class=app.X&token={TOKEN}")
    assert deep.status == 303 and deep.headers["Location"] == "/jobs/done?class=app.X"

    with_cookie = fetch(actions.base + "/", {"Cookie": f"spoold_session={session}"})
    assert with_cookie.status == 200 and "signed in with the token" in with_cookie.html
    assert fetch(actions.base + "/", {"Cookie": "spoold_session=" + "0" * 64}).status == 401
    assert fetch(actions.base + "/", {"Cookie": f"spoold_session={TOKEN}"}).status == 401
    assert fetch(actions.base + "/", bearer()).status == 200


def test_http_basic_wants_a_known_user_with_the_right_password(basic_web: Web) -> None:
    missing = fetch(basic_web.base + "/")
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic ")
    assert fetch(basic_web.base + "/", basic(USER, "wrong")).status == 401
    assert fetch(basic_web.base + "/", basic("mallory", PASSWORD)).status == 401
    assert fetch(basic_web.base + "/", {"Authorization": "Basic !!not-base64"}).status == 401
    assert fetch(basic_web.base + "/", bearer()).status == 401, "no token configured here"
    right = fetch(basic_web.base + "/", basic(USER, PASSWORD))
    assert right.status == 200 and f"signed in as {USER}" in right.html


# -- 4, 5. actions: CSRF and read-only --


def failed_flaky(site: Site, prefix: str, failures: int) -> str:
    counter = site.root / f"{prefix}-{uuid.uuid4().hex[:8]}.count"
    job_id = site.run(prefix, job("Flaky", params=[str(counter), failures]))
    site.spool.wait_record(job_id, "failed")
    return job_id


def test_a_retry_needs_the_form_token_and_the_same_origin(site: Site, actions: Web) -> None:
    """Flaky fails once: failed/; every forged POST leaves it there; the right one retries
    it, and its second attempt succeeds: a record in done/."""
    job_id = failed_flaky(site, "csrf", failures=1)
    before = site.record_bytes("failed", job_id)
    url = actions.base + f"/job/{job_id}/retry"
    page = fetch(actions.base + f"/job/{job_id}", bearer())
    assert page.status == 200 and page.page.has("retry")
    csrf = page.page.csrf()
    origin = actions.base
    refused = [
        ({**SAME_ORIGIN}, {}),
        ({**SAME_ORIGIN}, {"csrf": "0" * 64}),
        ({"Sec-Fetch-Site": "cross-site"}, {"csrf": csrf}),
        ({"Sec-Fetch-Site": "same-site"}, {"csrf": csrf}),
        ({"Sec-Fetch-Site": "cross-site", "Origin": origin}, {"csrf": csrf}),
        ({"Origin": "http://evil.example"}, {"csrf": csrf}),
        ({"Origin": "null"}, {"csrf": csrf}),
        ({}, {"csrf": csrf}),
    ]
    for headers, form in refused:
        answer = fetch(url, {**bearer(), **headers}, form=form)
        assert answer.status == 403, (headers, form, answer)
        assert "refused" in answer.page.text("problem")
        assert site.record_bytes("failed", job_id) == before, (headers, form)
        assert site.spool.where(job_id) == ["failed"]
    assert fetch(url, SAME_ORIGIN, form={"csrf": csrf}).status == 401, "not signed in"
    assert site.spool.where(job_id) == ["failed"]

    session = fetch(actions.base + "/?token=" + TOKEN).headers["Set-Cookie"].split(";")[0]
    cookie = {"Cookie": session}
    csrf = fetch(actions.base + f"/job/{job_id}", cookie).page.csrf()
    done = fetch(url, {**cookie, **SAME_ORIGIN}, form={"csrf": csrf})
    assert done.status == 303, done
    assert done.headers["Location"] == f"/job/{job_id}?done=retried&n=1"
    record = site.spool.wait_record(job_id, "done")
    assert record["status"] == "done" and site.spool.where(job_id) == ["done"]
    notice = fetch(actions.base + done.headers["Location"], cookie)
    assert notice.page.text("notice") == "retried 1 job(s)"

    # Without Sec-Fetch-Site, an Origin naming this very host is the same origin.
    again = failed_flaky(site, "origin", failures=1)
    answer = fetch(actions.base + f"/job/{again}/retry", {**bearer(), "Origin": origin},
                   form={"csrf": csrf})  # fmt: skip
    assert answer.status == 303, answer
    site.spool.wait_record(again, "done")


def test_read_only_refuses_every_action_and_offers_none(
    site: Site, readonly: Web, actions: Web, anon: Web
) -> None:
    job_id = failed_flaky(site, "readonly", failures=99)
    before = site.folder_bytes("failed")
    csrf = fetch(actions.base + f"/job/{job_id}", bearer()).page.csrf()  # a well-formed token
    for web, headers in ((readonly, bearer()), (anon, {})):
        answer = fetch(web.base + f"/job/{job_id}/retry", {**headers, **SAME_ORIGIN},
                       form={"csrf": csrf})  # fmt: skip
        assert answer.status == 403, answer
        assert "read-only" in answer.page.text("problem")
        for path in ("/retry", "/purge"):
            form = {"csrf": csrf, "view": "failed", "state": "done", "older_than": "0s"}
            assert fetch(web.base + path, {**headers, **SAME_ORIGIN}, form=form).status == 403
        assert fetch(web.base + "/retry?view=failed", headers).status == 403
        page = fetch(web.base + f"/job/{job_id}", headers)
        assert page.status == 200 and not page.page.has("retry")
        assert not any(action.endswith("/retry") for action in page.page.forms())
        for view in ("done", "failed"):
            listed = fetch(web.base + f"/jobs/{view}", headers)
            assert listed.status == 200
            assert "/purge" not in listed.page.forms() and not listed.page.has("retry-matching")
            assert 'name="csrf"' not in listed.html
        assert "read-only" in page.html
    for web, headers in ((readonly, bearer()), (actions, bearer()), (anon, {})):
        answer = fetch(web.base + f"/job/{job_id}/retry", headers)
        assert answer.status == 405, answer
    assert site.folder_bytes("failed") == before
    assert site.spool.where(job_id) == ["failed"]


# -- 6. bulk retry and purge --


def test_retry_all_matching_counts_first_then_retries_exactly_those(
    site: Site, actions: Web
) -> None:
    booms = [site.run("bulk", job("Boom", params=["bulk"])) for _ in range(3)]
    others = [failed_flaky(site, "bulk-other", failures=99) for _ in range(2)]
    # The same class, but rejected (a method not allowed): not a failed job.
    others.append(site.run("bulk-rejected", job("Boom", method="nope")))
    site.spool.wait_rejected(others[-1])
    first = {job_id: site.spool.wait_record(job_id, "failed") for job_id in booms}
    before = site.folder_bytes("failed")
    query = {"view": "failed", "class": "testjobs.Boom"}

    confirm = fetch(actions.base + "/retry?" + urlencode(query), bearer())
    assert confirm.status == 200
    assert confirm.page.text("retry-count") == "3 jobs match."
    listed = {h.removeprefix("/job/") for t, a in confirm.page.tags if t == "a"
              for h in [a.get("href", "")] if h.startswith("/job/")}  # fmt: skip
    assert listed == set(booms)
    assert site.folder_bytes("failed") == before, "counting changes nothing"
    csrf = confirm.page.csrf()

    answer = fetch(actions.base + "/retry", {**bearer(), **SAME_ORIGIN},
                   form={**query, "csrf": csrf})  # fmt: skip
    assert answer.status == 303, answer
    assert answer.headers["Location"] == "/jobs/failed?done=retried&n=3"

    def ran_again(job_id: str) -> bool:
        record = site.spool.record(job_id, "failed")
        return record is not None and record["finished_at"] > first[job_id]["finished_at"]

    wait_for(lambda: all(ran_again(job_id) for job_id in booms), 15.0, site.spool.summary)
    for job_id in others:
        name = f"{job_id}.json"
        assert site.record_bytes("failed", job_id) == before[name], "not matching: untouched"
    notice = fetch(actions.base + answer.headers["Location"], bearer())
    assert notice.page.text("notice") == "retried 3 job(s)"


def test_purge_removes_the_done_records_and_says_how_many(site: Site, actions: Web) -> None:
    for _ in range(2):
        site.spool.wait_record(site.run("purge", job("Noop")), "done")
    done = site.spool.job_ids("done")
    failed = site.folder_bytes("failed")
    listing = fetch(actions.base + "/jobs/done", bearer())
    assert "/purge" in listing.page.forms()
    csrf = listing.page.csrf()

    bad = fetch(actions.base + "/purge", {**bearer(), **SAME_ORIGIN},
                form={"csrf": csrf, "state": "done", "older_than": "soon"})  # fmt: skip
    assert bad.status == 400 and site.spool.job_ids("done") == done
    answer = fetch(actions.base + "/purge", {**bearer(), **SAME_ORIGIN},
                   form={"csrf": csrf, "state": "done", "older_than": "0s"})  # fmt: skip
    assert answer.status == 303, answer
    assert answer.headers["Location"] == f"/jobs/done?done=purged&n={len(done)}"
    assert site.spool.job_ids("done") == []
    assert site.folder_bytes("failed") == failed
    after = fetch(actions.base + answer.headers["Location"], bearer())
    assert after.page.text("notice") == f"removed {len(done)} record(s)"


def test_cancelled_jobs_have_a_list_of_their_own_not_mixed_into_failed(
    site: Site, readonly: Web
) -> None:
    """failed/ holds failed, rejected and cancelled records; each has its own list, and a
    job cancelled with the client shows in Cancelled and nowhere else."""
    cancelled = site.run("cancel", job("Noop", run_at=time.time() + 3600))
    wait_for(lambda: cancelled in site.spool.job_ids("scheduled"), 10, "the delayed job waiting")
    assert cancel(cancelled, spool=site.spool.root) is True
    failed = failed_flaky(site, "not-cancelled", failures=1)
    lists = {view: fetch(readonly.base + f"/jobs/{view}", bearer()).page.rows
             for view in ("cancelled", "failed", "rejected")}  # fmt: skip
    assert cancelled in lists["cancelled"] and failed not in lists["cancelled"], lists
    assert cancelled not in lists["failed"] + lists["rejected"] and failed in lists["failed"]
    assert "cancelled by " in fetch(readonly.base + "/jobs/cancelled", bearer()).html


# -- 7. lists --


def walk(web: Web, first: str) -> list[list[str]]:
    """The rows of each page from ``first`` on, following #older to the end."""
    pages = []
    url: str | None = first
    while url is not None:
        answer = fetch(web.base + url)
        assert answer.status == 200, answer
        pages.append(answer.page.rows)
        older = answer.page.older()
        if older is not None:
            assert before_of(older) == answer.page.rows[-1], "the cursor is the last row"
        url = older
        assert len(pages) <= DONE_COUNT // PAGE + 2
    return pages


def test_done_pages_newest_first_fifty_a_page_without_a_gap_or_a_repeat(records: Records) -> None:
    pages = walk(records.web, "/jobs/done")
    assert [len(rows) for rows in pages] == [PAGE] * 6 + [10]
    newest_first = [record["id"] for record in reversed(records.done)]
    assert [job_id for rows in pages for job_id in rows] == newest_first
    assert newest_first == sorted(records.spool.job_ids("done"), reverse=True)
    summary = fetch(records.web.base + "/jobs/done").page.text("summary")
    assert summary.startswith("310 in done/")

    mail = records.newest(records.done, lambda r: r["class"] == "app.Mail")
    pages = walk(records.web, "/jobs/done?class=app.Mail")
    assert [job_id for rows in pages for job_id in rows] == mail
    assert all(len(rows) == PAGE for rows in pages[:-1])


def iso(moment: float) -> str:
    """``2026-12-05 14:30:00``, this host's time, as the address carries it."""
    return quote(datetime.fromtimestamp(moment).isoformat(sep=" ", timespec="seconds"))


def test_filters_in_the_address_narrow_the_list(records: Records) -> None:
    done, failed = records.done, records.failed
    since, until = done[200]["finished_at"] - 30, done[230]["finished_at"] - 30
    cases: list[tuple[str, list[str]]] = [
        ("done?class=app.Report", records.newest(done, lambda r: r["class"] == "app.Report")),
        ("done?class=app.Mail&method=bounce",
         records.newest(done, lambda r: r["class"] == "app.Mail" and r["method"] == "bounce")),
        ("done?method=run", records.newest(done, lambda r: r["method"] == "run")),
        ("done?status=done", records.newest(done, lambda r: True)),
        ("done?status=failed", []),
        ("done?outcome=error", []),
        (f"done?since={since}&until={until}", [r["id"] for r in reversed(done[200:230])]),
        (f"done?class=app.Old&until={iso(done[5]['finished_at'] + 1)}",
         [r["id"] for r in reversed(done[:6])]),
        ("failed?outcome=timeout", records.newest(failed, lambda r: r["history"][-1]["outcome"]
                                                  == "timeout")),
        ("failed", records.newest(failed, lambda r: True)),
        ("rejected", records.newest(records.rejected, lambda r: True)),
        ("failed?status=rejected", records.newest(failed, lambda r: True)),
    ]  # fmt: skip
    for query, expected in cases:
        answer = fetch(records.web.base + "/jobs/" + query)
        assert answer.status == 200, (query, answer)
        assert answer.page.rows == expected[:PAGE], query
        assert not answer.page.by_class.get("error"), (query, answer.page.by_class["error"])

    # A relative time: the records finished at or after the moment two hours before the
    # request, which lies between these two.
    earliest = time.time() - 7200
    rows = fetch(records.web.base + "/jobs/done?since=2h").page.rows
    latest = time.time() - 7200
    surely = records.newest(done, lambda r: r["finished_at"] >= latest)
    maybe = records.newest(done, lambda r: r["finished_at"] >= earliest)
    assert surely[:PAGE] == rows[: len(surely[:PAGE])] and set(rows) <= set(maybe)
    assert len(maybe) >= 100 and len(rows) == PAGE


def test_an_unknown_view_is_404_and_a_bad_time_is_one_line_on_the_page(records: Records) -> None:
    missing = fetch(records.web.base + "/jobs/everything")
    assert missing.status == 404 and "no list 'everything'" in missing.page.text("problem")
    assert fetch(records.web.base + "/jobs/").status == 404
    assert fetch(records.web.base + "/nothing-here").status == 404

    answer = fetch(records.web.base + "/jobs/done?since=yesterday-ish&class=app.Report")
    assert answer.status == 200
    errors = answer.page.by_class["error"]
    assert len(errors) == 1 and errors[0].startswith("since: 'yesterday-ish' is not a time")
    assert "\n" not in errors[0]
    report = records.newest(records.done, lambda r: r["class"] == "app.Report")
    assert answer.page.rows == report[:PAGE], "the other filters still apply"
    bad = fetch(records.web.base + "/jobs/failed?outcome=exploded&until=then")
    assert bad.status == 200 and len(bad.page.by_class["error"]) == 2


def test_a_search_capped_at_scan_limit_says_so_and_goes_on_where_it_stopped(
    records: Records,
) -> None:
    """scan_limit = 100, 310 records, only the 10 oldest match: three pages read 100 each
    and find nothing, say so, and link on; the fourth finds the ten."""
    ids = [record["id"] for record in records.done]  # oldest first
    url: str | None = "/jobs/done?class=app.Old"
    end = len(ids)
    seen_rows: list[str] = []
    for _ in range(3):
        assert url is not None
        page = fetch(records.scan.base + url).page
        assert page.rows == [] and page.has("capped")
        assert "stopped after 100 jobs" in page.text("capped")
        url = page.older()
        assert url is not None and "class=app.Old" in url
        end -= 100
        assert before_of(url) == ids[end], "it goes on from the last record it read"
        assert page.text("older").startswith("search the next 100 older")
    assert url is not None
    last = fetch(records.scan.base + url).page
    seen_rows += last.rows
    assert seen_rows == ids[:OLD_COUNT][::-1]
    assert not last.has("capped") and last.older() is None

    unlimited = fetch(records.web.base + "/jobs/done?class=app.Old").page
    assert unlimited.rows == ids[:OLD_COUNT][::-1] and not unlimited.has("capped")


# -- 8, 9. contents and escaping --

SECRETS = ("hunter2-secret", "key-9d8e1", "pw-deep-2c")
VISIBLE = ("bob-the-viewer", "visible-note-42")
TRACEBACK = "Traceback (most recent call last)"


def test_contents_are_hidden_without_sign_in_and_secrets_masked_with_it(
    site: Site, anon: Web, readonly: Web
) -> None:
    params = {"user": "bob-the-viewer", "password": "hunter2-secret",
              "nested": {"API_Key": "key-9d8e1", "list": [{"db_password": "pw-deep-2c"}],
                         "note": "visible-note-42"}}  # fmt: skip
    echo = site.run("contents", job("Echo", params=params))
    flaky = failed_flaky(site, "contents-tb", failures=99)
    site.spool.drop("contents-garbage.json", b"not json: raw-bytes-marker-5150")
    site.spool.wait_record(echo, "done")
    reason = site.spool.wait_rejected("contents-garbage")["reason"]
    assert reason.startswith("not valid JSON")

    hidden = fetch(anon.base + f"/job/{echo}")
    assert hidden.status == 200 and "hidden: sign in" in hidden.html
    for text in (*SECRETS, *VISIBLE):
        assert text not in hidden.html
    tb_hidden = fetch(anon.base + f"/job/{flaky}")
    assert TRACEBACK not in tb_hidden.html and "hidden: sign in" in tb_hidden.html
    raw_hidden = fetch(anon.base + "/job/contents-garbage")
    assert "not valid JSON" in raw_hidden.html and "raw-bytes-marker-5150" not in raw_hidden.html
    search = fetch(anon.base + "/jobs/done?q=visible-note-42")
    assert search.status == 200
    assert search.page.by_class["error"] == ["searching the params needs a viewer who signed in"]
    unfiltered = fetch(anon.base + "/jobs/done").page.rows
    assert search.page.rows == unfiltered, "the search is not run: no oracle on the params"
    assert 'name="q"' not in search.html

    shown = fetch(readonly.base + f"/job/{echo}", bearer())
    assert shown.status == 200 and MASK in shown.html
    for text in VISIBLE:
        assert text in shown.html
    for text in SECRETS:
        assert text not in shown.html
    assert TRACEBACK in fetch(readonly.base + f"/job/{flaky}", bearer()).html
    raw_shown = fetch(readonly.base + "/job/contents-garbage", bearer())
    assert "raw-bytes-marker-5150" in raw_shown.html and "not valid JSON" in raw_shown.html
    found = fetch(readonly.base + "/jobs/done?q=visible-note-42", bearer())
    assert found.page.rows == [echo] and not found.page.by_class.get("error")
    for secret in (*SECRETS, "hunter2", "9D8E"):  # no oracle on a masked value either
        probe = fetch(readonly.base + "/jobs/done?" + urlencode({"q": secret}), bearer())
        assert probe.status == 200 and probe.page.rows == [], secret


def test_what_callers_wrote_is_escaped_never_raw(site: Site, anon: Web, readonly: Web) -> None:
    echo = site.run("escape", job("Echo", params={"html": '<script>alert("p")</script>',
                                                 "quote": "it's"}))  # fmt: skip
    no_class = site.run("escape-noclass", {"method": "<script>alert('m')</script>",
                                           "params": ['<script>"q"']})  # fmt: skip
    bad_class = site.run("escape-class", {"class": "<script>alert(1)</script>",
                                          "method": "r\"un'", "params": []})  # fmt: skip
    site.spool.drop("escape-garbage.json", b"<script>alert(2)</script> not json")
    site.spool.wait_record(echo, "done")
    for job_id in (no_class, bad_class, "escape-garbage"):
        site.spool.wait_rejected(job_id)

    pages = {}
    for who, web, headers in (("anon", anon, {}), ("signed", readonly, bearer())):
        for job_id in (echo, no_class, bad_class, "escape-garbage"):
            pages[who, job_id] = fetch(web.base + f"/job/{job_id}", headers)
        for path in ("/", "/jobs/rejected", "/jobs/failed", "/jobs/done"):
            pages[who, path] = fetch(web.base + path, headers)
    for key, answer in pages.items():
        assert answer.status == 200, key
        assert "<script>alert" not in answer.html, key
        assert "<script" not in answer.html.replace('<script src="/static/app.js" defer>', ""), key
    escaped_class = "&lt;script&gt;alert(1)&lt;/script&gt;.r&#34;un&#39;"
    for who in ("anon", "signed"):
        assert escaped_class in pages[who, bad_class].html
        assert "&lt;script&gt;alert(1)" in pages[who, "/jobs/rejected"].html
        assert "&lt;script&gt;alert(1)" in pages[who, "/"].html, "the newest failures"
        assert "&lt;script&gt;alert(&#39;m&#39;)" in pages[who, no_class].html
    for job_id in (echo, no_class, "escape-garbage"):
        assert "&lt;script&gt;" in pages["signed", job_id].html, job_id
    assert "&lt;script&gt;alert(2)" in pages["signed", "escape-garbage"].html


# -- 10. /metrics --


def test_metrics_are_served_parsable_and_tell_the_spool(
    site: Site, anon: Web, scrape_locked: Web, actions: Web
) -> None:
    site.spool.wait_record(site.run("metrics", job("Noop")), "done")
    answer = fetch(anon.base + "/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"] == CONTENT_TYPE
    samples = parse(answer.body.decode())
    assert value(samples, "spoold_jobs", state="done") == len(site.spool.job_ids("done"))
    assert value(samples, "spoold_jobs", state="failed") == len(site.spool.job_ids("failed"))

    missing = fetch(scrape_locked.base + "/metrics")
    assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"spoold_jobs" not in missing.body
    assert fetch(scrape_locked.base + "/metrics", bearer("wrong")).status == 401
    right = fetch(scrape_locked.base + "/metrics", bearer(METRICS_TOKEN))
    assert right.status == 200
    assert value(parse(right.body.decode()), "spoold_jobs", state="done") == len(
        site.spool.job_ids("done")
    )
    assert fetch(actions.base + "/metrics").status == 401, "the dashboard's auth guards it"
    assert fetch(actions.base + "/metrics", bearer()).status == 200


# -- 11. a unix socket --


def test_a_unix_socket_serves_is_0660_and_is_removed_at_sigterm(
    site: Site, start_web: Callable[..., Web]
) -> None:
    path = site.root / "web.sock"
    web = start_web(site.config("anon-unix"), "--listen", f"unix:{path}")
    assert web.out.read_text() == f"serving / on unix:{path}\n"
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", "/jobs/done")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200 and b'id="summary"' in body
    assert response.getheader("X-Frame-Options") == "DENY"
    assert web.proc is not None
    web.proc.send_signal(signal.SIGTERM)
    assert web.wait_exit() == 0
    assert not path.exists()
    assert "Traceback" not in web.stderr()


# -- 12. headers and static files --


def security_headers_of(answer: Answer, name: str) -> None:
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, name
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy, name
    assert answer.headers["X-Content-Type-Options"] == "nosniff", name
    assert answer.headers["X-Frame-Options"] == "DENY", name
    assert answer.headers["Referrer-Policy"] == "no-referrer", name


def test_every_html_answer_has_the_security_headers(site: Site, anon: Web, actions: Web) -> None:
    job_id = site.run("headers", job("Noop"))
    site.spool.wait_record(job_id, "done")
    answers = {
        "overview": fetch(anon.base + "/"),
        "list": fetch(anon.base + "/jobs/done"),
        "job": fetch(anon.base + f"/job/{job_id}"),
        "no job": fetch(anon.base + "/job/no-such-job"),
        "no page": fetch(anon.base + "/nothing"),
        "no view": fetch(anon.base + "/jobs/nothing"),
        "post": fetch(anon.base + "/purge", SAME_ORIGIN, form={}),
        "401": fetch(actions.base + "/"),
        "confirm": fetch(actions.base + "/retry?view=failed", bearer()),
        "signed list": fetch(actions.base + "/jobs/failed", bearer()),
    }
    expected = {"no job": 404, "no page": 404, "no view": 404, "post": 403, "401": 401}
    for name, answer in answers.items():
        assert answer.status == expected.get(name, 200), (name, answer.status)
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8", name
        security_headers_of(answer, name)
        scripts = [a for t, a in answer.page.tags if t == "script"]
        assert scripts and all(a.get("src", "").startswith("/static/") for a in scripts), name
        inline = [k for _t, a in answer.page.tags for k in a if k.startswith("on") or k == "style"]
        assert not inline, f"{name}: inline script or style, which the CSP would block"

    # The HTTP server's own refusals are no HTML page without them either.
    for method in ("PUT", "DELETE", "OPTIONS"):
        refused = fetch(anon.base + "/", method=method)
        assert refused.status == 501, (method, refused)
        assert refused.headers["Content-Type"] == "text/plain; charset=utf-8", method
        security_headers_of(refused, method)
    bad = raw_exchange(anon.base, b"GET /<script> x HTTP/1.1\r\n\r\n")  # it says the line back
    head, _, body = bad.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ") and b"nosniff" in head, bad
    assert b"text/plain" in head and body.count(b"\n") == 1, bad


def test_static_files_are_served_and_nothing_else_under_static(anon: Web) -> None:
    css = fetch(anon.base + "/static/app.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css") and css.body
    script = fetch(anon.base + "/static/app.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert b"live" in script.body
    assert fetch(anon.base + "/static/favicon.svg").status == 200
    for path in ("/static/../something", "/static/../app.py", "/static/../../../../etc/passwd",
                 "/static/..%2fapp.py", "/static/%2e%2e/app.py", "/static/", "/static/nope.css",
                 "/static/templates/base.html"):  # fmt: skip
        assert get_path(anon.base, path) == 404, path


# -- 13. Redis --


def test_a_redis_spool_with_two_daemons_is_shown_as_a_file_spool_is(
    site: Site,
    anon: Web,
    redis_config: Callable[..., Path],
    start_daemon: Callable[..., Daemon],
    start_web: Callable[..., Web],
    tmp_path: Path,
) -> None:
    from spoold.client import run_background_job

    configs = {
        host: redis_config(
            metrics=FAST,
            worker={"concurrency": 1},
            spool={"dir": str(Spool(tmp_path / host).create().root), "host_id": host},
        )
        for host in ("left", "right")
    }
    for path in configs.values():
        start_daemon(config=path)
    web = start_web(configs["left"])
    ids = [run_background_job("testjobs.Noop", "run", []) for _ in range(4)]

    def both_up() -> Page | None:
        answer = fetch(web.base + "/")
        assert answer.status == 200, answer
        page = answer.page
        return page if page.daemon_states() == ["up", "up"] else None

    overview = wait_for(both_up, 15.0, lambda: fetch(web.base + "/").page.text("card-daemons"))
    assert overview is not None
    card = overview.text("card-daemons")
    assert "left pid" in card and "right pid" in card, card

    def all_listed() -> Page | None:
        page = fetch(web.base + "/jobs/done").page
        return page if set(page.rows) == set(ids) else None

    listed = wait_for(all_listed, 15.0, lambda: str(fetch(web.base + "/jobs/done").page.rows))
    assert listed is not None
    assert listed.rows == sorted(ids, reverse=True)
    redis_job = fetch(web.base + f"/job/{ids[0]}")
    assert redis_job.status == 200
    assert redis_job.page.text("job-state") == "done"
    assert "testjobs.Noop.run" in redis_job.html and redis_job.page.has("timeline")
    assert fetch(web.base + "/job/no-such-job").status == 404

    file_id = site.run("alike", job("Noop"))
    site.spool.wait_record(file_id, "done")
    file_pages = {
        "/": fetch(anon.base + "/").page,
        "/jobs/done": fetch(anon.base + "/jobs/done").page,
        "/job": fetch(anon.base + f"/job/{file_id}").page,
    }
    redis_pages = {"/": overview, "/jobs/done": listed, "/job": redis_job.page}
    for name, page in file_pages.items():
        assert set(page.attrs) == set(redis_pages[name].attrs), name
    assert file_pages["/job"].text("job-state") == "done"


# -- 14. robustness --


def test_oversized_requests_are_refused_and_head_has_no_body(anon: Web) -> None:
    url = anon.base + "/"
    head = f"GET / HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\nX-Padding: {'x' * 40000}\r\n\r\n"
    answer = raw_exchange(url, head.encode())
    assert answer == b"" or answer.startswith(b"HTTP/1.0 431 "), answer[:200]
    assert answer == b"" or b"X-Frame-Options: DENY" in answer, answer[:500]

    body = urlencode({"csrf": "x", "filler": "y" * 17000}).encode()
    post = (f"POST /retry HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    answer = raw_exchange(url, post)
    assert answer.startswith(b"HTTP/1.0 413 "), answer[:200]

    answer = raw_exchange(url, f"HEAD / HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n\r\n".encode())
    status, _, rest = answer.partition(b"\r\n")
    headers, _, after = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.0 200 "), answer[:200]
    length = re.search(rb"(?im)^content-length: *(\d+)", headers)
    assert length is not None and int(length.group(1)) > 0
    assert after == b"", "HEAD answers without a body"
    assert fetch(url).status == 200, "and it goes on serving"


def test_a_stopped_daemon_is_shown_as_down_not_as_an_error(
    daemon_config: Callable[..., Path],
    start_daemon: Callable[..., Daemon],
    start_web: Callable[..., Web],
) -> None:
    config = daemon_config(metrics=FAST)
    daemon = start_daemon(config=config)
    web = start_web(config)

    def states() -> list[str]:
        answer = fetch(web.base + "/")
        assert answer.status == 200, answer
        return answer.page.daemon_states()

    wait_for(lambda: states() == ["up"], 15.0, lambda: str(states()))
    assert daemon.stop() == 0
    wait_for(lambda: states() in (["stopped"], ["down"]), 15.0, lambda: str(states()))
    card = fetch(web.base + "/").page.text("card-daemons")
    assert "stopped" in card or "down" in card, card


def test_the_running_list_shows_each_attempt_against_its_timeout(site: Site, anon: Web) -> None:
    """The list is the backend's; the daemon's snapshot (every 0.2 s here) adds the timeout."""
    running = site.run("views-timeout", job("Sleeper", params=[3.0], timeout=90))

    def shown() -> bool:
        html = fetch(anon.base + "/jobs/running").html
        return f'href="/job/{running}"' in html and "/ 1 min 30 s" in html

    wait_for(shown, 15.0, f"{running} is not listed with its 90 s timeout in /jobs/running")
    site.spool.wait_record(running, "done")


def test_every_list_answers_and_shows_jobs_waiting_running_and_scheduled(
    site: Site, anon: Web, readonly: Web
) -> None:
    """A job due tomorrow in scheduled/, a one-second job while it runs: each in its list."""
    later = site.run("views-later", job("Sleeper", params=[0], run_at=time.time() + 86400))
    running = site.run("views-running", job("Sleeper", params=[1.0]))
    wait_for(lambda: site.spool.where(later) == ["scheduled"], 15.0, site.spool.summary)

    def listed(view: str, job_id: str) -> bool:
        return f'href="/job/{job_id}"' in fetch(anon.base + f"/jobs/{view}").html

    wait_for(lambda: listed("running", running), 15.0, f"{running} is not in /jobs/running")
    assert listed("scheduled", later)
    for web, headers in ((anon, {}), (readonly, bearer())):
        for view in ("running", "waiting", "scheduled", "done", "failed", "rejected"):
            answer = fetch(web.base + f"/jobs/{view}", headers)
            assert answer.status == 200, (view, answer)
            assert answer.page.has("summary"), view
    site.spool.wait_record(running, "done")
    assert fetch(anon.base + f"/job/{later}").page.text("job-state") == "scheduled"


def test_a_job_being_filed_has_its_page_not_a_404(
    site: Site, start_web: Callable[..., Web], tmp_path: Path
) -> None:
    """Between the unlink of ``active/<id>.json`` and the rename of its record into done/,
    a job is only its marker ``active/<id>.to-done`` (store.py), as a crash there leaves
    it, for recovery to finish. Its page shows it, in active/ with the record's status;
    it answered 404 "no job" (a browser test's retry landed in that moment)."""
    spool = Spool(tmp_path / "spool").create()
    job_id = new_job_id()
    record = {**job("Echo", params=["filing"]), "id": job_id, "status": "done",
              "attempts": 1, "history": []}  # fmt: skip
    (spool.folder("active") / f"{job_id}.to-done").write_text(json.dumps(record))
    web = start_web(site.config("between", spool={**site.sections["spool"],
                                                  "dir": str(spool.root)}))  # fmt: skip
    answer = fetch(web.base + f"/job/{job_id}")
    assert answer.status == 200, answer.html[:2000]
    assert answer.page.text("job-state") == "done"
    assert f"active/{job_id}.to-done" in answer.html
