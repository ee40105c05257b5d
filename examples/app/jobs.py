"""Demo jobs that the example config allows, one for each thing a job can do.

The worker makes each class with no arguments and calls the method with the
job's params. ``FlakyJob`` shows retries; ``SlowJob`` shows concurrency,
timeouts and a graceful stop.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any


class SomeClass:
    """The Laravel README's example: ``SomeClass.some_method(param1, param2)``."""

    def some_method(self, *params: Any) -> dict[str, Any]:
        print(f"SomeClass.some_method called with {params!r}")
        return {"params": list(params)}


class ExampleJob:
    """Work on a piece of data and return a small summary of it."""

    def process_data(self, data: Any) -> dict[str, Any]:
        text = str(data)
        return {"type": type(data).__name__, "length": len(text), "preview": text[:40]}


class SimpleJob:
    """A job with no params."""

    def execute(self) -> str:
        return "executed"


class FlakyJob:
    """Fails on its first ``failures`` attempts for a ``key``, then succeeds.

    It counts attempts per key in a file under ``$SPOOLD_EXAMPLE_STATE``
    (default: the system's temp folder), since each attempt runs in a fresh
    process. The file is removed on success, so the same key fails afresh
    the next time.
    """

    def run(self, key: str, failures: int = 1) -> dict[str, Any]:
        counter = _state_file(key)
        attempt = int(counter.read_text() or "0") + 1 if counter.exists() else 1
        if attempt <= failures:
            counter.write_text(str(attempt))
            raise RuntimeError(f"FlakyJob {key}: failing on purpose, attempt {attempt}")
        counter.unlink(missing_ok=True)
        return {"key": key, "succeeded_on_attempt": attempt}


def _state_file(key: str) -> Path:
    folder = Path(os.environ.get("SPOOLD_EXAMPLE_STATE", tempfile.gettempdir()))
    safe_key = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:100]  # the key is user input
    return folder / f"spoold-flaky-{safe_key}.count"


class SlowJob:
    """Sleeps for ``seconds`` and returns them."""

    def run(self, seconds: float = 3) -> float:
        time.sleep(seconds)
        return seconds
