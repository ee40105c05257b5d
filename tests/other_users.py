"""What the tests that act as other users share: groups of a module's own, and a copy of
spoold those users may read.

Done for real as root: ``groupadd`` and ``groupdel`` (Debian's passwd) and ``setpriv``
(util-linux), which the callers use to run commands as other uids.
"""

from __future__ import annotations

import atexit
import functools
import grp
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import ROOT


@contextmanager
def temporary_groups(*prefixes: str) -> Iterator[list[tuple[str, int]]]:
    """One system group per prefix, named ``<prefix>-<random>``, removed afterwards: their
    (name, gid) in order. Skips the test where the tools are missing."""
    if not (shutil.which("groupadd") and shutil.which("groupdel") and shutil.which("setpriv")):
        pytest.skip("groupadd, groupdel and setpriv are needed (Debian: passwd, util-linux)")
    suffix = uuid.uuid4().hex[:6]
    names = [f"{prefix}-{suffix}" for prefix in prefixes]
    for name in names:
        subprocess.run(["groupadd", "--system", name], check=True)
    try:
        yield [(name, grp.getgrnam(name).gr_gid) for name in names]
    finally:
        for name in names:
            subprocess.run(["groupdel", name], check=False)


@functools.cache
def readable_package() -> Path:
    """A copy of spoold that any user may read: the checkout (an editable install points into
    it) may sit in a folder only root may enter, as a fresh clone in a 0700 temp folder does."""
    folder = Path(tempfile.mkdtemp(prefix="spoold-users-lib-"))
    atexit.register(shutil.rmtree, folder, True)
    shutil.copytree(
        ROOT / "spoold", folder / "spoold", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder
