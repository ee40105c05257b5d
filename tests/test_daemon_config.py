"""The daemon refuses to start on a bad config or on a spool another daemon holds, with a
one-line message and no traceback (SPEC.md "Configuration", "Command line").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Spool, daemon_env, job, toml_text

BAD_CONFIGS = [
    ("unknown-key", {"worker": {"concurency": 2}}, "concurency"),
    ("bad-value", {"worker": {"concurrency": 0}}, "concurrency"),
    ("bad-type", {"spool": {"rescan_interval": "often"}}, "rescan_interval"),
    ("unknown-section", {"workers": {"concurrency": 2}}, "workers"),
    ("private-method", {"allow": {"testjobs.Noop": ["_secret"]}}, "_secret"),
    ("bad-level", {"log": {"level": "LOUD"}}, "level"),
]


def run_spoold(
    config: Path, workdir: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``python -m spoold run --config CONFIG`` to completion (it must not start)."""
    return subprocess.run(
        [sys.executable, "-m", "spoold", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env=daemon_env(workdir, "config-test", None),
    )


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Non-zero exit, one line on stderr naming each of ``names``, no traceback."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize(("case", "sections", "key"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_stops_the_daemon_with_a_line_naming_the_key(
    spool: Spool, tmp_path: Path, case: str, sections: dict[str, dict[str, object]], key: str
) -> None:
    """Each bad config: exit non-zero, one stderr line naming the key, nothing started."""
    config = tmp_path / f"{case}.toml"
    config.write_text(toml_text({"spool": {"dir": str(spool.root)}, **sections}))
    assert_refused(run_spoold(config, tmp_path), key)
    assert not (spool.root / ".spoold.lock").exists()


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    """--config pointing nowhere: one line naming the file."""
    missing = tmp_path / "nowhere.toml"
    assert_refused(run_spoold(missing, tmp_path), str(missing))


def test_a_config_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    """Broken TOML: one line saying so."""
    config = tmp_path / "broken.toml"
    config.write_text("[spool\ndir = \n")
    assert_refused(run_spoold(config, tmp_path), "TOML")


def test_a_config_that_is_not_utf8_is_refused_without_a_traceback(tmp_path: Path) -> None:
    """Bytes that are not UTF-8: one line naming the file, not a UnicodeDecodeError trace."""
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'[spool]\ndir = "/tmp/caf\xe9"\n')
    assert_refused(run_spoold(config, tmp_path), str(config))


def test_a_second_daemon_on_the_same_spool_refuses_to_start(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """While one daemon runs, a second on the same spool exits non-zero with a clear line;
    the first keeps working."""
    first = start_daemon()
    second = start_daemon(ready=False)
    assert second.wait_exit(20) != 0
    text = second.log_text()
    assert "Traceback" not in text
    assert "another spoold" in text
    assert str(first.pid) in text
    assert first.returncode() is None
    assert spool.wait_record(spool.drop_job("still-served", job("Noop")))["status"] == "done"
