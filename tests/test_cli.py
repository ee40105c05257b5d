"""The ``spoold`` command, run for real as ``python -m spoold`` against a temp spool."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon

from spoold.backends.files.admin import AdminError
from spoold.backends.files.maintenance import parse_age
from spoold.backends.files.spool import STATES, Spool, SpoolLock
from spoold.cli.commands import UsageError, submit_params
from spoold.cli.output import format_age

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[spool]
dir = "spool"
[worker]
python_path = ["jobs"]
user = "root"  # the tests run as root, where a job user is required ("root" on purpose)
[log]
file = ""
[allow]
"clitest_jobs.Greeter" = ["hello", "shout"]
"clitest_jobs.Tools" = ["add"]
"""
JOBS_MODULE = """
class Greeter:
    def hello(self, name):
        return f"hello {name}"

    @staticmethod
    def shout(text):
        return text.upper()


class Tools:
    @classmethod
    def add(cls, a, b):
        return a + b
"""
FAILED_ID = "20260101T000000.000Z-aaaaaaaaaa"
OTHER_ID = "20260101T000001.000Z-bbbbbbbbbb"


def run_spoold(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "spoold", *args], capture_output=True, text=True, env=env, timeout=60
    )


@dataclass
class Cli:
    """``spoold ... --config <this test's config>`` and a look at its spool."""

    config: Path
    root: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_spoold(*args, "--config", str(self.config))

    def names(self, state: str) -> list[str]:
        return sorted(os.listdir(self.root / state))

    def read(self, state: str, job_id: str) -> dict[str, Any]:
        return dict(json.loads((self.root / state / f"{job_id}.json").read_text()))

    def put(self, state: str, job_id: str, document: dict[str, Any]) -> Path:
        path = self.root / state / f"{job_id}.json"
        path.write_text(json.dumps(document))
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "clitest_jobs.py").write_text(JOBS_MODULE)
    config = tmp_path / "spoold.toml"
    config.write_text(CONFIG)
    Spool(tmp_path / "spool").create()
    return Cli(config, tmp_path / "spool")


def failed_record(job_id: str, **extra: Any) -> dict[str, Any]:
    attempt = {"attempt": 1, "started_at": 10.0, "finished_at": 11.0, "outcome": "error"}
    return {
        "class": "clitest_jobs.Greeter",
        "method": "hello",
        "params": ["ann"],
        "priority": 3,
        "enqueued_at": 9.0,
        "id": job_id,
        "status": "failed",
        "attempts": 1,
        "reason": "error on attempt 1 (retries exhausted): ValueError: boom",
        "history": [{**attempt, "error": "ValueError: boom", "traceback": "Traceback:\n  line\n"}],
        "finished_at": 11.0,
        **extra,
    }


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spoold: ")
    for part in parts:
        assert part in lines[0]


# -- init --


def test_init_creates_the_six_folders(tmp_path: Path) -> None:
    config = tmp_path / "spoold.toml"
    config.write_text(CONFIG)
    result = run_spoold("init", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for state in STATES:
        assert (tmp_path / "spool" / state).is_dir()
        assert str(tmp_path / "spool" / state) in result.stdout
    again = run_spoold("init", "--config", str(config))
    assert again.returncode == 0
    assert "already has every folder" in again.stdout


# -- submit --


def test_submit_writes_the_job_into_incoming_and_prints_its_id(cli: Cli) -> None:
    result = cli("submit", "clitest_jobs.Greeter", "hello", "ann", "42", '{"x": [1]}', "null")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert cli.names("incoming") == [f"{job_id}.json"]
    assert cli.names("tmp") == []
    job = cli.read("incoming", job_id)
    assert job["class"] == "clitest_jobs.Greeter"
    assert job["method"] == "hello"
    assert job["params"] == ["ann", 42, {"x": [1]}, None]
    assert abs(job["enqueued_at"] - time.time()) < 60


def test_submit_kwargs_priority_delay_and_max_retries(cli: Cli) -> None:
    result = cli(
        "submit", "clitest_jobs.Greeter", "hello", "--kwargs", '{"name": "bo"}',
        "--priority", "10", "--delay", "60", "--max-retries", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    job = cli.read("incoming", job_id)
    assert job["params"] == {"name": "bo"}
    assert job["priority"] == 10
    assert job["max_retries"] == 2
    assert job["run_at"] == pytest.approx(job["enqueued_at"] + 60)


@pytest.mark.parametrize(
    ("at", "expected"),
    [("2030-01-01T00:00:00Z", 1893456000.0), ("2030-01-01T01:00:00+01:00", 1893456000.0),
     ("1893456000", 1893456000.0)],
)  # fmt: skip
def test_submit_at_takes_iso_time_with_zone_or_unix_seconds(
    cli: Cli, at: str, expected: float
) -> None:
    result = cli("submit", "clitest_jobs.Greeter", "hello", "x", "--at", at)
    assert result.returncode == 0, result.stderr
    assert cli.read("incoming", result.stdout.strip())["run_at"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["[1,"], "PARAM 1 is not valid JSON"),
        (["--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["--kwargs", "{bad"], "--kwargs is not valid JSON"),
        (["a", "--kwargs", "{}"], "not both"),
        (["--at", "2030-01-01T00:00:00"], "--at"),
        (["--delay", "5", "--at", "1"], "not allowed with"),
    ],
)
def test_submit_refuses_bad_input_and_writes_nothing(
    cli: Cli, args: list[str], message: str
) -> None:
    result = cli("submit", "clitest_jobs.Greeter", "hello", *args)
    assert_one_line_error(result, 2, message)
    assert cli.names("incoming") == []
    assert cli.names("tmp") == []


@pytest.mark.parametrize(
    ("class_path", "method", "message"),
    [
        # The class and method run together: CLASS METHOD were meant, PARAM taken for METHOD.
        ("clitest_jobs.Greeter.hello", '["x"]', 'field "method" must be a plain method name'),
        ("Greeter", "hello", 'field "class" must be a dotted path'),
        ("clitest_jobs.Greeter", "_secret", 'field "method" names a private method'),
    ],
)
def test_submit_refuses_names_every_daemon_would_reject_and_writes_nothing(
    cli: Cli, class_path: str, method: str, message: str
) -> None:
    result = cli("submit", class_path, method)
    assert_one_line_error(result, 2, message)
    assert "the daemon would reject this job" in result.stderr
    assert cli.names("incoming") == []
    assert cli.names("tmp") == []


def test_submit_warns_about_a_job_off_the_allowlist_but_submits_it(cli: Cli) -> None:
    result = cli("submit", "other.Module", "run")
    assert result.returncode == 0
    assert "not on the allowlist" in result.stderr
    assert cli.names("incoming") == [f"{result.stdout.strip()}.json"]


def test_submit_to_a_spool_without_folders_says_to_run_init(tmp_path: Path) -> None:
    config = tmp_path / "spoold.toml"
    config.write_text(CONFIG)
    result = run_spoold("submit", "clitest_jobs.Greeter", "hello", "--config", str(config))
    assert_one_line_error(result, 1, "spoold init")


# -- list, show, status --


def test_list_prints_one_line_per_job_with_state_and_last_error(cli: Cli) -> None:
    waiting = cli("submit", "clitest_jobs.Greeter", "hello", "x").stdout.strip()
    cli.put("failed", FAILED_ID, failed_record(FAILED_ID))
    everything = cli("list")
    assert everything.returncode == 0, everything.stderr
    lines = everything.stdout.splitlines()
    assert len(lines) == 2
    assert waiting in lines[0] and "incoming" in lines[0]  # waiting jobs first, then records
    assert FAILED_ID in lines[1] and "failed" in lines[1] and "ValueError: boom" in lines[1]
    assert "clitest_jobs.Greeter.hello" in lines[1] and "1 attempt" in lines[1]
    only_failed = cli("list", "failed", "--json")
    jobs = json.loads(only_failed.stdout)
    assert [job["id"] for job in jobs] == [FAILED_ID]
    assert jobs[0]["error"] == "ValueError: boom"
    assert jobs[0]["attempts"] == 1


def test_show_prints_the_record_with_tracebacks_as_text(cli: Cli) -> None:
    cli.put("failed", FAILED_ID, failed_record(FAILED_ID))
    result = cli("show", FAILED_ID)
    assert result.returncode == 0, result.stderr
    assert '"status": "failed"' in result.stdout
    assert "traceback of attempt 1:\nTraceback:\n  line" in result.stdout
    as_json = json.loads(cli("show", FAILED_ID, "--json").stdout)
    assert as_json["state"] == "failed"
    assert as_json["document"] == failed_record(FAILED_ID)


def test_show_finds_a_waiting_job(cli: Cli) -> None:
    job_id = cli("submit", "clitest_jobs.Greeter", "hello", "x").stdout.strip()
    shown = json.loads(cli("show", job_id, "--json").stdout)
    assert shown["state"] == "incoming"
    assert shown["document"]["params"] == ["x"]


@pytest.mark.parametrize("name", ["{id}.claiming", "{id}.to-scheduled", "{id}.to-failed"])
def test_show_finds_a_job_under_its_name_between_two_states(cli: Cli, name: str) -> None:
    """Claimed from a file to be cleaned (``.claiming``), or moved out of active/ after its
    ``.json`` is unlinked (``.to-<state>``), a job is in active/ under another name for a
    moment (or until recovery, after a crash): show finds it there, not "no job"."""
    document = failed_record(FAILED_ID)
    path = cli.root / "active" / name.format(id=FAILED_ID)
    path.write_text(json.dumps(document))
    shown = cli("show", FAILED_ID, "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert (found["id"], found["state"], found["path"]) == (FAILED_ID, "active", str(path))
    assert found["document"] == document


def test_show_does_not_follow_a_symlink(cli: Cli, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": "do not print"}')
    (cli.root / "done" / f"{FAILED_ID}.json").symlink_to(secret)
    result = cli("show", FAILED_ID)
    assert result.returncode == 0
    assert "symbolic link" in result.stdout
    assert "do not print" not in result.stdout


@pytest.mark.parametrize("job_id", [OTHER_ID, "../../etc/passwd"])
def test_show_of_an_unknown_id_is_a_one_line_error(cli: Cli, job_id: str) -> None:
    assert_one_line_error(cli("show", job_id), 1, job_id)


def test_status_counts_each_folder_and_names_the_oldest_waiting_job(cli: Cli) -> None:
    first = cli("submit", "clitest_jobs.Greeter", "hello", "x").stdout.strip()
    cli("submit", "clitest_jobs.Greeter", "hello", "y")
    cli.put("done", OTHER_ID, {**failed_record(OTHER_ID), "status": "done"})
    status = json.loads(cli("status", "--json").stdout)
    assert status["counts"] == {
        "tmp": 0, "incoming": 2, "scheduled": 0, "active": 0, "done": 1, "failed": 0
    }  # fmt: skip
    assert status["oldest_waiting_id"] == first
    assert status["daemon_running"] is False
    text = cli("status").stdout
    assert "incoming   2" in text and "not running" in text and first in text


def test_status_sees_a_daemon_holding_the_spool_lock(cli: Cli) -> None:
    lock = SpoolLock(Spool(cli.root))
    lock.acquire()
    try:
        status = json.loads(cli("status", "--json").stdout)
    finally:
        lock.release()
    assert status["daemon_running"] is True
    assert status["daemon_pid"] == os.getpid()


def test_run_refuses_a_spool_another_daemon_holds(cli: Cli) -> None:
    lock = SpoolLock(Spool(cli.root))
    lock.acquire()
    try:
        result = cli("run", "--burst")
    finally:
        lock.release()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"spoold: another spoold (pid {os.getpid()})" in result.stderr


def test_a_second_daemon_on_a_spool_prints_only_its_refusal(start_daemon: StartDaemon) -> None:
    """Two real daemons on one spool: the second one's whole output (stdout and stderr) is
    one line, the refusal. (As root, the config's user = "root" is warned about at start; the
    second daemon used to print that warning before it tried the spool lock.)"""
    first = start_daemon()
    if os.geteuid() == 0:
        assert "jobs run as root" in first.log_text()
    second = start_daemon(config=first.config, ready=False)
    assert second.wait_exit() == 1
    assert second.log_lines() == [
        f"spoold: another spoold (pid {first.pid}) is running on this spool"
    ]
    assert first.returncode() is None


# -- retry --


def test_retry_puts_a_failed_job_back_as_submitted(cli: Cli) -> None:
    cli.put("failed", FAILED_ID, failed_record(FAILED_ID))
    result = cli("retry", FAILED_ID)
    assert result.returncode == 0, result.stderr
    assert cli.names("failed") == []
    assert cli.names("tmp") == []
    assert cli.read("incoming", FAILED_ID) == {
        "class": "clitest_jobs.Greeter",
        "method": "hello",
        "params": ["ann"],
        "priority": 3,
        "enqueued_at": 9.0,
    }


@pytest.mark.parametrize("raw", [b'{"class": "x.Y", "method": 5}\n', b"\xff\xfe not utf-8"])
def test_retry_gives_a_rejected_job_its_original_bytes(cli: Cli, raw: bytes) -> None:
    record: dict[str, Any] = {"id": FAILED_ID, "status": "rejected", "reason": "bad", "history": []}
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record.update(raw=base64.b64encode(raw).decode(), raw_encoding="base64")
    cli.put("failed", FAILED_ID, record)
    assert cli("retry", FAILED_ID).returncode == 0
    assert (cli.root / "incoming" / f"{FAILED_ID}.json").read_bytes() == raw
    assert cli.names("failed") == []


def test_retry_all_failed(cli: Cli) -> None:
    for job_id in (FAILED_ID, OTHER_ID):
        cli.put("failed", job_id, failed_record(job_id))
    result = cli("retry", "--all-failed")
    assert result.returncode == 0, result.stderr
    assert cli.names("incoming") == [f"{FAILED_ID}.json", f"{OTHER_ID}.json"]
    assert cli.names("failed") == []


def test_retry_leaves_a_job_that_is_not_failed_alone(cli: Cli) -> None:
    cli.put("done", OTHER_ID, {**failed_record(OTHER_ID), "status": "done"})
    assert_one_line_error(cli("retry", OTHER_ID), 1, "only failed jobs")
    assert cli.names("done") == [f"{OTHER_ID}.json"]
    assert cli.names("incoming") == []


def test_retry_never_replaces_a_job_already_in_incoming(cli: Cli) -> None:
    cli.put("failed", FAILED_ID, failed_record(FAILED_ID))
    cli.put("incoming", FAILED_ID, {"class": "a.B", "method": "keep"})
    assert_one_line_error(cli("retry", FAILED_ID), 1, "already exists")
    assert cli.read("incoming", FAILED_ID)["method"] == "keep"
    assert cli.names("failed") == [f"{FAILED_ID}.json"]
    assert [name for name in cli.names("tmp") if not name.startswith(".")] == []


# -- purge --


def test_purge_deletes_records_older_than_the_age(cli: Cli) -> None:
    now = time.time()
    cli.put("done", FAILED_ID, {**failed_record(FAILED_ID), "finished_at": now - 7200})
    cli.put("done", OTHER_ID, {**failed_record(OTHER_ID), "finished_at": now - 60})
    untimed = cli.put("done", "old-by-mtime", {"class": "a.B", "method": "c"})
    os.utime(untimed, (now - 7200, now - 7200))
    # No finished_at: its mtime counts, not when it was submitted.
    cli.put("done", "new-by-mtime", {"class": "a.B", "method": "c", "enqueued_at": 9.0})
    result = cli("purge", "done", "--older-than", "1h")
    assert result.returncode == 0, result.stderr
    assert "removed 2 records" in result.stdout
    assert cli.names("done") == [f"{OTHER_ID}.json", "new-by-mtime.json"]


def test_purge_refuses_a_bad_age_or_state(cli: Cli) -> None:
    assert_one_line_error(cli("purge", "done", "--older-than", "soon"), 2, "soon")
    assert_one_line_error(cli("purge", "incoming", "--older-than", "1d"), 2, "incoming")


# -- check, config errors, help --


def test_check_passes_a_good_config(cli: Cli) -> None:
    result = cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   clitest_jobs.Greeter: hello, shout" in result.stdout
    assert "ok   clitest_jobs.Tools: add" in result.stdout
    assert result.stderr == ""
    as_json = cli("check", "--json")
    assert json.loads(as_json.stdout)["ok"] is True
    assert as_json.stderr == ""


def test_check_fails_on_a_method_that_does_not_exist(cli: Cli) -> None:
    cli.config.write_text(CONFIG.replace('["add"]', '["add", "subtract"]'))
    result = cli("check")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failing == ['FAIL clitest_jobs.Tools: no method "subtract"']
    # The report has a line per class, and a class with one bad method is a failed class.
    assert result.stderr == "spoold check: 1 of 2 allowed classes failed\n"


def test_check_fails_on_a_module_that_does_not_import(cli: Cli) -> None:
    cli.config.write_text(CONFIG + '"clitest_missing.Thing" = ["go"]\n')
    result = cli("check")
    assert result.returncode == 1
    assert "FAIL clitest_missing.Thing: cannot import clitest_missing" in result.stdout
    assert "ok   clitest_jobs.Tools: add" in result.stdout
    assert result.stderr == "spoold check: 1 of 3 allowed classes failed\n"
    as_json = cli("check", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["ok"] is False  # stdout stays pure JSON
    assert as_json.stderr == result.stderr


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("[worker]", "[worker]\nconcurrency = 0"), "[worker] concurrency"),
        (("[log]", "[log]\nlevel = 'LOUD'"), "[log] level"),
        (("[spool]", "[spool]\nfsink = true"), "[spool] fsink"),
        (('["add"]', '["_private"]'), "_private"),
    ],
)
@pytest.mark.parametrize("command", ["check", "status", "run", "submit"])
def test_a_bad_config_is_one_line_naming_the_key(
    cli: Cli, change: tuple[str, str], key: str, command: str
) -> None:
    cli.config.write_text(CONFIG.replace(*change, 1))
    args = ["clitest_jobs.Tools", "add"] if command == "submit" else []
    assert_one_line_error(cli(command, *args), 2, key)


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_spoold("list", "--config", str(tmp_path / "nowhere.toml"))
    assert_one_line_error(result, 2, "nowhere.toml")


def test_help_describes_every_command_with_an_example() -> None:
    top = run_spoold("--help")
    assert top.returncode == 0
    commands = ["run", "submit", "status", "list", "show", "retry", "purge", "check", "init"]
    for command in commands:
        assert f"    {command}" in top.stdout
        sub = run_spoold(command, "--help")
        assert sub.returncode == 0
        assert "--config" in sub.stdout and "example:" in sub.stdout


def test_a_usage_mistake_is_one_line() -> None:
    assert_one_line_error(run_spoold("list", "nowhere"), 2, "invalid choice")


# -- the pure parts --


def test_submit_params_read_json_and_keep_bare_words() -> None:
    assert submit_params(["a", "1", "1.5", "true", '"2"', "NaN", "x y"], None) == [
        "a", 1, 1.5, True, "2", "NaN", "x y"
    ]  # fmt: skip
    assert submit_params([], '{"k": [1]}') == {"k": [1]}
    with pytest.raises(UsageError):
        submit_params(['{"unclosed": 1'], None)


def test_ages() -> None:
    assert [parse_age(t) for t in ("30s", "15m", "12h", "7d", "1.5h")] == [
        30, 900, 43200, 604800, 5400
    ]  # fmt: skip
    for bad in ("", "7", "d", "-1d", "1y"):
        with pytest.raises(AdminError):
            parse_age(bad)
    assert [format_age(s) for s in (0, 59.9, 60, 3599, 3600, 86400 * 3)] == [
        "0s", "59s", "1m", "59m", "1h", "3d"
    ]  # fmt: skip
