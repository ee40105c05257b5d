"""Flow control's pure parts (issue 20): the words of ``[limits]``, the token bucket, the
gate and the ready queue's lanes, the job fields, the client's unique key, and what a
record's follow-up is made of. The daemon's and the backends' use of them is tested in
tests/test_backends.py, tests/test_flow_files.py and tests/test_flow_redis.py."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from spoold import followups
from spoold.backends.files.queue import ReadyQueue
from spoold.client import follow_up, job_payload, unique_key_for
from spoold.config import ConfigError, config_from_mapping
from spoold.ids import is_valid_id
from spoold.job import Rejected, check_allowed, parse_job
from spoold.limits import Bucket, ClassLimit, Gate, Rate, parse_limit, parse_rate
from spoold.prometheus import render
from spoold.snapshot import Snapshot

ALLOW = {"app.Report": ["build"], "app.Mail": ["send"]}


def config(**sections: Any) -> Any:
    return config_from_mapping({"allow": ALLOW, **sections}, Path("/"))


# -- [limits] --


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/m", Rate(10, 60.0)), ("5/s", Rate(5, 1.0)), ("100/h", Rate(100, 3600.0)),
     ("2/30s", Rate(2, 30.0)), (" 3 / d ", Rate(3, 86400.0)), ("1/1.5s", Rate(1, 1.5))],
)  # fmt: skip
def test_a_rate_is_a_count_per_period(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "10/x", "0/s", "-1/s", "ten/m", "1/0s", 5, ""])
def test_a_rate_in_another_form_is_refused_naming_the_form(text: Any) -> None:
    with pytest.raises(ValueError, match="rate must"):
        parse_rate(text)


def test_a_rate_reads_back_as_written() -> None:
    assert [str(parse_rate(t)) for t in ("10/m", "5/s", "2/30s", "7/h")] == [
        "10/m", "5/s", "2/30s", "7/h"]  # fmt: skip


def test_limits_in_the_config_are_checked_per_class() -> None:
    limits = config(limits={"app.Report": {"concurrency": 1, "rate": "10/m"}}).limits
    assert limits == {"app.Report": ClassLimit(1, Rate(10, 60.0))}
    assert str(limits["app.Report"]) == "concurrency 1, rate 10/m"
    refusals = {
        "app.Other": ({"concurrency": 1}, "not a class of [allow]"),
        "app.Report": ({"concurrency": 0}, "concurrency must be an integer >= 1"),
    }
    for class_path, (table, words) in refusals.items():
        with pytest.raises(ConfigError, match=re.escape(words)):
            config(limits={class_path: table})
    with pytest.raises(ConfigError, match='unknown key "burst"'):
        parse_limit_via_config({"burst": 3})
    with pytest.raises(ConfigError, match="set concurrency, rate or both"):
        parse_limit_via_config({})


def parse_limit_via_config(table: dict[str, Any]) -> None:
    config(limits={"app.Report": table})


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    rate = parse_rate("2/s")
    bucket = Bucket(2.0, 100.0)
    bucket.take(rate, 100.0)
    bucket.take(rate, 100.0)
    assert bucket.level(rate, 100.0) == 0.0
    assert bucket.next_token(rate, 100.0) == pytest.approx(100.5)
    assert bucket.level(rate, 100.25) == pytest.approx(0.5)
    assert bucket.level(rate, 200.0) == 2.0  # never over its count


def test_the_gate_blocks_a_class_at_its_concurrency_or_rate_and_only_that_class() -> None:
    limits = {
        "app.Report": parse_limit({"concurrency": 1}),
        "app.Mail": parse_limit({"rate": "1/s"}),
    }
    gate = Gate()
    assert not gate.blocked(limits, "app.Report", 0.0)
    gate.started(limits, "app.Report", "r1", 0.0)
    assert gate.blocked(limits, "app.Report", 0.0)
    assert not gate.blocked(limits, "app.Other", 0.0)  # no limit: never blocked
    gate.ended("r1")
    assert not gate.blocked(limits, "app.Report", 0.0)

    gate.started(limits, "app.Mail", "m1", 10.0)
    assert gate.blocked(limits, "app.Mail", 10.5)
    assert gate.next_free(limits, ["app.Mail", "app.Report"], 10.5) == pytest.approx(11.0)
    assert not gate.blocked(limits, "app.Mail", 11.0)
    # A class with a token is not waited for: a wake-up of "now" would spin the loop.
    assert gate.next_free(limits, ["app.Mail"], 11.0) is None


# -- the ready queue's lanes --


def test_a_blocked_class_is_set_aside_in_order_and_comes_back_first_when_free() -> None:
    queue = ReadyQueue()
    for name, priority, class_path in [("r1", 9, "Report"), ("r2", 9, "Report"),
                                       ("m1", 1, "Mail"), ("m2", 0, "Mail")]:  # fmt: skip
        queue.push("incoming", name, priority, 0.0, None, 0.0, class_path)
    blocked = {"Report"}

    def is_blocked(class_path: str) -> bool:
        return class_path in blocked

    first = queue.pop(is_blocked)
    assert first is not None and first.name == "m1"  # Report, with the top priority, waits
    assert queue.held_back(is_blocked) == {"Report": 2}
    assert len(queue) == 3
    blocked.clear()
    assert [entry.name for entry in iter(lambda: queue.pop(is_blocked), None)] == ["r1", "r2", "m2"]


def test_a_job_set_aside_can_be_removed_and_counts_as_waiting() -> None:
    queue = ReadyQueue()
    queue.push("incoming", "r1", 5, 0.0, None, 3.0, "Report")
    queue.push("incoming", "r2", 5, 1.0, None, 4.0, "Report")
    assert queue.pop(lambda class_path: True) is None
    assert queue.oldest_ready_since() == 3.0
    removed = queue.remove("incoming", "r1")
    assert removed is not None and removed.name == "r1"
    assert ("incoming", "r1") not in queue and len(queue) == 1


# -- the job fields --


def parsed(**fields: Any) -> Any:
    document = {"class": "app.Report", "method": "build", "params": [], **fields}
    return parse_job(json.dumps(document).encode(), job_id="j1", mtime=0.0)


def test_unique_key_and_follow_ups_are_checked_as_job_fields() -> None:
    job = parsed(unique_key="k", on_success={"class": "app.Mail", "method": "send"})
    assert job.unique_key == "k" and job.on_success == {"class": "app.Mail", "method": "send"}
    cases = {
        'field "unique_key" must be a string': {"unique_key": 7},
        'field "unique_key" must be 1 to 256': {"unique_key": ""},
        'field "on_success" must be a job object': {"on_success": "app.Mail.send"},
        'on_failure: missing field "method"': {"on_failure": {"class": "app.Mail"}},
        'on_success: on_failure: field "priority" must be an integer': {
            "on_success": {
                "class": "app.Mail",
                "method": "send",
                "on_failure": {"class": "app.Mail", "method": "send", "priority": "high"},
            }
        },
    }
    for words, fields in cases.items():
        with pytest.raises(Rejected, match=words.replace('"', ".")):
            parsed(**fields)
    deep: dict[str, Any] = {"class": "app.Mail", "method": "send"}
    for _ in range(16):
        deep = {"class": "app.Mail", "method": "send", "on_success": deep}
    with pytest.raises(Rejected, match="nest more than 16 deep"):
        parsed(on_success=deep)


def test_a_follow_up_off_the_allowlist_refuses_its_parent_naming_where_it_is() -> None:
    nested = {"class": "app.Mail", "method": "send",
              "on_failure": {"class": "app.Gone", "method": "run"}}  # fmt: skip
    with pytest.raises(Rejected, match=re.escape('on_success: on_failure: class "app.Gone" is')):
        check_allowed(parsed(on_success=nested), config())
    with pytest.raises(Rejected, match=re.escape('on_failure: method "drop" of class "app.M')):
        check_allowed(parsed(on_failure={"class": "app.Mail", "method": "drop"}), config())


# -- the client --


def test_unique_true_derives_the_documented_key_any_language_can_make() -> None:
    params = {"day": "2026-12-06", "name": "Zoë"}
    canonical = '{"class":"app.Report","method":"build","params":{"day":"2026-12-06","name":"Zoë"}}'
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert unique_key_for("app.Report", "build", params) == expected
    assert unique_key_for("app.Report", "build", (1, 2)) == unique_key_for(
        "app.Report", "build", [1, 2]
    )
    assert unique_key_for("app.Report", "build") != unique_key_for("app.Report", "build", [0])


def test_follow_up_makes_a_job_document_and_refuses_what_is_not_json() -> None:
    child = follow_up(
        "app.Mail", "send", ["to"], priority=3, on_success=follow_up("app.Mail", "send")
    )
    inner = {"class": "app.Mail", "method": "send", "params": []}
    assert child == {"class": "app.Mail", "method": "send", "params": ["to"], "priority": 3,
                     "on_success": inner}  # fmt: skip
    payload = job_payload("app.Report", "build", [], now=1.0, on_success=child)
    assert parse_job(payload, job_id="j", mtime=1.0).on_success == child
    with pytest.raises(TypeError):
        follow_up("app.Mail", "send", [object()])


# -- what a record's follow-up is made of --


def record(status: str, **fields: Any) -> dict[str, Any]:
    return {"class": "app.Report", "method": "build", "params": [], "id": "p1",
            "status": status, "finished_at": 1796500000.25, "submitted_by": 1000,
            "on_success": {"class": "app.Mail", "method": "send", "params": [1], "id": "forged"},
            "on_failure": {"class": "app.Mail", "method": "send", "params": [2]},
            **fields}  # fmt: skip


def test_a_done_record_names_its_on_success_under_an_id_derived_from_it() -> None:
    planned = followups.plan("p1", record("done", result={"rows": 3}), config())
    again = followups.plan("p1", record("done", result={"rows": 3}), config())
    [child_id] = planned[followups.FOLLOW_UPS]
    assert again[followups.FOLLOW_UPS] == [child_id] and is_valid_id(child_id)
    assert child_id.startswith("20261205T")  # its time: the parent's finishing time
    assert followups.FOLLOW_UP_REJECTED not in planned
    [child] = followups.children(planned)
    assert child.job_id == child_id
    assert child.document == {
        "class": "app.Mail",
        "method": "send",
        "params": [1],
        "parent": {"id": "p1", "status": "done", "result": {"rows": 3}},
        "submitted_by": 1000,
    }  # fmt: skip (daemon keys dropped)


def test_a_failed_record_starts_on_failure_and_others_start_nothing() -> None:
    planned = followups.plan("p1", record("failed", reason="boom"), config())
    [child] = followups.children(planned)
    assert child.document["params"] == [2]
    assert child.document["parent"] == {"id": "p1", "status": "failed", "reason": "boom"}
    for status in ("rejected", "cancelled"):
        assert followups.FOLLOW_UPS not in followups.plan("p1", record(status), config())
        assert followups.children(record(status, follow_ups=["x"])) == []


def test_a_follow_up_no_longer_allowed_is_named_with_why_and_a_big_result_left_out() -> None:
    narrowed = config_from_mapping({"allow": {"app.Report": ["build"]}}, Path("/"))
    planned = followups.plan("p1", record("done", result="x" * 70000), narrowed)
    assert 'class "app.Mail" is not on the allowlist' in planned[followups.FOLLOW_UP_REJECTED]
    [child] = followups.children(planned)
    assert child.document["parent"] == {"id": "p1", "status": "done", "result_omitted": True}


def test_prometheus_shows_the_jobs_held_back_by_class() -> None:
    snapshot = Snapshot(daemon="h:1", host="h", pid=1, backend="files", version="0", python="3",
                        started_at=0.0, taken_at=100.0, interval=5.0, busy=1, slots=2, held=0,
                        ready=3, scheduled=0, oldest_wait=None,
                        held_back={"app.Report": 3})  # fmt: skip
    text = render([snapshot], {}, None, 101.0, classes=["app.Report", "app.Mail"])
    assert 'spoold_jobs_held_back{class="app.Report"} 3' in text
    assert 'spoold_jobs_held_back{class="app.Mail"} 0' in text
