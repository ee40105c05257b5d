"""A real ``redis-server`` for the tests of the Redis backend: started, killed, restarted.

The server itself is ``bench/redisserver.py``'s (the bench runs the same one):
a child process on a free port of 127.0.0.1 with its own data folder, so that
a test can SIGKILL it and start it again on the same port and folder, where
it reloads what it had from its append-only file, with the durable settings
the backend asks for (``appendonly yes``, ``appendfsync always``, no RDB
snapshots, ``maxmemory-policy noeviction``). ``start()`` polls until it
answers PING as the process we started, within a deadline; a server that dies
or does not answer raises ``RuntimeError`` with the tail of its log.

What the tests add here: the leak check's token and pytest's skip or fail.
The ``redis_server`` fixture (tests/conftest.py) gives each test its own server
and stops it at teardown; it passes the leak check's token, which goes into the
server's environment so that a server left running fails the test (the server
runs with ``set-proc-title no``: its own title would overwrite that environment). ``.ci/run``
installs redis-server; elsewhere the tests that need it skip with one clear line,
and in CI (``CI=true``) they fail (``require()``).

``RedisSpool`` and the ``redis_spool`` fixture (tests/conftest.py) read what a
daemon left in the server, for the tests of the daemon on Redis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from harness import wait_for

from bench import redisserver
from bench.redisserver import free_port, request

__all__ = [
    "BUSY_SCRIPT",
    "KEY",
    "NAME",
    "RedisServer",
    "RedisSpool",
    "free_port",
    "request",
    "require",
]

NAME = "test"  # the spool's name in the daemon tests' configs
KEY = f"spoold:{{{NAME}}}:"  # its keys' prefix

# Keeps the server busy for ARGV[1] ms: every other client waits (TIME advances in a script).
BUSY_SCRIPT = """
local function ms() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end
local stop, n = ms() + tonumber(ARGV[1]), 0
while ms() < stop and n < 1e9 do n = n + 1 end
return n
"""


def unavailable() -> str | None:
    """Why the Redis backend's tests cannot run here (a skip reason), or None."""
    lacking = redisserver.missing()
    if lacking == redisserver.EXECUTABLE:
        return (
            "redis-server is not installed (apt-get install redis-server)"
            " — the Redis backend's tests need it"
        )
    if lacking == redisserver.PACKAGE:
        return (
            "the Python package redis is not installed (pip install 'spoold[redis]')"
            " — the Redis backend's tests need it"
        )
    return None


def require() -> None:
    """Skip the calling test when redis-server or redis-py is missing; fail it in CI."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        if redisserver.missing() == redisserver.EXECUTABLE:
            pytest.fail("redis-server is missing; .ci/run installs it", pytrace=False)
        pytest.fail(
            "the Python package redis is missing; `pip install -e '.[dev]'` installs it",
            pytrace=False,
        )
    pytest.skip(reason)


class RedisServer(redisserver.RedisServer):
    """The bench's server, with the leak check's token in its environment.

    ``RedisServer(folder, token=leak_check)``; the rest is ``bench/redisserver.py``'s.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendfsync: str = "always",
        extra: Sequence[str] = (),
        token: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """``token``: the leak check's, put in the server's environment as SPOOLD_TEST_TOKEN
        (the check finds a server left running by it); the rest as ``bench``'s."""
        env = dict(os.environ)
        if token is not None:
            env["SPOOLD_TEST_TOKEN"] = token
        super().__init__(
            directory,
            env,
            appendfsync=appendfsync,
            extra=extra,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )
        self.token = token


class RedisSpool:
    """What a test reads of a spool in Redis (the spool named ``NAME``)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def record(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(f"{KEY}job:{job_id}", "record")
        return json.loads(raw) if raw else None

    def state(self, job_id: str) -> str | None:
        raw = self.client.hget(f"{KEY}job:{job_id}", "state")
        return raw.decode() if raw else None

    def ids(self, index: str) -> list[str]:
        return [member.decode() for member in self.client.zrange(KEY + index, 0, -1)]

    def wait_record(self, job_id: str, timeout: float = 15.0) -> dict[str, Any]:
        return wait_for(lambda: self.record(job_id), timeout, f"no record for {job_id}")
