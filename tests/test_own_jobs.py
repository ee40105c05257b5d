"""A submitter's own jobs: who may show, wait for and cancel which job (the control socket).

Done for real as root: a submit group and a watching group made with groupadd for the
module (removed after), a spool made by ``spoold init --group --view-group`` in a folder
other users may walk into, and the real daemon running on it. The real ``spoold``
command runs through ``setpriv`` as two submitters, A and B (uids with no passwd entry,
in the submit group only), and as a watcher, W (in the watching group only). None of
them may read the record folders, except W; so their show, wait and cancel go to the
daemon, which knows who asks from the kernel (SO_PEERCRED) and answers a submitter about
the jobs whose ``submitted_by`` is its uid: the job file's owner, whatever the file says.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import ROOT, Daemon, Spool, read_lines, stays_false, wait_for, write_config
from other_users import readable_package, temporary_groups

from spoold.ids import new_job_id

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: groupadd, setuid")

SECRET = "s3cret-of-A-7f3e"
UIDS = (40001, 40002, 40003)  # A, B and W: no passwd entries needed


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int  # its primary group, and its only one


@dataclass(frozen=True)
class Users:
    a: User
    b: User
    w: User
    submit: str
    view: str


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    """A submit group and a watching group of this module's own, removed afterwards."""
    taken = [uid for uid in UIDS if uid in {entry.pw_uid for entry in pwd.getpwall()}]
    assert not taken, f"uids {taken} have passwd entries: the tests expect bare uids"
    with temporary_groups("spoold-os", "spoold-ov") as made:
        (submit, submit_gid), (view, view_gid) = made
        yield Users(
            a=User("A", UIDS[0], submit_gid),
            b=User("B", UIDS[1], submit_gid),
            w=User("W", UIDS[2], view_gid),
            submit=submit,
            view=view,
        )


def user_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/", "LANG": "C.UTF-8",
            "PYTHONPATH": str(readable_package())}  # fmt: skip


def setpriv(user: User) -> list[str]:
    gid = str(user.gid)
    return ["setpriv", "--reuid", str(user.uid), "--regid", gid, "--groups", gid]


@dataclass
class Site:
    """The spool, its config and daemon; ``site.spoold(user, ...)`` runs a command as user."""

    users: Users
    spool: Spool
    config: Path
    daemon: Daemon

    def command(self, user: User | None, *args: str) -> list[str]:
        spoold = [sys.executable, "-m", "spoold", *args, "--config", str(self.config)]
        return spoold if user is None else [*setpriv(user), *spoold]

    def spoold(self, user: User | None, *args: str) -> subprocess.CompletedProcess[str]:
        """``spoold ARGS --config CFG`` as ``user`` (None: root)."""
        root_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLD_")}
        env = user_env() if user else {**root_env, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            self.command(user, *args), capture_output=True, text=True, cwd="/", env=env,
            timeout=60,
        )  # fmt: skip

    def start(self, user: User, *args: str) -> subprocess.Popen[str]:
        """``spoold ARGS`` as ``user`` in the background (reap it with ``communicate``)."""
        return subprocess.Popen(
            self.command(user, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd="/", env=user_env(),
        )  # fmt: skip

    def submit(self, user: User, *args: str) -> str:
        result = self.spoold(user, "submit", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def block(self, started: Path) -> str:
        """Root's Sleeper, running: jobs submitted next wait in incoming/ (concurrency 1)."""
        blocker = self.spool.submit("testjobs.Sleeper", params=[60, str(started)])
        wait_for(lambda: read_lines(started), 15, "the blocking Sleeper started")
        return blocker

    def cancel_as_root(self, job_id: str) -> dict[str, Any]:
        result = self.spoold(None, "cancel", job_id)
        assert (result.returncode, result.stdout) == (0, f"cancelled {job_id}\n"), result.stderr
        record = self.spool.record(job_id, "failed")
        assert record is not None and record["status"] == "cancelled", record
        return record


@pytest.fixture
def site(users: Users, base: Path, start_daemon: StartDaemon) -> Site:
    """``spoold init --group --view-group`` on a spool in ``base``, a config anyone may read
    (jobs one at a time), and the daemon running on it as root."""
    spool = Spool(base / "spool")
    config = write_config(base / "spoold.toml", spool, {"worker": {"concurrency": 1}})
    config.chmod(0o644)
    made = subprocess.run(
        [sys.executable, "-m", "spoold", "init", "--group", users.submit,
         "--view-group", users.view, "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return Site(users, spool, config, start_daemon(config=config))


def unseen(result: subprocess.CompletedProcess[str]) -> str:
    """What a refused command printed; it must not hold A's secret."""
    said = result.stdout + result.stderr
    assert SECRET not in said, said
    return said


# -- the submitter itself --


def test_a_submitter_shows_waits_for_and_cancels_its_own_jobs(site: Site, tmp_path: Path) -> None:
    """A's job records A's uid; A (who may not read done/) shows it and waits for it through
    the daemon (mode 0666 control.sock): at once, until a timeout, until A cancels it, and
    until it runs; A's cancel names A."""
    a = site.users.a
    assert stat.S_IMODE((site.spool.root / "control.sock").stat().st_mode) == 0o666
    done = site.submit(a, "testjobs.Echo", "run", SECRET)
    waited = site.spoold(a, "wait", done, "--json")
    assert waited.returncode == 0, waited.stderr
    found = json.loads(waited.stdout)
    assert (found["id"], found["state"]) == (done, "done")
    assert found["document"] == site.spool.record(done, "done")
    assert found["document"]["submitted_by"] == a.uid
    assert found["document"]["params"] == [SECRET]
    shown = site.spoold(a, "show", done)
    assert shown.returncode == 0, shown.stderr
    assert SECRET in shown.stdout and '"status": "done"' in shown.stdout
    record_file = site.spool.folder("done") / f"{done}.json"
    read = subprocess.run([*setpriv(a), "cat", str(record_file)], capture_output=True, text=True)
    assert read.returncode == 1 and "Permission denied" in read.stderr, read  # show, wait asked

    blocker = site.block(tmp_path / "started")
    later = site.submit(a, "testjobs.Echo", "run", "later")
    doomed = site.submit(a, "testjobs.Noop", "run")
    assert site.spool.where(later) == site.spool.where(doomed) == ["incoming"]
    timed_out = site.spoold(a, "wait", later, "--timeout", "0.5")
    assert (timed_out.returncode, timed_out.stdout) == (2, ""), timed_out
    assert timed_out.stderr == f"spoold: job {later} has not ended after 0.5s (it is in incoming)\n"
    with site.start(a, "wait", doomed, "--timeout", "30") as waiting:
        assert stays_false(lambda: waiting.poll() is not None, 0.3)
        cancelled = site.spoold(a, "cancel", doomed)
        assert (cancelled.returncode, cancelled.stdout) == (0, f"cancelled {doomed}\n"), cancelled
        out, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 1, err
    assert '"status": "cancelled"' in out
    record = site.spool.record(doomed, "failed")
    assert record is not None, site.spool.summary()
    assert (record["status"], record["attempts"]) == ("cancelled", 0)
    assert record["reason"] == f"cancelled by uid {a.uid}"
    assert record["cancelled_by"] == record["submitted_by"] == a.uid

    with site.start(a, "wait", later, "--timeout", "30") as waiting:
        assert stays_false(lambda: waiting.poll() is not None, 0.3)  # behind the blocker
        site.cancel_as_root(blocker)
        out, err = waiting.communicate(timeout=20)
    assert waiting.returncode == 0, err
    assert '"status": "done"' in out and '"result": {' in out
    assert site.spool.record(later, "done") is not None


# -- another submitter --


def test_another_submitter_can_neither_see_wait_for_nor_cancel_a_job(
    site: Site, tmp_path: Path
) -> None:
    """B asking about A's jobs, done and waiting, is told there is no such job of its own,
    never A's params or result; B's cancel changes nothing and A's job then runs."""
    a, b = site.users.a, site.users.b
    done = site.submit(a, "testjobs.Echo", "run", SECRET)
    record = site.spool.wait_record(done)
    before = (site.spool.folder("done") / f"{done}.json").read_bytes()

    shown = site.spoold(b, "show", done)
    assert shown.returncode == 1
    assert f"no job {done} of yours" in unseen(shown)
    waited = site.spoold(b, "wait", done, "--timeout", "5")
    assert waited.returncode == 3
    assert unseen(waited) == f"spoold: no job {done}\n"
    cancelled = site.spoold(b, "cancel", done)
    assert cancelled.returncode == 1
    assert unseen(cancelled) == f"spoold: no job {done} of yours\n"  # not "has ended"
    assert (site.spool.folder("done") / f"{done}.json").read_bytes() == before
    assert record["submitted_by"] == a.uid

    blocker = site.block(tmp_path / "started")
    waiting = site.submit(a, "testjobs.Echo", "run", SECRET)
    assert site.spool.where(waiting) == ["incoming"]
    cancelled = site.spoold(b, "cancel", waiting)
    assert cancelled.returncode == 1
    assert unseen(cancelled) == f"spoold: no job {waiting} of yours\n"
    waited = site.spoold(b, "wait", waiting, "--timeout", "5")
    assert waited.returncode == 3
    unseen(waited)
    assert site.spool.where(waiting) == ["incoming"]
    site.cancel_as_root(blocker)
    assert site.spool.wait_record(waiting)["status"] == "done"


def test_a_job_file_is_its_owners_whatever_it_says(site: Site) -> None:
    """B writes a job file by hand (tmp/, then renamed into incoming/) that says it is A's:
    the daemon records B's uid, so A can neither see nor cancel it, B can see it, and root
    cancels it."""
    a, b = site.users.a, site.users.b
    job_id = new_job_id()
    document = {"class": "testjobs.Noop", "method": "run", "submitted_by": a.uid,
                "run_at": time.time() + 60}  # fmt: skip
    written = subprocess.run(
        [*setpriv(b), sys.executable, "-c", HAND_WRITE, str(site.spool.root), job_id,
         json.dumps(document)],
        capture_output=True, text=True, cwd="/", env=user_env(), timeout=60,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    wait_for(lambda: site.spool.where(job_id) == ["scheduled"], 10, site.spool.summary)
    held = site.spool.record(job_id, "scheduled")
    assert held is not None and held["submitted_by"] == b.uid, held

    shown = site.spoold(a, "show", job_id)
    assert (shown.returncode, shown.stdout) == (1, ""), shown
    assert f"no job {job_id} of yours" in shown.stderr
    assert site.spoold(a, "wait", job_id, "--timeout", "1").returncode == 3
    refused = site.spoold(a, "cancel", job_id)
    assert (refused.returncode, refused.stderr) == (1, f"spoold: no job {job_id} of yours\n")
    assert site.spool.where(job_id) == ["scheduled"]
    mine = site.spoold(b, "show", job_id, "--json")
    assert mine.returncode == 0, mine.stderr
    assert json.loads(mine.stdout)["document"]["submitted_by"] == b.uid

    record = site.cancel_as_root(job_id)
    assert record["submitted_by"] == b.uid
    assert record["cancelled_by"] == 0 and record["reason"] == "cancelled by root (uid 0)"
    assert site.spool.names("scheduled") == []


# B's hand-made job: written whole in tmp/, then renamed into incoming/ (the Maildir way).
HAND_WRITE = """
import os, sys
root, job_id, text = sys.argv[1:4]
temp = f"{root}/tmp/{job_id}.json"
with open(temp, "x") as handle:
    handle.write(text)
os.rename(temp, f"{root}/incoming/{job_id}.json")
"""


# -- a watcher --


def test_a_watcher_shows_and_waits_for_any_job_but_cancels_none(site: Site, tmp_path: Path) -> None:
    """W (the watching group, which cannot read incoming/) sees A's waiting job through the
    daemon and waits for it; ``spoold cancel`` and the client's cancel() are refused."""
    a, w = site.users.a, site.users.w
    blocker = site.block(tmp_path / "started")
    job_id = site.submit(a, "testjobs.Echo", "run", SECRET)
    assert site.spool.where(job_id) == ["incoming"]
    shown = site.spoold(w, "show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["state"] == "incoming" and found["document"]["params"] == [SECRET]

    refused = site.spoold(w, "cancel", job_id)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"spoold: you may not cancel job {job_id}: only its submitter and root may\n"
    )
    probe = subprocess.run(
        [*setpriv(w), sys.executable, "-c", CLIENT_CANCEL, str(site.spool.root), job_id],
        capture_output=True, text=True, cwd="/", env=user_env(), timeout=60,
    )  # fmt: skip
    assert (probe.returncode, probe.stdout.strip()) == (0, "PermissionError"), probe.stderr
    assert site.spool.where(job_id) == ["incoming"]

    with site.start(w, "wait", job_id, "--json", "--timeout", "30") as waiting:
        assert stays_false(lambda: waiting.poll() is not None, 0.3)
        site.cancel_as_root(blocker)
        out, err = waiting.communicate(timeout=20)
    assert waiting.returncode == 0, err
    assert json.loads(out)["document"]["status"] == "done"
    again = site.spoold(w, "show", job_id)
    assert again.returncode == 0 and SECRET in again.stdout, again.stderr


# The client's cancel() as another user: the exception's name, or what it returned.
CLIENT_CANCEL = """
import sys
from spoold.client import cancel
try:
    print(cancel(sys.argv[2], spool=sys.argv[1]))
except Exception as exc:
    print(type(exc).__name__)
"""
