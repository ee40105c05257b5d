"""The files in systemd/: the unit verifies and is hardened, the packaged config
agrees with it, and the sysusers.d and tmpfiles.d files make the accounts and
the spool that `spoold init --group spoold-submit --view-group spoold-view`
would make.

The systemd tools run offline (no running systemd needed); a test that needs
one is skipped where it is not installed (Debian: `apt-get install systemd`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from spoold.backends.files.spool import (
    FOLDER_MODES,
    ROOT_MODE,
    STATES,
    VIEW_FOLDER_MODES,
    VIEW_STATES,
    Spool,
)
from spoold.exec.launcher import KILL_GRACE

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
UNIT = UNITS / "spoold.service"
FORKING_UNIT = UNITS / "spoold-forking.service"
WEB_UNIT = UNITS / "spoold-web.service"
SERVICE_CONFIG = UNITS / "spoold.toml"
TMPFILES = UNITS / "spoold.tmpfiles"
SYSUSERS = UNITS / "spoold.sysusers"
SUBMIT_GROUP = "spoold-submit"
VIEW_GROUP = "spoold-view"
MAX_EXPOSURE = 2.5
SHIPPED_EXECSTART = "/usr/local/bin/spoold run --config /etc/spoold/spoold.toml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install systemd)")
    return path


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """Each section's keys, each with its values in order (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text())["Service"]


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def seconds(span: str) -> float:
    """A systemd time span such as ``45s``, ``1min 30s`` or ``90``, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * units[unit]
    return total


def service_config() -> dict[str, dict[str, object]]:
    return tomllib.loads(SERVICE_CONFIG.read_text())


def sysusers_entries() -> dict[str, str]:
    """Name -> type (u or g) from the sysusers.d file."""
    entries = {}
    for line in SYSUSERS.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            kind, name = line.split()[:2]
            entries[name] = kind
    return entries


def tmpfiles_lines() -> list[list[str]]:
    return [
        line.split()
        for line in TMPFILES.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


# -- systemd-analyze --


def test_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` is silent on the unit.

    verify checks that ExecStart's program exists, and the shipped path
    (/usr/local/bin/spoold) is not installed here, so a copy pointing at this
    environment's spoold script is verified; nothing else is changed.
    """
    analyze = tool("systemd-analyze")
    script = Path(sys.executable).parent / "spoold"
    if not script.exists():
        script = Path(shutil.which("spoold") or "/nonexistent")
    assert script.exists(), "the spoold console script is not installed"
    text = UNIT.read_text()
    assert text.count(f"ExecStart={SHIPPED_EXECSTART}\n") == 1
    copy = tmp_path / "spoold.service"
    copy.write_text(text.replace("ExecStart=/usr/local/bin/spoold ", f"ExecStart={script} "))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", f"systemd-analyze verify complained:\n{output}"


def test_unit_exposure_is_at_most_2_5() -> None:
    analyze = tool("systemd-analyze")
    threshold = round(MAX_EXPOSURE * 10)  # --threshold is the exposure times ten
    result = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={threshold}", str(UNIT)],
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for spoold\.service: (\d+\.\d+)", output)
    assert match, f"no overall exposure in:\n{output}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output
    assert result.returncode == 0, output


def test_forking_unit_verifies_and_is_as_hardened(tmp_path: Path) -> None:
    """The Type=forking variant: verify is silent, and its exposure is the notify unit's."""
    analyze = tool("systemd-analyze")
    script = Path(sys.executable).parent / "spoold"
    assert script.exists(), "the spoold console script is not installed"
    copy = tmp_path / "spoold.service"
    copy.write_text(FORKING_UNIT.read_text().replace("/usr/local/bin/spoold ", f"{script} "))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result
    scores = []
    for unit in (UNIT, FORKING_UNIT):
        out = subprocess.run(
            [analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True
        ).stdout
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        assert match, out
        scores.append(float(match.group(1)))
    assert scores[1] == scores[0] <= MAX_EXPOSURE


def test_web_unit_verifies_and_runs_unprivileged_in_the_watching_group(tmp_path: Path) -> None:
    """spoold-web.service: verify is silent, its exposure is lower than the daemon's, and it
    runs as its own account in spoold-view (read-only on the spool), with no capability."""
    analyze = tool("systemd-analyze")
    script = Path(sys.executable).parent / "spoold"
    assert script.exists(), "the spoold console script is not installed"
    copy = tmp_path / "spoold-web.service"
    copy.write_text(WEB_UNIT.read_text().replace("/usr/local/bin/spoold ", f"{script} "))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(copy)], capture_output=True, text=True
    )
    exposure = r"Overall exposure level for spoold-web\.service: (\d+\.\d+)"
    match = re.search(exposure, result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    settings = unit_settings(WEB_UNIT.read_text())["Service"]
    assert settings["DynamicUser"] == ["yes"]
    assert settings["SupplementaryGroups"] == ["spoold-view"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert "ReadWritePaths" not in settings
    assert settings["ExecStart"] == ["/usr/local/bin/spoold web --config /etc/spoold/spoold.toml"]


def test_forking_unit_differs_only_in_how_it_runs_and_logs() -> None:
    forking = unit_settings(FORKING_UNIT.read_text())["Service"]
    assert one(forking, "Type") == "forking"
    pidfile = one(forking, "PIDFile")
    assert one(forking, "ExecStart") == (
        f"/usr/local/bin/spoold run --detach --pidfile {pidfile} --config /etc/spoold/spoold.toml"
    )
    assert Path(pidfile).parent == Path("/run") / one(forking, "RuntimeDirectory")
    own = {"Type", "PIDFile", "ExecStart", "RuntimeDirectory", "LogsDirectory"}
    notify_only = {"NotifyAccess", "WatchdogSec", "StandardOutput", "StandardError",
                   "SyslogIdentifier"}  # fmt: skip
    assert {k: v for k, v in forking.items() if k not in own} == {
        k: v for k, v in service().items() if k not in own | notify_only
    }


# -- what the unit says --


def test_unit_runs_the_daemon_under_notify_with_a_watchdog() -> None:
    settings = service()
    assert one(settings, "Type") == "notify"
    assert one(settings, "NotifyAccess") == "main"
    assert one(settings, "ExecStart") == SHIPPED_EXECSTART
    assert one(settings, "ExecReload") == "/bin/sh -c 'kill -HUP $$MAINPID'"
    assert one(settings, "Restart") == "on-failure"
    assert seconds(one(settings, "WatchdogSec")) == 30
    assert unit_settings(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


def test_a_stop_lets_jobs_drain_then_kills_what_is_left() -> None:
    """SIGTERM to the daemon only; systemd waits out the drain and the kill grace."""
    settings = service()
    assert one(settings, "KillMode") == "mixed"
    drain = float(service_config()["worker"]["shutdown_timeout"])  # type: ignore[arg-type]
    stop = seconds(one(settings, "TimeoutStopSec"))
    assert stop >= drain + KILL_GRACE + 5, "no time left to file outcomes before SIGKILL"
    assert stop <= drain + KILL_GRACE + 30, "a hung daemon should not hold a stop for long"
    assert "SendSIGKILL" not in settings


def test_unit_confines_the_daemon_to_the_spool() -> None:
    settings = service()
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictSUIDSGID",
        "LockPersonality",
        "RestrictRealtime",
        "RestrictNamespaces",
    ):
        assert one(settings, key) == "yes", key
    assert one(settings, "ProtectSystem") == "strict"
    spool_dir = service_config()["spool"]["dir"]
    assert settings["ReadWritePaths"] == [spool_dir]
    assert one(settings, "UMask") == "0027"
    assert one(settings, "SystemCallArchitectures") == "native"


def test_unit_keeps_what_jobs_and_sd_notify_need() -> None:
    settings = service()
    assert settings["SystemCallFilter"] == ["@system-service"]  # no ~@resources: setrlimit
    families = set(one(settings, "RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in settings
    assert "IPAddressDeny" not in settings
    assert "MemoryDenyWriteExecute" not in settings  # breaks JITs in job code
    assert "ProcSubset" not in settings  # jobs may read /proc/meminfo, /proc/cpuinfo


def test_root_daemon_keeps_only_the_capabilities_to_run_jobs_as_their_user() -> None:
    settings = service()
    assert one(settings, "User") == "root"
    caps = set(one(settings, "CapabilityBoundingSet").split())
    assert caps == {"CAP_SETUID", "CAP_SETGID", "CAP_KILL"}
    assert one(settings, "AmbientCapabilities") == ""
    assert one(settings, "SupplementaryGroups") == SUBMIT_GROUP
    assert sysusers_entries()[SUBMIT_GROUP] == "g"


# -- the service's config --


def test_service_config_is_valid_and_matches_the_unit() -> None:
    from spoold.config import load_config

    config = load_config(SERVICE_CONFIG)
    assert str(config.spool.dir) == "/var/spool/spoold"
    assert config.log.file is None  # stderr only: the journal keeps the log
    assert config.worker.shutdown_timeout == 30.0
    raw = service_config()
    job_user = raw["worker"]["user"]
    assert job_user not in ("", "root")
    assert sysusers_entries()[job_user] == "u"  # type: ignore[index]
    assert raw["worker"]["group"] in ("", job_user)  # the job user's own group only


# -- sysusers.d and tmpfiles.d --


def test_tmpfiles_lines_match_the_spool_modes() -> None:
    """Exactly the root and the six folders, as `spoold init --group spoold-submit
    --view-group spoold-view` leaves them when run as root: owner root; the root, tmp/
    and incoming/ group spoold-submit with spool.py's FOLDER_MODES; scheduled/, active/,
    done/ and failed/ group spoold-view with its VIEW_FOLDER_MODES (2750); no age."""
    assert VIEW_STATES == ("scheduled", "active", "done", "failed")
    assert set(VIEW_FOLDER_MODES.values()) == {0o2750}
    spool_dir = Path(service_config()["spool"]["dir"])  # type: ignore[arg-type]
    modes = {**FOLDER_MODES, **VIEW_FOLDER_MODES}
    expected = [(spool_dir, ROOT_MODE, SUBMIT_GROUP)] + [
        (spool_dir / s, modes[s], VIEW_GROUP if s in VIEW_STATES else SUBMIT_GROUP) for s in STATES
    ]
    lines = tmpfiles_lines()
    assert [(Path(f[1]), int(f[2], 8), f[4]) for f in lines] == expected
    for fields in lines:
        assert fields[0] == "d", fields
        assert fields[3] == "root" and fields[5:] == ["-"], fields
        assert len(fields) == 6, fields


def test_sysusers_makes_the_job_user_and_the_submit_group(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "not a valid" not in result.stderr, result.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in _lines(tmp_path / "etc/passwd")}
    groups = {line.split(":")[0] for line in _lines(tmp_path / "etc/group")}
    job_user = service_config()["worker"]["user"]
    assert set(passwd) == {job_user}
    entry = passwd[job_user]  # type: ignore[index]
    assert 0 < int(entry[2]) < 1000, "a system user"
    assert entry[5] == "/" and entry[6].endswith("nologin")
    assert groups == {job_user, SUBMIT_GROUP, VIEW_GROUP}


def test_tmpfiles_creates_the_tree_spoold_init_group_would(tmp_path: Path) -> None:
    tmpfiles = tool("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles must be root to give the spool to root")
    gid, view_gid = 4321, 4322
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (image / "etc/group").write_text(
        f"root:x:0:\n{SUBMIT_GROUP}:x:{gid}:\n{VIEW_GROUP}:x:{view_gid}:\n"
    )

    def create() -> None:
        result = subprocess.run(
            [tmpfiles, "--create", f"--root={image}", str(TMPFILES)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr

    create()
    spool_dir = str(service_config()["spool"]["dir"]).lstrip("/")
    made = Spool(image / spool_dir)
    reference = Spool(tmp_path / "init")  # what `spoold init --group --view-group` does
    reference.create()
    reference.give_to_group(gid)
    reference.give_to_view_group(view_gid)
    assert _tree(made) == _tree(reference)
    assert _tree(made)[0] == ("", 0, gid, ROOT_MODE)
    assert {row for row in _tree(made) if row[0] in VIEW_STATES} == {
        (state, 0, view_gid, 0o2750) for state in VIEW_STATES
    }

    # Run again after damage (what ExecStartPre= does at each start): repaired.
    os.chmod(made.folder("done"), 0o755)
    os.chown(made.folder("incoming"), 0, 0)
    os.chown(made.folder("scheduled"), 0, gid)  # as a `spoold init --group` alone leaves it
    made.folder("failed").rmdir()
    create()
    assert _tree(made) == _tree(reference)


def _tree(spool: Spool) -> list[tuple[str, int, int, int]]:
    rows = []
    for path, _mode in spool.modes():
        info = path.lstat()
        assert stat.S_ISDIR(info.st_mode), path
        rows.append((path.name if path != spool.root else "", info.st_uid, info.st_gid,
                     stat.S_IMODE(info.st_mode)))  # fmt: skip
    return rows


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]
