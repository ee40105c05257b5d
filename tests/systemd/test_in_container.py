"""spoold under a real systemd: a Debian 12 container booted with systemd-nspawn.

The README's own install blocks (marked ``<!-- install: ... -->`` in "Running
as a service") install spoold from a copy of this checkout; then each test
drives the service with systemctl and journalctl inside the container. The
tests run in file order and build on each other (one boot for the module).

Slow (a cold run bootstraps Debian: a few minutes), root only, and only in
``make test-systemd``. Outside CI it skips with one line where it cannot run;
with CI=true a missing tool, a failed debootstrap or a failed boot fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from spoold.backends.files.spool import (
    FOLDER_MODES,
    ROOT_MODE,
    STATES,
    VIEW_FOLDER_MODES,
    VIEW_STATES,
)
from systemd.container import (
    ROOT,
    WHEELHOUSE_IN,
    Container,
    cannot_run,
    copy_checkout,
    readme_blocks,
    rootfs,
    wait_for,
    wheelhouse,
)

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

SPOOL = "/var/spool/spoold"
CONFIG = "/etc/spoold/spoold.toml"
CHECKOUT = "/root/spoold"
SUBMITTER, OUTSIDER = "alice", "bob"
WATCHDOG = 3  # seconds, the drop-in's WatchdogSec= for the watchdog test
TIMEOUT_STOP = 45  # the unit's TimeoutStopSec=

JOBS = '''
"""Jobs for the container tests: what the sandbox lets a job do, and naps."""

import os
import pwd
import signal
import stat
import time
from pathlib import Path

PROBED = ["/tmp", "/etc", "/opt/myapp", "/var/tmp", "/var/spool/spoold",
          "/var/spool/spoold/done", "/var/spool/spoold/incoming", "/root", "/home/alice"]


def try_write(folder):
    path = os.path.join(folder, f"probe-{os.getpid()}")
    try:
        with open(path, "w") as handle:
            handle.write("x")
    except OSError as exc:
        return exc.strerror
    os.unlink(path)
    return "written"


def try_list(folder):
    try:
        return sorted(os.listdir(folder))
    except OSError as exc:
        return exc.strerror


def is_block(path):
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def other_users_processes():
    """Processes of other users this job can see (ProtectProc=invisible: none)."""
    seen = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid != os.getuid():
                seen.append((entry / "comm").read_text().strip())
        except OSError:
            continue
    return seen


class Probe:
    def sandbox(self):
        status = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        try:
            os.setuid(0)
            setuid = "became root"
        except OSError as exc:
            setuid = exc.strerror
        return {
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "euid": os.geteuid(),
            "groups": sorted(os.getgroups()),
            "no_new_privs": status["NoNewPrivs"].strip(),
            "cap_eff": status["CapEff"].strip(),
            "cap_prm": status["CapPrm"].strip(),
            "write": {folder: try_write(folder) for folder in PROBED},
            "home": try_list("/home"),
            "setuid0": setuid,
            "block_devices": [n for n in os.listdir("/dev") if is_block(f"/dev/{n}")],
            "other_users_processes": other_users_processes(),
            "cgroup": Path("/proc/self/cgroup").read_text(),
        }

    def stubborn(self, seconds):
        """Ignores SIGTERM, and leaves a child in a session of its own."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            os.setsid()
            time.sleep(seconds)
            os._exit(0)
        time.sleep(seconds)

    def nap(self, seconds):
        time.sleep(seconds)
        return {"slept": seconds}


class Late:
    def run(self):
        return "allowed after a reload"
'''

# What "${EDITOR:-vi}" does to /etc/spoold/spoold.toml in the README's install block.
EDITOR = r"""#!/bin/sh
set -e
sed -i 's|^python_path = \[\]|python_path = ["/opt/myapp"]|' "$1"
printf '%s\n' '"myapp.jobs.Probe" = ["sandbox", "nap", "stubborn"]' >> "$1"
"""

# pip in the container takes the wheels built on the host, not the network.
PIP_OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELHOUSE_IN}


def note(line: str) -> None:
    print(f"[systemd suite] {line}", flush=True)


def unavailable(reason: str) -> None:
    """Skip with one line, or in CI fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the systemd suite cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def box() -> Iterator[Container]:
    reason = cannot_run()
    if reason is not None:
        unavailable(reason)
    started = time.monotonic()
    try:
        lower = rootfs(note)
        wheels = wheelhouse(note)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        unavailable(f"no root filesystem: {exc}")
        raise
    note(f"root filesystem and wheels ready after {time.monotonic() - started:.0f} s")
    container = Container(lower, {wheels: WHEELHOUSE_IN})
    try:
        container.boot()
        note(f"booted after {time.monotonic() - started:.0f} s")
        prepare(container)
        install(container)
        note(f"installed after {time.monotonic() - started:.0f} s")
        yield container
    finally:
        report(container)
        container.poweroff()
        note(f"powered off after {time.monotonic() - started:.0f} s")


def report(container: Container) -> None:
    """What the journal holds, for the log of the run (the container is about to go)."""
    with contextlib.suppress(subprocess.SubprocessError):
        warnings = container.run(
            ["journalctl", "-b", "-p", "warning", "--no-pager", "-o", "short-monotonic"],
            check=False,
        ).stdout
        note(f"journal warnings and worse in the container:\n{warnings}")
        tail = container.run(
            ["journalctl", "-u", "spoold", "-n", "40", "--no-pager", "-o", "short-monotonic"],
            check=False,
        ).stdout
        note(f"the end of journalctl -u spoold:\n{tail}")


def prepare(box: Container) -> None:
    """What a user brings: a checkout, their job code, two users and an editor."""
    copy_checkout(box.path(CHECKOUT))
    jobs = box.path("/opt/myapp/myapp")
    jobs.mkdir(parents=True)
    (jobs / "__init__.py").write_text("")
    (jobs / "jobs.py").write_text(JOBS)
    editor = box.path("/usr/local/bin/test-editor")
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    for user in (SUBMITTER, OUTSIDER):
        box.run(["useradd", "--create-home", user])


def install(box: Container) -> None:
    """The README's marked install blocks, as they are."""
    env = {"EDITOR": "test-editor", **PIP_OFFLINE}
    for tag in ("service", "submitters"):
        blocks = readme_blocks(tag)
        assert len(blocks) == 1, f"README.md: {len(blocks)} blocks marked install: {tag}"
        note(f"running README block '{tag}'")
        box.sh(blocks[0], cwd=CHECKOUT, env=env, timeout=600)


# -- helpers --


def show(box: Container, *properties: str) -> dict[str, str]:
    out = box.run(["systemctl", "show", "spoold", *(f"--property={p}" for p in properties)])
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def journal(box: Container, *args: str) -> str:
    return box.run(["journalctl", "--no-pager", "-o", "cat", *args]).stdout


def submit(box: Container, *args: str, user: str = SUBMITTER) -> str:
    out = box.run(["spoold", "submit", *args], user=user)
    return out.stdout.strip()


def record(box: Container, state: str, job_id: str) -> dict[str, object] | None:
    path = box.path(f"{SPOOL}/{state}/{job_id}.json")
    if not path.exists():
        return None
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def records_of(box: Container, job_id: str) -> list[str]:
    return [
        str(path.relative_to(box.path(SPOOL)))
        for state in STATES
        for path in box.path(f"{SPOOL}/{state}").glob(f"{job_id}*")
    ]


def finished(box: Container, job_id: str, timeout: float = 60) -> tuple[str, dict[str, object]]:
    def done() -> tuple[str, dict[str, object]] | None:
        for state in ("done", "failed"):
            found = record(box, state, job_id)
            if found is not None:
                return state, found
        return None

    return wait_for(f"job {job_id} to be filed", done, timeout)  # type: ignore[return-value]


def running(box: Container, job_id: str) -> None:
    wait_for(f"job {job_id} in active/", lambda: box.path(f"{SPOOL}/active/{job_id}.json").exists())


# Run inside: /proc and /run are the container's own mounts, not in the overlay.
SCAN_UNIT = """
import pathlib
for cgroup in pathlib.Path("/proc").glob("[0-9]*/cgroup"):
    try:
        if "/spoold.service" in cgroup.read_text():
            print(cgroup.parent.name, (cgroup.parent / "cmdline").read_text().replace(chr(0), " "))
    except OSError:
        pass
"""


def unit_processes(box: Container) -> list[str]:
    """Processes in the container whose cgroup is spoold.service's."""
    return box.run(["python3", "-c", SCAN_UNIT]).stdout.splitlines()


def exposure(text: str) -> float:
    match = re.search(r"Overall exposure level for spoold\.service: (\d+\.\d+)", text)
    assert match, text
    return float(match.group(1))


# -- 1. sysusers.d and tmpfiles.d --


def test_sysusers_and_tmpfiles_made_the_accounts_and_the_spool(box: Container) -> None:
    passwd = box.run(["getent", "passwd", "spoold-jobs"]).stdout.strip().split(":")
    assert 0 < int(passwd[2]) < 1000, passwd  # a system user
    assert passwd[5] == "/" and passwd[6].endswith("nologin"), passwd
    own_group = box.run(["getent", "group", "spoold-jobs"]).stdout.split(":")
    assert int(own_group[2]) == int(passwd[3]), "spoold-jobs has only its own group"
    submit_group = box.run(["getent", "group", "spoold-submit"]).stdout.strip().split(":")
    assert submit_group[3].split(",") == [SUBMITTER]
    gid = int(submit_group[2])
    view_group = box.run(["getent", "group", "spoold-view"]).stdout.strip().split(":")
    assert view_group[3] == "", view_group  # the install adds nobody to the watching group
    view_gid = int(view_group[2])
    assert view_gid != gid
    # The README's `spoold init --group spoold-submit --view-group spoold-view` and the
    # tmpfiles entries agree: the root, tmp/ and incoming/ the submit group's; scheduled/,
    # active/, done/ and failed/ the watching group's, 2750.
    expected = {"": (gid, ROOT_MODE)} | {
        state: (view_gid, VIEW_FOLDER_MODES[state]) if state in VIEW_STATES
        else (gid, FOLDER_MODES[state])
        for state in STATES
    }  # fmt: skip
    for name, (group, mode) in expected.items():
        info = box.path(f"{SPOOL}/{name}").stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, group, mode), name


# -- 2. Type=notify: start waits for READY=1; the status line; the exposure --


def test_start_returns_once_the_daemon_is_ready(box: Container) -> None:
    box.run(["systemctl", "stop", "spoold"])
    box.run(["systemctl", "start", "spoold"])
    # STATUS= comes in the same datagram as READY=1: seen now, it was read before start returned.
    state = show(box, "ActiveState", "SubState", "StatusText", "MainPID", "Type")
    assert state["Type"] == "notify"
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["StatusText"], state
    status = box.run(["systemctl", "status", "spoold", "--no-pager"], check=False).stdout
    assert f'Status: "{state["StatusText"]}"' in status, status
    note(f"systemctl status: Status: {state['StatusText']!r}")


def test_exposure_inside_is_the_offline_one(box: Container) -> None:
    offline = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(ROOT / "systemd/spoold.service")],
        capture_output=True, text=True,
    )  # fmt: skip
    inside = box.run(["systemd-analyze", "security", "--no-pager", "spoold"], check=False)
    note(f"exposure offline {exposure(offline.stdout)}, inside {exposure(inside.stdout)}")
    assert exposure(inside.stdout) == exposure(offline.stdout), inside.stdout


# -- 3. jobs run as spoold-jobs, sandboxed; only the submit group submits --


def test_a_submitted_job_runs_as_the_job_user_in_the_sandbox(box: Container) -> None:
    job_id = submit(box, "myapp.jobs.Probe", "sandbox")
    state, found = finished(box, job_id)
    assert state == "done", found
    result = found["result"]
    assert isinstance(result, dict)
    note(f"the sandbox as a job sees it: {json.dumps(result)}")
    jobs_gid = int(box.run(["id", "-g", "spoold-jobs"]).stdout)
    assert (result["user"], result["groups"]) == ("spoold-jobs", [jobs_gid])
    assert result["no_new_privs"] == "1"
    assert int(result["cap_eff"], 16) == 0 and int(result["cap_prm"], 16) == 0
    assert result["setuid0"] == "Operation not permitted"
    assert result["home"] == "Permission denied", "ProtectHome=yes hides /home"
    writable = {folder for folder, outcome in result["write"].items() if outcome == "written"}
    assert writable == {"/tmp", "/var/tmp"}, result["write"]  # PrivateTmp=: both, private
    assert result["block_devices"] == [], "PrivateDevices=yes"
    assert result["other_users_processes"] == [], "ProtectProc=invisible"
    assert "spoold.service" in result["cgroup"]
    assert records_of(box, job_id) == [f"done/{job_id}.json"]


def test_a_dropped_file_runs_too(box: Container) -> None:
    job_id = "dropped-by-hand-1"
    script = (
        f"cd {SPOOL} && printf '%s\\n' "
        """'{"class": "myapp.jobs.Probe", "method": "nap", "params": [0]}' """
        f"> tmp/{job_id}.json && sync tmp/{job_id}.json && mv -n tmp/{job_id}.json incoming/"
    )
    box.sh(script, user=SUBMITTER)
    state, found = finished(box, job_id)
    assert (state, found["result"]) == ("done", {"slept": 0}), found


def test_a_user_outside_the_group_cannot_submit(box: Container) -> None:
    refused = box.run(["spoold", "submit", "myapp.jobs.Probe", "nap", "0"], user=OUTSIDER,
                      check=False)  # fmt: skip
    assert refused.returncode != 0, refused.stdout
    assert "Permission denied" in refused.stderr, refused.stderr
    dropped = box.sh(f"echo '{{}}' > {SPOOL}/incoming/bob.json", user=OUTSIDER, check=False)
    assert dropped.returncode != 0 and "Permission denied" in dropped.stderr, dropped
    assert not box.path(f"{SPOOL}/incoming/bob.json").exists()


# -- 4. reload --


def test_reload_applies_a_new_allowlist_and_refuses_a_bad_config(box: Container) -> None:
    config = box.path(CONFIG)
    good = config.read_text()
    pid = show(box, "MainPID")["MainPID"]
    config.write_text(good + '"myapp.jobs.Late" = ["run"]\n')
    before = submit(box, "myapp.jobs.Late", "run")  # the daemon still has the old allowlist
    assert finished(box, before)[0] == "failed"
    reloads = journal(box, "-u", "spoold").count("configuration reloaded")
    box.run(["systemctl", "reload", "spoold"])
    wait_for(
        "the reload in the journal",
        lambda: journal(box, "-u", "spoold").count("configuration reloaded") > reloads,
    )
    after = submit(box, "myapp.jobs.Late", "run")
    assert finished(box, after)[0] == "done"

    config.write_text("[worker\nthis is not TOML\n")
    box.run(["systemctl", "reload", "spoold"])
    wait_for("the refusal in the journal", lambda: "reload refused" in journal(box, "-u", "spoold"))
    state = show(box, "ActiveState", "MainPID")
    assert state == {"ActiveState": "active", "MainPID": pid}, state
    config.write_text(good)  # for the client; the daemon still runs the Late-allowing config
    still = submit(box, "myapp.jobs.Late", "run")
    assert finished(box, still)[0] == "done"


# -- 5. the watchdog --


def test_the_watchdog_restarts_a_frozen_daemon_and_its_job_reruns(box: Container) -> None:
    dropin = box.path("/etc/systemd/system/spoold.service.d/watchdog.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(f"[Service]\nWatchdogSec={WATCHDOG}s\n")
    try:
        box.run(["systemctl", "daemon-reload"])
        box.run(["systemctl", "restart", "spoold"])
        restarted_at = time.monotonic()
        before = show(box, "MainPID", "NRestarts", "WatchdogUSec")
        assert before["WatchdogUSec"] == f"{WATCHDOG}s", before
        job_id = submit(box, "myapp.jobs.Probe", "nap", "8")
        running(box, job_id)
        # A healthy daemon outlives two watchdog periods (it pings every half period).
        wait_for("two watchdog periods", lambda: time.monotonic() - restarted_at > 2 * WATCHDOG)
        assert show(box, "MainPID", "NRestarts", "WatchdogUSec") == before
        box.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "spoold"])
        wait_for(
            "systemd to restart the daemon",
            lambda: (
                show(box, "NRestarts")["NRestarts"] != before["NRestarts"]
                and show(box, "SubState")["SubState"] == "running"
            ),
        )
        assert show(box, "MainPID")["MainPID"] != before["MainPID"]
        assert "Watchdog timeout" in journal(box, "-u", "spoold")
        state, found = finished(box, job_id)
        assert state == "done", found
        outcomes = [entry["outcome"] for entry in found["history"]]  # type: ignore[attr-defined]
        note(f"the frozen daemon's job: history {outcomes}")
        assert outcomes[-1] == "ok" and len(outcomes) >= 2 and "ok" not in outcomes[:-1]
        assert records_of(box, job_id) == [f"done/{job_id}.json"]
    finally:
        dropin.unlink()
        box.run(["systemctl", "daemon-reload"])
        box.run(["systemctl", "restart", "spoold"])


# -- 6. stop while a job runs --


def test_stop_drains_the_running_job_and_empties_the_cgroup(box: Container) -> None:
    job_id = submit(box, "myapp.jobs.Probe", "nap", "4")
    running(box, job_id)
    assert len(unit_processes(box)) >= 3  # the daemon, its launcher and the job
    began = time.monotonic()
    box.run(["systemctl", "stop", "spoold"], timeout=TIMEOUT_STOP + 30)
    took = time.monotonic() - began
    note(f"systemctl stop with a 4 s job running took {took:.1f} s")
    assert took < TIMEOUT_STOP
    assert record(box, "done", job_id) is not None, records_of(box, job_id)
    assert records_of(box, job_id) == [f"done/{job_id}.json"]
    state = show(box, "ActiveState", "Result")
    assert state == {"ActiveState": "inactive", "Result": "success"}, state
    assert unit_processes(box) == []
    box.run(["systemctl", "start", "spoold"])


def test_stop_cuts_short_a_job_past_shutdown_timeout(box: Container) -> None:
    """SIGTERM, SIGKILL 2 s later, filed to rerun; nothing is left in the cgroup.

    The job ignores SIGTERM and leaves a child in a session of its own; spoold
    sweeps the job user's escaped processes itself, and systemd's SIGKILL of
    what is left in the cgroup once the daemon exits is the backstop.
    """
    config = box.path(CONFIG)
    good = config.read_text()
    config.write_text(good.replace("shutdown_timeout = 30.0", "shutdown_timeout = 2.0"))
    job_id = "none-yet"
    try:
        box.run(["systemctl", "restart", "spoold"])
        job_id = submit(box, "myapp.jobs.Probe", "stubborn", "600")
        running(box, job_id)
        # the daemon, its launcher, the job and the job's child in its own session
        wait_for("the job's child", lambda: len(unit_processes(box)) >= 4)
        began = time.monotonic()
        box.run(["systemctl", "stop", "spoold"], timeout=TIMEOUT_STOP + 30)
        took = time.monotonic() - began
        note(f"systemctl stop with a job ignoring SIGTERM (shutdown_timeout 2 s) took {took:.1f} s")
        assert 2 <= took < TIMEOUT_STOP
        assert show(box, "ActiveState", "Result") == {
            "ActiveState": "inactive",
            "Result": "success",
        }
        assert unit_processes(box) == []
        assert records_of(box, job_id) == [f"scheduled/{job_id}.json"]
        filed = record(box, "scheduled", job_id)
        assert filed is not None
        outcomes = [entry["outcome"] for entry in filed["history"]]  # type: ignore[attr-defined]
        note(f"the cut-short job, filed to rerun: history {outcomes}")
        assert outcomes == ["interrupted"]
    finally:
        config.write_text(good)
        box.path(f"{SPOOL}/scheduled/{job_id}.json").unlink(missing_ok=True)  # not to rerun
        box.run(["systemctl", "start", "spoold"])


# -- 7. the journal --


def test_the_journal_has_the_jobs_lines_with_their_ids(box: Container) -> None:
    job_id = submit(box, "myapp.jobs.Probe", "nap", "0")
    finished(box, job_id)
    lines = wait_for(
        "the job's lines in the journal",
        lambda: [line for line in journal(box, "-u", "spoold").splitlines() if job_id in line],
    )
    note(f"journal lines of {job_id}: {lines}")
    assert len(lines) >= 2, lines  # at least its start and its outcome


# -- the README's upgrade --


def test_the_upgrade_keeps_waiting_and_running_jobs(box: Container) -> None:
    pid = show(box, "MainPID")["MainPID"]
    running_job = submit(box, "myapp.jobs.Probe", "nap", "3")
    later = submit(box, "myapp.jobs.Probe", "nap", "0", "--delay", "10")
    running(box, running_job)
    blocks = readme_blocks("upgrade")
    assert len(blocks) == 1
    box.sh(blocks[0], cwd=CHECKOUT, env=PIP_OFFLINE, timeout=300)
    assert show(box, "ActiveState")["ActiveState"] == "active"
    assert show(box, "MainPID")["MainPID"] != pid
    assert finished(box, running_job)[0] == "done"
    assert finished(box, later)[0] == "done"


# -- 8. the classic daemon --


def test_the_forking_unit_starts_reloads_and_stops(box: Container) -> None:
    blocks = readme_blocks("forking")
    assert len(blocks) == 1
    box.sh(blocks[0], cwd=CHECKOUT, timeout=180)
    state = show(box, "Type", "ActiveState", "SubState", "MainPID")
    assert (state["Type"], state["ActiveState"], state["SubState"]) == (
        "forking", "active", "running",
    ), state  # fmt: skip
    pidfile = box.run(["cat", "/run/spoold/spoold.pid"]).stdout.strip()
    assert pidfile == state["MainPID"], (pidfile, state)
    job_id = submit(box, "myapp.jobs.Probe", "sandbox")
    assert finished(box, job_id)[0] == "done"
    log = box.path("/var/log/spoold/spoold.log")
    assert job_id in log.read_text()

    box.run(["systemctl", "reload", "spoold"])
    wait_for("the reload in the log", lambda: "configuration reloaded" in log.read_text())
    assert show(box, "MainPID")["MainPID"] == state["MainPID"]

    nap = submit(box, "myapp.jobs.Probe", "nap", "3")
    running(box, nap)
    assert len(unit_processes(box)) >= 3
    box.run(["systemctl", "stop", "spoold"], timeout=TIMEOUT_STOP + 30)
    assert records_of(box, nap) == [f"done/{nap}.json"]
    assert show(box, "ActiveState", "Result") == {"ActiveState": "inactive", "Result": "success"}
    assert unit_processes(box) == []
    assert box.run(["test", "-e", "/run/spoold"], check=False).returncode == 1


def test_systemd_said_nothing_against_our_units(box: Container) -> None:
    """Warnings from PID 1 about spoold.service, other than the watchdog test's own."""
    text = box.run(
        ["journalctl", "-b", "_PID=1", "-p", "warning", "--no-pager", "-o", "cat"]
    ).stdout
    expected = ("Watchdog timeout", "Killing process", "Failed with result 'watchdog'",
                "Main process exited, code=dumped", "Main process exited, code=killed")  # fmt: skip
    ours = [
        line for line in text.splitlines()
        if "spoold" in line and not any(e in line for e in expected)
    ]  # fmt: skip
    assert ours == [], "\n".join(ours)
