"""The real redis-server helper (tests/redis_server.py) works: it serves, it is durable, it goes.

Each test starts its own redis-server (Debian's, on a free port, with its own
folder); without one they skip, and in CI they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness import children_of, pid_alive, processes_with_token
from redis_server import RedisServer, request, require

if TYPE_CHECKING:
    import redis


@pytest.fixture
def redis_available() -> None:
    """For a test that starts its own servers: skip (fail in CI) as the fixture does."""
    require()


@contextmanager
def client(server: RedisServer) -> Iterator[redis.Redis]:
    """A redis-py client of ``server`` that answers in str; closed at the end."""
    import redis

    with redis.Redis.from_url(server.url, decode_responses=True) as connection:
        yield connection


def test_it_answers_ping_on_its_own_port(redis_server: RedisServer, leak_check: str) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert request(redis_server.port, "PING") == b"+PONG"
    with client(redis_server) as connection:
        assert connection.ping() is True
        assert connection.info("server")["process_id"] == redis_server.pid
    # The leak check finds it both ways: a child of pytest, with the test's token.
    assert redis_server.pid in children_of(os.getpid())
    assert redis_server.pid in processes_with_token(leak_check)


def test_it_is_configured_to_lose_nothing(redis_server: RedisServer) -> None:
    with client(redis_server) as connection:
        config = connection.config_get("*")
    assert config["appendfsync"] == "always"
    assert config["appendonly"] == "yes"
    assert config["save"] == ""
    assert config["maxmemory-policy"] == "noeviction"
    assert config["bind"] == "127.0.0.1"
    assert Path(str(config["dir"])) == redis_server.directory
    assert Path(str(config["logfile"])) == redis_server.log_path
    assert redis_server.log_path.is_file()
    assert redis_server.aof_folder.is_dir()


def test_a_write_survives_a_sigkill_and_a_restart(redis_server: RedisServer) -> None:
    with client(redis_server) as connection:
        assert connection.set("spoold:test", "kept")
        connection.rpush("spoold:list", "a", "b", "c")
    first_pid, port = redis_server.pid, redis_server.port

    redis_server.kill()
    assert not pid_alive(first_pid)
    assert not redis_server.running

    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.pid != first_pid
    with client(redis_server) as connection:
        assert connection.get("spoold:test") == "kept"
        assert connection.lrange("spoold:list", 0, -1) == ["a", "b", "c"]


def test_stop_shuts_it_down_and_restart_brings_the_data_back(redis_server: RedisServer) -> None:
    with client(redis_server) as connection:
        connection.set("spoold:test", "kept")
    pid = redis_server.pid
    assert redis_server.stop() == 0
    assert not pid_alive(pid)
    assert redis_server.stop() == 0  # again: nothing to do
    redis_server.restart()
    with client(redis_server) as connection:
        assert connection.get("spoold:test") == "kept"


@pytest.mark.usefixtures("redis_available")
def test_options_and_the_context_manager(tmp_path: Path, leak_check: str) -> None:
    """``appendfsync`` and ``extra`` reach the server; leaving the block stops it."""
    server = RedisServer(
        tmp_path / "redis", appendfsync="everysec", extra=["--databases", "4"], token=leak_check
    )
    with server:
        pid = server.pid
        with client(server) as connection:
            assert connection.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert connection.config_get("databases") == {"databases": "4"}
    assert not pid_alive(pid)
    assert not server.running


@pytest.mark.usefixtures("redis_available")
def test_a_server_that_cannot_start_raises_with_its_log(tmp_path: Path, leak_check: str) -> None:
    server = RedisServer(tmp_path / "redis", extra=["--no-such-directive", "x"], token=leak_check)
    with pytest.raises(RuntimeError, match="exited with 1 before it answered PING") as failure:
        server.start()
    assert "no-such-directive" in str(failure.value)  # the log's tail says why
    assert not server.running
