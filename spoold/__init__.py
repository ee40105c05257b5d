"""spoold: background jobs for one Linux host, from a JSON file spool.

The public API is the client: ``run_background_job`` (and its Laravel-style
alias ``runBackgroundJob``) writes one job file and returns its id; ``wait`` and
``cancel`` ask the daemon about one of the caller's own jobs. Importing
this package loads nothing heavier than the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spoold.client import (
        cancel,
        follow_up,
        run_background_job,
        runBackgroundJob,
        unique_key_for,
        wait,
    )

__all__ = [
    "__version__",
    "cancel",
    "follow_up",
    "runBackgroundJob",
    "run_background_job",
    "unique_key_for",
    "wait",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use: the daemon's launcher imports this package too, and
    # every module it holds makes each fork of it dearer.
    if name in __all__ and name != "__version__":
        from spoold import client

        return getattr(client, name)
    raise AttributeError(f"module 'spoold' has no attribute {name!r}")
