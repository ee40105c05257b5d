"""How a job runs (SPEC.md "How a job runs", "Isolation"): arguments, static and class
methods, results, and every way an attempt can fail, with the daemon surviving all of them.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import Spool, job, pid_alive, read_lines, wait_for


@pytest.fixture
def daemon(start_daemon: StartDaemon) -> Any:
    return start_daemon(worker={"max_retries": 0, "timeout": 30.0})


def only_attempt(record: dict[str, Any]) -> dict[str, Any]:
    """The single history entry of a one-attempt job, checked for its common fields."""
    assert record["attempts"] == 1
    (entry,) = record["history"]
    assert entry["attempt"] == 1
    assert entry["started_at"] <= entry["finished_at"]
    return dict(entry)


@pytest.mark.usefixtures("daemon")
def test_list_params_are_positional_and_object_params_are_keywords(spool: Spool) -> None:
    """A JSON array reaches the method as *args, an object as **kwargs."""
    positional = spool.drop_job("positional", job("Echo", params=[1, "two", [3]]))
    keywords = spool.drop_job("keywords", job("Echo", params={"a": 1, "b": [2]}))
    no_params = spool.drop_job("no-params", job("Echo"))
    assert spool.wait_record(positional)["result"] == {"args": [1, "two", [3]], "kwargs": {}}
    assert spool.wait_record(keywords)["result"] == {"args": [], "kwargs": {"a": 1, "b": [2]}}
    assert spool.wait_record(no_params)["result"] == {"args": [], "kwargs": {}}


@pytest.mark.usefixtures("daemon")
def test_keyword_params_with_defaults(spool: Spool) -> None:
    """Keyword params fill named and keyword-only parameters; the rest keep their defaults."""
    some = spool.drop_job("some", job("Keywords", params={"name": "hi", "count": 2}))
    all_ = spool.drop_job("all", job("Keywords", params={"name": "hi", "loud": True}))
    assert spool.wait_record(some)["result"] == "hi hi"
    assert spool.wait_record(all_)["result"] == "HI"


@pytest.mark.usefixtures("daemon")
def test_staticmethod_and_classmethod_are_called_on_the_class(spool: Spool) -> None:
    """Static and class methods run without an instance (the class cannot be instantiated)."""
    static = spool.drop_job("static", job("Static", "static_run", params=[1, 2]))
    klass = spool.drop_job("classmethod", job("Static", "class_run", params={"x": "y"}))
    assert spool.wait_record(static)["result"] == ["static", 1, 2]
    assert spool.wait_record(klass)["result"] == ["Static", "class attribute", "y"]


@pytest.mark.usefixtures("daemon")
def test_a_non_json_result_is_stored_as_its_repr(spool: Spool) -> None:
    """A set cannot be JSON: the record's result is its repr."""
    record = spool.wait_record(spool.drop_job("set", job("SetResult")))
    assert record["result"] == "{1, 2, 3}"
    assert only_attempt(record)["outcome"] == "ok"


@pytest.mark.usefixtures("daemon")
def test_an_exception_is_an_error_with_its_traceback(spool: Spool) -> None:
    """A raised ValueError: outcome error, error "ValueError: ...", a traceback naming the job."""
    spool.drop_job("boom", job("Boom", params=["kaboom 42"]))
    record = spool.wait_record("boom", "failed")
    assert record["status"] == "failed"
    entry = only_attempt(record)
    assert entry["outcome"] == "error"
    assert entry["error"] == "ValueError: kaboom 42"
    assert "Traceback" in entry["traceback"]
    assert "testjobs.py" in entry["traceback"]
    assert "ValueError: kaboom 42" in entry["traceback"]


@pytest.mark.usefixtures("daemon")
def test_a_segfault_is_a_crash(spool: Spool) -> None:
    """A job killed by SIGSEGV: outcome crashed, with the signal."""
    spool.drop_job("segv", job("SelfKill", "segfault"))
    entry = only_attempt(spool.wait_record("segv", "failed"))
    assert entry["outcome"] == "crashed"
    assert entry.get("signal") in (signal.SIGSEGV, "SIGSEGV")


@pytest.mark.usefixtures("daemon")
def test_a_sigkill_is_a_crash(spool: Spool) -> None:
    """A job killed by SIGKILL (as the OOM killer does): outcome crashed."""
    spool.drop_job("killed", job("SelfKill", "sigkill"))
    entry = only_attempt(spool.wait_record("killed", "failed"))
    assert entry["outcome"] == "crashed"
    assert entry.get("signal") in (signal.SIGKILL, "SIGKILL")


@pytest.mark.usefixtures("daemon")
def test_exiting_without_a_report_is_a_crash(spool: Spool) -> None:
    """os._exit(3) in the job: outcome crashed, exit code 3."""
    spool.drop_job("exit3", job("HardExit"))
    entry = only_attempt(spool.wait_record("exit3", "failed"))
    assert entry["outcome"] == "crashed"
    assert entry.get("exit_code") == 3


def test_a_job_past_its_timeout_is_killed_with_its_children(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """An attempt over its timeout ends as "timeout" and its grandchild process is gone too."""
    start_daemon(worker={"max_retries": 0})
    pidfile = tmp_path / "grandchild.jsonl"
    spool.drop_job("slow", job("Spawner", params=[str(pidfile), 60], timeout=1))
    entry = only_attempt(spool.wait_record("slow", "failed", timeout=20))
    assert entry["outcome"] == "timeout"
    assert entry["finished_at"] - entry["started_at"] >= 1
    (line,) = read_lines(pidfile)
    wait_for(lambda: not pid_alive(line["child"]), 10, "the grandchild sleep 300 to be killed")
    assert not pid_alive(line["pid"])


def test_concurrency_n_runs_n_jobs_at_once(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """With concurrency 2, two jobs that each wait for the other's start both finish."""
    start_daemon(worker={"concurrency": 2, "max_retries": 0})
    a, b = tmp_path / "a-started", tmp_path / "b-started"
    spool.drop_job("a", job("Rendezvous", params=[str(a), str(b), 15]))
    spool.drop_job("b", job("Rendezvous", params=[str(b), str(a), 15]))
    assert spool.wait_record("a", timeout=20)["result"] == "met"
    assert spool.wait_record("b", timeout=20)["result"] == "met"


def test_concurrency_one_runs_one_job_at_a_time(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """With concurrency 1 the same pair cannot meet: the first one to start times out."""
    start_daemon(worker={"concurrency": 1, "max_retries": 0})
    a, b = tmp_path / "a-started", tmp_path / "b-started"
    spool.drop_job("a", job("Rendezvous", params=[str(a), str(b), 1.5]))
    spool.drop_job("b", job("Rendezvous", params=[str(b), str(a), 1.5]))
    outcomes = sorted(spool.wait_finished(x, timeout=20)[0] for x in ("a", "b"))
    assert outcomes == ["done", "failed"]


def test_the_daemon_survives_every_kind_of_failure(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """After an error, a segfault, SIGKILL, os._exit and a timeout, a normal job still runs."""
    daemon = start_daemon(worker={"max_retries": 0, "concurrency": 2})
    bad = {
        "e": job("Boom"),
        "s": job("SelfKill", "segfault"),
        "k": job("SelfKill", "sigkill"),
        "x": job("HardExit"),
        "t": job("Sleeper", params=[30], timeout=0.5),
    }
    for job_id, document in bad.items():
        spool.drop_job(job_id, document)
    for job_id in bad:
        spool.wait_record(job_id, "failed", timeout=20)
    log = tmp_path / "runs.jsonl"
    spool.drop_job("after", job("Recorder", params=[str(log), "after"]))
    assert spool.wait_record("after")["result"] == "after"
    assert daemon.returncode() is None
    assert spool.names("active") == []


def test_python_path_from_the_config_is_honoured(spool: Spool, start_daemon: StartDaemon) -> None:
    """Without tests/jobs on python_path the test module cannot be imported: an error."""
    start_daemon(worker={"python_path": [], "max_retries": 0})
    spool.drop_job("no-path", job("Noop"))
    entry = only_attempt(spool.wait_record("no-path", "failed"))
    assert entry["outcome"] == "error"
    assert "ModuleNotFoundError" in entry["error"]
    assert "testjobs" in entry["error"]


def test_a_fast_stream_of_jobs_runs_each_once_without_losing_the_launcher(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """A backlog of quick jobs run back to back: each ends done after one attempt, and the
    launcher never dies. (A child's exit and its report arriving in the same select() once
    killed it: a backlog keeps the launcher busy enough for that to happen.)"""
    ids = [spool.submit("tiny.Quick", params=[n], durable=False) for n in range(1000)]
    daemon = start_daemon(worker={"concurrency": 2}, log={"level": "INFO"})
    wait_for(lambda: len(spool.job_ids("done")) + len(spool.job_ids("failed")) >= len(ids), 120,
             spool.summary)  # fmt: skip
    records = spool.records("done")
    assert sorted(records) == sorted(ids), spool.summary()
    assert {record["attempts"] for record in records.values()} == {1}
    assert "launcher process died" not in daemon.log_text()
