"""The TOML configuration (spoold/config.py): defaults, every key's check, paths.

Pure parsing and checking; files are written only to tmp_path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spoold.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    config_from_mapping,
    find_config_path,
    load_config,
)


def config_error(data: dict[str, Any], base: Path) -> str:
    """The one-line message a bad mapping gives (fails the test if it is accepted)."""
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, base=base)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_empty_config_gives_the_documented_defaults(tmp_path: Path) -> None:
    """Every default is SPEC.md's example value."""
    config = config_from_mapping({}, base=tmp_path)
    assert config.spool.dir == Path("/var/spool/spoold")
    assert config.spool.max_job_bytes == 1048576
    assert config.spool.rescan_interval == 5.0
    assert config.spool.fsync is True
    assert config.spool.allowed_uids == ()
    assert config.spool.allowed_gids == ()
    worker = config.worker
    assert worker.concurrency == 4
    assert worker.max_retries == 3
    assert worker.retry_delay == 2.0
    assert worker.backoff == "fixed"
    assert worker.max_delay == 3600.0
    assert worker.timeout == 3600.0
    assert worker.shutdown_timeout == 30.0
    assert worker.python_path == ()
    assert worker.memory_limit == 0
    assert worker.max_jobs_per_process == 1
    assert worker.max_interruptions == 5
    assert (worker.user, worker.group) == ("", "")
    assert config.log.file == Path("/var/log/spoold/spoold.log")
    assert config.log.level == "INFO"
    assert config.log.rotation == "50 MB"
    assert config.log.retention == "14 days"
    assert config.log.serialize is False
    assert dict(config.allow) == {}


def test_given_values_replace_the_defaults(tmp_path: Path) -> None:
    """Values from the file are used, numbers become floats where seconds are meant."""
    config = config_from_mapping(
        {
            "spool": {"dir": "/srv/spool", "rescan_interval": 1, "fsync": False},
            "worker": {"concurrency": 2, "retry_delay": 1, "backoff": "exponential"},
            "log": {"file": "", "level": "debug", "serialize": True},
        },
        base=tmp_path,
    )
    assert config.spool.dir == Path("/srv/spool")
    assert config.spool.rescan_interval == 1.0
    assert config.spool.fsync is False
    assert config.worker.concurrency == 2
    assert config.worker.retry_delay == 1.0
    assert config.worker.backoff == "exponential"
    assert config.log.file is None
    assert config.log.level == "DEBUG"
    assert config.log.serialize is True


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("spool", "dir", 5, "expected a string"),
        ("spool", "max_job_bytes", 10, "expected an integer >= 64"),
        ("spool", "max_job_bytes", "1MB", "expected an integer >= 64"),
        ("spool", "rescan_interval", 0, "expected a number > 0"),
        ("spool", "rescan_interval", -1, "expected a number >= 0"),
        ("spool", "fsync", "yes", "expected true or false"),
        ("spool", "allowed_uids", [-1], "expected a list of numeric ids"),
        ("spool", "allowed_gids", ["staff"], "expected a list of numeric ids"),
        ("worker", "concurrency", 0, "expected an integer >= 1"),
        ("worker", "concurrency", True, "expected an integer >= 1"),
        ("worker", "concurrency", 2.0, "expected an integer >= 1"),
        ("worker", "max_retries", -1, "expected an integer >= 0"),
        ("worker", "retry_delay", "2s", "expected a number >= 0"),
        ("worker", "backoff", "linear", 'expected one of "fixed", "exponential"'),
        ("worker", "max_delay", -0.5, "expected a number >= 0"),
        ("worker", "timeout", False, "expected a number >= 0"),
        ("worker", "shutdown_timeout", -1, "expected a number >= 0"),
        ("worker", "python_path", "lib", "expected a list of strings"),
        ("worker", "python_path", [1], "expected a list of strings"),
        ("worker", "memory_limit", -1, "expected an integer >= 0"),
        ("worker", "max_jobs_per_process", 0, "expected an integer >= 1"),
        ("worker", "max_jobs_per_process", 2.5, "expected an integer >= 1"),
        ("worker", "max_interruptions", 0, "expected an integer >= 1"),
        ("worker", "user", 1000, "expected a string"),
        ("worker", "group", 1000, "expected a string"),
        ("log", "file", False, "expected a string"),
        ("log", "level", "LOUD", "expected one of TRACE"),
        ("log", "rotation", 50, "expected a string"),
        ("log", "retention", 14, "expected a string"),
        ("log", "serialize", 1, "expected true or false"),
    ],
)
def test_each_key_is_checked_and_named(
    tmp_path: Path, section: str, key: str, value: Any, problem: str
) -> None:
    """A bad value gives one line naming the section, the key, the problem and the value."""
    message = config_error({section: {key: value}}, tmp_path)
    assert message.startswith(f"[{section}] {key}: {problem}")
    assert repr(value) in message


def test_an_unknown_section_is_an_error(tmp_path: Path) -> None:
    """A section nobody owns is refused by name."""
    assert config_error({"workers": {}}, tmp_path) == "[workers]: unknown section"


def test_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    """A typo in a key is refused by name, with the known keys listed."""
    message = config_error({"worker": {"concurency": 2}}, tmp_path)
    assert message.startswith("[worker] concurency: unknown key")
    assert "concurrency" in message


def test_a_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    """``spool = 3`` is refused."""
    assert "[spool]: expected a table" in config_error({"spool": 3}, tmp_path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """spool dir, python_path entries and the log file are relative to the config file."""
    config_file = tmp_path / "etc" / "spoold.toml"
    config_file.parent.mkdir()
    config_file.write_text(
        '[spool]\ndir = "var/spool"\n'
        '[worker]\npython_path = ["lib", "/abs/jobs"]\n'
        '[log]\nfile = "log/spoold.log"\n'
    )
    config = load_config(config_file)
    base = config_file.parent.resolve()
    assert config.spool.dir == base / "var/spool"
    assert config.worker.python_path == (base / "lib", Path("/abs/jobs"))
    assert config.log.file == base / "log/spoold.log"
    assert config.path == config_file


def test_home_folder_paths_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~`` in a path means the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = config_from_mapping({"spool": {"dir": "~/spool"}}, base=Path("/elsewhere"))
    assert config.spool.dir == tmp_path / "spool"


def test_the_allowlist_is_read(tmp_path: Path) -> None:
    """[allow] maps a class to the set of its allowed methods."""
    config = config_from_mapping(
        {"allow": {"app.jobs.Report": ["build", "send"], "app.Other": []}}, base=tmp_path
    )
    assert config.allow["app.jobs.Report"] == frozenset({"build", "send"})
    assert config.is_allowed("app.jobs.Report", "build")
    assert not config.is_allowed("app.jobs.Report", "drop")
    assert not config.is_allowed("app.Other", "build")
    assert not config.is_allowed("app.Missing", "build")


@pytest.mark.parametrize("method", ["_private", "__init__", "__class__"])
def test_a_method_starting_with_underscore_can_never_be_allowed(
    tmp_path: Path, method: str
) -> None:
    """The config refuses ``_`` methods, and is_allowed says no to them anyway."""
    message = config_error({"allow": {"app.jobs.Report": [method]}}, tmp_path)
    assert f'"{method}" starts with "_"' in message
    config = config_from_mapping({"allow": {"app.jobs.Report": ["build"]}}, base=tmp_path)
    assert not config.is_allowed("app.jobs.Report", method)


@pytest.mark.parametrize(
    ("allow", "problem"),
    [
        ({"Report": ["build"]}, "expected a dotted path"),
        ({"app.jobs.Re port": ["build"]}, "expected a dotted path"),
        ({"app.jobs.Report": "build"}, "expected a list of method names"),
        ({"app.jobs.Report": [1]}, "expected a list of method names"),
        ({"app.jobs.Report": ["run-now"]}, '"run-now" is not a method name'),
    ],
)
def test_bad_allowlist_entries_are_refused(
    tmp_path: Path, allow: dict[str, Any], problem: str
) -> None:
    """Every allowlist entry is checked and the message names the class."""
    message = config_error({"allow": allow}, tmp_path)
    assert message.startswith("[allow]")
    assert problem in message


def test_allow_must_be_a_table(tmp_path: Path) -> None:
    """``allow = []`` is refused."""
    assert config_error({"allow": []}, tmp_path).startswith("[allow]: expected a table")


def test_load_config_names_the_file_in_every_error(tmp_path: Path) -> None:
    """A missing file, bad TOML and a bad key each give a message with the path."""
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(missing)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[spool\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad_toml)
    bad_key = tmp_path / "key.toml"
    bad_key.write_text("[worker]\nconcurrency = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad_key)
    assert str(caught.value).startswith(f"{bad_key}: [worker] concurrency:")


def test_a_config_that_is_not_utf8_gives_a_config_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError naming the file, not a UnicodeDecodeError."""
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[spool]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_find_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config wins, then $SPOOLD_CONFIG, then /etc/spoold/spoold.toml."""
    monkeypatch.delenv("SPOOLD_CONFIG", raising=False)
    assert find_config_path(None) == DEFAULT_CONFIG_PATH
    monkeypatch.setenv("SPOOLD_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_path(None) == tmp_path / "env.toml"
    assert find_config_path(tmp_path / "arg.toml") == tmp_path / "arg.toml"
