"""The systems ``bench.peers`` runs side by side, each with 2 workers, and how each is run.

spoold runs as the rest of the bench runs it (bench/common.py,
bench/workloads.py): ``BenchSpool`` (here ``PeerSpool``, which also
allowlists ``peerjobs.Record``) and the real daemon via ``running_daemon``,
its client in this process. RQ, Celery and Huey run in the peers' venv: their
workers as their own commands (each in a session of its own, so that a work
horse or a pool child is stopped with it), their client as
``bench.peerclient`` (a process per run).

Every session gives a ``Batch``: each job's enqueue time (taken right before
its enqueue call and passed to the job), the time the call returned, and the
job ids. The harness then reads the job log (``LineLog``), whose lines the
jobs write themselves (bench/peerjobs.py), and checks that every enqueued job
wrote exactly one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.common import Appended, BenchDaemon, BenchError, BenchSpool, daemon_env, toml_text
from bench.hosts import TICK, descendants
from bench.peerclient import feed
from bench.workloads import Context, running_daemon
from spoold.client import job_payload, run_background_job, submitter_for
from spoold.config import load_config

RECORD_CLASS = "peerjobs.Record"
WORKERS = 2
POLL = 0.02  # seconds between looks at the job log
STALL = 120.0  # a run with no new line for this long has failed
START_TIMEOUT = 120.0  # workers up, warm-up jobs done
STOP_TIMEOUT = 30.0


@dataclass
class PeerSpool(BenchSpool):
    """A bench spool whose allowlist also has ``peerjobs.Record.record``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        sections = tomllib.loads(self.config.read_text())
        sections.setdefault("allow", {})[RECORD_CLASS] = ["record"]
        self.config.write_text(toml_text(sections))

    def submit_record(self, enqueued: float, sleep: float, *, durable: bool) -> str:
        """``Record.record(job log, enqueued, sleep)`` through the real client, as
        ``BenchSpool.submit`` sends its jobs (files: run_background_job; Redis:
        job_payload + submitter_for)."""
        params = [str(self.job_log), enqueued, sleep]
        if self.redis is None:
            return run_background_job(
                RECORD_CLASS, "record", params, spool=self.root, durable=durable
            )
        submitter = self._submitters.get(durable)
        if submitter is None:
            config = load_config(self.config)
            submitter = self._submitters[durable] = submitter_for(config, durable=durable)
        now = time.time()
        return submitter.submit(job_payload(RECORD_CLASS, "record", params, now=now), now=now)


# -- the systems --


@dataclass
class System:
    """One system under test. ``kind``: spoold, rq, celery or huey; ``options``: how to
    run it; ``keeps_record``: whether it keeps a record of a no-op job returning None
    (what its documentation says; each W1 run also counts what it kept)."""

    name: str
    kind: str
    what: str
    keeps_record: bool
    keeps_record_why: str
    options: dict[str, Any] = field(default_factory=dict)
    needs_redis: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # filled in as it runs
    version: dict[str, str] = field(default_factory=dict)
    workloads: tuple[str, ...] = ("W1", "W2", "W3")  # those it runs
    daemons: int = 1  # spoold daemons on one Redis spool (each with WORKERS slots)
    n_factor: int = 1  # its N is the workload's N times this

    @property
    def needs_venv(self) -> bool:
        return self.kind != "spoold"

    @property
    def slots(self) -> int:
        return WORKERS * self.daemons


SPOOLD_RECORD = "every job's done record: done/<id>.json (on Redis its job hash, in idx:done)"


def _rq(name: str, worker_class: str, what: str) -> System:
    """An RQ system: 2 ``rq worker`` processes of ``worker_class``."""
    return System(
        name,
        "rq",
        f"RQ, {what}, 2 `rq worker` processes",
        True,
        "the job hash rq:job:<id>, kept result_ttl = 500 s after it finished (default)",
        {"worker_class": worker_class, "stop": signal.SIGTERM},
        needs_redis=True,
    )


def all_systems() -> list[System]:
    """Every system, in the order they run (reversed every other run)."""
    return [
        System(
            "spoold-files",
            "spoold",
            "spoold, file spool, default config: a fresh process per attempt "
            "(max_jobs_per_process = 1), fsync on; client durable=True (the default)",
            True,
            SPOOLD_RECORD,
            {"backend": "files", "fsync": True, "per_process": 1, "durable": True},
        ),
        System(
            "spoold-files-reuse",
            "spoold",
            "spoold, file spool, reused workers: max_jobs_per_process = 1000, fsync = false; "
            "client durable=False",
            True,
            SPOOLD_RECORD,
            {"backend": "files", "fsync": False, "per_process": 1000, "durable": False},
        ),
        System(
            "spoold-files-ahead",
            "spoold",
            "spoold-files (the default config) with [worker] send_ahead = true: each slot's "
            "next job waits in the launcher",
            True,
            SPOOLD_RECORD,
            {
                "backend": "files",
                "fsync": True,
                "per_process": 1,
                "durable": True,
                "send_ahead": True,
            },
        ),
        System(
            "spoold-files-reuse-ahead",
            "spoold",
            "spoold-files-reuse with [worker] send_ahead = true",
            True,
            SPOOLD_RECORD,
            {
                "backend": "files",
                "fsync": False,
                "per_process": 1000,
                "durable": False,
                "send_ahead": True,
            },
        ),
        System(
            "spoold-redis-reuse",
            "spoold",
            "spoold, Redis backend on the bench's redis-server (appendfsync always), one "
            "daemon, reused workers: max_jobs_per_process = 1000 (fsync = false and "
            "durable=False change nothing there: Redis fsyncs every write)",
            True,
            SPOOLD_RECORD,
            {"backend": "redis", "fsync": False, "per_process": 1000, "durable": False},
            needs_redis=True,
        ),
        System(
            "spoold-redis-4daemons",
            "spoold",
            "spoold, Redis backend, 4 daemons on the bench's redis-server (each its own "
            "[spool] dir and host_id, the same url and name), concurrency = 2 each (8 slots), "
            "reused workers: max_jobs_per_process = 1000; W3 only, with twice its N",
            True,
            SPOOLD_RECORD,
            {
                "backend": "redis",
                "fsync": False,
                "per_process": 1000,
                "durable": False,
                "cpu": True,
            },
            needs_redis=True,
            workloads=("W3",),
            daemons=4,
            n_factor=2,
        ),
        _rq("rq", "rq.Worker", "the default Worker (forks a work horse per job)"),
        _rq("rq-simple", "rq.SimpleWorker", "SimpleWorker (runs the job in the worker, no fork)"),
        System(
            "celery",
            "celery",
            "Celery, Redis broker, `worker --pool prefork -c 2`, no result backend (the "
            "default), default acks (early) and prefetch (multiplier 4)",
            False,
            "no result backend (the default): nothing is kept of a task once it ran",
            {"stop": signal.SIGTERM, "children": 2},
            needs_redis=True,
        ),
        System(
            "huey-file",
            "huey",
            "Huey, FileHuey (a folder in the bench's temp folder), "
            "`huey_consumer -w 2 -k process`, defaults otherwise",
            False,
            "a result is stored only when the task returns something other than None "
            "(store_none = False, the default)",
            {"storage": "file", "stop": signal.SIGINT, "children": 2},
        ),
        System(
            "huey-sqlite",
            "huey",
            "Huey, SqliteHuey (a database file in the bench's temp folder), "
            "`huey_consumer -w 2 -k process`, defaults otherwise",
            False,
            "a result is stored only when the task returns something other than None "
            "(store_none = False, the default)",
            {"storage": "sqlite", "stop": signal.SIGINT, "children": 2},
        ),
    ]


# -- what a run gives --


@dataclass
class Batch:
    """What the enqueuer did: each job's enqueue time, when its call returned, its id."""

    enqueued: list[float]
    returned: list[float]
    ids: list[str]


@dataclass
class Line:
    enqueued: float
    start: float
    end: float
    pid: int


class LineLog:
    """The lines the jobs append (``<enqueued> <start> <end> <pid>``), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.appended = Appended(path)
        self.lines: list[Line] = []

    def poll(self) -> int:
        for raw in self.appended.new_lines():
            enqueued, start, end, pid = raw.split()
            self.lines.append(Line(float(enqueued), float(start), float(end), int(pid)))
        return len(self.lines)


def check_lines(log: LineLog, batch: Batch) -> dict[float, Line]:
    """Every enqueued job wrote exactly one line, and no other line is there."""
    by_time: dict[float, Line] = {}
    twice = 0
    for line in log.lines:
        twice += line.enqueued in by_time
        by_time[line.enqueued] = line
    sent = set(batch.enqueued)
    missing, unknown = sent - set(by_time), set(by_time) - sent
    if twice or missing or unknown or len(log.lines) != len(sent):
        raise BenchError(
            f"job log: {len(log.lines)} lines for {len(sent)} jobs: {len(missing)} jobs "
            f"wrote none, {twice} wrote more than one, {len(unknown)} lines of no job sent"
        )
    return by_time


# -- sessions: a system's workers up and idle, its client ready --


class Session:
    log: Path
    extra: dict[str, Any]  # figures of its own (the 4 daemons' CPU), set by finish()

    def feed(self, n: int, interval: float, sleep: float) -> Batch:
        raise NotImplementedError

    def check(self) -> None:
        """Raise BenchError if the system cannot finish the run (a worker died...)."""

    def finish(self, batch: Batch) -> int:
        """Stop the workers; how many of the batch's jobs the system keeps a record of."""
        raise NotImplementedError


def wait_lines(session: Session, log: LineLog, n: int) -> None:
    """Wait until N lines are in the job log; fail loudly on a stall or a dead worker."""
    deadline = time.monotonic() + 60 + n * 0.1
    seen, changed = log.lines.copy(), time.monotonic()
    next_check = 0.0
    while log.poll() < n:
        now = time.monotonic()
        if len(log.lines) != len(seen):
            seen, changed = log.lines.copy(), now
        if now >= next_check:
            next_check = now + 1.0
            session.check()
        if now - changed > STALL or now > deadline:
            raise BenchError(f"only {len(log.lines)} of {n} jobs wrote their line (stalled)")
        time.sleep(POLL)


def tree_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime (clock ticks) of ``pid`` and every descendant now
    alive: what the tree has used so far, a reaped child's share being in its parent's
    cutime/cstime (a process already gone and reaped outside the tree is not seen)."""
    used = 0
    for each in (pid, *descendants(pid)):
        try:
            text = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()  # from the 3rd field (state) on
        used += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime: 14th..17th
    return used


class TreeCpu:
    """CPU of process trees (roots and all their descendants) from now to ``stop()``."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.start = sum(tree_ticks(pid) for pid in roots)
        self.began = time.monotonic()

    def stop(self) -> float:
        """Percent of one core over the interval."""
        wall = time.monotonic() - self.began
        return 100.0 * (sum(tree_ticks(pid) for pid in self.roots) - self.start) / TICK / wall


class SpooldSession(Session):
    """One or more daemons on one spool (several: one Redis name, a spool dir each); the
    client submits through the first's config."""

    def __init__(
        self, spool: PeerSpool, daemons: list[Any], durable: bool, redis_pid: int | None = None,
        cpu: bool = False,
    ) -> None:  # fmt: skip
        self.spool = spool
        self.daemons = daemons
        self.durable = durable
        self.log = spool.job_log
        self.extra = {}
        self.cpu = cpu
        self.redis_pid = redis_pid
        self.meters: tuple[TreeCpu, TreeCpu | None] | None = None

    def feed(self, n: int, interval: float, sleep: float) -> Batch:
        if self.cpu:  # from just before the first enqueue to every done record found
            server = TreeCpu([self.redis_pid]) if self.redis_pid is not None else None
            self.meters = (TreeCpu([d.pid for d in self.daemons]), server)
        enqueued, returned, ids = feed(
            lambda t: self.spool.submit_record(t, sleep, durable=self.durable), n, interval
        )
        return Batch(enqueued, returned, [str(i) for i in ids])

    def check(self) -> None:
        for daemon in self.daemons:
            if not daemon.alive():
                raise BenchError(f"a daemon died: {daemon.last_words()}")
        failed = self.spool.count("failed")
        if failed:
            raise BenchError(f"{failed} job(s) failed, e.g. {sorted(self.spool.ids('failed'))[:3]}")

    def finish(self, batch: Batch) -> int:
        """Every job's done record (the job writes its line first: up to 60 s to catch up)."""
        wanted = set(batch.ids)
        deadline = time.monotonic() + 60
        while self.spool.done_ids(wanted, waiting=True) != wanted:
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)
        done = self.spool.done_ids(wanted)
        if self.meters is not None:
            daemons, server = self.meters
            self.extra["cpu_pct"] = daemons.stop()
            if server is not None:
                self.extra["redis_cpu_pct"] = server.stop()
        for daemon in self.daemons:
            daemon.stop()
        if done != wanted:
            raise BenchError(
                f"{len(wanted - done)} of {len(wanted)} jobs have no done record: "
                f"{self.spool.counts()}"
            )
        return len(done)


@contextlib.contextmanager
def spoold_session(system: System, ctx: Context, folder: Path) -> Iterator[Session]:
    options = system.options
    place = ctx.place(folder.name) if options["backend"] == "redis" else None  # names the system
    redis_pid = ctx.redis.proc.pid if ctx.redis is not None and ctx.redis.proc else None
    if system.daemons > 1:
        with spoold_hosts(system, folder, place) as (spool, daemons):
            yield SpooldSession(spool, daemons, options["durable"], redis_pid, options["cpu"])
        return
    spool = PeerSpool(
        folder / system.name,
        fsync=options["fsync"],
        max_jobs_per_process=options["per_process"],
        redis=place,
        send_ahead=options.get("send_ahead", False),
    )
    if not system.config:
        config = tomllib.loads(spool.config.read_text())
        system.config = {"spoold.toml": config, "client_durable": options["durable"]}
    with running_daemon(spool) as daemon:
        yield SpooldSession(
            spool, [daemon], options["durable"], redis_pid, options.get("cpu", False)
        )


@contextlib.contextmanager
def spoold_hosts(
    system: System, folder: Path, place: Any
) -> Iterator[tuple[PeerSpool, list[BenchDaemon]]]:
    """``system.daemons`` daemons on one Redis spool, as bench/hosts.py starts them: each
    its own folder (``[spool] dir``) and ``host_id`` (host0, host1, ...), the same url and
    name, one job log for all; started together, each READY=1 and idle, then 1 s idle."""
    options = system.options
    spools: list[PeerSpool] = []
    for host in range(system.daemons):
        spool = PeerSpool(folder / system.name / f"host{host}", fsync=options["fsync"],
                          max_jobs_per_process=options["per_process"], redis=place)  # fmt: skip
        sections = tomllib.loads(spool.config.read_text())
        sections["spool"]["host_id"] = f"host{host}"
        spool.config.write_text(toml_text(sections))
        spool.job_log = spools[0].job_log if spools else spool.job_log
        spools.append(spool)
    if not system.config:
        config = tomllib.loads(spools[0].config.read_text())
        config["spool"]["host_id"] = "host0 .. host" + str(system.daemons - 1)
        config["spool"]["dir"] = "<each daemon's own folder>"
        config["spool"]["name"] = "<each run's own name, the same for the 4>"
        system.config = {"spoold.toml": config, "daemons": system.daemons,
                         "client_durable": options["durable"]}  # fmt: skip
    daemons: list[BenchDaemon] = []
    try:
        for spool in spools:
            daemons.append(BenchDaemon(spool).start())
        for daemon in daemons:
            daemon.wait_ready()
        for daemon in daemons:
            daemon.wait_idle(settle=0.0)
        time.sleep(1.0)  # idle, not starting
        yield spools[0], daemons
    finally:
        for daemon in daemons:
            daemon.stop()


@dataclass
class Peers:
    """Where the peers' venv is and what the peers share (the bench's redis-server)."""

    venv: Path
    redis_url: str = ""

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, system: System, folder: Path) -> dict[str, str]:
        """The environment of a peer's workers and client: no spoold settings, the bench
        on PYTHONPATH (``bench.peerjobs`` and the apps), the venv's bin first."""
        env = daemon_env()
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        if system.needs_redis:
            env["PEERS_REDIS_URL"] = self.redis_url
        if system.kind == "huey":
            kind = system.options["storage"]
            env["PEERS_HUEY_KIND"] = kind
            env["PEERS_HUEY_PATH"] = str(folder / ("huey" if kind == "file" else "huey.db"))
        return env

    def worker_commands(self, system: System) -> list[list[str]]:
        """The system's worker command lines: 2 worker processes in all."""
        bin_ = self.venv / "bin"
        if system.kind == "rq":
            one = [str(bin_ / "rq"), "worker", "--url", self.redis_url,
                   "--worker-class", system.options["worker_class"], "peers"]  # fmt: skip
            return [one, one]
        if system.kind == "celery":
            return [[str(bin_ / "celery"), "-A", "bench.peer_celery", "worker",
                     "--pool", "prefork", "-c", str(WORKERS)]]  # fmt: skip
        return [[str(bin_ / "huey_consumer"), "bench.peer_huey.huey",
                 "-w", str(WORKERS), "-k", "process"]]  # fmt: skip

    def client(self, system: System, command: str, *args: str) -> list[str]:
        return [str(self.python), "-m", "bench.peerclient", command, system.kind,
                "--url", self.redis_url, "--workers", str(WORKERS), *args]  # fmt: skip

    def info(self, system: System, folder: Path) -> dict[str, Any]:
        """``peerclient info``: the versions and the configuration (raises BenchError)."""
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            self.client(system, "info"),
            cwd=folder,
            env=self.env(system, folder),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            words = done.stderr.strip().splitlines() or ["(no message)"]
            raise BenchError(f"{system.name}: its client does not load: {words[-1]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no output)"
    return " | ".join(line.strip() for line in text[-lines:]) or "(no output)"


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _reap_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """After its stop signal: wait for a worker started in a session of its own, SIGKILL
    it past ``timeout``, then SIGKILL what is left of its process group (a work horse, a
    pool child); always reaps."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class PeerSession(Session):
    """A peer's workers (started here) and its client (``bench.peerclient``)."""

    def __init__(self, system: System, peers: Peers, folder: Path) -> None:
        self.system = system
        self.peers = peers
        self.folder = folder
        self.log = folder / "jobs.log"
        self.env = peers.env(system, folder)
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.driver: subprocess.Popen[bytes] | None = None
        self.driver_err = folder / "client.err"
        self.extra: dict[str, Any] = {}  # a peer reports no figures of its own

    def start(self) -> None:
        for i, command in enumerate(self.peers.worker_commands(self.system)):
            output = self.folder / f"worker-{i + 1}.out"
            with open(output, "ab") as out:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.folder,
                    env=self.env,
                    start_new_session=True,
                )
            self.workers.append((proc, output))
        children = self.system.options.get("children", 0)
        deadline = time.monotonic() + START_TIMEOUT
        while any(len(_children(proc.pid)) < children for proc, _out in self.workers):
            self.check()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.system.name}: no {children} worker processes in time")
            time.sleep(POLL)

    def check(self) -> None:
        for proc, output in self.workers:
            if proc.poll() is not None:
                raise BenchError(
                    f"{self.system.name}: a worker exited with {proc.returncode}: {_tail(output)}"
                )

    def feed(self, n: int, interval: float, sleep: float) -> Batch:
        out = self.folder / "batch.json"
        args = ["--log", str(self.log), "--warmup-log", str(self.folder / "warmup.log"),
                "--out", str(out), "--n", str(n), "--interval", repr(interval),
                "--sleep", repr(sleep)]  # fmt: skip
        with open(self.driver_err, "ab") as err:
            self.driver = subprocess.Popen(
                self.peers.client(self.system, "enqueue", *args),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=self.folder,
                env=self.env,
            )
        word = self._read(START_TIMEOUT + n * (interval + 0.05))
        if word != "enqueued":
            raise BenchError(f"{self.system.name}: its client said {word!r}")
        data = json.loads(out.read_text())
        return Batch(data["enqueued"], data["returned"], [str(i) for i in data["ids"]])

    def _read(self, timeout: float) -> str:
        """The client's next line, watching the workers meanwhile."""
        assert self.driver is not None and self.driver.stdout is not None
        stdout: IO[bytes] = self.driver.stdout
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([stdout], [], [], 0.5)
            if ready:
                line = stdout.readline()
                if not line:
                    self.driver.wait(10)
                    raise BenchError(
                        f"{self.system.name}: its client exited with "
                        f"{self.driver.returncode}: {_tail(self.driver_err)}"
                    )
                return line.decode().strip()
            self.check()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.system.name}: its client said nothing in {timeout:g} s")

    def finish(self, batch: Batch) -> int:
        self.stop_workers()
        assert self.driver is not None and self.driver.stdin is not None
        self.driver.stdin.write(b"count\n")
        self.driver.stdin.flush()
        kept = int(json.loads(self._read(120))["kept"])
        self.driver.wait(30)
        return kept

    def stop_workers(self, timeout: float = STOP_TIMEOUT) -> None:
        """Each system's own graceful stop (RQ and Celery: SIGTERM, a warm shutdown;
        Huey: SIGINT), to all workers at once; then wait, and SIGKILL past ``timeout``."""
        for proc, _output in self.workers:
            if proc.poll() is None:
                proc.send_signal(self.system.options["stop"])
        for proc, _output in self.workers:
            _reap_group(proc, timeout)

    def close(self) -> None:
        """Whatever is still running, stopped (on an error too)."""
        self.stop_workers(timeout=5)
        if self.driver is not None:
            if self.driver.poll() is None:
                self.driver.kill()
            self.driver.wait()
            for pipe in (self.driver.stdin, self.driver.stdout):
                if pipe is not None:
                    pipe.close()


@contextlib.contextmanager
def peer_session(system: System, peers: Peers, folder: Path) -> Iterator[Session]:
    session = PeerSession(system, peers, folder)
    try:
        session.start()
        yield session
    finally:
        session.close()


def open_session(
    system: System, ctx: Context, peers: Peers | None, folder: Path
) -> contextlib.AbstractContextManager[Session]:
    if system.kind == "spoold":
        return spoold_session(system, ctx, folder)
    assert peers is not None
    return peer_session(system, peers, folder)


def redis_flush(ctx: Context) -> None:
    """Empty the bench's redis-server after a peer's run (not timed): RQ's and Celery's
    keys go; spoold's spools there are dropped by ``Context.folder``."""
    if ctx.redis_client is not None and ctx.redis is not None and ctx.redis.alive():
        ctx.redis_client.flushdb()
