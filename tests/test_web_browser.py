"""``spoold web`` in a real browser: Debian's Chromium, driven by Playwright, against real
``spoold web`` subprocesses reading a real daemon's temporary spool.

Most tests share one spool, one daemon and three dashboards on it (``site``): one
with auth and ``--allow-actions``, one with auth and read-only, one with no auth at
all; the jobs on it are run once, at the start. The overview's counts have a spool
of their own, so that nothing else the tests do changes them. One browser serves
the whole module; each test opens its own contexts (cookies), closed at its end.

Shown here: the overview's figures are the jobs run; a failed job's page has its
traceback; retrying one job and all matching ones from the pages; no action at all
when read-only; a cross-origin POST refused (a form on another origin, submitted by
the browser; and forged headers); params with markup shown as text; live refresh
paused while the tab is hidden and never asked again before the last answer came;
no sideways scroll at 375 px, light and dark; no contents for a viewer who did not
sign in; secrets masked; the CSP holds (no violation on any page).

Screenshots of every page (light, dark, 1280 and 375 px wide) go to the test's
tmp_path (run with ``-s`` to see where); ``SPOOLD_SCREENSHOTS=DIR`` also gets the
overview as ``overview.png`` (for docs/screenshots/).

Chromium is a Debian package that ``.ci/run`` installs; Playwright cannot download a
browser here. Where it is missing these tests skip with one line, and in CI
(``CI=true``) they fail instead.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from harness import Daemon, Spool, processes_with_token, wait_for, write_config
from served import servers
from web_harness import Web

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Dialog, Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REFRESH = 1.0  # [web] refresh: seconds between live refreshes
FAST_METRICS: dict[str, Any] = {"interval": 0.2}  # a stats snapshot five times a second
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 375, "height": 740}
LISTS = ("running", "waiting", "scheduled", "done", "failed", "rejected")
MASK = "••••••"
CSP_WORDS = "Content Security Policy"
HIDE = """() => {
  Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
  Object.defineProperty(document, 'hidden', {value: true, configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
SHOW = """() => {
  Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
  Object.defineProperty(document, 'hidden', {value: false, configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def require_chromium() -> None:
    """Skip the calling test without Chromium or Playwright; fail it in CI."""
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"Chromium is missing ({CHROMIUM}): apt-get install chromium"
    elif importlib.util.find_spec("playwright") is None:
        missing = "the Python package playwright is missing: pip install -e '.[dev]'"
    else:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (.ci/run installs it)", pytrace=False)
    pytest.skip(f"{missing} — the dashboard's browser tests need it")


# -- polling while the browser's events keep coming --


def poll(page: Page, predicate: Callable[[], Any], timeout: float = 10.0, message: Any = "") -> Any:
    """``wait_for``, but waiting in ``page.wait_for_timeout`` so that Playwright keeps
    delivering the page's events (requests, dialogs) to the test's handlers meanwhile."""
    return wait_for(predicate, timeout, message, pause=lambda: page.wait_for_timeout(50))


def stays_false_in(page: Page, predicate: Callable[[], Any], duration: float) -> bool:
    """True if ``predicate`` stayed falsy for ``duration`` seconds, events delivered."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if predicate():
            return False
        page.wait_for_timeout(50)
    return not predicate()


# -- the browser, the spool, the dashboards --


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the whole module."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """``new_context(web=None, token=None, **options)``: a fresh context (no cookie), signed
    in to ``web`` with ``token`` if given; every one closed at the end of the test."""
    made: list[BrowserContext] = []

    def make(web: Web | None = None, token: str | None = None, **options: Any) -> BrowserContext:
        context = browser.new_context(**{"viewport": WIDE, **options})
        made.append(context)
        if web is not None and token is not None:
            sign_in(context, web, token)
        return context

    yield make
    for context in made:
        context.close()


def sign_in(context: BrowserContext, web: Web, token: str) -> None:
    """Open ``/?token=`` once: the answer sets the cookie and sends the browser on to ``/``."""
    page = context.new_page()
    answer = page.goto(f"{web.base}/?token={token}")
    assert answer is not None and answer.status == 200, answer and answer.status
    assert page.url == web.url, page.url  # the token left the address bar
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["spoold_session"]["httpOnly"], cookies
    assert cookies["spoold_session"]["value"] != token
    page.close()


def write_token(folder: Path) -> tuple[Path, str]:
    token = uuid.uuid4().hex
    path = folder / "web-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path, token


@pytest.fixture
def start_web(tmp_path: Path, leak_check: str) -> Iterator[Callable[..., Web]]:
    """``start_web(config, allow_actions=False)``: a serving ``spoold web``; stopped at the end."""
    with servers(Web, tmp_path, leak_check) as new:

        def start(config: Path, *, allow_actions: bool = False) -> Web:
            return new(config).start(allow_actions=allow_actions).wait_serving()

        yield start


@dataclass
class Site:
    """The shared spool, its daemon, three dashboards on it, and the jobs run there."""

    spool: Spool
    folder: Path
    token: str  # [web] token_file's
    daemon: Daemon
    actions: Web  # auth, --allow-actions
    readonly: Web  # auth, no --allow-actions
    open: Web  # no auth configured (so read-only)
    boom: str  # failed for good with a ValueError (the pages' failed job)
    boom_text: str  # what it raised
    guard: str  # another Boom, that the refused POSTs aim at: it must stay failed
    single: str  # Flaky: failed its first attempt, succeeds when retried
    bulk: list[str]  # two more Flaky like it, for "retry all matching"
    bulk_word: str  # in the bulk jobs' params only
    markup: str  # Echo with <script> and <img onerror> in its params (done)
    secrets: str  # Echo with a password and a nested api_key (done)
    plain: str  # Echo with a param that only a signed-in viewer may see (done)
    plain_text: str
    running: str  # Gated: runs until the module ends
    scheduled: str  # due in an hour
    rejected: str  # names a class off the allowlist


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("site")
    spool = Spool(folder / "spool").create()
    token_path, token = write_token(folder)
    # Everything started here carries this module's own token (the per-test leak check
    # does not know it); at the end, none of them may be left.
    leak_token = uuid.uuid4().hex
    auth = {"token_file": str(token_path), "refresh": REFRESH}
    sections: dict[str, dict[str, Any]] = {"metrics": FAST_METRICS, "worker": {"concurrency": 3}}
    config = write_config(folder / "spoold.toml", spool, {**sections, "web": auth})
    open_config = write_config(folder / "open.toml", spool, {**sections,
                               "web": {"refresh": REFRESH}})  # fmt: skip
    daemon = Daemon(config, folder, leak_token, "daemon")
    webs: list[Web] = []
    gate = folder / "gate"
    try:
        daemon.start().wait_ready()
        for name, path, actions in (("actions", config, True), ("readonly", config, False),
                                    ("open", open_config, False)):  # fmt: skip
            webs.append(Web(path, folder, leak_token, f"web-{name}").start(allow_actions=actions))
        jobs = _run_jobs(spool, folder, gate)
        for web in webs:
            web.wait_serving()
        acting, readonly, anyone = webs
        yield Site(spool, folder, token, daemon, acting, readonly, anyone, **jobs)
    finally:
        gate.touch()  # the running job ends, so the daemon stops without waiting for it
        for web in webs:
            web.stop()
        daemon.stop()
    wait_for(lambda: not processes_with_token(leak_token), 10.0,
             lambda: f"processes left behind: {processes_with_token(leak_token)}")  # fmt: skip


def _run_jobs(spool: Spool, folder: Path, gate: Path) -> dict[str, Any]:
    """Submit the shared jobs and wait until each is where the tests expect it."""
    boom_text = f"kaboom {uuid.uuid4().hex[:8]}"
    bulk_word = f"bulk-{uuid.uuid4().hex[:6]}"
    plain_text = f"s3cr3t-param-{uuid.uuid4().hex[:6]}"
    submit = spool.submit
    jobs: dict[str, Any] = {
        "boom": submit("testjobs.Boom", params=[boom_text], max_retries=0),
        "boom_text": boom_text,
        "guard": submit("testjobs.Boom", params=["guarded"], max_retries=0),
        "single": submit("testjobs.Flaky", params=[str(folder / "single.lines"), 1],
                         max_retries=0),
        "bulk": [submit("testjobs.Flaky", params=[str(folder / f"{bulk_word}-{n}.lines"), 1],
                        max_retries=0) for n in (1, 2)],
        "bulk_word": bulk_word,
        "markup": submit("testjobs.Echo", params=["<script>alert(1)</script>",
                         "<img src=x onerror=alert(2)>", "</pre><b>bold</b>"]),
        "secrets": submit("testjobs.Echo", params={"user": "a", "password": "hunter2",
                          "nested": {"api_key": "k-123"}}),
        "plain": submit("testjobs.Echo", params=[plain_text]),
        "plain_text": plain_text,
        "running": submit("testjobs.Gated", params=[str(folder / "gated.lines"), str(gate), 10],
                          timeout=600),  # runs until the module's end: no [worker] timeout
        "scheduled": submit("testjobs.Noop", delay=3600),
        "rejected": spool.drop_job(f"evil-{uuid.uuid4().hex[:8]}",
                                   {"class": "evil.Class", "method": "run"}),
    }  # fmt: skip
    for job_id in (jobs["boom"], jobs["guard"], jobs["single"], *jobs["bulk"]):
        spool.wait_record(job_id, "failed")
    for name in ("markup", "secrets", "plain"):
        spool.wait_record(jobs[name], "done")
    spool.wait_rejected(jobs["rejected"])
    spool.wait_record(jobs["running"], "active")
    spool.wait_record(jobs["scheduled"], "scheduled")
    return jobs


def page_paths(site: Site) -> dict[str, str]:
    """Every kind of page, by the name its screenshot gets."""
    paths = {"overview": "/"}
    paths.update({f"list-{name}": f"/jobs/{name}" for name in LISTS})
    paths["job-traceback"] = f"/job/{site.boom}"
    paths["retry-confirmation"] = "/retry?view=failed&class=testjobs.Boom"
    return paths


def shot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# -- 1. the overview --


def test_overview_counts_the_jobs_run(
    spool: Spool,
    daemon_config: Callable[..., Path],
    start_daemon: Callable[..., Daemon],
    start_web: Callable[..., Web],
    new_context: Callable[..., BrowserContext],
    tmp_path: Path,
) -> None:
    token_path, token = write_token(tmp_path)
    config = daemon_config(metrics=FAST_METRICS,
                           web={"token_file": str(token_path), "refresh": REFRESH})  # fmt: skip
    start_daemon(config=config)
    succeeded = [spool.submit("testjobs.Noop") for _ in range(4)]
    failed = [spool.submit("testjobs.Boom", params=[f"boom {n}"], max_retries=0) for n in (1, 2)]
    for job_id in succeeded:
        spool.wait_record(job_id, "done")
    for job_id in failed:
        spool.wait_record(job_id, "failed")
    web = start_web(config)
    page = new_context(web, token).new_page()

    def figures() -> dict[str, Any]:
        return {
            "done": page.locator("#count-done").inner_text(),
            "failed": page.locator("#count-failed").inner_text(),
            "failed-day": page.locator("#failed-day").inner_text(),
            "daemon up": "up" in page.locator("#card-daemons").inner_text().split(),
        }

    expected = {"done": "4", "failed": "2", "failed-day": "2", "daemon up": True}

    def shown() -> bool:
        page.goto(web.url)  # read afresh: the daemon's snapshot may lag an interval
        return figures() == expected

    poll(page, shown, 15.0, lambda: f"the overview shows {figures()}")
    assert page.locator("#failed-week").inner_text() == "2"
    print(f"\nscreenshots: {tmp_path}")
    shot(page, tmp_path, "overview")
    folder = os.environ.get("SPOOLD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shot(page, Path(folder), "overview")  # 1280 wide, the whole page


# -- 2. a failed job's traceback --


def test_failed_job_page_shows_its_traceback(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context(site.actions, site.token).new_page()
    page.goto(f"{site.actions.base}/job/{site.boom}")
    assert page.locator("#job-state").inner_text() == "failed"
    attempts = page.locator("#timeline li.attempt")
    assert attempts.count() == 1
    attempt = attempts.first
    tag = attempt.locator(".tag")
    assert tag.inner_text() == "error"
    # Drawn as a tag (a thin outline), not as an error message box.
    assert tag.evaluate("e => getComputedStyle(e).borderLeftWidth") == "1px"
    assert site.boom_text in attempt.locator(".error-text").inner_text()
    trace = attempt.locator("pre.traceback")
    assert trace.is_visible()  # the last attempt's traceback is open
    text = trace.inner_text()
    assert "Traceback (most recent call last)" in text, text
    assert "raise ValueError(what)" in text, text
    assert f"ValueError: {site.boom_text}" in text, text


# -- 3. retrying, with actions on --


def test_retry_button_runs_a_failed_job_again(
    site: Site, new_context: Callable[..., BrowserContext], tmp_path: Path
) -> None:
    page = new_context(site.actions, site.token).new_page()
    page.goto(f"{site.actions.base}/job/{site.single}")
    assert "flaky failure 1 of 1" in page.locator("#timeline").inner_text()
    page.click("#retry")
    page.wait_for_url(re.compile(rf"/job/{re.escape(site.single)}\?done=retried&n=1$"))
    assert page.locator("#notice").inner_text() == "retried 1 job(s)"
    shot(page, tmp_path, "retried")
    record = site.spool.wait_record(site.single, "done")
    assert record["status"] == "done", record
    # The page is live until the job settles: it shows the new attempt by itself.
    poll(page, lambda: page.locator("#job-state").inner_text() == "done", 15.0,
         lambda: page.locator("main").inner_text())  # fmt: skip
    outcomes = page.locator("#timeline li.attempt .tag").all_inner_texts()
    assert outcomes[-1] == "ok", outcomes


def test_retry_all_matching_failed_jobs(
    site: Site, new_context: Callable[..., BrowserContext], tmp_path: Path
) -> None:
    page = new_context(site.actions, site.token).new_page()
    page.goto(f"{site.actions.base}/jobs/failed")
    page.fill("#filters input[name=class]", "testjobs.Flaky")
    page.fill("#filters input[name=q]", site.bulk_word)
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/failed\?.*q="))
    ids = page.locator("#job-table td.id").all_inner_texts()
    assert sorted(ids) == sorted(site.bulk), ids
    page.click("#retry-matching")
    page.wait_for_url(re.compile(r"/retry\?"))
    assert page.locator("#retry-count").inner_text() == "2 jobs match."
    shot(page, tmp_path, "retry-confirmation")
    page.click("#retry-all")
    page.wait_for_url(re.compile(r"/jobs/failed\?done=retried&n=2$"))
    assert page.locator("#notice").inner_text() == "retried 2 job(s)"
    for job_id in site.bulk:
        assert site.spool.wait_record(job_id, "done")["status"] == "done"
    assert site.spool.where(site.boom) == ["failed"]  # the filter held: others left alone


# -- 4. no action when read-only --


def test_read_only_dashboard_offers_and_takes_no_action(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    web = site.readonly
    page = new_context(web, site.token).new_page()
    page.goto(f"{web.base}/job/{site.guard}")
    assert page.locator("#job-state").inner_text() == "failed"
    assert page.locator("#retry").count() == 0
    assert page.locator("form[method=post]").count() == 0
    assert "read-only" in page.locator("footer").inner_text()
    page.goto(f"{web.base}/jobs/failed")
    assert page.locator("#job-table").count() == 1
    assert page.locator("#retry-matching").count() == 0
    assert page.goto(f"{web.base}/retry?view=failed").status == 403  # type: ignore[union-attr]

    # Forged POSTs, from "our own page" as far as the headers go: read-only refuses them.
    same_origin = {"Origin": web.base, "Sec-Fetch-Site": "same-origin"}
    forms: tuple[tuple[str, dict[str, str | float | bool]], ...]
    forms = (
        (f"/job/{site.guard}/retry", {}),
        (f"/job/{site.guard}/retry", {"csrf": "0" * 64}),
        ("/retry", {"view": "failed", "csrf": "0" * 64}),
        ("/purge", {"state": "failed", "older_than": "0s"}),
    )
    for path, form in forms:
        answer = page.request.post(web.base + path, form=form, headers=same_origin,
                                   max_redirects=0)  # fmt: skip
        assert answer.status == 403, (path, answer.status, answer.text())
        assert "read-only" in answer.text()
        assert site.spool.where(site.guard) == ["failed"]
    assert len(site.spool.record(site.guard, "failed")["history"]) == 1  # type: ignore[index]


# -- 5. cross-origin POSTs --


@contextlib.contextmanager
def attacker(page_html: str) -> Iterator[tuple[int, list[str]]]:
    """Another origin: a tiny HTTP server on its own port answering every GET with
    ``page_html``; yields its port and the paths it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_cross_origin_post_is_refused(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    web = site.actions
    page = new_context(web, site.token).new_page()
    page.goto(f"{web.base}/job/{site.guard}")
    assert page.locator("#retry").count() == 1
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    target = f"{web.base}/job/{site.guard}/retry"
    # Even with the form's real token (a leak, say), a form on another origin fails.
    evil = (f'<form method="post" action="{html.escape(target)}">'
            f'<input type="hidden" name="csrf" value="{html.escape(csrf)}"></form>'
            "<script>document.forms[0].submit()</script>")  # fmt: skip
    with attacker(evil) as (port, asked):
        # 127.0.0.1 on another port: same site, so the SameSite=Strict cookie goes along
        # and it is the origin check that refuses. localhost: another site, no cookie.
        for host, status, says in (("127.0.0.1", 403, "does not come from this dashboard"),
                                   ("localhost", 401, "sign in")):  # fmt: skip
            with page.expect_response(lambda r: r.request.method == "POST") as posted:
                page.goto(f"http://{host}:{port}/{host}")
            answer = posted.value
            assert answer.url == target
            assert answer.status == status, (host, answer.status)
            page.wait_for_load_state()
            assert says in page.locator("#problem").inner_text()
            assert site.spool.where(site.guard) == ["failed"]
        assert asked == ["/127.0.0.1", "/localhost"]

    # Forged headers, with the viewer's cookie and the form's token: the origin check
    # alone refuses (the same request from the page itself would retry the job).
    for headers in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": web.base, "Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example"},  # a browser too old for Sec-Fetch-*
                    {"Origin": "null"},
                    {}):  # fmt: skip
        forged = page.request.post(target, form={"csrf": csrf}, headers=headers,
                                   max_redirects=0)  # fmt: skip
        assert forged.status == 403, (headers, forged.status, forged.text())
        assert "does not come from this dashboard" in forged.text()
        assert site.spool.where(site.guard) == ["failed"]
    assert len(site.spool.record(site.guard, "failed")["history"]) == 1  # type: ignore[index]


# -- 6. markup in params --


def test_params_with_markup_render_as_text(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context(site.actions, site.token).new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{site.actions.base}/job/{site.markup}")
    record = page.locator("#record").inner_text()
    assert "<script>alert(1)</script>" in record, record
    assert "<img src=x onerror=alert(2)>" in record, record
    assert "</pre><b>bold</b>" in record, record
    assert page.evaluate("document.querySelectorAll('#record script').length") == 0
    assert page.evaluate("document.querySelectorAll('main script, main img, main b').length") == 0
    # Reflected too: a search for markup is shown in its box, as text.
    page.goto(f"{site.actions.base}/jobs/done?q=%3Cscript%3Ealert(3)%3C%2Fscript%3E")
    assert page.locator("#filters input[name=q]").input_value() == "<script>alert(3)</script>"
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    page.wait_for_load_state("networkidle")
    assert dialogs == []


# -- 7. live refresh --


def refresh_counter(page: Page) -> list[float]:
    """The times the page's script asked for a refresh (its fetches carry the header)."""
    seen: list[float] = []

    def on_request(request: Request) -> None:
        if request.resource_type == "fetch" and request.headers.get("x-spoold-refresh"):
            seen.append(time.monotonic())

    page.on("request", on_request)
    return seen


def test_refresh_pauses_while_the_page_is_hidden(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context(site.actions, site.token).new_page()
    refreshes = refresh_counter(page)
    page.goto(f"{site.actions.base}/jobs/done")
    poll(page, lambda: len(refreshes) >= 2, 10.0, "two refreshes")
    page.evaluate(HIDE)
    page.wait_for_timeout(300)  # a refresh already asked for may still be reported
    asked = len(refreshes)
    assert stays_false_in(page, lambda: len(refreshes) > asked, 3 * REFRESH + 0.5), refreshes
    page.evaluate(SHOW)
    poll(page, lambda: len(refreshes) >= asked + 2, 10.0, "refreshes again once visible")


def test_refresh_waits_for_the_last_answer(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    """The real server's answer to one refresh is held back for 3 s (the request waits
    in Playwright's route, then goes on unchanged): no second refresh starts meanwhile."""
    page = new_context(site.actions, site.token).new_page()
    held: list[Route] = []

    def hold_first_refresh(route: Route) -> None:
        if route.request.headers.get("x-spoold-refresh") and not held:
            held.append(route)  # answered below, 3 s later
        else:
            route.continue_()

    page.route("**/jobs/failed*", hold_first_refresh)
    refreshes = refresh_counter(page)
    page.goto(f"{site.actions.base}/jobs/failed")
    poll(page, lambda: held, 10.0, "a refresh")
    assert stays_false_in(page, lambda: len(refreshes) > 1, 3 * REFRESH), refreshes
    held[0].continue_()
    poll(page, lambda: len(refreshes) >= 3, 10.0, "refreshes once the answer came")
    assert page.evaluate("document.body.classList.contains('stale')") is False
    page.unroute_all(behavior="ignoreErrors")


# -- 8. narrow screens, dark mode, screenshots --


def test_pages_fit_375_px_light_and_dark(
    site: Site, new_context: Callable[..., BrowserContext], tmp_path: Path
) -> None:
    print(f"\nscreenshots: {tmp_path}")
    backgrounds = {}
    too_wide = []
    for scheme in ("light", "dark"):
        for width, viewport in (("1280", WIDE), ("375", NARROW)):
            context = new_context(site.actions, site.token, viewport=viewport,
                                  color_scheme=scheme)  # fmt: skip
            page = context.new_page()
            for name, path in page_paths(site).items():
                page.goto(site.actions.base + path)
                assert page.locator("#problem").count() == 0, (path, page.inner_text("main"))
                shot(page, tmp_path, f"{name}-{scheme}-{width}")
                scroll = page.evaluate("document.documentElement.scrollWidth")
                if width == "375" and scroll > 375:
                    too_wide.append(f"{path} ({scheme}): {scroll} px")
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            context.close()
    assert not too_wide, too_wide
    assert backgrounds["light"] != backgrounds["dark"], backgrounds


# -- 9. viewers who did not sign in --


def test_viewer_who_did_not_sign_in_gets_401(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context().new_page()
    asked = {
        "/": "sign in",
        f"/job/{site.plain}": "sign in",
        "/jobs/done": "sign in",
        f"/?token={uuid.uuid4().hex}": "not the one in [web] token_file",
    }
    for path, says in asked.items():
        answer = page.goto(site.actions.base + path)
        assert answer is not None and answer.status == 401, (path, answer and answer.status)
        assert says in page.locator("#problem").inner_text()
        assert site.plain_text not in page.content()
    assert page.context.cookies() == []  # a wrong token got no cookie


def test_without_auth_job_contents_are_hidden(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    web = site.open
    page = new_context().new_page()
    answer = page.goto(f"{web.base}/job/{site.plain}")
    assert answer is not None and answer.status == 200
    assert page.locator("#job-state").inner_text() == "done"
    assert "hidden: sign in" in page.locator("#record").inner_text()
    assert site.plain_text not in page.content()
    assert "not signed in" in page.locator("footer").inner_text()
    page.goto(f"{web.base}/job/{site.boom}")
    assert page.locator("#timeline li.attempt .tag").inner_text() == "error"
    assert "raise ValueError" not in page.content()  # no traceback either
    # The control: signed in (to the dashboard with auth), the value shows.
    page = new_context(site.readonly, site.token).new_page()
    page.goto(f"{site.readonly.base}/job/{site.plain}")
    assert site.plain_text in page.locator("#record").inner_text()


# -- 10. redaction --


def test_secrets_in_params_are_masked(
    site: Site, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context(site.actions, site.token).new_page()
    page.goto(f"{site.actions.base}/job/{site.secrets}")
    record = page.locator("#record").inner_text()
    assert '"user": "a"' in record, record
    assert f'"password": "{MASK}"' in record, record
    assert f'"api_key": "{MASK}"' in record, record
    content = page.content()
    assert "hunter2" not in content
    assert "k-123" not in content


# -- 11. the Content-Security-Policy --


def test_no_page_breaks_the_csp(site: Site, new_context: Callable[..., BrowserContext]) -> None:
    page = new_context(site.actions, site.token).new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)  # fmt: skip
    page.on("pageerror", lambda error: errors.append(str(error)))
    answer = page.goto(site.actions.base + "/")
    assert answer is not None
    policy = answer.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy, policy
    assert "default-src 'none'" in policy, policy
    paths = [*page_paths(site).values(), f"/job/{site.markup}", f"/job/{site.secrets}",
             f"/job/{site.running}", f"/job/{site.rejected}", f"/job/{site.scheduled}"]  # fmt: skip
    for path in paths:
        page.goto(site.actions.base + path)
        assert page.locator("#problem").count() == 0, path
        # The stylesheet and the script loaded: styles apply, and live refresh runs.
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px", path
    refreshes = refresh_counter(page)
    page.goto(f"{site.actions.base}/jobs/running")
    poll(page, lambda: refreshes, 10.0, "a live refresh (app.js ran)")
    page.wait_for_timeout(200)
    assert not [e for e in errors if CSP_WORDS in e], errors
