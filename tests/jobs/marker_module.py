"""Importing this module leaves a mark: the tests prove the daemon never imports it.

It creates the file named by ``$SPOOLD_TEST_MARKER`` (the harness sets it to
a path in the test's tmp dir for every daemon it starts), or
``marker-module-imported`` in the current directory when that is unset.
"""

from __future__ import annotations

import os
from pathlib import Path

Path(os.environ.get("SPOOLD_TEST_MARKER", "marker-module-imported")).touch()


class Marked:
    """A class whose module runs code on import; it is never on the allowlist."""

    def run(self) -> str:
        return "ran"
