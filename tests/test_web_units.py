"""The dashboard's pure parts, alone: what is masked, what counts as the same origin,
how a filter's time reads, and the charts' buckets. (The dashboard itself is tested
over HTTP in test_web_http.py and in a real browser in test_web_browser.py.)"""

from __future__ import annotations

import time

import pytest

from spoold.cli.view import Rate
from spoold.snapshot import Minute, Snapshot
from spoold.web import charts
from spoold.web.app import read_filters
from spoold.web.auth import Auth, same_origin
from spoold.web.pages import RateFigure, rate_figure
from spoold.web.redact import HIDDEN, MASK, for_viewer, masked

KEYS = ("password", "token", "api_key")


def test_secret_keys_are_masked_at_any_depth_and_in_lists() -> None:
    value = {
        "user": "ann",
        "DB_Password": "hunter2",
        "nested": [{"api_key": "k-1", "keep": 1}, {"deeper": {"refresh_token": ["t"]}}],
    }
    assert masked(value, KEYS) == {
        "user": "ann",
        "DB_Password": MASK,
        "nested": [{"api_key": MASK, "keep": 1}, {"deeper": {"refresh_token": MASK}}],
    }


def test_a_viewer_who_did_not_sign_in_sees_no_contents() -> None:
    record = {
        "id": "x",
        "class": "app.Jobs",
        "params": {"to": "ann@example.com"},
        "result": [1, 2],
        "raw": "{...",
        "history": [{"attempt": 1, "error": "ValueError: boom", "traceback": "Traceback ..."}],
    }
    shown = for_viewer(record, signed_in=False, keys=KEYS)
    assert shown["params"] == shown["result"] == shown["raw"] == HIDDEN
    assert shown["history"] == [{"attempt": 1, "error": "ValueError: boom", "traceback": HIDDEN}]
    assert shown["class"] == "app.Jobs"
    signed_in = for_viewer(record, signed_in=True, keys=KEYS)
    assert signed_in["params"] == {"to": "ann@example.com"}
    assert signed_in["history"][0]["traceback"] == "Traceback ..."


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({"sec-fetch-site": "same-origin", "host": "h:1"}, True),
        ({"sec-fetch-site": "same-site", "host": "h:1", "origin": "http://h:1"}, False),
        ({"sec-fetch-site": "cross-site", "host": "h:1", "origin": "http://h:1"}, False),
        ({"sec-fetch-site": "none", "host": "h:1"}, False),
        ({"origin": "http://h:1", "host": "h:1"}, True),
        ({"origin": "https://H:1", "host": "h:1"}, True),
        ({"origin": "http://evil.example", "host": "h:1"}, False),
        ({"origin": "null", "host": "h:1"}, False),
        ({"host": "h:1"}, False),
        ({}, False),
    ],
)
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    assert same_origin(headers) is same


def test_form_tokens_are_per_viewer_and_per_process() -> None:
    one, two = Auth(token=b"t"), Auth(token=b"t")
    assert one.form_token_ok("token", one.form_token("token"))
    assert not one.form_token_ok("alice", one.form_token("token"))
    assert not two.form_token_ok("token", one.form_token("token"))  # another process's secret
    assert not one.form_token_ok("token", None)
    assert one.session() == two.session() != "t"  # the cookie survives a restart, is not the token


def test_basic_auth_needs_the_right_user_and_password() -> None:
    import base64

    auth = Auth(users={"alice": b"s3cret"})

    def basic(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert auth.viewer(basic("alice:s3cret"), {}) == "alice"
    assert auth.viewer(basic("alice:wrong"), {}) is None
    assert auth.viewer(basic("bob:s3cret"), {}) is None
    assert auth.viewer("Basic not-base64!", {}) is None
    assert auth.viewer(None, {}) is None


def test_filters_read_times_and_refuse_what_they_cannot_read() -> None:
    before = time.time()
    filters, errors = read_filters(
        {"since": "2h", "until": "2026-12-05 14:30", "status": "done", "q": "x"},
        text_allowed=False,
    )
    assert filters.since is not None and before - 7200 - 5 < filters.since <= time.time() - 7200
    assert filters.until is not None
    assert filters.status == "done"
    assert filters.text == ""  # searching the params needs a viewer who may see them
    assert errors == ["searching the params needs a viewer who signed in"]
    filters, errors = read_filters({"since": "yesterday", "outcome": "maybe"}, text_allowed=True)
    assert filters.since is None and filters.outcome == ""
    assert len(errors) == 2 and all("\n" not in error for error in errors)


def _snapshot(minutes: list[Minute]) -> Snapshot:
    return Snapshot(
        daemon="h:1", host="h", pid=1, backend="files", version="0", python="3.11",
        started_at=0.0, taken_at=0.0, interval=5.0, busy=0, slots=4, held=0, ready=0,
        scheduled=0, oldest_wait=None, minutes=minutes,
    )  # fmt: skip


def test_charts_sum_the_daemons_rings_per_bucket() -> None:
    now = 1_000_000 * 60 + 30.0  # half-way through a minute
    this = int(now // 60 * 60)
    one = _snapshot([Minute(this, done=6, failed=2), Minute(this - 600, done=3)])
    two = _snapshot([Minute(this, done=4, rejected=1), Minute(this - 7200, done=99)])
    hour = charts.per_minute([one, two], now, minutes=60, bucket=1)
    assert len(hour) == 60
    assert (hour[-1].value, hour[-1].failed) == (13, 3)  # done + failed + rejected
    assert hour[-11].value == 3
    assert sum(bar.value for bar in hour) == 16  # two hours ago is out of the hour
    day = charts.per_minute([one, two], now, minutes=24 * 60, bucket=10)
    assert len(day) == 144
    assert sum(bar.value for bar in day) * 10 == pytest.approx(16 + 99)
    chart = charts.bar_chart(hour, label="x")
    assert max(column.height for column in chart.columns) == charts.HEIGHT - charts.TOP
    assert charts.bar_chart([], label="empty").columns == []


def test_the_throughput_card_says_over_what_window() -> None:
    assert rate_figure(None) == RateFigure("?", "no daemon's stats to count from")
    young = rate_figure(Rate(per_minute=0.0, minutes=0, up_for=20.0))
    assert young.figure == "—" and "full minute" in young.note
    one = rate_figure(Rate(per_minute=12.0, minutes=1, up_for=90.0))
    assert one == RateFigure("12 jobs/min", "finished, average over the last full minute")
    five = rate_figure(Rate(per_minute=4.25, minutes=5, up_for=900.0))
    assert five == RateFigure("4.2 jobs/min", "finished, average over the last 5 minutes")
    busy = rate_figure(Rate(per_minute=137.6, minutes=5, up_for=900.0))
    assert busy.figure == "138 jobs/min"  # whole jobs from 10 up: the card stays one line
