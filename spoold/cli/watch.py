"""``spoold status --watch N``: the status every N seconds as plain text (pipe-friendly,
no escape codes), each round under a timestamp, with the daemons' figures."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from spoold.cli.render import clean
from spoold.cli.view import Stopped, read_part, stats_summary, stop_on_signal
from spoold.core.backend import Catalog

# -- status --watch --


def watch_status(print_round: Callable[[], None], catalog: Catalog, interval: float) -> int:
    """Print ``spoold status`` every ``interval`` seconds under a timestamp line until
    Ctrl-C or SIGTERM (exit status 0). A round the backend cannot answer says so and
    the next one tries again."""
    stream = sys.stdout
    handlers = {
        signum: signal.signal(signum, stop_on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        first = True
        while True:
            if not first:
                print(file=stream)
            first = False
            _watch_round(print_round, catalog, stream)
            stream.flush()
            time.sleep(interval)
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _watch_round(print_round: Callable[[], None], catalog: Catalog, stream: TextIO) -> None:
    now = time.time()
    stamp = datetime.fromtimestamp(now).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"--- {stamp} ---", file=stream)
    errors: list[str] = []
    read_part(errors, print_round)
    snapshots = read_part(errors, catalog.stats) or []
    summary = stats_summary(snapshots, now)
    if summary is not None:
        print(summary, file=stream)
    for error in dict.fromkeys(errors):
        print(f"error      {clean(error)}", file=stream)
