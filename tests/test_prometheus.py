"""The Prometheus renderer (spoold/prometheus.py), read back by Prometheus's own parser.

Every test renders hand-built snapshots and parses the text with
``prometheus_client.parser.text_string_to_metric_families`` (a test-only
dependency): what a scraper would see, not what the text looks like. The
values are checked against the snapshots they came from: sums over daemons,
a stale daemon, the allowlist bounding the class label, escaping.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from snapshots import NOW, snapshot

from spoold.job import REJECTION_KINDS
from spoold.prometheus import CONTENT_TYPE, HELP, render, waiting_age
from spoold.snapshot import DURATION_BUCKETS, PICKUP_BUCKETS, Histogram, Snapshot

CLASSES = ("app.Mail", "app.Report")

Key = tuple[str, frozenset[tuple[str, str]]]


def histogram(bounds: tuple[float, ...], *observations: float) -> Histogram:
    made = Histogram(bounds)
    for value in observations:
        made.observe(value)
    return made


def parse(text: str) -> dict[Key, float]:
    """Every sample, by name and labels; a sample seen twice fails the test."""
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return samples


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def series(samples: dict[Key, float], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: number for (found, labels), number in samples.items() if found == name}


def rendered(
    snapshots: list[Snapshot],
    counts: dict[str, int] | None = None,
    oldest_wait: float | None = None,
) -> dict[Key, float]:
    return parse(render(snapshots, counts or {}, oldest_wait, NOW, classes=CLASSES))


def busy_daemon(host: str, factor: int = 1) -> Snapshot:
    """A daemon that received, rejected, ran, retried and finished jobs (times factor)."""
    return snapshot(
        host,
        busy=2 * factor,
        slots=4,
        received={"app.Mail": 5 * factor, "app.Report": 1 * factor},
        rejected={"not_allowed": 2 * factor, "bad_json": 1 * factor},
        attempts_started={"app.Mail": 7 * factor},
        attempts_finished={
            "app.Mail": {"ok": 4 * factor, "error": 2 * factor, "timeout": 1 * factor}
        },
        jobs_finished={"app.Mail": {"done": 4 * factor, "failed": 1 * factor}},
        retries_scheduled={"app.Mail": 2 * factor},
        last_success={"app.Mail": NOW - 100.0 * factor},
        duration={"app.Mail": histogram(DURATION_BUCKETS, *[0.003, 0.2, 7.0, 5000.0] * factor)},
        pickup=histogram(PICKUP_BUCKETS, *[0.0001, 0.02, 3.0] * factor),
    )


def test_one_daemons_figures_read_back_as_they_were_counted() -> None:
    samples = rendered([busy_daemon("web1")], {"incoming": 3, "done": 10, "failed": 2}, 12.5)

    assert value(samples, "spoold_jobs_received_total", **{"class": "app.Mail"}) == 5
    assert value(samples, "spoold_jobs_received_total", **{"class": "app.Report"}) == 1
    assert value(samples, "spoold_jobs_rejected_total", reason="not_allowed") == 2
    assert value(samples, "spoold_attempts_started_total", **{"class": "app.Mail"}) == 7
    finished = series(samples, "spoold_attempts_finished_total")
    assert finished[frozenset({("class", "app.Mail"), ("outcome", "error")})] == 2
    assert finished[frozenset({("class", "app.Mail"), ("outcome", "crashed")})] == 0
    assert len(finished) == len(CLASSES) * 6, "every class and outcome (cancelled too), 0 included"
    assert (
        value(samples, "spoold_jobs_finished_total", status="failed", **{"class": "app.Mail"}) == 1
    )
    assert value(samples, "spoold_retries_scheduled_total", **{"class": "app.Report"}) == 0
    assert (
        value(samples, "spoold_last_success_timestamp_seconds", **{"class": "app.Mail"})
        == NOW - 100.0
    )
    assert series(samples, "spoold_last_success_timestamp_seconds").keys() == {
        frozenset({("class", "app.Mail")})
    }, "no timestamp for a class that never succeeded"

    assert value(samples, "spoold_workers_busy", daemon="web1") == 2
    assert value(samples, "spoold_workers_max", daemon="web1") == 4
    assert value(samples, "spoold_up", daemon="web1") == 1
    assert value(samples, "spoold_start_time_seconds", daemon="web1") == NOW - 3600.0
    assert value(samples, "spoold_stats_timestamp_seconds", daemon="web1") == NOW - 1.0
    assert (
        value(samples, "spoold_build_info", version="0.1.0", python="3.11.2", backend="files") == 1
    )

    assert series(samples, "spoold_jobs") == {
        frozenset({("state", "incoming")}): 3,
        frozenset({("state", "done")}): 10,
        frozenset({("state", "failed")}): 2,
    }, "a state the counts leave out is unknown, not 0"
    assert value(samples, "spoold_oldest_waiting_job_age_seconds") == 12.5


def test_the_histograms_are_cumulative_with_inf_sum_and_count() -> None:
    samples = rendered([busy_daemon("web1")])
    mail = {"class": "app.Mail"}
    buckets = series(samples, "spoold_attempt_duration_seconds_bucket")
    by_le = {dict(labels)["le"]: number for labels, number in buckets.items()}
    assert len(by_le) == len(DURATION_BUCKETS) + 1
    # 0.003, 0.2, 7.0 and 5000.0: at or below each bound, cumulatively
    assert (by_le["0.005"], by_le["0.25"], by_le["10.0"], by_le["3600.0"], by_le["+Inf"]) == (
        1,
        2,
        3,
        3,
        4,
    )
    assert value(samples, "spoold_attempt_duration_seconds_count", **mail) == 4
    assert value(samples, "spoold_attempt_duration_seconds_sum", **mail) == pytest.approx(5007.203)
    assert not any(dict(labels)["class"] == "app.Report" for labels in buckets), (
        "a class that never ran has no histogram"
    )
    assert value(samples, "spoold_pickup_latency_seconds_bucket", le="0.0005") == 1
    assert value(samples, "spoold_pickup_latency_seconds_bucket", le="0.025") == 2
    assert value(samples, "spoold_pickup_latency_seconds_bucket", le="+Inf") == 3
    assert value(samples, "spoold_pickup_latency_seconds_count") == 3


def test_two_daemons_are_summed_and_each_has_its_own_up_and_workers() -> None:
    samples = rendered([busy_daemon("web1"), busy_daemon("web2", factor=2)])

    assert value(samples, "spoold_jobs_received_total", **{"class": "app.Mail"}) == 15
    assert value(samples, "spoold_jobs_rejected_total", reason="not_allowed") == 6
    assert (
        value(samples, "spoold_attempts_finished_total", outcome="ok", **{"class": "app.Mail"})
        == 12
    )
    assert (
        value(samples, "spoold_jobs_finished_total", status="done", **{"class": "app.Mail"}) == 12
    )
    assert value(samples, "spoold_attempt_duration_seconds_count", **{"class": "app.Mail"}) == 12
    assert value(samples, "spoold_pickup_latency_seconds_count") == 9
    assert value(samples, "spoold_pickup_latency_seconds_bucket", le="+Inf") == 9
    assert (
        value(samples, "spoold_last_success_timestamp_seconds", **{"class": "app.Mail"})
        == NOW - 100.0
    ), "the latest of the daemons'"

    assert series(samples, "spoold_up") == {
        frozenset({("daemon", "web1")}): 1,
        frozenset({("daemon", "web2")}): 1,
    }
    assert value(samples, "spoold_workers_busy", daemon="web2") == 4
    assert len(series(samples, "spoold_build_info")) == 1, "one version: one series"


def test_a_stale_daemon_is_down_and_busy_with_nothing_but_keeps_its_counts() -> None:
    fresh = busy_daemon("web1")
    stale = busy_daemon("web2")
    stale.taken_at = NOW - 3 * stale.interval - 2.0  # three intervals and more: stale
    samples = rendered([fresh, stale])

    assert value(samples, "spoold_up", daemon="web1") == 1
    assert value(samples, "spoold_up", daemon="web2") == 0
    assert value(samples, "spoold_stats_timestamp_seconds", daemon="web2") == stale.taken_at
    assert value(samples, "spoold_workers_busy", daemon="web2") == 0
    assert value(samples, "spoold_workers_max", daemon="web2") == 0
    assert value(samples, "spoold_jobs_received_total", **{"class": "app.Mail"}) == 10


def test_a_restarted_daemon_is_one_series_of_its_host() -> None:
    """On Redis the last run's snapshot outlives the run for a few intervals: the host
    is still one series, up, with the new run's start time."""
    old = busy_daemon("web1")
    old.pid, old.daemon, old.taken_at = 99, "web1:99", NOW - 30.0
    new = snapshot("web1", pid=100, started_at=NOW - 2.0, busy=1, received={"app.Mail": 1})
    samples = rendered([old, new])

    assert series(samples, "spoold_up") == {frozenset({("daemon", "web1")}): 1}
    assert value(samples, "spoold_start_time_seconds", daemon="web1") == NOW - 2.0
    assert value(samples, "spoold_stats_timestamp_seconds", daemon="web1") == NOW - 1.0
    assert value(samples, "spoold_workers_busy", daemon="web1") == 1


def test_a_class_off_the_allowlist_adds_no_series() -> None:
    """Whatever a snapshot names (a daemon with another config), only allowed classes
    become label values, and unknown kinds, outcomes and statuses are left out."""
    evil = "evil.Class"
    daemon = snapshot(
        received={evil: 1, "app.Mail": 1},
        rejected={"made_up_kind": 3},
        attempts_started={evil: 1},
        attempts_finished={evil: {"ok": 1}, "app.Mail": {"exploded": 1}},
        jobs_finished={evil: {"done": 1}, "app.Mail": {"vanished": 1}},
        retries_scheduled={evil: 1},
        last_success={evil: NOW},
        duration={evil: histogram(DURATION_BUCKETS, 1.0)},
    )
    text = render([daemon], {}, None, NOW, classes=CLASSES)
    assert evil not in text
    assert "made_up_kind" not in text and "exploded" not in text and "vanished" not in text
    assert parse(text) == rendered([snapshot(received={"app.Mail": 1})])


def test_every_rejection_kind_is_exported_and_the_text_without_a_daemon_is_all_zeros() -> None:
    samples = rendered([])
    assert series(samples, "spoold_jobs_rejected_total") == {
        frozenset({("reason", kind)}): 0 for kind in REJECTION_KINDS
    }
    assert series(samples, "spoold_jobs_received_total") == {
        frozenset({("class", name)}): 0 for name in CLASSES
    }
    assert series(samples, "spoold_up") == {}
    assert value(samples, "spoold_pickup_latency_seconds_count") == 0
    assert value(samples, "spoold_oldest_waiting_job_age_seconds") == 0


@given(st.text(min_size=1, max_size=40))
@example("ends with a backslash\\")
@example("a backslash and an n: \\n, a newline: \n")
@example('say "hi"')
def test_label_values_are_escaped(host: str) -> None:
    """A host id (and a version) with quotes, backslashes, newlines or anything else
    reads back as it was."""
    samples = parse(render([snapshot(host, version=host)], {}, None, NOW, classes=CLASSES))
    assert value(samples, "spoold_up", daemon=host) == 1
    assert value(samples, "spoold_build_info", version=host, python="3.11.2", backend="files") == 1


def test_the_text_is_the_format_with_help_and_type_for_every_metric() -> None:
    text = render(
        [busy_daemon("web2"), busy_daemon("web1", 2)],
        {"incoming": 1},
        3.0,
        NOW,
        classes=list(reversed(CLASSES)),
    )
    again = render(
        [busy_daemon("web1", 2), busy_daemon("web2")], {"incoming": 1}, 3.0, NOW, classes=CLASSES
    )
    assert text == again, "the order of the input changes nothing"
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert text.endswith("\n")

    families = {family.name: family for family in text_string_to_metric_families(text)}
    kinds = {name: family.type for name, family in families.items()}
    for name in HELP:  # the parser drops a counter's _total from the family's name
        family = name.removesuffix("_total") if name.endswith("_total") else name
        assert family in kinds, f"{name} is not rendered"
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text
    assert {name for name in HELP if name.endswith("_total")} == {
        f"{name}_total" for name, kind in kinds.items() if kind == "counter"
    }
    assert kinds["spoold_attempt_duration_seconds"] == "histogram"
    assert kinds["spoold_jobs"] == "gauge"
    for name in HELP:
        if name.endswith("_total"):
            assert "[metrics] interval" in families[name.removesuffix("_total")].documentation
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(not math.isnan(float(line.rsplit(" ", 1)[1])) for line in lines)
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == list(HELP), "the families in HELP's order, each once"


def test_histograms_of_daemons_with_other_buckets_are_summed_in_the_newest_ones() -> None:
    """An observation ≤ b stays ≤ each bound ≥ b: moved up, never down."""
    older = snapshot(
        "old", taken_at=NOW - 2.0, pickup=histogram((0.001, 0.003, 10.0), 0.0005, 0.002, 5.0, 50.0)
    )
    newer = snapshot("new", pickup=histogram((0.001, 0.005, 1.0), 0.002))
    samples = rendered([older, newer])
    buckets = series(samples, "spoold_pickup_latency_seconds_bucket")
    by_le = {dict(labels)["le"]: number for labels, number in buckets.items()}
    assert by_le == {"0.001": 1, "0.005": 3, "1.0": 3, "+Inf": 5}
    assert value(samples, "spoold_pickup_latency_seconds_count") == 5


def test_the_oldest_wait_is_the_live_daemons_else_the_backends() -> None:
    stale = snapshot("b", taken_at=NOW - 60.0, oldest_wait=500.0)
    assert waiting_age([snapshot("a", oldest_wait=4.0), stale], NOW, 900.0) == 4.0
    assert (
        waiting_age([snapshot("a", oldest_wait=4.0), snapshot("c", oldest_wait=9.0)], NOW, 900.0)
        == 9.0
    )
    assert waiting_age([snapshot("a")], NOW, 900.0) is None, "a live daemon: none waits"
    assert waiting_age([stale], NOW, 900.0) == 900.0, "no live daemon: everything waits"
    assert waiting_age([], NOW, None) is None


ROOT = Path(__file__).resolve().parent.parent


def documented_names() -> dict[str, set[str]]:
    """Each metric name docs/OPERATIONS.md and the README's Metrics section write."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics: ", 1)[1].split("\n## ", 1)[0]
    return {
        "docs/OPERATIONS.md": set(
            re.findall(r"\bspoold_[a-z_]+", (ROOT / "docs/OPERATIONS.md").read_text())
        ),
        "README.md's Metrics": set(re.findall(r"\bspoold_[a-z_]+", section)),
    }


def test_the_docs_and_their_alert_rules_name_only_metrics_that_are_rendered() -> None:
    text = render(
        [busy_daemon("web1")], dict.fromkeys(("incoming", "done"), 1), 1.0, NOW, classes=CLASSES
    )
    rendered_names = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")
    } | set(HELP)
    for where, names in documented_names().items():
        assert names, f"{where} names no metric"
        assert names <= rendered_names, f"{where} names {sorted(names - rendered_names)}"
    assert set(HELP) <= documented_names()["docs/OPERATIONS.md"], "a metric is not in the table"
