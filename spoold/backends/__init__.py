"""Where jobs wait and where their records go: each backend implements ``core/backend.py``.

The file spool (``files/``, the default) and Redis (``redis/``, ``[spool]
backend = "redis"``). The choice is made here and nowhere else (watchdog's
``_get_observer_cls`` habit), and each backend is imported only when it is
chosen: the client imports ``files/fsio`` through
this package, so nothing here may be imported at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spoold.config import Config
    from spoold.core.backend import Catalog, Engine
    from spoold.live import Live


def open_engine(live: Live) -> Engine:
    """The daemon's backend for ``[spool]``; a file spool is created and locked here.

    Raises SpoolLocked if another daemon holds the spool.
    """
    if live.config.spool.backend == "redis":
        from spoold.backends.redis.engine import RedisEngine

        return RedisEngine.open_locked(live)
    from spoold.backends.files.engine import FileEngine

    return FileEngine.open_locked(live)


def open_catalog(config: Config) -> Catalog:
    """The CLI's view of the jobs and records of ``[spool]`` (Redis connects at its first call)."""
    if config.spool.backend == "redis":
        from spoold.backends.redis.catalog import RedisCatalog

        return RedisCatalog(config)
    from spoold.backends.files.catalog import FileCatalog

    return FileCatalog(config)
