"""Shared fixtures: the temp spool, the daemon factory, and the process-leak check."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a checkout without ``pip install -e .`` still tests itself
    sys.path.insert(0, str(ROOT))

from harness import Daemon, Spool, children_of, describe, processes_with_token, write_config  # noqa: E402

DAEMONS = pytest.StashKey[list[Daemon]]()
LEAK_GRACE = 5.0  # seconds a test's processes may take to go after its daemons stopped

StartDaemon = Callable[..., Daemon]


@pytest.fixture(autouse=True)
def leak_check() -> Iterator[str]:
    """Fail a test that leaves a child of pytest, or any process it started, behind.

    Yields a token that the daemon factory puts in every daemon's environment,
    so that orphans (a job's grandchild reparented to init) are found too.
    Runs its check after every other fixture's teardown.
    """
    token = uuid.uuid4().hex
    before = set(children_of(os.getpid()))
    yield token
    leaked = _wait_for_leaks_to_go(token, before)
    for pid in leaked:
        _kill_quietly(pid)
    if leaked:
        pytest.fail("processes left behind:\n" + "\n".join(leaked.values()), pytrace=False)


def _wait_for_leaks_to_go(token: str, before: set[int]) -> dict[int, str]:
    deadline = time.monotonic() + LEAK_GRACE
    while True:
        pids = set(children_of(os.getpid())) - before
        pids |= set(processes_with_token(token))
        pids.discard(os.getpid())
        for pid in list(pids):
            _reap_if_zombie(pid)
        pids = {p for p in pids if Path(f"/proc/{p}").exists()}
        if not pids or time.monotonic() >= deadline:
            return {pid: describe(pid) for pid in pids}
        time.sleep(0.05)


def _reap_if_zombie(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap_if_zombie(pid)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """A fresh spool with its six folders, under the test's tmp dir."""
    return Spool(tmp_path / "spool").create()


@pytest.fixture
def daemon_config(tmp_path: Path, spool: Spool) -> Callable[..., Path]:
    """Write a config for ``spool`` with per-section overrides; return its path.

    ``daemon_config(worker={"concurrency": 1}, allow={...})``
    """
    count = 0

    def make(**overrides: dict[str, Any]) -> Path:
        nonlocal count
        count += 1
        return write_config(tmp_path / f"config-{count}.toml", spool, overrides)

    return make


@pytest.fixture
def start_daemon(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    leak_check: str,
    daemon_config: Callable[..., Path],
) -> Iterator[StartDaemon]:
    """Start the real daemon on the test's spool; stop (and reap) each one at teardown.

    ``start_daemon(*args, ready=True, config=None, env=None, **overrides)``:
    ``args`` go after ``spoold run --config CFG``; ``overrides`` are config
    sections merged into the harness defaults (or ``config`` is a ready config
    path); ``env`` adds variables to the daemon's environment (a test fault:
    ``{"SPOOLD_FAULT": "after_claim"}``); with ``ready`` it waits for READY=1.
    """
    started: list[Daemon] = []
    request.node.stash[DAEMONS] = started

    def start(
        *args: str,
        ready: bool = True,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        **overrides: dict[str, Any],
    ) -> Daemon:
        path = config or daemon_config(**overrides)
        daemon = Daemon(path, tmp_path, leak_check, name=f"daemon-{len(started) + 1}", env=env)
        started.append(daemon)
        daemon.start(*args)
        return daemon.wait_ready() if ready else daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, attach each daemon's log to the report."""
    report = yield
    if report.failed:
        for daemon in item.stash.get(DAEMONS, []):
            report.sections.append((f"log of {daemon.name}", daemon.log_text()[-30000:]))
    return report


@pytest.fixture
def bindfs_spool(tmp_path: Path) -> Iterator[Spool]:
    """A fresh spool on bindfs, where no-clobber moves take the link + unlink fallback."""
    from fusefs import bindfs

    with bindfs(tmp_path / "bindfs-source", tmp_path / "bindfs") as mount_point:
        yield Spool(mount_point / "spool").create()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """What an in-process test's rooms log (the daemon's own loguru logger), line by line."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message).strip()), level="DEBUG")
    yield lines
    logger.remove(sink)


from redis_server import NAME, RedisServer, RedisSpool  # noqa: E402  (light: no redis-py import)
from redis_server import require as require_redis  # noqa: E402


@pytest.fixture
def redis_server(tmp_path: Path, leak_check: str) -> Iterator[RedisServer]:
    """A real redis-server of the test's own (port, folder, AOF), started; stopped at teardown.

    Skips the test when redis-server or redis-py is missing; with ``CI=true`` fails it.
    The leak check's token is in the server's environment, so a leaked one fails too.
    """
    require_redis()
    with RedisServer(tmp_path / "redis", token=leak_check) as server:
        yield server


@pytest.fixture
def redis_spool(redis_server: RedisServer) -> Iterator[RedisSpool]:
    """What the test's daemons left in its Redis (``RedisSpool``); its client closed at the end."""
    spool = RedisSpool(redis_server.url)
    yield spool
    spool.client.close()


@pytest.fixture
def redis_config(
    redis_server: Any, daemon_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """A config for the test's Redis (``SPOOLD_CONFIG`` set to it, for the client):
    ``redis_config(**overrides)``, config sections merged into the harness defaults."""

    def make(**overrides: dict[str, Any]) -> Path:
        spool = {"backend": "redis", "url": redis_server.url, "name": NAME, "redis_timeout": 2.0}
        path = daemon_config(**{**overrides, "spool": {**spool, **overrides.get("spool", {})}})
        monkeypatch.setenv("SPOOLD_CONFIG", str(path))
        monkeypatch.delenv("SPOOLD_SPOOL_DIR", raising=False)
        return path

    return make


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder other users can walk into (pytest's tmp dirs are root-only, 0700): for the
    tests that run commands as other users."""
    folder = Path(tempfile.mkdtemp(prefix="spoold-users-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder)


HOST_LEASE = 2.0  # seconds: short, so that a host's test waits seconds, not minutes


@pytest.fixture
def host_config(
    redis_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """``host_config("a", worker={...})``: a config for host "a" (its own folder) on the
    test's Redis, with a lease of HOST_LEASE; the last one made is the client's
    (``SPOOLD_CONFIG``). Several daemons on one Redis, as simulated hosts."""

    def make(host: str, **overrides: dict[str, Any]) -> Path:
        spool = {"backend": "redis", "url": redis_server.url, "name": NAME, "host_id": host,
                 "lease": HOST_LEASE, "redis_timeout": 2.0,
                 **overrides.pop("spool", {})}  # fmt: skip
        local = Spool(tmp_path / f"host-{host}").create()
        path = write_config(tmp_path / f"host-{host}.toml", local, {"spool": spool, **overrides})
        monkeypatch.setenv("SPOOLD_CONFIG", str(path))
        monkeypatch.delenv("SPOOLD_SPOOL_DIR", raising=False)
        return path

    return make
