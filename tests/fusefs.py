"""A real file system without ``renameat2(RENAME_NOREPLACE)`` for the tests: bindfs.

On it every no-clobber move takes spoold's fallback (``link`` then
``unlink``); tests put a spool there to prove the fallback loses, rejects
and doubles nothing. The mounting is ``bench/bindfs.py``'s (the fallback's
benchmark uses it too). ``.ci/run`` installs bindfs; elsewhere the tests
that need it skip with one clear line, and in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.bindfs import mounted, unavailable


@contextlib.contextmanager
def bindfs(source: Path, mount_point: Path) -> Iterator[Path]:
    """Mount ``source`` at ``mount_point`` with bindfs for a test; unmount at the end."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bindfs is needed here: {reason}", pytrace=False)
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        try:
            mount = stack.enter_context(mounted(source, mount_point))
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield mount
