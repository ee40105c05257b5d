"""Talking to Redis: one connection per process, the functions library, and errors as OSError.

Every state change is a call to a function of ``library.lua`` (``FCALL``),
atomic on the server. redis-py's automatic retries are off on every
connection spoold opens: a re-sent ``claim`` would take a second job and
orphan the first until its lease ran out, so a failed call is the caller's
to handle (the daemon holds what it could not file and tries again; a
client raises). A call that cannot reach Redis, or that Redis refuses for
want of memory, raises ``RedisUnavailable``, an ``OSError``: the daemon's
loop and its held filings treat it as they treat a full disk.

redis is imported here and only here, when the Redis backend is chosen.
"""

from __future__ import annotations

import errno
from importlib import resources
from typing import TYPE_CHECKING, Any

from spoold.config import SpoolSettings
from spoold.core.backend import Unavailable

if TYPE_CHECKING:
    import redis

LIBRARY_NAME = "spoold_v1"  # the name in library.lua's first line; a new version, a new name


class RedisUnavailable(Unavailable):
    """Redis could not be reached, or refused the call for want of memory."""


def prefix(spool: SpoolSettings) -> str:
    """The spool's key prefix: its name inside a hash tag, so Cluster keeps it in one slot."""
    return f"spoold:{{{spool.name}}}:"


FILED = "filed:"  # + a job's id: the channel library.lua's spoold_finish says the filing on


def connect(spool: SpoolSettings, *, single: bool = False) -> redis.Redis:
    """A client for ``[spool] url``: calls bounded by ``redis_timeout``, never re-sent.

    ``single``: every call on one connection of its own instead of one lent by the pool
    for each call (the daemon's, which makes two calls a job from one thread; the pool's
    lending and its check of the pid took 8.5 % of its samples in W1). Pipelines and
    subscriptions still take connections of their own from the pool.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        spool.url,
        socket_timeout=spool.redis_timeout,
        socket_connect_timeout=spool.redis_timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        driver_info=None,  # no CLIENT SETINFO: a connection costs two round trips less
        single_connection_client=single,
    )


def safe_url(url: str) -> str:
    """The URL without its password (or user name), for a message."""
    scheme, sep, rest = url.partition("://")
    _credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{host}" if at else url


def library_source() -> str:
    return resources.files(__package__).joinpath("library.lua").read_text(encoding="utf-8")


def load_library(client: redis.Redis) -> None:
    """Load (or replace) the functions library: a restarted Redis without its AOF loses it."""
    call(client.function_load, library_source(), replace=True)


def fcall(client: redis.Redis, function: str, key: str, *args: Any) -> Any:
    """Call one function of the library, loading the library first if Redis lost it."""
    import redis

    try:
        return call(client.fcall, function, 1, key, *args)
    except redis.ResponseError as exc:
        if "Function not found" not in str(exc):
            raise
    load_library(client)
    return call(client.fcall, function, 1, key, *args)


def call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """``method(*args)``, with Redis's trouble turned into RedisUnavailable."""
    import redis

    try:
        return method(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        reason = shorter(why(exc))
        raise RedisUnavailable(errno.ECONNREFUSED, f"cannot reach Redis: {reason}") from None
    except redis.exceptions.OutOfMemoryError as exc:  # maxmemory with noeviction: a full disk
        raise RedisUnavailable(errno.ENOSPC, f"Redis is out of memory: {why(exc)}") from None


# A ready member is "<age, 16 digits><seq, 20 digits>:<id>" (library.lua's ready_member).
READY_AGE_DIGITS = 16
READY_SEQ_DIGITS = 20


def why(exc: Exception) -> str:
    """What Redis or redis-py said, on one line."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__).rstrip(".")


def shorter(said: str) -> str:
    """redis-py's "Error 111 connecting to host:6379. Connection refused" as its reason (the
    address is said by the caller, as the URL the config named)."""
    head, sep, reason = said.rpartition(". ")
    if sep and head.startswith("Error ") and " connecting to " in head:
        return reason.rstrip(".")
    return said.rstrip(".")


def text(value: Any) -> str:
    """A reply's bytes (or number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def held_back_in(client: redis.Redis, key: str) -> dict[str, int]:
    """The ready jobs set aside in their class's lane (its class was at its limit)."""
    classes = [text(name) for name in call(client.smembers, key + "lanes")]
    pipe = client.pipeline(transaction=False)
    for class_path in classes:
        pipe.zcard(f"{key}lane:{class_path}")
    sizes = call(pipe.execute) if classes else []
    return {name: size for name, size in zip(classes, sizes, strict=True) if size}
