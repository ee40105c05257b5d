"""The spool on disk: its six folders, their listing, and the one-daemon lock.

The disk is the truth. A job is ``<id>.json`` in exactly one of the state
folders, but for a moment in active/ on its way in or out, under the names
below (``claiming_name``, ``marker_name``); this module names the folders and
those names and lists what is in the folders, and ``fsio`` does every write
and move (``store.py`` says in which order).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spoold.atomic import TEMP_PREFIX

STATES = ("tmp", "incoming", "scheduled", "active", "done", "failed")
RECORD_STATES = ("done", "failed")
LOCK_NAME = ".spoold.lock"
STATS_NAME = "stats.json"  # the daemon's stats snapshot, in the root (spoold/snapshot.py)
SCHEDULES_NAME = "schedules.json"  # the schedules' marks, in the root (files/firings.py)

# Folder modes. The folders' group is the submit group (``spoold init
# --group``; else the group of whoever made them). Anyone may pass through the
# root (x only: it holds nothing but the folders, and each folder refuses
# whoever it should); members may create files in tmp/ and incoming/; the
# sticky bit stops them deleting, renaming or replacing anyone else's file
# there, and setgid gives every file the folder's group, so a non-root daemon
# in that group can read them. tmp/ cannot be listed by them (no r);
# incoming/ can, because a client must open it to fsync the rename into it.
# The other four folders hold other people's jobs, params, results and
# tracebacks: the daemon's owner alone. Nobody else gets any bit.
# See README "Letting other users submit jobs".
ROOT_MODE = 0o2711
FOLDER_MODES = {
    "tmp": 0o3730,
    "incoming": 0o3770,
    "scheduled": 0o0700,
    "active": 0o0700,
    "done": 0o0700,
    "failed": 0o0700,
}

# With a watching group (``spoold init --view-group``) the four folders above
# that hold other people's jobs and records get that group instead, with r-x:
# its members list and read them (``spoold status/list/show``, metrics, top)
# but can create, delete or rename nothing there. Setgid makes every file the
# daemon writes in them take the folder's group, and the daemon writes them
# 0640 (fsio, UMask=0027), so the group reads each one. Others still get no
# bit. tmp/, incoming/ and the root keep the submit group's modes above.
VIEW_STATES = ("scheduled", "active", "done", "failed")
VIEW_FOLDER_MODE = 0o2750
VIEW_FOLDER_MODES = {state: VIEW_FOLDER_MODE for state in VIEW_STATES}


@dataclass(frozen=True)
class Spool:
    """A spool root and the paths inside it."""

    root: Path

    def folder(self, state: str) -> Path:
        return self.root / state

    def path(self, state: str, name: str) -> Path:
        return self.root / state / name

    def file(self, state: str, name: str) -> str:
        """``path`` as a plain string: the cheap form for the per-job hot path."""
        return f"{self._root_text}/{state}/{name}"

    @functools.cached_property
    def _root_text(self) -> str:
        return os.fspath(self.root)

    @property
    def stats_path(self) -> Path:
        return self.root / STATS_NAME

    @property
    def schedules_path(self) -> Path:
        return self.root / SCHEDULES_NAME

    def create(self) -> list[Path]:
        """Create the root and any missing state folder; return what was made."""
        made: list[Path] = []
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700)
            os.chmod(self.root, ROOT_MODE)  # mkdir's mode is masked by the umask
            made.append(self.root)
        for state in STATES:
            folder = self.folder(state)
            if not folder.exists():
                folder.mkdir(mode=0o700)
                os.chmod(folder, FOLDER_MODES[state])
                made.append(folder)
        return made

    def modes(self) -> list[tuple[Path, int]]:
        """The root and each state folder with the mode it should have."""
        return [(self.root, ROOT_MODE)] + [(self.folder(s), FOLDER_MODES[s]) for s in STATES]

    def give_to_group(self, gid: int) -> list[tuple[Path, int]]:
        """Own the root and its folders as this process's uid and group ``gid``, set
        their modes; return each path with its mode.

        Each folder is changed through a descriptor opened without following
        links, so a symlink planted in place of a folder is refused, never
        followed to chown what it points at.
        """
        modes = self.modes()
        for path, mode in modes:
            with _owned_folder(path, gid, mode):
                pass
        return modes

    def give_to_view_group(self, gid: int) -> ViewGrant:
        """Give scheduled/, active/, done/ and failed/ to the watching group ``gid``
        (owner this process's uid, ``VIEW_FOLDER_MODES``), and the files already in
        them and ``stats.json`` too; return what was changed.

        The folders are changed as ``give_to_group`` changes them (a symlink in
        place of one is refused), and each file in them through that folder's
        descriptor, never following a link: only its group changes, its owner and
        mode stay.
        """
        folders = [(self.folder(state), VIEW_FOLDER_MODES[state]) for state in VIEW_STATES]
        files = 0
        for path, mode in folders:
            with _owned_folder(path, gid, mode) as fd:
                files += _give_entries(fd, gid)
        stats = _give_file(self.stats_path, gid)
        marks = _give_file(self.schedules_path, gid)
        return ViewGrant(folders=folders, files=files, stats=stats, marks=marks)

    def view_group(self) -> int | None:
        """The watching group (``give_to_view_group``): the group of done/ when it may read
        there; None without one."""
        try:
            info = os.stat(self.folder("done"))
        except OSError:
            return None
        return info.st_gid if info.st_mode & 0o040 else None

    def job_names(self, state: str) -> list[str]:
        """Names of job files in a state folder, oldest id first."""
        names = self._unsorted_names(state)
        names.sort()
        return names

    def count_jobs(self, state: str) -> int:
        """How many job files a state folder holds (``job_names`` without the sort)."""
        return len(self._unsorted_names(state))

    def _unsorted_names(self, state: str) -> list[str]:
        """The names ``is_job_name`` accepts. listdir, not scandir: done/ may hold 100,000
        names, and no DirEntry a name takes about a third less time."""
        try:
            names = os.listdir(self.folder(state))
        except FileNotFoundError:
            return []
        return list(filter(is_job_name, names))

    def exists(self, state: str, name: str) -> bool:
        return os.path.lexists(self.file(state, name))

    def remove_own_temp_files(self) -> list[Path]:
        """Delete the temporary files a crashed daemon left in its own folders."""
        removed = []
        for state in ("scheduled", "active", "done", "failed"):
            for entry in _entries(self.folder(state)):
                if entry.name.startswith(TEMP_PREFIX):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
        return removed

    def remove_stale_client_files(self, max_age: float, now: float | None = None) -> list[Path]:
        """Delete files a client left in tmp/ longer than ``max_age`` seconds ago."""
        cutoff = (time.time() if now is None else now) - max_age
        removed = []
        for entry in _entries(self.folder("tmp")):
            info = entry.stat(follow_symlinks=False)
            if info.st_mtime < cutoff and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        return removed


@dataclass(frozen=True)
class ViewGrant:
    """What ``Spool.give_to_view_group`` changed: each folder with its mode, how many
    files in them now have the group, and whether ``stats.json`` was there."""

    folders: list[tuple[Path, int]]
    files: int
    stats: bool
    marks: bool = False  # schedules.json


@contextlib.contextmanager
def _owned_folder(path: Path, gid: int, mode: int) -> Iterator[int]:
    """Give the folder ``path`` this process's uid, group ``gid`` and ``mode`` through a
    descriptor opened without following links (a link in its place: ELOOP or
    ENOTDIR, nothing changed), and yield that descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, os.getuid(), gid)
        os.fchmod(fd, mode)  # after chown, which may clear the setgid bit
        yield fd
    finally:
        os.close(fd)


def _give_entries(folder_fd: int, gid: int) -> int:
    """Give every entry of the open folder group ``gid`` (a link itself, never its
    target); return how many were changed."""
    changed = 0
    for entry in os.scandir(folder_fd):
        try:
            os.chown(entry.name, -1, gid, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # moved on by a running daemon meanwhile; the setgid folder covers it
        changed += 1
    return changed


def _give_file(path: Path, gid: int) -> bool:
    """``lchown`` ``path`` to group ``gid``, its owner kept; False if it is not there."""
    try:
        os.lchown(path, -1, gid)
    except FileNotFoundError:
        return False
    return True


MOVE_STATES = ("scheduled", "done", "failed")  # where a job goes from active/ by a marker
CLAIMING_SUFFIX = ".claiming"


def marker_name(job_id: str, state: str) -> str:
    """The job's next file, made whole in active/ before it is moved to ``state``/."""
    return f"{job_id}.to-{state}"


def claiming_name(job_id: str) -> str:
    """A claimed job whose file is being cleaned, in active/ (``JobStore.claim``)."""
    return f"{job_id}{CLAIMING_SUFFIX}"


def is_job_name(name: str) -> bool:
    """A name the daemon acts on: not a dotfile, ends in ``.json``."""
    return not name.startswith(".") and name.endswith(".json") and len(name) > len(".json")


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


class SpoolLocked(Exception):
    """Another daemon holds this spool."""


class SpoolLock:
    """An flock on ``<spool>/.spoold.lock`` holding the daemon's pid.

    The kernel drops the lock when its holder dies, even by SIGKILL, so a
    stale lock file never blocks a restart.
    """

    def __init__(self, spool: Spool) -> None:
        self.path = spool.root / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_lock_pid(self.path)
            raise SpoolLocked(
                f"another spoold (pid {pid or '?'}) is running on this spool"
            ) from None
        self._fd = fd
        # The lock is the flock, which needs no disk space; the pid is for people.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @classmethod
    def taken(cls, folder: Path) -> tuple[Spool, SpoolLock]:
        """The spool at ``folder``, its folders made, and its lock taken (SpoolLocked if a
        daemon holds it): what a daemon does first, whichever backend it runs."""
        spool = Spool(folder)
        spool.create()
        lock = cls(spool)
        lock.acquire()
        return spool, lock


def read_lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def running_daemon_pid(spool: Spool) -> int | None:
    """The pid of the daemon holding the spool lock, or None if none runs."""
    path = spool.root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return read_lock_pid(path) or -1
        raise
    finally:
        os.close(fd)
    return None
