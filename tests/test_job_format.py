"""The job file format (spoold/job.py): parsing, every field check, records.

Pure functions only: no daemon, no disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoold.config import Config, config_from_mapping
from spoold.job import (
    DAEMON_KEYS,
    Incomplete,
    Job,
    Rejected,
    check_allowed,
    encode,
    parse_job,
    raw_bytes,
    rejection_record,
)

MTIME = 1_700_000_000.0


def job_bytes(**fields: Any) -> bytes:
    """A job document with a valid class and method, plus ``fields``."""
    document: dict[str, Any] = {"class": "app.jobs.Report", "method": "build", **fields}
    return json.dumps(document).encode()


def parse(raw: bytes, *, trusted: bool = False) -> Job:
    return parse_job(raw, job_id="job-1", mtime=MTIME, trusted=trusted)


def rejection(raw: bytes) -> str:
    """The reason ``raw`` is rejected (fails the test if it is accepted)."""
    with pytest.raises(Rejected) as caught:
        parse(raw)
    return str(caught.value)


# -- a good job and its defaults --


def test_minimal_job_gets_the_documented_defaults() -> None:
    """class and method alone make a job: params [], priority 0, enqueued_at = mtime."""
    job = parse(job_bytes())
    assert (job.id, job.class_path, job.method) == ("job-1", "app.jobs.Report", "build")
    assert job.params == []
    assert job.priority == 0
    assert job.enqueued_at == MTIME
    assert job.run_at is None
    assert job.max_retries is None
    assert job.retry_delay is None
    assert job.backoff is None
    assert job.timeout is None
    assert job.history == ()
    assert job.attempts == 0


def test_every_optional_field_is_read() -> None:
    """Each optional field of SPEC.md's table reaches the Job, with its type."""
    job = parse(
        job_bytes(
            params={"a": 1},
            priority=-5,
            run_at=1_800_000_000,
            max_retries=0,
            retry_delay=1,
            backoff="exponential",
            timeout=2.5,
            memory_limit=1024,
            enqueued_at=123.5,
        )
    )
    assert job.params == {"a": 1}
    assert job.priority == -5
    assert job.run_at == 1_800_000_000.0
    assert job.max_retries == 0
    assert job.retry_delay == 1.0
    assert isinstance(job.retry_delay, float)
    assert job.backoff == "exponential"
    assert job.timeout == 2.5
    assert job.memory_limit == 1024
    assert job.enqueued_at == 123.5


def test_null_optional_fields_mean_the_default() -> None:
    """A field set to null is treated as absent."""
    job = parse(job_bytes(priority=None, max_retries=None, timeout=None))
    assert job.priority == 0
    assert job.max_retries is None


def test_params_is_a_list_or_an_object() -> None:
    """params may be an array or an object; a string is refused."""
    assert parse(job_bytes(params=[1, "two", None])).params == [1, "two", None]
    assert 'field "params" must be an array or an object, not a string' in rejection(
        job_bytes(params="x")
    )


def test_run_at_accepts_iso_8601_with_a_zone() -> None:
    """run_at as ISO text with Z or an offset becomes Unix seconds."""
    assert parse(job_bytes(run_at="1970-01-01T00:01:00Z")).run_at == 60.0
    assert parse(job_bytes(run_at="1970-01-01T01:01:00+01:00")).run_at == 60.0


def test_unknown_fields_are_kept() -> None:
    """Unknown fields stay in ``submitted`` (and so in the record)."""
    job = parse(job_bytes(trace_id="abc", nested={"x": [1]}))
    assert job.submitted["trace_id"] == "abc"
    assert job.submitted["nested"] == {"x": [1]}


# -- Incomplete versus Rejected --


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \n", b'{"class": "app.jobs.Report", "meth', b'{"class": "a.B", "params": [1, 2'],
)
def test_a_cut_off_document_is_incomplete(raw: bytes) -> None:
    """Bytes that may still be being written raise Incomplete (a kind of Rejected)."""
    with pytest.raises(Incomplete):
        parse(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"class": "a.B",, "method": "m"}', "not valid JSON: Expecting property name"),
        (b'{"class": "a.B", "method": "m"} trailing', "not valid JSON: Extra data"),
        (b'{"class": "a.B", "method": "\xff"}', "not valid JSON: the bytes are not UTF-8"),
        (b'{"class": "a.B", "method": "m", "x": NaN}', "NaN is not allowed"),
        (b'{"class": "a.B", "method": "m", "x": Infinity}', "Infinity is not allowed"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"x": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_broken_json_is_rejected_not_incomplete(raw: bytes, reason: str) -> None:
    """An error before the end of the bytes is final: Rejected, with what was wrong."""
    with pytest.raises(Rejected) as caught:
        parse(raw)
    assert not isinstance(caught.value, Incomplete)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[1, 2]", "an array"), (b'"job"', "a string"), (b"42", "a number"), (b"null", "null")],
)
def test_a_document_that_is_not_an_object_is_rejected(raw: bytes, kind: str) -> None:
    """The top level must be an object; the reason says what it was instead."""
    assert rejection(raw) == f"the job must be a JSON object, not {kind}"


# -- every field check --


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"method": "m"}, 'missing field "class"'),
        ({"class": 3, "method": "m"}, 'field "class" must be a string, not a number'),
        ({"class": "Report", "method": "m"}, 'field "class" must be a dotted path'),
        ({"class": "app..Report", "method": "m"}, 'field "class" must be a dotted path'),
        ({"class": "app.jobs.Re-port", "method": "m"}, 'field "class" must be a dotted path'),
        ({"class": "a.B"}, 'missing field "method"'),
        ({"class": "a.B", "method": ["m"]}, 'field "method" must be a string, not an array'),
        ({"class": "a.B", "method": "run now"}, 'field "method" must be a plain method name'),
        ({"class": "a.B", "method": "_secret"}, 'field "method" names a private method'),
        ({"class": "a.B", "method": "__init__"}, 'field "method" names a private method'),
        ({"class": "a.B", "method": "m", "params": 7}, 'field "params" must be an array'),
        ({"class": "a.B", "method": "m", "priority": "high"}, '"priority" must be an integer'),
        ({"class": "a.B", "method": "m", "priority": 1.5}, '"priority" must be an integer'),
        ({"class": "a.B", "method": "m", "priority": True}, '"priority" must be an integer'),
        ({"class": "a.B", "method": "m", "max_retries": "3"}, '"max_retries" must be an integer'),
        ({"class": "a.B", "method": "m", "max_retries": -1}, '"max_retries" must be >= 0'),
        ({"class": "a.B", "method": "m", "retry_delay": "2"}, '"retry_delay" must be a number'),
        ({"class": "a.B", "method": "m", "retry_delay": -1}, '"retry_delay" must be >= 0'),
        ({"class": "a.B", "method": "m", "timeout": False}, '"timeout" must be a number'),
        ({"class": "a.B", "method": "m", "backoff": "linear"}, '"backoff" must be "fixed" or'),
        ({"class": "a.B", "method": "m", "memory_limit": -1}, '"memory_limit" must be >= 0'),
        ({"class": "a.B", "method": "m", "enqueued_at": "now"}, '"enqueued_at" must be a number'),
        ({"class": "a.B", "method": "m", "run_at": "tomorrow"}, '"run_at" is not an ISO-8601'),
        ({"class": "a.B", "method": "m", "run_at": "2030-01-01T00:00"}, "needs a time zone"),
        ({"class": "a.B", "method": "m", "run_at": [2030]}, '"run_at" must be a time, not an'),
        ({"class": "a.B", "method": "m", "run_at": True}, '"run_at" must be a time, not a bool'),
    ],
)
def test_each_bad_field_is_rejected_with_its_name(document: dict[str, Any], reason: str) -> None:
    """Every field check names the field and the problem."""
    assert reason in rejection(json.dumps(document).encode())


# -- the daemon's own keys --


def test_daemon_keys_in_a_submitted_file_are_dropped() -> None:
    """A client cannot forge history, status, due time or id: untrusted copies are dropped."""
    forged = {key: "forged" for key in DAEMON_KEYS}
    forged["history"] = [{"attempt": 1, "outcome": "ok"}]
    forged["due_at"] = 5.0
    job = parse(job_bytes(**forged))
    assert job.history == ()
    assert job.due_at is None
    assert job.id == "job-1"
    assert not set(job.submitted) & DAEMON_KEYS


def test_a_trusted_file_keeps_history_and_due_time() -> None:
    """Files the daemon wrote itself keep their bookkeeping."""
    history = [{"attempt": 1, "outcome": "error", "error": "ValueError: x"}]
    job = parse(job_bytes(history=history, due_at=99.5, status="x"), trusted=True)
    assert job.history == tuple(history)
    assert job.attempts == 1
    assert job.due_at == 99.5
    assert "status" not in job.submitted
    assert "history" not in job.submitted


@pytest.mark.parametrize(
    "bookkeeping",
    [{"history": "none"}, {"history": [1, 2]}, {"due_at": "soon"}, {"due_at": True}],
)
def test_damaged_bookkeeping_in_a_trusted_file_is_rejected(bookkeeping: dict[str, Any]) -> None:
    """A daemon file whose history or due_at has the wrong type is refused, not trusted."""
    with pytest.raises(Rejected, match="damaged"):
        parse(job_bytes(**bookkeeping), trusted=True)


def test_state_document_round_trips_through_a_trusted_parse() -> None:
    """What the daemon writes to scheduled/ or active/ parses back to the same job."""
    history = ({"attempt": 1, "outcome": "crashed", "signal": 11},)
    job = parse(job_bytes(params=[1], extra="kept"))
    moved = Job(**{**job.__dict__, "history": history, "due_at": 42.0})
    again = parse(encode(moved.state_document()), trusted=True)
    assert again.history == history
    assert again.due_at == 42.0
    assert again.submitted == job.submitted


# -- records --


def test_record_is_the_submitted_job_plus_what_happened() -> None:
    """A done record: submitted fields (unknown ones too), id, status, attempts, result, history."""
    job = parse(job_bytes(params=["a"], note="hi"))
    entry = {"attempt": 1, "started_at": 1.0, "finished_at": 2.0, "outcome": "ok"}
    job = Job(**{**job.__dict__, "history": (entry,)})
    record = job.record("done", 2.5, result={"rows": 3})
    assert record == {
        "class": "app.jobs.Report",
        "method": "build",
        "params": ["a"],
        "note": "hi",
        "id": "job-1",
        "status": "done",
        "attempts": 1,
        "result": {"rows": 3},
        "history": [entry],
        "finished_at": 2.5,
    }


def test_rejection_record_keeps_the_fields_and_the_utf8_bytes() -> None:
    """A rejection record keeps what parsed, drops forged daemon keys and keeps ``raw``."""
    raw = job_bytes(priority="high", status="done", history=[1], note="ü")
    record = rejection_record("job-1", "bad priority", raw, file_name="job-1.json", received_at=7.0)
    assert record["status"] == "rejected"
    assert record["reason"] == "bad priority"
    assert record["attempts"] == 0
    assert record["history"] == []
    assert record["note"] == "ü"
    assert record["priority"] == "high"
    assert record["file"] == "job-1.json"
    assert record["received_at"] == 7.0
    assert "raw_encoding" not in record
    assert raw_bytes(record) == raw
    assert raw_bytes(json.loads(encode(record))) == raw


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00garbage", b'{"class": "\xc3"}', b"\x00" * 10])
def test_rejection_record_keeps_non_utf8_bytes_as_base64(raw: bytes) -> None:
    """Bytes that are not UTF-8 survive the record exactly, as base64."""
    record = rejection_record("job-1", "r", raw, file_name="f.json", received_at=1.0)
    if record.get("raw_encoding") == "base64":
        assert base64.b64decode(record["raw"]) == raw
    assert raw_bytes(json.loads(encode(record))) == raw


def test_rejection_record_of_deeply_nested_json_does_not_raise() -> None:
    """Even bytes that defeat the JSON parser give a record."""
    raw = b"[" * 100_000
    record = rejection_record("j", "deep", raw, file_name="j.json", received_at=1.0)
    assert raw_bytes(record) == raw


def test_encode_stores_a_non_json_value_as_its_repr() -> None:
    """encode() never fails on a value JSON cannot hold: it writes its repr."""
    assert json.loads(encode({"result": {1, 2}})) == {"result": "{1, 2}"}


# -- the allowlist --


def allow_config(tmp_path: Path) -> Config:
    return config_from_mapping({"allow": {"app.jobs.Report": ["build"]}}, base=tmp_path)


def test_check_allowed_passes_an_allowed_job(tmp_path: Path) -> None:
    """An allowed class and method raise nothing."""
    check_allowed(parse(job_bytes()), allow_config(tmp_path))


def test_check_allowed_refuses_an_unknown_class(tmp_path: Path) -> None:
    """A class off the allowlist is named in the reason."""
    job = parse(json.dumps({"class": "app.jobs.Other", "method": "build"}).encode())
    with pytest.raises(Rejected, match=r'class "app\.jobs\.Other" is not on the allowlist'):
        check_allowed(job, allow_config(tmp_path))


def test_check_allowed_refuses_an_unlisted_method(tmp_path: Path) -> None:
    """An allowed class with a method not listed for it is refused, naming both."""
    job = parse(json.dumps({"class": "app.jobs.Report", "method": "drop"}).encode())
    with pytest.raises(Rejected, match=r'method "drop" of class "app\.jobs\.Report" is not on'):
        check_allowed(job, allow_config(tmp_path))


# -- anything at all --


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_job_or_rejected(raw: bytes) -> None:
    """parse_job never lets another exception escape, whatever the bytes."""
    try:
        result = parse(raw)
    except Rejected:
        return
    assert isinstance(result, Job)


FIELD_NAMES = [
    *sorted(DAEMON_KEYS),
    *("class", "method", "params", "priority", "run_at", "max_retries", "retry_delay"),
    *("backoff", "timeout", "memory_limit", "enqueued_at", "unknown"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8), st.booleans())
def test_any_json_object_gives_a_job_or_rejected(document: dict[str, Any], trusted: bool) -> None:
    """Any object built from the real field names gives a Job or Rejected, trusted or not."""
    with contextlib.suppress(Rejected):
        parse(json.dumps(document).encode(), trusted=trusted)
