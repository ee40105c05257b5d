"""Events (spoold/core/events.py): every hook reaches every listener, and a listener that
raises is logged, never felt by a job: in process, then with the real daemon and
``SPOOLD_FAULT=broken_listener`` (a listener that raises in every hook, told first).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Spool, job, read_lines
from loguru import logger

from spoold.core.events import Broken, Events, Listener, Tally
from spoold.job import Job

HOOKS = ("received", "rejected", "started", "finished", "retry_scheduled", "filed")


class Recorder(Listener):
    """Keeps every call it is told, as (hook, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in HOOKS:  # each hook: note the call
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append((name, args))
        return object.__getattribute__(self, name)


@pytest.fixture
def critical_lines() -> Iterator[list[str]]:
    """The daemon's CRITICAL log lines (with tracebacks) written while the test runs."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="CRITICAL", format="{message}\n{exception}")
    yield lines
    logger.remove(sink)


def a_job() -> Job:
    return Job(id="j1", class_path="a.B", method="run", params=[], submitted={}, enqueued_at=0.0)


def tell_everything(events: Events) -> None:
    job = a_job()
    events.received(job)
    events.rejected("j2", "not on the allowlist", "not_allowed")
    events.started(job, 123)
    events.finished(job, {"attempt": 1, "started_at": 1.0, "finished_at": 2.0, "outcome": "ok"})
    events.retry_scheduled(job, 5.0)
    events.filed("j1", "done", "testjobs.Noop")


def test_every_hook_reaches_every_listener_past_one_that_raises(
    critical_lines: list[str],
) -> None:
    recorder = Recorder()
    tell_everything(Events(Broken(), recorder))
    assert [hook for hook, _args in recorder.calls] == list(HOOKS)
    assert recorder.calls[2] == ("started", (a_job(), 123))
    assert len(critical_lines) == len(HOOKS)
    for hook, line in zip(HOOKS, critical_lines, strict=True):
        assert line.startswith(f"event listener Broken.{hook} failed (a broken listener")
        assert "Traceback" in line and "RuntimeError" in line


def test_a_listener_that_keeps_failing_is_named_again_only_now_and_then(
    critical_lines: list[str],
) -> None:
    quiet = Events(Broken())
    for _ in range(5):
        quiet.filed("j1", "done", "testjobs.Noop")
    assert len(critical_lines) == 1  # the first time, with its traceback
    again = Events(Broken(), repeat_every=0.0)
    for _ in range(3):
        again.filed("j1", "done", "testjobs.Noop")
    assert critical_lines[2:] == [
        "event listener Broken.filed still fails: 2 time(s) so far (a broken listener, on "
        "purpose (SPOOLD_FAULT=broken_listener))\n\n",
        "event listener Broken.filed still fails: 3 time(s) so far (a broken listener, on "
        "purpose (SPOOLD_FAULT=broken_listener))\n\n",
    ]


def test_the_tally_counts_records_by_status() -> None:
    tally = Tally()
    events = Events(Broken(), tally)
    assert not tally.anything_failed
    for status in ("done", "done", "rejected"):
        events.filed("j", status, "testjobs.Noop")
    assert tally.filed_by_status == {"done": 2, "rejected": 1}
    assert tally.anything_failed


def test_a_broken_listener_changes_nothing_for_the_jobs(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Jobs run, retry, are rejected and filed as always; burst's status still counts."""
    counter = tmp_path / "flaky.jsonl"
    spool.drop_job("plain", job("Noop"))
    spool.drop_job("flaky", job("Flaky", params=[str(counter), 1]))
    spool.drop_job("refused", {"class": "os.System", "method": "run"})
    daemon = start_daemon(
        "--burst", ready=False, env={"SPOOLD_FAULT": "broken_listener"},
        worker={"max_retries": 2, "retry_delay": 0.2},
    )  # fmt: skip
    assert daemon.wait_exit(30) == 1  # a rejected file: the tally still counted it
    assert spool.record("plain", "done") is not None
    assert spool.record("flaky", "done")["attempts"] == 2  # type: ignore[index]
    assert len(read_lines(counter)) == 2
    assert "not on the allowlist" in spool.wait_rejected("refused")["reason"]
    log = daemon.log_text()
    for hook in HOOKS:
        assert log.count(f"event listener Broken.{hook} failed") == 1, hook
    # Python's own traceback from where it was caught: no frames up to main(), no values
    assert "in _emit" in log
    assert "run_daemon" not in log and "│" not in log
