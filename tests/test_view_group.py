"""``spoold init --view-group``: a group that may watch (read jobs, records and stats)
and change nothing.

Done for real as root: two groups made with groupadd for the module (and
removed after), ``spoold init`` on a spool in a folder other users may
walk into, the real daemon running jobs on it, and the real ``spoold``
command and small Python probes run as ``nobody`` through ``setpriv``, with
only the groups each case names. A watcher reads status, list, show and
stats.json, and can neither write, delete nor rename in done/ or failed/,
nor submit; a user outside the group reads nothing.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import ROOT, Spool, wait_for, write_config
from other_users import readable_package, temporary_groups

from spoold.backends.files.spool import FOLDER_MODES, ROOT_MODE, STATES, VIEW_FOLDER_MODES
from spoold.snapshot import Snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: groupadd, chown, setuid")

WATCHED = ("scheduled", "active", "done", "failed")
NOBODY = "nobody"
NOBODY_GID = pwd.getpwnam(NOBODY).pw_gid  # nogroup: outside both groups


@dataclass(frozen=True)
class Groups:
    view: str
    view_gid: int
    submit: str
    submit_gid: int


@pytest.fixture(scope="module")
def groups() -> Iterator[Groups]:
    """A watching group and a submit group of this module's own, removed afterwards."""
    with temporary_groups("spoold-tv", "spoold-ts") as made:
        (view, view_gid), (submit, submit_gid) = made
        assert NOBODY_GID not in (view_gid, submit_gid)
        yield Groups(view, view_gid, submit, submit_gid)


@pytest.fixture
def config(base: Path) -> Path:
    path = write_config(base / "spoold.toml", Spool(base / "spool"), {"metrics": {"interval": 0.2}})
    path.chmod(0o644)
    return path


def run_spoold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spoold", *args], capture_output=True, text=True, cwd=ROOT,
        timeout=60,
    )  # fmt: skip


def as_nobody(
    gid: int, *command: str, groups: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``command`` as user nobody with primary group ``gid`` and exactly ``groups`` besides."""
    extra = ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/", "LANG": "C.UTF-8",
           "PYTHONPATH": str(readable_package())}  # fmt: skip
    return subprocess.run(
        ["setpriv", "--reuid", NOBODY, "--regid", str(gid), *extra, *command],
        capture_output=True, text=True, cwd="/", env=env, timeout=60,
    )  # fmt: skip


def spoold_as(
    gid: int, *args: str, groups: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return as_nobody(gid, sys.executable, "-m", "spoold", *args, groups=groups)


# What a probe does as another user: each attempt prints "ok" or the errno's name.
PROBE = """
import errno, json, os, sys
root = sys.argv[1]
good, bad = sys.argv[2], sys.argv[3]

def attempt(operation):
    try:
        operation()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
    return "ok"

def read(path):
    with open(path, "rb") as handle:
        handle.read()

def create(path):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

done, failed = f"{root}/done/{good}.json", f"{root}/failed/{bad}.json"
print(json.dumps({
    "read stats.json": attempt(lambda: read(f"{root}/stats.json")),
    "read a record in done/": attempt(lambda: read(done)),
    "read a record in failed/": attempt(lambda: read(failed)),
    "list done/": attempt(lambda: os.listdir(f"{root}/done")),
    "write a record in done/": attempt(lambda: open(done, "ab").close()),
    "create a file in done/": attempt(lambda: create(f"{root}/done/planted.json")),
    "create a file in failed/": attempt(lambda: create(f"{root}/failed/planted.json")),
    "delete a record in done/": attempt(lambda: os.unlink(done)),
    "delete a record in failed/": attempt(lambda: os.unlink(failed)),
    "rename failed/ to done/": attempt(lambda: os.rename(failed, f"{root}/done/{bad}.json")),
    "create a file in tmp/": attempt(lambda: create(f"{root}/tmp/mine.json")),
    "create a file in incoming/": attempt(lambda: create(f"{root}/incoming/mine.json")),
}))
"""

WATCHER_SEES = {
    "read stats.json": "ok",
    "read a record in done/": "ok",
    "read a record in failed/": "ok",
    "list done/": "ok",
    "write a record in done/": "EACCES",
    "create a file in done/": "EACCES",
    "create a file in failed/": "EACCES",
    "delete a record in done/": "EACCES",
    "delete a record in failed/": "EACCES",
    "rename failed/ to done/": "EACCES",
    "create a file in tmp/": "EACCES",
    "create a file in incoming/": "EACCES",
}


def probe(gid: int, root: Path, good: str, bad: str) -> dict[str, str]:
    result = as_nobody(gid, sys.executable, "-c", PROBE, str(root), good, bad)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each folder and file under ``root`` (links not followed): uid, gid, mode."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        name = "" if path == root else str(path.relative_to(root))
        found[name] = (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))
    return found


# -- init --


def test_view_group_gives_the_four_folders_their_files_and_the_stats(
    groups: Groups, config: Path, base: Path, tmp_path: Path
) -> None:
    """Existing files in the four folders (a link among them, changed itself, its target
    not) and stats.json get the group; the root, tmp/ and incoming/ keep the submit group
    and its modes; init prints each change; a second init changes nothing more."""
    assert run_spoold("init", "--config", str(config)).returncode == 0
    root = base / "spool"
    for state in WATCHED:  # an upgrade keeps the owner-only modes until --view-group
        assert stat.S_IMODE((root / state).stat().st_mode) == 0o700 == FOLDER_MODES[state]
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    before_outside = outside.stat()
    (root / "done" / "old.json").write_text("{}")
    (root / "failed" / ".spoold-left.tmp").write_text("{")
    (root / "scheduled" / "later.json").write_text("{}")
    (root / "failed" / "link.json").symlink_to(outside)
    (root / "stats.json").write_text("{}")
    (root / "tmp" / "half.json").write_text("{")
    before = tree(root)

    args = ("init", "--group", groups.submit, "--view-group", groups.view, "--config", str(config))
    result = run_spoold(*args)
    assert result.returncode == 0, result.stderr
    uid = os.getuid()
    submit = f"group {groups.submit} ({groups.submit_gid})"
    view = f"group {groups.view} ({groups.view_gid})"
    assert result.stdout.splitlines() == [
        f"{root}: owner {uid}, {submit}, mode 2711",
        f"{root / 'tmp'}: owner {uid}, {submit}, mode 3730",
        f"{root / 'incoming'}: owner {uid}, {submit}, mode 3770",
        *(f"{root / state}: owner {uid}, {view}, mode 2750" for state in WATCHED),
        f"4 existing files in scheduled, active, done, failed: {view}",
        f"{root / 'stats.json'}: {view}",
    ]
    expected_modes = {"": ROOT_MODE, **FOLDER_MODES, **VIEW_FOLDER_MODES}
    made = tree(root)
    for state in ("", *STATES):
        gid = groups.view_gid if state in WATCHED else groups.submit_gid
        assert made[state] == (uid, gid, expected_modes[state]), state
    for name in ("done/old.json", "failed/.spoold-left.tmp", "scheduled/later.json",
                 "failed/link.json", "stats.json"):  # fmt: skip
        uid_before, _, mode_before = before[name]
        assert made[name] == (uid_before, groups.view_gid, mode_before), name
    assert made["tmp/half.json"] == before["tmp/half.json"]  # tmp/ is not the watchers'
    after_outside = outside.stat()
    assert (after_outside.st_uid, after_outside.st_gid, after_outside.st_mode) == (
        before_outside.st_uid, before_outside.st_gid, before_outside.st_mode,
    )  # fmt: skip

    again = run_spoold(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout
    assert tree(root) == made


def test_view_group_alone_leaves_the_submit_side_as_it_was(
    groups: Groups, config: Path, base: Path
) -> None:
    """Without --group, and given as a gid: the four folders change, nothing else does."""
    assert run_spoold("init", "--group", groups.submit, "--config", str(config)).returncode == 0
    root = base / "spool"
    before = tree(root)
    result = run_spoold("init", "--view-group", str(groups.view_gid), "--config", str(config))
    assert result.returncode == 0, result.stderr
    view = f"group {groups.view_gid} ({groups.view_gid})"
    assert result.stdout.splitlines() == [
        *(f"{root / state}: owner {os.getuid()}, {view}, mode 2750" for state in WATCHED),
        f"0 existing files in scheduled, active, done, failed: {view}",
    ]
    after = tree(root)
    for name, facts in after.items():
        if name in WATCHED:
            assert facts == (os.getuid(), groups.view_gid, 0o2750), name
        else:
            assert facts == before[name], name


def test_init_view_group_does_not_follow_a_symlink_in_place_of_done(
    groups: Groups, config: Path, base: Path, tmp_path: Path
) -> None:
    """done/ replaced by a link to another folder: refused in one line, the target and
    what is in it kept as they were."""
    assert run_spoold("init", "--config", str(config)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (elsewhere / "precious.json").write_text("{}")
    before = tree(elsewhere)
    (base / "spool" / "done").rmdir()
    (base / "spool" / "done").symlink_to(elsewhere)
    result = run_spoold("init", "--view-group", groups.view, "--config", str(config))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("spoold: ")
    assert str(base / "spool" / "done") in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(elsewhere) == before


def test_an_unknown_view_group_is_a_one_line_error_and_creates_nothing(
    config: Path, base: Path
) -> None:
    result = run_spoold("init", "--view-group", "no-such-group-spoold", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "spoold: no group named 'no-such-group-spoold'; create it first"
        " (groupadd no-such-group-spoold)"
    ]
    assert not (base / "spool").exists()


def test_init_help_explains_both_groups() -> None:
    result = run_spoold("init", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--group GROUP, the submit group" in text
    assert "--view-group GROUP, the watching group" in text
    assert "2750" in text and "0700" in text


# -- a watcher against a real daemon --


def test_a_watcher_reads_status_list_show_and_stats_and_changes_nothing(
    groups: Groups, config: Path, base: Path, start_daemon: StartDaemon
) -> None:
    """After init --view-group and a daemon that ran a job (and rejected one), nobody in the
    watching group runs status, list and show and reads stats.json, but cannot write,
    delete or rename in done/ or failed/, nor submit; in the submit group too it can
    submit; outside both it reads nothing."""
    args = ("init", "--group", groups.submit, "--view-group", groups.view, "--config", str(config))
    assert run_spoold(*args).returncode == 0
    root = base / "spool"
    daemon = start_daemon(config=config)
    good = submit(config, "testjobs.Noop")
    bad = submit(config, "testjobs.Undeclared")
    harness = Spool(root)
    assert harness.wait_record(good)["status"] == "done"
    assert harness.wait_rejected(bad)["reason"]
    stats = root / "stats.json"
    wait_for(lambda: finished_in(stats) == {"done": 1}, 15, "stats.json with the finished job")
    # What the daemon wrote after init took the folders' group (setgid), readable by it.
    for path in (root / "done" / f"{good}.json", root / "failed" / f"{bad}.json", stats):
        info = path.stat()
        assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (groups.view_gid, 0o640), path
    records_before = tree(root)

    watcher = groups.view_gid
    status = spoold_as(watcher, "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "done       1" in lines and "failed     1" in lines, status.stdout
    assert "incoming   ? (not readable by you)" in lines, status.stdout
    assert any(line.startswith("daemon     running") for line in lines), status.stdout
    listed = spoold_as(watcher, "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} == {good, bad}
    shown = spoold_as(watcher, "show", good, "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert good in shown.stdout and '"done"' in shown.stdout
    assert probe(watcher, root, good, bad) == WATCHER_SEES
    read_back = as_nobody(watcher, sys.executable, "-c", READ_STATS, str(stats))
    assert read_back.returncode == 0, read_back.stderr
    assert json.loads(read_back.stdout) == {"pid": daemon.pid, "done": 1}
    submitted = spoold_as(watcher, "submit", "testjobs.Noop", "run", "--config", str(config))
    assert submitted.returncode == 1 and "Permission denied" in submitted.stderr, submitted
    retried = spoold_as(watcher, "retry", bad, "--config", str(config))
    assert retried.returncode == 1, retried
    purged = spoold_as(watcher, "purge", "done", "--older-than", "0s", "--config", str(config))
    assert purged.returncode == 1, purged
    assert {k: v for k, v in tree(root).items() if k.startswith(("done", "failed"))} == {
        k: v for k, v in records_before.items() if k.startswith(("done", "failed"))
    }

    # In the submit group as well, the watcher may submit, and its job runs.
    both = spoold_as(watcher, "submit", "testjobs.Noop", "run", "--config", str(config),
                     groups=(groups.submit_gid,))  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert harness.wait_record(both.stdout.strip())["status"] == "done"

    # Outside the watching group (nobody's own group only): nothing to read.
    outsider = NOBODY_GID
    for command in (("status",), ("list",)):
        refused = spoold_refused(outsider, config, *command)
        assert "Permission denied" in refused or "permission denied" in refused, refused
    # show asks the daemon, which answers only about the asker's own jobs (not this one).
    assert spoold_refused(outsider, config, "show", good) == f"spoold: no job {good} of yours\n"
    assert probe(outsider, root, good, bad) == {name: "EACCES" for name in WATCHER_SEES}


# A reader of the snapshot, as the watchers read it.
READ_STATS = """
import json, sys
from spoold.snapshot import Snapshot
with open(sys.argv[1], "rb") as handle:
    snapshot = Snapshot.from_json(handle.read())
done = snapshot.jobs_finished.get("testjobs.Noop", {}).get("done")
print(json.dumps({"pid": snapshot.pid, "done": done}))
"""


def finished_in(stats: Path) -> dict[str, int] | None:
    try:
        return Snapshot.from_json(stats.read_bytes()).jobs_finished.get("testjobs.Noop")
    except (FileNotFoundError, ValueError):
        return None


def submit(config: Path, target: str) -> str:
    result = run_spoold("submit", target, "run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def spoold_refused(gid: int, config: Path, *command: str) -> str:
    """Run ``spoold COMMAND`` as nobody in ``gid``: it must fail in one line; return it."""
    result = spoold_as(gid, *command, "--config", str(config))
    assert result.returncode == 1, (command, result.stdout, result.stderr)
    assert result.stdout == "", (command, result.stdout)
    assert len(result.stderr.splitlines()) == 1, (command, result.stderr)
    return result.stderr
