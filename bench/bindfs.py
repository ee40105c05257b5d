"""bindfs mounts for the benchmarks and the tests of spoold's rename fallback.

bindfs is a FUSE passthrough that answers ``renameat2(RENAME_NOREPLACE)``
with EINVAL, as many FUSE and network filesystems do, so every no-clobber
move on it takes spoold's link + unlink fallback. ``bench/fallback.py``
measures what that costs; ``tests/fusefs.py`` puts test spools on it.
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

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)


def unavailable() -> str | None:
    """Why bindfs cannot be mounted here, or None."""
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install bindfs)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse here"
    if os.geteuid() != 0:
        return "mounting bindfs here needs root"
    return None


def renameat2_noreplace(src: str, dst: str) -> int:
    """The raw call: 0, or the errno it failed with."""
    status = _libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                             _RENAME_NOREPLACE)  # fmt: skip
    return 0 if status == 0 else ctypes.get_errno()


@contextlib.contextmanager
def mounted(source: Path, mount_point: Path) -> Iterator[Path]:
    """``source`` mounted at ``mount_point`` (default caching); unmounted at the end.

    Raises RuntimeError if it does not mount, or if the mount honours
    RENAME_NOREPLACE after all (then nothing would test the fallback).
    """
    source.mkdir(parents=True, exist_ok=True)
    mount_point.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["bindfs", "--no-allow-other", str(source), str(mount_point)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"bindfs did not mount: {result.stderr.strip()}")
    try:
        probe = mount_point / ".probe"
        probe.touch()
        refused = renameat2_noreplace(str(probe), str(mount_point / ".probe-2"))
        for leftover in (probe, mount_point / ".probe-2"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        if refused != errno.EINVAL:
            raise RuntimeError(f"bindfs did not refuse RENAME_NOREPLACE (got {refused})")
        yield mount_point
    finally:
        unmount(mount_point)


def unmount(mount_point: Path) -> None:
    """fusermount -u, retried for a few seconds (a process that just exited may hold it)."""
    deadline = time.monotonic() + 10
    while subprocess.run(["fusermount", "-u", str(mount_point)], capture_output=True,
                         check=False).returncode != 0:  # fmt: skip
        if time.monotonic() > deadline:
            subprocess.run(["fusermount", "-uz", str(mount_point)], check=False)
            return
        time.sleep(0.1)
