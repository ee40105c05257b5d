"""A cancel racing the job's own end, a few hundred times, on the file spool and on Redis.

A real daemon (on Redis: two, as hosts "a" and "b") runs Sleeper jobs of a random
0-50 ms in reused workers (``max_jobs_per_process = 100``). Four threads each submit
a job, wait for its Sleeper line (it has started), sleep until a random moment within
20 ms of its expected end, and cancel it with the client's ``cancel()``, in process,
over the daemon's control socket (on Redis, of either host at random: the one that
runs the job stops it itself, the other marks it in Redis and tells it). 300 jobs per
backend. Whichever wins, every job must end in exactly one record, ``done`` (one
attempt, "ok") or ``cancelled`` (one attempt, "cancelled"), never failed, never
retried, never run twice, and the client's answer must agree: True exactly when the
record says cancelled. Nothing waits or runs afterwards.

Chaos only (``make chaos``); ``pytest -s -m chaos tests/test_cancel_race.py`` prints a
line per backend: how many ended done, how many cancelled, the wall time and the seed.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Spool, read_lines, wait_for, write_config
from redis_server import NAME, RedisSpool

from spoold.client import cancel, run_background_job

pytestmark = pytest.mark.chaos

JOBS = 300
THREADS = 4
LONGEST = 0.05  # seconds a job sleeps at most
AROUND = 0.02  # a cancel comes this close to the job's expected end, either side
WORKER = {"concurrency": THREADS, "max_jobs_per_process": 100}


@dataclass
class Race:
    """One job and its cancel."""

    index: int
    seconds: float
    started: Path
    job_id: str = ""
    asked: str = ""  # the host folder whose daemon was asked
    answer: bool | None = None
    error: str = ""


@dataclass
class Backend:
    """What the race needs of a backend: a submit, and the folders whose daemons answer."""

    name: str
    submit: Callable[[float, Path], str]
    folders: list[Path]
    daemons: list[Daemon]


def file_backend(start_daemon: Callable[..., Daemon], spool: Spool) -> Backend:
    daemon = start_daemon(worker=WORKER)

    def submit(seconds: float, started: Path) -> str:
        params = [seconds, str(started)]
        return run_background_job("testjobs.Sleeper", "run", params, spool=spool.root)

    return Backend("files", submit, [spool.root], [daemon])


def redis_backend(
    request: pytest.FixtureRequest,
    start_daemon: Callable[..., Daemon],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Backend:
    server = request.getfixturevalue("redis_server")
    folders, daemons = [], []
    for host in ("a", "b"):
        spool = {"backend": "redis", "url": server.url, "name": NAME, "host_id": host,
                 "lease": 5.0, "redis_timeout": 2.0}  # fmt: skip
        folder = Spool(tmp_path / f"host-{host}").create()
        config = write_config(tmp_path / f"host-{host}.toml", folder, {"spool": spool,
                              "worker": WORKER})  # fmt: skip
        folders.append(folder.root)
        daemons.append(start_daemon(config=config))
    monkeypatch.setenv("SPOOLD_CONFIG", str(config))  # the client submits to Redis
    monkeypatch.delenv("SPOOLD_SPOOL_DIR", raising=False)

    def submit(seconds: float, started: Path) -> str:
        return run_background_job("testjobs.Sleeper", "run", [seconds, str(started)])

    return Backend("redis", submit, folders, daemons)


def run_one(backend: Backend, race: Race, rng: random.Random) -> None:
    """Submit, wait for the job to start, cancel it near its expected end."""
    race.job_id = backend.submit(race.seconds, race.started)
    wait_for(lambda: read_lines(race.started), timeout=30, pause=lambda: time.sleep(0.001),
             message=f"job {race.index} ({race.job_id}) never started")  # fmt: skip
    time.sleep(max(0.0, race.seconds + rng.uniform(-AROUND, AROUND)))
    folder = rng.choice(backend.folders)
    race.asked = folder.name
    try:
        race.answer = cancel(race.job_id, spool=folder)
    except (OSError, LookupError) as exc:
        race.error = f"{type(exc).__name__}: {exc}"


def run_all(backend: Backend, tmp_path: Path, seed: int) -> list[Race]:
    rng = random.Random(seed)
    lines = tmp_path / "started"
    lines.mkdir()
    races = [Race(n, rng.uniform(0.0, LONGEST), lines / str(n)) for n in range(JOBS)]
    seeds = [rng.getrandbits(64) for _ in range(THREADS)]
    failures: list[BaseException] = []
    lock = threading.Lock()

    def lane(lane_number: int) -> None:
        lane_rng = random.Random(seeds[lane_number])
        for race in races[lane_number::THREADS]:
            try:
                run_one(backend, race, lane_rng)
            except BaseException as exc:  # a job that never started: stop this lane
                with lock:
                    failures.append(exc)
                return

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lane, range(THREADS)))
    if failures:
        raise failures[0]
    return races


def check_race(race: Race, state: str | None, record: dict[str, Any] | None) -> str | None:
    """What is wrong with one job's end, or None."""
    said = f"job {race.index} {race.job_id} (cancel answered {race.answer}{race.error})"
    if race.error or record is None:
        return f"{said}: " + ("the cancel raised" if race.error else f"no record ({state})")
    outcomes = [entry.get("outcome") for entry in record.get("history", [])]
    status = record.get("status")
    expected = {"done": ("done", ["ok"]), "cancelled": ("failed", ["cancelled"])}.get(status)
    if expected is None or (state, outcomes) != expected or record.get("attempts") != 1:
        return f"{said}: {status!r} in {state} after attempts {outcomes}"
    runs = len(read_lines(race.started))
    if race.answer != (status == "cancelled") or runs != 1:
        return f"{said}: the record says {status}; it ran {runs} time(s)"
    return None


def summarize(backend: str, races: list[Race], records: list[dict[str, Any] | None],
              wall: float, seed: int, extra: str = "") -> None:  # fmt: skip
    statuses = [(record or {}).get("status") for record in records]
    print(f"\n[cancel race] {backend}: {len(races)} jobs, {statuses.count('done')} done, "
          f"{statuses.count('cancelled')} cancelled, {wall:.1f}s (seed {seed}){extra}")  # fmt: skip


@pytest.mark.parametrize("backend_name", ["files", "redis"])
def test_a_cancel_racing_the_jobs_end_leaves_one_record_that_agrees_with_its_answer(
    backend_name: str,
    request: pytest.FixtureRequest,
    start_daemon: Callable[..., Daemon],
    spool: Spool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = int(os.environ.get("SPOOLD_RACE_SEED") or random.randrange(2**32))
    if backend_name == "files":
        backend = file_backend(start_daemon, spool)
    else:
        backend = redis_backend(request, start_daemon, tmp_path, monkeypatch)
    began = time.monotonic()
    races = run_all(backend, tmp_path, seed)
    wall = time.monotonic() - began

    if backend_name == "files":
        found = [spool.where(race.job_id) for race in races]
        states = [where[0] if len(where) == 1 else ",".join(where) or None for where in found]
        records = [spool.record(race.job_id, state) if state in ("done", "failed") else None
                   for race, state in zip(races, states, strict=True)]  # fmt: skip
        left = {state: spool.job_ids(state) for state in ("incoming", "scheduled", "active")}
        extra = ""
    else:
        redis_spool = RedisSpool(request.getfixturevalue("redis_server").url)
        try:
            states = [redis_spool.state(race.job_id) for race in races]
            records = [redis_spool.record(race.job_id) for race in races]
            left = {index: redis_spool.ids(index) for index in ("ready", "due", "active")}
            filed = redis_spool.ids("idx:done") + redis_spool.ids("idx:failed")
        finally:
            redis_spool.client.close()
        assert sorted(filed) == sorted(race.job_id for race in races), "records not one a job"
        logs = [daemon.log_text() for daemon in backend.daemons]
        runners = [[host for host, log in zip("ab", logs, strict=True)
                    if f"job {race.job_id} started" in log] for race in races]  # fmt: skip
        assert all(len(ran) == 1 for ran in runners), "a job started on no host, or on two"
        remote = sum(ran != [race.asked[-1]] for race, ran in zip(races, runners, strict=True))
        extra = f"; {remote} cancels asked of the other host"
    summarize(backend_name, races, records, wall, seed, extra)

    wrong = [
        problem
        for race, state, record in zip(races, states, records, strict=True)
        if (problem := check_race(race, state, record)) is not None
    ]
    assert not wrong, f"{len(wrong)} of {JOBS} jobs (seed {seed}):\n" + "\n".join(wrong[:20])
    assert left == {name: [] for name in left}, f"jobs left waiting or running: {left}"
