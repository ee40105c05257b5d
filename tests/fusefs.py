"""A real file system without ``renameat2(RENAME_NOREPLACE)``: Debian's bindfs.

bindfs is a FUSE passthrough that answers ``RENAME_NOREPLACE`` with EINVAL,
as many FUSE and network file systems do, so every no-clobber move on it
takes spoold's fallback (``link`` then ``unlink``). Tests put a spool on it
to prove the fallback loses, rejects and doubles nothing. ``.ci/run``
installs it; elsewhere the tests that need it skip with one clear line.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def noreplace_refused(folder: Path) -> bool:
    """True if ``renameat2(RENAME_NOREPLACE)`` fails with EINVAL in ``folder``."""
    libc = ctypes.CDLL(None, use_errno=True)
    source, target = folder / ".probe-a", folder / ".probe-b"
    source.touch()
    try:
        status = libc.renameat2(-100, bytes(source), -100, bytes(target), 1)
        refused = status != 0 and ctypes.get_errno() == errno.EINVAL
    finally:
        for path in (source, target):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return refused


@contextlib.contextmanager
def bindfs(source: Path, mount_point: Path) -> Iterator[Path]:
    """Mount ``source`` at ``mount_point`` with bindfs; unmount at the end.

    Skips the test (one line) where bindfs or FUSE is not available, except
    in CI (``CI=true``), where that is a failure: .ci/run installs bindfs.
    """
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bindfs is needed here: {reason}", pytrace=False)
        pytest.skip(reason)
    source.mkdir(parents=True, exist_ok=True)
    mount_point.mkdir(parents=True, exist_ok=True)
    # -o direct_io off, default caching: the point is the missing flag, not speed.
    result = subprocess.run(
        ["bindfs", "--no-allow-other", str(source), str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"bindfs did not mount: {result.stderr.strip()}", pytrace=False)
    try:
        assert noreplace_refused(mount_point), "bindfs honoured RENAME_NOREPLACE: no fallback"
        yield mount_point
    finally:
        _unmount(mount_point)


def _unavailable() -> str | None:
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install bindfs)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse here"
    if os.geteuid() != 0:
        return "mounting bindfs here needs root"
    return None


def _unmount(mount_point: Path) -> None:
    """fusermount -u, retried briefly: a process that just exited may still hold it."""
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(
            ["fusermount", "-u", str(mount_point)], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if result.returncode != 0:
        subprocess.run(["fusermount", "-uz", str(mount_point)], check=False)
