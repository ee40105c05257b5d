"""``spoold init --group``: other users submit jobs, like Postfix's maildrop group.

Done for real as root: a system group and two unprivileged members are
created if missing (and left for the next run), ``spoold init --group``
prepares a spool, the real daemon runs on it, and forked children that
became those users (setgroups/setgid/setuid, as login would) try things.
Members can submit through the real client; they cannot read another job's
record in done/ or failed/, list tmp/, or delete, rename or replace someone
else's file in tmp/ or incoming/; a user outside the group cannot submit.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import ROOT, Spool, write_config

from spoold.backends.files.spool import FOLDER_MODES, ROOT_MODE, STATES
from spoold.client import run_background_job

GROUP = "spoold-test-submit"
ALICE = "spoold-test-alice"
BOB = "spoold-test-bob"
OUTSIDER = "nobody"
USERADD = ("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin")
Outcomes = dict[str, str]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown, users, setuid")


def run_spoold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spoold", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.fixture(scope="module")
def members() -> tuple[str, str]:
    """The submit group and two members, created with groupadd/useradd if missing."""
    if not (shutil.which("groupadd") and shutil.which("useradd")):
        pytest.skip("groupadd/useradd are not installed: cannot create the test users")
    if subprocess.run(["getent", "group", GROUP], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
    for user in (ALICE, BOB):
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(
                [*USERADD, "--groups", GROUP, user],
                check=True,
            )
    return ALICE, BOB


@pytest.fixture
def config(base: Path) -> Path:
    return write_config(base / "spoold.toml", Spool(base / "spool"))


def as_user(user: str, action: Callable[[Path], Outcomes], spool_root: Path) -> Outcomes:
    """Run ``action`` in a forked child that has become ``user`` with its groups."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            entry = pwd.getpwnam(user)
            os.initgroups(user, entry.pw_gid)  # the groups a login would give
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.write(write_end, json.dumps(action(spool_root)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child as {user} failed"
    return dict(json.loads(data))


def attempt(operation: Callable[[], object]) -> str:
    """Return "ok", or the errno name of the OSError the operation raised."""
    try:
        operation()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def test_init_group_gives_the_spool_to_the_group_with_the_modes(
    members: tuple[str, str], config: Path, base: Path
) -> None:
    """The root and the six folders: owned by the caller and the group, with their modes."""
    result = run_spoold("init", "--group", GROUP, "--config", str(config))
    assert result.returncode == 0, result.stderr
    gid = grp.getgrnam(GROUP).gr_gid
    root = base / "spool"
    expected = {root: ROOT_MODE, **{root / s: FOLDER_MODES[s] for s in STATES}}
    for path, mode in expected.items():
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (os.getuid(), gid), path
        assert stat.S_IMODE(info.st_mode) == mode, (path, oct(info.st_mode))
        line = f"{path}: owner {os.getuid()}, group {GROUP} ({gid}), mode {mode:04o}"
        assert line in result.stdout


def test_members_submit_but_cannot_read_records_or_touch_others_files(
    members: tuple[str, str], config: Path, base: Path, start_daemon: StartDaemon
) -> None:
    """Bob submits with the real client and his jobs run; then, as Bob, the records in done/
    and failed/ are unreadable, tmp/ unlistable, and Alice's files in tmp/ and incoming/
    can be neither deleted, renamed nor replaced. A non-member cannot submit at all."""
    assert run_spoold("init", "--group", GROUP, "--config", str(config)).returncode == 0
    root = base / "spool"
    # Alice's files first, while no daemon runs: one half-written in tmp/, one waiting.
    alice = as_user(ALICE, _alice_writes, root)
    assert set(alice.values()) == {"ok"}, alice
    submitted = as_user(BOB, _bob_submits, root)
    start_daemon(config=config)
    harness_spool = Spool(root)
    assert harness_spool.wait_record(submitted["good"])["status"] == "done"
    assert harness_spool.wait_rejected(submitted["bad"])["reason"]
    assert harness_spool.wait_record("alice-waiting")["status"] == "done"

    bob = as_user(BOB, _bob_pries(submitted["good"], submitted["bad"]), root)
    assert bob == {
        "read done/": "EACCES",
        "read failed/": "EACCES",
        "list done/": "EACCES",
        "list tmp/": "EACCES",
        "delete alice's tmp file": "EPERM",
        "rename alice's tmp file": "EPERM",
        "replace alice's incoming file": "EPERM",
        "delete alice's incoming file": "EPERM",
    }, bob
    assert (root / "tmp" / "alice.json").read_bytes() == b'{"half": '
    assert (root / "incoming" / ".alice-held.json").read_bytes().startswith(b'{"class"')
    outsider = as_user(OUTSIDER, _outsider_submits, root)
    assert outsider == {"write tmp/": "EACCES"}, outsider


def _alice_writes(root: Path) -> Outcomes:
    """A half-written file in tmp/, one held back in incoming/ (a dotfile, which the daemon
    leaves alone) for Bob to try to replace, and a job submitted by hand that must run."""
    job = json.dumps({"class": "testjobs.Noop", "method": "run"}).encode()
    temp = root / "tmp" / "alice-waiting.json"
    return {
        "tmp": attempt(lambda: (root / "tmp" / "alice.json").write_bytes(b'{"half": ')),
        "held": attempt(lambda: (root / "incoming" / ".alice-held.json").write_bytes(job)),
        "write": attempt(lambda: temp.write_bytes(job)),
        "publish": attempt(lambda: os.rename(temp, root / "incoming" / temp.name)),
    }


def _bob_submits(root: Path) -> Outcomes:
    return {
        "good": run_background_job("testjobs.Noop", "run", spool=root),
        "bad": run_background_job("testjobs.Undeclared", "run", spool=root),
    }


def _bob_pries(good: str, bad: str) -> Callable[[Path], Outcomes]:
    def pry(root: Path) -> Outcomes:
        mine = root / "tmp" / "bob.json"
        mine.write_bytes(b"{}")
        return {
            "read done/": attempt((root / "done" / f"{good}.json").read_bytes),
            "read failed/": attempt((root / "failed" / f"{bad}.json").read_bytes),
            "list done/": attempt(lambda: os.listdir(root / "done")),
            "list tmp/": attempt(lambda: os.listdir(root / "tmp")),
            "delete alice's tmp file": attempt((root / "tmp" / "alice.json").unlink),
            "rename alice's tmp file": attempt(
                lambda: os.rename(root / "tmp" / "alice.json", root / "tmp" / "stolen.json")
            ),
            "replace alice's incoming file": attempt(
                lambda: os.rename(mine, root / "incoming" / ".alice-held.json")
            ),
            "delete alice's incoming file": attempt(
                (root / "incoming" / ".alice-held.json").unlink
            ),
        }

    return pry


def _outsider_submits(root: Path) -> Outcomes:
    return {"write tmp/": attempt(lambda: (root / "tmp" / "outsider.json").write_bytes(b"{}"))}


def test_an_unknown_group_is_a_one_line_error_and_creates_nothing(config: Path, base: Path) -> None:
    result = run_spoold("init", "--group", "no-such-group-spoold", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "spoold: no group named 'no-such-group-spoold'; create it first"
        " (groupadd no-such-group-spoold)"
    ]
    assert not (base / "spool").exists()


def test_init_group_does_not_follow_a_symlink_in_place_of_a_folder(
    config: Path, base: Path, tmp_path: Path
) -> None:
    """A done/ replaced by a link to another folder: refused in one line, the target kept."""
    assert run_spoold("init", "--config", str(config)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    before = elsewhere.stat()
    (base / "spool" / "done").rmdir()
    (base / "spool" / "done").symlink_to(elsewhere)
    result = run_spoold("init", "--group", "4242", "--config", str(config))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(base / "spool" / "done") in result.stderr
    after = elsewhere.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
