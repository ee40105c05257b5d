"""Is this Redis as durable as the file spool? Its persistence settings, checked.

The file spool's promise (``fsync = true``) is that an acknowledged job
survives a power cut. Redis keeps it only with ``appendonly yes`` and
``appendfsync always``; and with ``maxmemory-policy noeviction`` it refuses
a write it has no room for rather than evict a job. With ``[spool]
require_durable = true`` (the default) the daemon and ``spoold check``
refuse anything less, naming the setting; with ``false`` they warn at each
start. README "Redis" has the table of what each setting loses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from spoold.backends.redis.connection import call
from spoold.config import ConfigError, SpoolSettings

if TYPE_CHECKING:
    import redis

WANTED = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}


def problems(client: redis.Redis) -> list[str]:
    """What falls short, one phrase each ("appendfsync is everysec, not always")."""
    import redis

    try:
        found = {key: _get(client, key) for key in WANTED}
    except redis.ResponseError as exc:
        return [f"its settings cannot be read (CONFIG GET: {exc})"]
    return [
        f"{key} is {found[key] or 'unset'}, not {wanted}"
        for key, wanted in WANTED.items()
        if found[key] != wanted
    ]


def _get(client: redis.Redis, key: str) -> str:
    values = call(client.config_get, key)
    value = values.get(key, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def require(client: redis.Redis, spool: SpoolSettings) -> None:
    """Refuse (ConfigError) a Redis that can lose acknowledged jobs, unless told to accept it."""
    found = problems(client)
    if not found:
        return
    what = "; ".join(found)
    if spool.require_durable:
        raise ConfigError(
            f"[spool] url: this Redis can lose acknowledged jobs: {what}. Set it so in "
            "redis.conf, or set [spool] require_durable = false to accept the risk"
        )
    logger.warning("this Redis can lose acknowledged jobs ({}); accepted because [spool] "
                   "require_durable = false", what)  # fmt: skip
