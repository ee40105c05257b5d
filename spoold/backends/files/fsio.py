"""Atomic, durable file operations: how the daemon and the CLI write or move a file.

Every write is tmp file + fsync + no-clobber rename + fsync of the folder, so
a reader (or a reboot) sees either the whole file or none of it, and an
existing file is never replaced. Moves use ``renameat2(RENAME_NOREPLACE)``,
falling back to link + unlink on filesystems without it (many FUSE and
network filesystems answer the flag with EINVAL); the client moves its
file with the same ``rename_noreplace``. Between that link and
that unlink both names exist and the file has two links: readers of the
spool tell such a move cut short from a hard-link attack by the twin's
name and inode (intake.py, store.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from spoold.atomic import TEMP_PREFIX
from spoold.exec.protocol import write_all
from spoold.faults import crash_point

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    _renameat2.restype = ctypes.c_int

_AT_EMPTY_PATH = 0x1000
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_FORCE_SYNC = 0x2000
_STATX_NLINK = 0x4
_STATX_NLINK_OFFSET = 16  # struct statx: u32 mask, u32 blksize, u64 attributes, u32 nlink
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    _statx.restype = ctypes.c_int

# TEMP_PREFIX (spoold/atomic.py): the prefix of every temporary file the daemon
# and the CLI make beside a file they write (the client writes tmp/<id>.json
# instead, see client.py). Readers skip dotfiles, and the daemon removes its own
# leftovers (this prefix) at start.

# Destination folders whose filesystem refused RENAME_NOREPLACE: moves into them go
# straight to link + unlink instead of paying a refused call (a FUSE round trip) each.
_LINK_ONLY_FOLDERS: set[str] = set()


def rename_noreplace(src: Path | str, dst: Path | str) -> None:
    """Move ``src`` to ``dst``; raise FileExistsError rather than replace ``dst``."""
    folder = os.path.dirname(dst)
    if _renameat2 is not None and folder not in _LINK_ONLY_FOLDERS:
        if (
            _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
            == 0
        ):
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), str(dst))
        _LINK_ONLY_FOLDERS.add(folder)
    os.link(src, dst)  # raises FileExistsError when dst exists
    crash_point("in_rename_fallback")  # both names exist, one inode with two links
    os.unlink(src)


def exists(path: str) -> bool:
    """True if ``path`` names anything, a dangling symlink included (``os.path.lexists``).

    One faccessat(2) that answers yes or no: ``lexists`` pays for a FileNotFoundError
    at every miss, and the daemon asks four times at each claim (a fresh name is the
    usual answer): 14 µs against 5 µs here.
    """
    return os.access(path, os.F_OK, follow_symlinks=False)


def write_whole(path: str, data: bytes, *, durable: bool, mode: int = 0o640) -> None:
    """Create ``path`` (never replacing a file) holding ``data``, fsynced if ``durable``.

    Unlike ``write_new`` it writes in place: a crash can leave a short file,
    so it is only for files whose readers can tell (a marker, see store.py).
    A file cut short by a full disk is removed before the error is raised.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(path)
        raise


def fsync_dir(folder: Path | str) -> None:
    """Make the folder's entries (creations, renames, unlinks) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(
    folder: Path,
    name: str,
    data: bytes,
    *,
    durable: bool = True,
    sync_folder: bool = True,
    replace: bool = False,
    mode: int = 0o640,
) -> Path:
    """Create ``folder/name`` holding ``data``, whole or not at all; never replace.

    Raises FileExistsError if the name is taken (the temporary file is removed).
    ``sync_folder=False`` leaves the folder's fsync to the caller, for a file
    that is renamed on before anything relies on it. ``replace=True`` swaps an
    existing file for the new one atomically instead of refusing.
    """
    target = folder / name
    temp = folder / f"{TEMP_PREFIX}{name}.{os.urandom(4).hex()}.tmp"
    write_whole(os.fspath(temp), data, durable=durable, mode=mode)
    try:
        if replace:
            os.replace(temp, target)
        else:
            rename_noreplace(temp, target)
    except BaseException:
        os.unlink(temp)  # the name is taken (or the move failed): no temp file is left
        raise
    if durable and sync_folder:
        fsync_dir(folder)
    return target


# Errors that say the daemon (or the machine) is short of something, not that the
# file in hand is bad: a job that meets one of them waits and is tried again.
RESOURCE_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.ENOSPC, errno.EDQUOT,
     errno.EAGAIN, errno.EINTR, errno.EIO, errno.EROFS}
)  # fmt: skip


def is_resource_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS


class UnsafeFile(Exception):
    """A file in the spool that spoold refuses to read (a link, a FIFO, too big...)."""

    kind = "unsafe_file"  # its rejection kind (spoold.job.REJECTION_KINDS)


class TooLarge(UnsafeFile):
    """A file over ``max_job_bytes``."""

    kind = "too_large"


class LinkedFile(UnsafeFile):
    """A plain file with ``links`` hard links (not 1); ``info`` says which inode and since when.

    Its reader decides: a link from outside the spool is refused, the twin a
    move's link + unlink fallback leaves for a moment is waited out.
    """

    def __init__(self, info: os.stat_result, links: int) -> None:
        super().__init__(f"has {links} hard links; a job file must have exactly one")
        self.info = info
        self.links = links


def link_count(path: str | Path, fd: int | None = None) -> int:
    """The file's hard links as the filesystem says now, not as a cache remembers.

    On FUSE the kernel keeps a name's attributes for a second: right after a
    link + unlink move the surviving name may still show two links. statx
    with AT_STATX_FORCE_SYNC asks the filesystem itself (on ext4 it is a
    plain stat). ``fd``, if given, is the open file (``path`` is then only
    for errors).
    """
    if _statx is None:
        return (os.fstat(fd) if fd is not None else os.lstat(path)).st_nlink
    buffer = ctypes.create_string_buffer(256)
    if fd is not None:
        status = _statx(fd, b"", _AT_EMPTY_PATH | _AT_STATX_FORCE_SYNC, _STATX_NLINK, buffer)
    else:
        flags = _AT_SYMLINK_NOFOLLOW | _AT_STATX_FORCE_SYNC
        status = _statx(_AT_FDCWD, os.fsencode(path), flags, _STATX_NLINK, buffer)
    if status != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return int.from_bytes(buffer.raw[_STATX_NLINK_OFFSET : _STATX_NLINK_OFFSET + 4], "little")


@dataclass(frozen=True)
class FileContent:
    """The bytes of a job file and the facts about it read from the same open file."""

    data: bytes
    mtime: float
    uid: int
    gid: int


def read_regular(path: Path | str, max_bytes: int) -> FileContent:
    """Read a plain file of at most ``max_bytes`` without following links or blocking.

    Raises FileNotFoundError if it is gone, UnsafeFile with a reason for
    anything that is not a plain, singly-linked file within the size cap.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile("is a symbolic link; spoold never follows links") from None
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
            raise UnsafeFile("is not a regular file (a socket or device)") from None
        raise
    try:
        info = os.fstat(fd)
        _check_plain(info, max_bytes, path, fd)
        data = _read_capped(fd, max_bytes, info.st_size)
    finally:
        os.close(fd)
    return FileContent(data=data, mtime=info.st_mtime, uid=info.st_uid, gid=info.st_gid)


def _check_plain(info: os.stat_result, max_bytes: int, path: Path | str, fd: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile("is not a regular file")
    if info.st_nlink != 1:
        links = link_count(path, fd)  # a FUSE cache may still show a link that is gone
        if links != 1:
            raise LinkedFile(info, links)
    if info.st_size > max_bytes:
        raise TooLarge(f"is {info.st_size} bytes, more than max_job_bytes ({max_bytes})")


def _read_capped(fd: int, max_bytes: int, expected: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        # The size fstat gave, plus one byte to see the end (or growth): a job file
        # is a few hundred bytes, and a max_job_bytes buffer would be mapped per read.
        asked = min(expected + 1 if not chunks else 65536, max_bytes + 1 - total)
        chunk = os.read(fd, asked)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:  # the file grew after fstat
            raise TooLarge(f"grew past max_job_bytes ({max_bytes}) while being read")
        if len(chunk) < asked:  # a short read of a plain file is its end
            return b"".join(chunks)
