"""Fuzzing the job parser and the allowlist check (spoold/job.py) with hypothesis.

Whatever bytes arrive in incoming/, ``parse_job`` followed by ``check_allowed``
ends in a ``Job`` or ``Rejected``: never another exception, and never an
import (SPEC.md: "Nothing is imported for a job before it passes the
allowlist"; intake imports nothing even then). The import check compares
``sys.modules`` before and after each call, and its examples name real
modules that are not yet imported, one of them even on the allowlist, so
an intake that imported what a job names would be caught.
"""

from __future__ import annotations

import codecs
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spoold.config import config_from_mapping
from spoold.job import DAEMON_KEYS, Job, Rejected, check_allowed, parse_job

# json.loads(bytes) detects UTF-16/32 and decodes with codecs that Python
# imports on first use. Those are the decoder's own modules, not anything a
# job names, so load them now and keep the "nothing imported" check exact.
for _encoding in ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
    codecs.lookup(_encoding)

# Real modules that nothing in the test run imports: importing one would show
# in sys.modules. The first is also on the allowlist below, so a job naming it
# passes every check and must still import nothing.
UNIMPORTED = ("xml.dom.minidom", "http.server", "ftplib", "imaplib", "wsgiref.simple_server")
ALLOWED_REAL = "xml.dom.minidom.Node"
CONFIG = config_from_mapping(
    {"allow": {"app.jobs.Report": ["build"], ALLOWED_REAL: ["toxml"]}},
    base=Path(__file__).parent,
)
MTIME = 1_700_000_000.0

HOSTILE_NAMES = [
    "app.jobs.Report",
    "build",
    ALLOWED_REAL,
    "toxml",
    *(f"{module}.X" for module in UNIMPORTED),
    *UNIMPORTED,
    "os",
    "os.system",
    "builtins.eval",
    "builtins.__import__",
    "__import__",
    "__init__",
    "__class__",
    "__reduce__",
    "_private",
    "app.jobs.Report.build",
    "app.jobs.Report.__class__",
    "app.jobs.Rep\u043ert",  # Cyrillic o
    "\uff41pp.jobs.Report",  # fullwidth a
    "app.jobs.Report\u200b",  # zero-width space
    "bu\u0456ld",  # Cyrillic i
    "app/jobs.Report",
    "../app.jobs.Report",
    "app..jobs.Report",
    "app.jobs.Report\x00",
    "build\x00",
    "",
    ".",
    "app.jobs.Report\n",
]
FIELD_NAMES = [
    *("class", "method", "params", "priority", "run_at", "max_retries", "retry_delay"),
    *("backoff", "timeout", "memory_limit", "enqueued_at", "unknown"),
    *sorted(DAEMON_KEYS),
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(HOSTILE_NAMES)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=5,
)
names = st.sampled_from(HOSTILE_NAMES) | json_values
# Tokens that json.dumps would never write: what a hand-made or hostile file may hold.
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1" * 5000, "1e999", "[" * 3000, "{", "}", ",", '"']


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A job object from the real field names, class and method mostly hostile names."""
    document = draw(st.fixed_dictionaries({}, optional={"class": names, "method": names}))
    document.update(draw(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4)))
    return document


@st.composite
def json_ish(draw: st.DrawFn) -> bytes:
    """A document's JSON text, maybe cut short or with a foreign token spliced in."""
    text = json.dumps(draw(documents()), ensure_ascii=draw(st.booleans()))
    position = draw(st.integers(0, len(text)))
    edit = draw(st.sampled_from(["none", "cut", "splice"]))
    if edit == "cut":
        text = text[:position]
    elif edit == "splice":
        text = text[:position] + draw(st.sampled_from(RAW_TOKENS)) + text[position:]
    return text.encode("utf-8", "surrogatepass")


def judge(raw: bytes) -> Job | None:
    """Parse and check ``raw`` as intake does; None if rejected. Fails on any import."""
    before = set(sys.modules)
    try:
        job = parse_job(raw, job_id="job-1", mtime=MTIME)
        check_allowed(job, CONFIG)
    except Rejected:
        job = None
    imported = set(sys.modules) - before
    assert not imported, f"judging {raw[:200]!r} imported {sorted(imported)}"
    return job


@pytest.fixture(autouse=True)
def _named_modules_forgotten() -> Iterator[None]:
    """The import check means something only if the named modules are not loaded yet; other
    tests in this process may have loaded them (prometheus_client loads http.server and
    wsgiref.simple_server), so they are forgotten here and put back afterwards."""
    loaded = {name: sys.modules.pop(name) for name in UNIMPORTED if name in sys.modules}
    yield
    sys.modules.update(loaded)


def test_the_import_check_catches_an_import_of_a_named_module() -> None:
    """What every test below relies on: a named module imported while judging is caught."""
    before = set(sys.modules)
    importlib.import_module("wsgiref.simple_server")
    assert "wsgiref.simple_server" in set(sys.modules) - before


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
@example(b'{"class": "xml.dom.minidom.Node", "method": "toxml"}')
@example(b"\xff\xfe{\x00}\x00")  # UTF-16 with a BOM: json.loads decodes it
def test_any_bytes_end_in_a_job_or_rejected_and_import_nothing(raw: bytes) -> None:
    """Random bytes: a Job or Rejected, nothing else, and sys.modules unchanged."""
    result = judge(raw)
    assert result is None or isinstance(result, Job)


@settings(max_examples=120, deadline=None)
@given(json_ish())
@example(json.dumps({"class": ALLOWED_REAL, "method": "toxml"}).encode())
@example(json.dumps({"class": "http.server.HTTPServer", "method": "serve_forever"}).encode())
@example(json.dumps({"class": "ftplib", "method": "FTP"}).encode())
def test_hostile_job_documents_end_in_a_job_or_rejected_and_import_nothing(raw: bytes) -> None:
    """JSON-ish text from the real fields and hostile names: Job or Rejected, no import."""
    result = judge(raw)
    assert result is None or isinstance(result, Job)
    if result is not None:  # only what the allowlist names gets through, untouched
        assert CONFIG.is_allowed(result.class_path, result.method)
    assert [name for name in UNIMPORTED if name in sys.modules] == []


def test_an_allowed_class_in_a_real_unimported_module_is_accepted_without_importing_it() -> None:
    """The allowed real module is accepted (so the check ran on a live path) yet stays unloaded."""
    job = judge(json.dumps({"class": ALLOWED_REAL, "method": "toxml"}).encode())
    assert job is not None
    assert job.class_path == ALLOWED_REAL
    assert "xml.dom.minidom" not in sys.modules
