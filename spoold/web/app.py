"""The dashboard as a function: a ``Request`` in, a ``Response`` out, no socket in sight.

Routes (every GET only reads; every POST needs ``--allow-actions``, a viewer
who signed in, the same origin and the form's token):

  GET  /                    the overview
  GET  /jobs/<view>         running, waiting, scheduled, done, failed, rejected;
                            filters and the page are GET parameters (bookmarkable)
  GET  /job/<id>            the whole record and the timeline of its attempts
  GET  /retry?<filters>     how many failed jobs a "retry all matching" would retry
  POST /job/<id>/retry      retry one failed job     (spoold retry ID)
  POST /retry               retry all matching, at most RETRY_CAP (spoold retry)
  POST /purge               delete old records       (spoold purge)
  GET  /metrics             Prometheus's text format, as ``spoold metrics`` serves it
  GET  /static/<file>       the stylesheet and the script (the CSP allows no other)

Actions go through the same ``Catalog`` calls as the CLI's retry and purge,
run by this process's user: the web has no more rights than that user's CLI.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2

from spoold.cli.view import RunningRow, place_of, running_rows
from spoold.config import Config, parse_age
from spoold.core.backend import Catalog, CatalogError
from spoold.errors import describe_os_error
from spoold.prometheus import CONTENT_TYPE
from spoold.web import browse, pages
from spoold.web.auth import ANONYMOUS, COOKIE, Auth, same_origin

HERE = Path(__file__).resolve().parent
STATIC = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
RETRY_CAP = 1000  # jobs one "retry all matching" retries at most (Oban's bulk limit)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # a ?token= never leaves in a Referer
    "Cache-Control": "no-store",
}
NOTICES = {"retried": "retried {n} job(s)", "purged": "removed {n} record(s)"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)  # one value a name: the last given
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-case
    form: Mapping[str, str] = field(default_factory=dict)

    @property
    def cookies(self) -> dict[str, str]:
        found = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            found[name] = value
        return found


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class Problem(Exception):
    """An answer other than the page: a status and one line for the viewer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Viewer:
    name: str | None  # None: not signed in
    signed_in: bool  # may see job contents (auth is configured and passed)
    form_token: str


class App:
    """The dashboard of one spool; one instance serves every request (thread-safe: it
    keeps no per-request state, and the catalog's caches lock themselves)."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        auth: Auth,
        *,
        actions: bool,
        metrics_token: bytes | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.auth = auth
        self.actions = actions
        self.metrics_token = metrics_token
        self.place = place_of(config)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            ago=lambda at: ago(time.time() - at) if at is not None else "—",
            clock=clock,
            duration=lambda s: pages.duration_text(s) if s is not None else "—",
            thousands=lambda n: f"{n:,}" if n is not None else "?",
        )

    # -- entry --

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except Problem as problem:
            return self._problem(problem.status, str(problem))
        except CatalogError as exc:
            return self._problem(503, f"cannot read the spool: {exc}")
        except OSError as exc:
            return self._problem(503, f"cannot read the spool: {describe_os_error(exc)}")

    def _route(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET":
            if path.startswith("/static/"):
                return self._static(path.removeprefix("/static/"))
            if path == "/metrics":
                return self._metrics(request)
            if "token" in request.query:
                return self._sign_in(request)
        elif request.method != "POST":
            raise Problem(405, "only GET and POST are answered here")
        viewer = self._viewer(request)
        if request.method == "POST":
            return self._post(request, viewer)
        return self._get(request, viewer)

    def _get(self, request: Request, viewer: Viewer) -> Response:
        path = request.path
        if path == "/":
            return self._overview(viewer)
        if path == "/retry":
            return self._confirm_retry(request, viewer)
        if path.startswith("/jobs/"):
            return self._list(request, viewer, path.removeprefix("/jobs/"))
        if path.startswith("/job/"):
            return self._job(request, viewer, path.removeprefix("/job/"))
        raise Problem(404, f"no page {path}")

    # -- who --

    def _viewer(self, request: Request) -> Viewer:
        if not self.auth.configured:
            return Viewer(ANONYMOUS, False, self.auth.form_token(ANONYMOUS))
        name = self.auth.viewer(request.headers.get("authorization"), request.cookies)
        if name is None:
            raise Problem(401, "sign in: open this page with ?token=<the token>, or with your"
                               " user name and password")  # fmt: skip
        return Viewer(name, True, self.auth.form_token(name))

    def _sign_in(self, request: Request) -> Response:
        """``?token=``: the cookie is set and the token leaves the address bar."""
        if not self.auth.token_matches(request.query["token"]):
            raise Problem(401, "that token is not the one in [web] token_file")
        rest = {key: value for key, value in request.query.items() if key != "token"}
        # One leading slash: "//host/" would send the browser to another site.
        target = "/" + request.path.lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
        cookie = f"{COOKIE}={self.auth.session()}; Path=/; HttpOnly; SameSite=Strict"
        if request.headers.get("x-forwarded-proto", "").lower() == "https":
            cookie += "; Secure"  # behind a TLS proxy: never sent over plain HTTP
        return self._redirect(target, {"Set-Cookie": cookie})

    # -- pages --

    def _overview(self, viewer: Viewer) -> Response:
        now = time.time()
        data = pages.overview(self.catalog, self.place, now, self.config.web.refresh)
        return self._page("overview.html", viewer, data=data, now=now, title="Overview")

    def _list(self, request: Request, viewer: Viewer, view: str) -> Response:
        if view not in browse.VIEWS:
            raise Problem(404, f"no list {view!r}: {', '.join(browse.VIEWS)}")
        filters, errors = read_filters(request.query, text_allowed=viewer.signed_in,
                                       redact=self.config.web.redact)  # fmt: skip
        forced = browse.VIEW_STATUS.get(view)
        if forced:
            filters = replace(filters, status=forced)
        now = time.time()
        before = request.query.get("before") or None
        page = browse.browse(self.catalog, view, filters, before=before,
                             scan_limit=self.config.web.scan_limit)  # fmt: skip
        running = self._running(now, filters) if view == "running" else []
        query = {k: v for k, v in request.query.items() if k in FILTER_KEYS and v}
        return self._page(
            "jobs.html",
            viewer,
            title=view.capitalize(),
            view=view,
            page=page,
            filters=filters,
            query=query,
            errors=errors,
            now=now,
            running=running,
            older_url=list_url(view, query, page.older) if page.older else None,
            newest_url=list_url(view, query, None),
            retry_url="/retry?" + urlencode({"view": view, **query}),
            notice=notice(request.query),
        )

    def _running(self, now: float, filters: browse.Filters) -> list[RunningRow]:
        """The attempts running now, longest first, as ``spoold top`` lists them (with the
        timeout where a daemon's snapshot says it), narrowed by class and method."""
        rows = []
        for row in running_rows(self.catalog.running(now), self.catalog.stats(), now):
            cls, _, method = row.target.rpartition(".")
            if filters.cls in ("", cls) and filters.method in ("", method):
                rows.append(row)
        return rows

    def _job(self, request: Request, viewer: Viewer, job_id: str) -> Response:
        if job_id.endswith("/retry"):
            raise Problem(405, "retrying is a POST, from the job's page")
        try:
            job = self.catalog.find(job_id)
        except CatalogError as exc:
            raise Problem(404, str(exc)) from None
        data = pages.job_page(job, signed_in=viewer.signed_in, redact=self.config.web.redact)
        settled = job.state in ("done", "failed")  # a record never changes: nothing to refresh
        return self._page("job.html", viewer, title=job.id, data=data, now=time.time(),
                          notice=notice(request.query),
                          refresh=0 if settled else self.config.web.refresh)  # fmt: skip

    def _confirm_retry(self, request: Request, viewer: Viewer) -> Response:
        self._may_act(viewer)
        view, filters, ids = self._matching(request.query, viewer)
        query = {k: v for k, v in request.query.items() if k in FILTER_KEYS and v}
        return self._page("retry.html", viewer, title="Retry", view=view, filters=filters,
                          ids=ids, query=query, cap=RETRY_CAP, refresh=0)  # fmt: skip

    def _matching(
        self, fields: Mapping[str, str], viewer: Viewer
    ) -> tuple[str, browse.Filters, list[str]]:
        """The failed jobs a bulk retry means: the newest RETRY_CAP matching the filters."""
        view = fields.get("view", "failed")
        if view not in browse.VIEW_STATUS:
            raise Problem(400, "only failed, rejected or cancelled jobs can be retried")
        filters, errors = read_filters(fields, text_allowed=viewer.signed_in,
                                       redact=self.config.web.redact)  # fmt: skip
        if errors:
            raise Problem(400, errors[0])
        filters = replace(filters, status=browse.VIEW_STATUS[view])
        total = len(self.catalog.ids("failed"))
        page = browse.browse(self.catalog, view, filters, scan_limit=max(total, 1),
                             page_size=RETRY_CAP)  # fmt: skip
        return view, filters, [row.job.id for row in page.rows]

    # -- actions --

    def _post(self, request: Request, viewer: Viewer) -> Response:
        self._may_act(viewer)
        if not same_origin(request.headers):
            raise Problem(403, "refused: this request does not come from this dashboard's pages")
        if not self.auth.form_token_ok(viewer.name or "", request.form.get("csrf")):
            raise Problem(403, "refused: the form's token is missing or stale; reload the page")
        path = request.path
        if path.startswith("/job/") and path.endswith("/retry"):
            job_id = path.removeprefix("/job/").removesuffix("/retry")
            self._retry([job_id])
            return self._redirect(f"/job/{job_id}?done=retried&n=1")
        if path == "/retry":
            view, _filters, ids = self._matching(request.form, viewer)
            retried = self._retry(ids) if ids else 0
            return self._redirect(f"/jobs/{view}?done=retried&n={retried}")
        if path == "/purge":
            return self._purge(request.form)
        raise Problem(404, f"no action {path}")

    def _may_act(self, viewer: Viewer) -> None:
        if not self.actions:
            raise Problem(403, "read-only: spoold web was started without --allow-actions")
        if not viewer.signed_in:
            raise Problem(403, "actions need a viewer who signed in")

    def _retry(self, job_ids: list[str]) -> int:
        outcome = self.catalog.retry(job_ids)
        if outcome.errors and not outcome.retried:
            raise Problem(409, outcome.errors[0])
        return len(outcome.retried)

    def _purge(self, form: Mapping[str, str]) -> Response:
        state = form.get("state", "")
        if state not in ("done", "failed"):
            raise Problem(400, "purge works on done or failed records")
        try:
            older_than = parse_age(form.get("older_than", ""))
        except ValueError as exc:
            raise Problem(400, str(exc)) from None
        removed = self.catalog.purge(state, older_than, time.time())
        return self._redirect(f"/jobs/{state}?done=purged&n={len(removed)}")

    # -- other answers --

    def _metrics(self, request: Request) -> Response:
        if not self._may_scrape(request):
            return Response(401, b"401 unauthorized: send Authorization: Bearer <token>\n",
                            "text/plain; charset=utf-8",
                            {"WWW-Authenticate": 'Bearer realm="spoold"'})  # fmt: skip
        from spoold.cli.metrics import Exporter

        text = Exporter(self.config, self.catalog).scrape()
        return Response(200, text, CONTENT_TYPE)

    def _may_scrape(self, request: Request) -> bool:
        """As ``spoold metrics``: with its token; else as any page of the dashboard."""
        header = request.headers.get("authorization", "")
        if self.metrics_token is not None:
            scheme, _, given = header.strip().partition(" ")
            offered = given.strip().encode("utf-8", "replace")
            if scheme.lower() == "bearer" and hmac.compare_digest(offered, self.metrics_token):
                return True
        if not self.auth.configured:
            return self.metrics_token is None
        return self.auth.viewer(header, request.cookies) is not None

    def _static(self, name: str) -> Response:
        if name not in STATIC:
            raise Problem(404, f"no file {name}")
        body = (HERE / "static" / name).read_bytes()
        return Response(200, body, STATIC[name], {"Cache-Control": "max-age=300"})

    def _page(self, template: str, viewer: Viewer, **context: Any) -> Response:
        context.setdefault("refresh", self.config.web.refresh)
        html = self.templates.get_template(template).render(
            viewer=viewer,
            actions=self.actions,
            place=self.place,
            views=browse.VIEWS,
            allowed=sorted(self.config.allow),
            scan_limit=self.config.web.scan_limit,
            **context,
        )
        return Response(200, html.encode(), headers=dict(SECURITY_HEADERS))

    def _problem(self, status: int, message: str) -> Response:
        html = self.templates.get_template("problem.html").render(
            status=status, message=message, place=self.place, views=browse.VIEWS,
            title=str(status), viewer=None, actions=self.actions, refresh=0,
        )  # fmt: skip
        headers = dict(SECURITY_HEADERS)
        if status == 401 and self.auth.users:
            headers["WWW-Authenticate"] = 'Basic realm="spoold", charset="UTF-8"'
        return Response(status, html.encode(), headers=headers)

    def _redirect(self, target: str, extra: dict[str, str] | None = None) -> Response:
        headers = {**SECURITY_HEADERS, "Location": target, **(extra or {})}
        return Response(303, b"", "text/plain; charset=utf-8", headers)


# -- filters in the address --

FILTER_KEYS = ("class", "method", "status", "outcome", "since", "until", "q")


def read_filters(
    fields: Mapping[str, str], *, text_allowed: bool, redact: Sequence[str] = ()
) -> tuple[browse.Filters, list[str]]:
    """The filters of a query string, and a line for each that could not be read (it is
    left out). Searching the params needs a viewer who may see them, and does not see the
    values under a ``redact`` key (masked on the pages too)."""
    errors: list[str] = []
    status = fields.get("status", "")
    if status and status not in browse.STATUSES:
        errors.append(f"status: {status!r} is not one of {', '.join(browse.STATUSES)}")
        status = ""
    outcome = fields.get("outcome", "")
    if outcome and outcome not in browse.OUTCOMES:
        errors.append(f"outcome: {outcome!r} is not one of {', '.join(browse.OUTCOMES)}")
        outcome = ""
    text = fields.get("q", "")
    if text and not text_allowed:
        errors.append("searching the params needs a viewer who signed in")
        text = ""
    filters = browse.Filters(
        cls=fields.get("class", "").strip(),
        method=fields.get("method", "").strip(),
        status=status,
        outcome=outcome,
        since=_moment(fields.get("since", ""), "since", errors),
        until=_moment(fields.get("until", ""), "until", errors),
        text=text,
        redact=tuple(redact),
    )
    return filters, errors


def _moment(text: str, name: str, errors: list[str]) -> float | None:
    """``2h`` (that long ago), ``2026-12-05 14:30`` (this host's time), or Unix seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        return time.time() - parse_age(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        errors.append(f"{name}: {text!r} is not a time; write 2h, 7d or 2026-12-05 14:30")
        return None


def list_url(view: str, query: Mapping[str, str], before: str | None) -> str:
    fields = dict(query)
    if before:
        fields["before"] = before
    return f"/jobs/{view}" + (f"?{urlencode(fields)}" if fields else "")


def notice(query: Mapping[str, str]) -> str | None:
    """The line an action's redirect asks for: only known words and a number."""
    kind, count = query.get("done", ""), query.get("n", "")
    if kind in NOTICES and count.isdigit():
        return NOTICES[kind].format(n=int(count))
    return None


# -- times, as the pages write them --


def ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{pages.duration_text(seconds)} ago"


def clock(at: float | None) -> str:
    if at is None:
        return "—"
    moment = time.localtime(at)
    if time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)
