"""Replacing a small file whole: a reader sees the old one or the new one, never half.

For what watchers read (the stats snapshot, node_exporter's textfile): written
beside the target under a temporary name, given its mode (and group), renamed
over it. Not fsynced by default (figures that the next interval writes again);
``durable=True`` for what must survive a power cut (the schedules' marks).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from spoold.exec.protocol import write_all

TEMP_PREFIX = ".spoold-"  # every temporary name spoold makes beside a file: never a job's


def replace_file(
    path: Path, data: bytes, *, mode: int, gid: int | None = None, durable: bool = False
) -> None:
    """Put ``data`` at ``path`` with ``mode`` (and group ``gid``), replacing what was there;
    ``durable``: on disk (the file and its folder's entry) before this returns."""
    temporary = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # left by a process that died while writing it
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            write_all(fd, data)
            if gid is not None and os.fstat(fd).st_gid != gid:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, mode)  # after chown, and whatever the umask
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        if durable:
            _fsync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
