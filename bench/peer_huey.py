"""Huey's side of ``bench.peers``: a ``FileHuey`` or a ``SqliteHuey``, one task.

``PEERS_HUEY_KIND`` (``file`` or ``sqlite``) picks the storage and
``PEERS_HUEY_PATH`` says where it lives (a folder, or the database file), in
the bench's temp folder. Started as ``huey_consumer bench.peer_huey.huey -w 2
-k process`` in the peers' venv. Everything else is Huey's default: results
kept, but not a ``None`` one (``store_none`` False), so nothing is kept of a
task that returns nothing.
"""

import os

from huey import FileHuey, SqliteHuey
from huey.api import Huey

from bench import peerjobs

KIND = os.environ["PEERS_HUEY_KIND"]
PATH = os.environ["PEERS_HUEY_PATH"]

huey: Huey
if KIND == "file":
    huey = FileHuey("spoold-peers", path=PATH)
elif KIND == "sqlite":
    huey = SqliteHuey("spoold-peers", filename=PATH)
else:
    raise ValueError(f"PEERS_HUEY_KIND must be file or sqlite, not {KIND!r}")


@huey.task()
def record(log: str, enqueued: float, sleep: float = 0.0) -> None:
    peerjobs.record(log, enqueued, sleep)
