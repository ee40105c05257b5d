"""What every workload shares: a temp spool, the real daemon, the job log, /proc, statistics.

Nothing is mocked: a spool is made by ``spoold init``, the daemon is ``python -m
spoold run`` on it (ready when it sends ``READY=1`` to our notify socket), jobs go
in through the real client, and their start and end times come from the lines
the jobs themselves append (bench/benchjobs.py), not from the daemon's log.

A spool is on files (its folder) or on Redis (``[spool] backend = "redis"`` on
the bench's own redis-server, under a name of its own): ``BenchSpool.submit``
and its counts and done-checks read whichever it is.
"""

from __future__ import annotations

import compileall
import contextlib
import importlib.util
import json
import os
import platform
import py_compile
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spoold.client import job_payload, run_background_job, submitter_for
from spoold.config import load_config
from spoold.core.backend import Submitter

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
JOB_CLASS = "benchjobs.Bench"
CONCURRENCY = 2
POLL = 0.02  # seconds between looks at the job log while waiting
STALL = 120.0  # a run with no job finishing for this long has failed


class BenchError(RuntimeError):
    """A run that cannot give a figure: lost jobs, a daemon that died, a stall."""


class DaemonRefused(BenchError):
    """spoold refused to start on a config (e.g. its check refused a setting)."""


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics --


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """Median of the runs, with the spread (min..max) and every run's figure."""
    runs = list(values)
    return {
        "median": round(statistics.median(runs), digits),
        "min": round(min(runs), digits),
        "max": round(max(runs), digits),
        "runs": [round(v, digits) for v in runs],
    }


# -- the spool and its config --


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{json.dumps(key)} = {toml_value(v)}" for key, v in table.items())
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class RedisPlace:
    """A spool's place in the bench's redis-server: its URL, its name, a client to read it."""

    url: str
    name: str
    client: Any  # redis.Redis: reads what the daemon recorded (never writes to the spool)

    @property
    def key(self) -> str:
        """The spool's key prefix, as spoold makes it: ``spoold:{<name>}:``."""
        return f"spoold:{{{self.name}}}:"


# What folder_counts shows of a Redis spool: the library's sorted sets (library.lua).
REDIS_SETS = {"ready": "ready", "due": "due", "active": "active",
              "done": "idx:done", "failed": "idx:failed"}  # fmt: skip


@dataclass
class BenchSpool:
    """A temp spool, its config file and the log its jobs append to.

    With ``redis``, the config says ``[spool] backend = "redis"`` with that URL
    and name; ``dir`` stays the local folder (the daemon's lock and its
    ``incoming/`` for job files).
    """

    workdir: Path
    fsync: bool = True
    max_jobs_per_process: int = 1
    redis: RedisPlace | None = None
    send_ahead: bool = False  # [worker] send_ahead (its default: off)
    root: Path = field(init=False)
    config: Path = field(init=False)
    job_log: Path = field(init=False)
    _submitters: dict[bool, Submitter] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = self.workdir / "spool"
        self.config = self.workdir / "spoold.toml"
        self.job_log = self.workdir / "jobs.log"
        worker: dict[str, Any] = {
            "concurrency": CONCURRENCY,
            "python_path": [str(BENCH_DIR)],
            "max_jobs_per_process": self.max_jobs_per_process,
            "timeout": 60.0,
            "shutdown_timeout": 10.0,
            "max_retries": 0,
        }
        if self.send_ahead:
            worker["send_ahead"] = True
        if os.geteuid() == 0:
            worker["user"] = "root"  # a root daemon needs an explicit job user; say it on purpose
        spool: dict[str, Any] = {"dir": str(self.root), "fsync": self.fsync, "rescan_interval": 5.0}
        if self.redis is not None:
            spool.update(backend="redis", url=self.redis.url, name=self.redis.name)
        sections = {
            "spool": spool,
            "worker": worker,
            "log": {"file": str(self.workdir / "daemon.log"), "level": "WARNING"},
            "allow": {JOB_CLASS: ["noop", "sleep"]},
        }
        self.config.write_text(toml_text(sections))
        init = subprocess.run(
            [sys.executable, "-m", "spoold", "init", "--config", str(self.config)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=daemon_env(),
        )
        if init.returncode != 0:  # e.g. a setting this version of spoold refuses
            words = init.stderr.strip().splitlines() or ["(no message)"]
            raise DaemonRefused(f"spoold init refused the config: {words[-1]}")

    @property
    def backend(self) -> str:
        return "files" if self.redis is None else "redis"

    def submit(self, method: str = "noop", *args: Any, durable: bool = True) -> str:
        """One job through the real client: Bench.<method>(job log, *args); its id.

        Files: ``run_background_job(..., spool=<folder>)``. Redis: the client's
        ``job_payload`` + ``submitter_for(<this config>)``, one ``FCALL
        spoold_submit`` on the connection the client keeps per process
        (``durable`` changes nothing there: Redis fsyncs per its appendfsync).
        """
        params = [str(self.job_log), *args]
        if self.redis is None:
            return run_background_job(JOB_CLASS, method, params, spool=self.root, durable=durable)
        submitter = self._submitters.get(durable)
        if submitter is None:
            config = load_config(self.config)
            submitter = self._submitters[durable] = submitter_for(config, durable=durable)
        now = time.time()
        return submitter.submit(job_payload(JOB_CLASS, method, params, now=now), now=now)

    def folder(self, state: str) -> Path:
        return self.root / state

    def count(self, state: str) -> int:
        """Jobs in ``state``: files in that folder, or members of Redis's set for it."""
        if self.redis is not None:
            return int(self.redis.client.zcard(self.redis.key + REDIS_SETS[state]))
        with os.scandir(self.folder(state)) as entries:
            return sum(1 for e in entries if e.name.endswith(".json") and e.name[0] != ".")

    def ids(self, state: str) -> set[str]:
        if self.redis is not None:
            members = self.redis.client.zrange(self.redis.key + REDIS_SETS[state], 0, -1)
            return {m.decode().rpartition(":")[2] for m in members}  # ready: "<seq>:<id>"
        with os.scandir(self.folder(state)) as entries:
            return {e.name[:-5] for e in entries if e.name.endswith(".json") and e.name[0] != "."}

    def counts(self) -> dict[str, int]:
        """Where the jobs are, for an error message."""
        if self.redis is not None:
            return {state: self.count(state) for state in REDIS_SETS}
        return {s: self.count(s) for s in ("incoming", "scheduled", "active", "done", "failed")}

    def done_ids(self, wanted: set[str], *, waiting: bool = False) -> set[str]:
        """Those of ``wanted`` that have a done record.

        Files: a ``done/<id>.json``. Redis: ``HGET spoold:{<name>}:job:<id> state``
        is ``done``, asked in one pipeline; while ``waiting``, only once
        ``idx:done`` holds as many members (until then: none).
        """
        if self.redis is None:
            return wanted & self.ids("done")
        if waiting and self.count("done") < len(wanted):
            return set()
        ordered = sorted(wanted)
        pipe = self.redis.client.pipeline(transaction=False)
        for job_id in ordered:
            pipe.hget(f"{self.redis.key}job:{job_id}", "state")
        return {job_id for job_id, state in zip(ordered, pipe.execute(), strict=True)
                if state == b"done"}  # fmt: skip


def precompile_jobs() -> None:
    """Compile bench/benchjobs.py into __pycache__ once, before any run.

    This environment sets PYTHONDONTWRITEBYTECODE=1, so without this every
    attempt would compile the job module from source; a deployed application
    has its .pyc files, and the job's import should cost what it costs there.
    """
    source = BENCH_DIR / "benchjobs.py"
    py_compile.compile(
        str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True
    )
    precompile_spoold()


def precompile_spoold() -> None:
    """spoold's own modules compiled too, as ``pip install`` leaves them: a spare imports
    ``spoold.exec.rehearsal`` while it waits, which without its .pyc would be compiled
    from source in every process (the attempt's start does not wait for it, but W1's CPU
    per job would count it)."""
    if not compileall.compile_dir(str(ROOT / "spoold"), quiet=1):
        raise RuntimeError(f"could not compile {ROOT / 'spoold'}")


def daemon_env(notify: str | None = None) -> dict[str, str]:
    """The environment of the daemon: no outside spool or config, our notify socket.

    SPOOLD_TEST_TOKEN passes through, so the test suite's leak check sees the
    daemons a smoke test started through us.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPOOLD_", "NOTIFY_")) or k == "SPOOLD_TEST_TOKEN"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify
    return env


# -- the daemon --


class BenchDaemon:
    """``python -m spoold run`` on a bench spool; ready on its READY=1 datagram."""

    def __init__(self, spool: BenchSpool) -> None:
        self.spool = spool
        self.output = spool.workdir / "daemon.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self._notify: socket.socket | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> BenchDaemon:
        name = f"spoold-bench-{os.getpid()}-{time.monotonic_ns()}"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind("\0" + name)  # abstract: no path length limit, nothing to remove
        command = [sys.executable, "-m", "spoold", "run", "--config", str(self.spool.config)]
        with open(self.output, "ab") as out:
            self.spawned_at = time.time()
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.spool.workdir,
                env=daemon_env(notify="@" + name),
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> BenchDaemon:
        assert self.proc is not None and self._notify is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DaemonRefused(
                    f"daemon exited with {self.proc.returncode} before READY=1: {self.last_words()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"no READY=1 within {timeout}s: {self.last_words()}")
            self._notify.settimeout(min(remaining, 0.1))
            with contextlib.suppress(TimeoutError):
                if "READY=1" in self._notify.recv(4096).decode("utf-8", "replace").split("\n"):
                    break
        # Nobody reads it from now on: closed, the daemon's later sends fail at once
        # (connection refused) instead of filling a queue.
        self._close_notify()
        return self

    def wait_idle(self, settle: float = 1.0) -> BenchDaemon:
        """Wait for the launcher, then ``settle`` seconds: an idle daemon, not one starting.

        READY=1 comes after the first scan, while the launcher (a fresh
        interpreter) may still be starting; W4 measures that start-up, the
        others measure a daemon that has been idle.
        """
        deadline = time.monotonic() + 30
        while self.launcher_pid() is None:
            if time.monotonic() > deadline or not self.alive():
                raise BenchError(f"the daemon has no launcher: {self.last_words()}")
            time.sleep(0.02)
        time.sleep(settle)
        return self

    def last_words(self) -> str:
        """The last line of the daemon's output: the reason it stopped, if it gave one."""
        try:
            lines = self.output.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no output)"
        return lines[-1].strip() if lines else "(no output)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launcher_pid(self) -> int | None:
        """The daemon's one child, the launcher (None while it has none)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return None
        pids = [int(p) for p in text.split()]
        return pids[0] if pids else None

    def footprint(self) -> dict[str, Any]:
        """RSS, peak RSS (kB) and open descriptors of the daemon and of its launcher."""
        found: dict[str, Any] = {}
        for role, pid in (("daemon", self.pid), ("launcher", self.launcher_pid())):
            if pid is None:
                continue
            status = proc_status(pid)
            found[f"{role}_rss_kb"] = status.get("VmRSS")
            found[f"{role}_hwm_kb"] = status.get("VmHWM")
            found[f"{role}_fds"] = open_fds(pid)
            found[f"{role}_children"] = len(_children(pid))
        return found

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``); always reaps."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_notify()

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def __enter__(self) -> BenchDaemon:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def proc_status(pid: int) -> dict[str, int]:
    """The kB and count fields of /proc/<pid>/status ({} when the process is gone)."""
    found = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            found[key] = int(parts[0])
    return found


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# -- what the jobs report --


class Appended:
    """A file that jobs append lines to, read incrementally: each ``new_lines`` call
    returns the whole lines written since the last (a line cut short waits for its end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        return [line.decode() for line in complete]


class JobLog:
    """The lines the jobs append, read incrementally: {job id: (start, end)}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.appended = Appended(path)
        self.times: dict[str, tuple[float, float]] = {}
        self.lines = 0

    def poll(self) -> int:
        """Read what was appended since the last call; return the number of lines so far."""
        for line in self.appended.new_lines():
            job_id, start, end = line.split()
            self.times[job_id] = (float(start), float(end))
            self.lines += 1
        return self.lines


def wait_for_jobs(
    spool: BenchSpool,
    log: JobLog,
    count: int,
    daemon: BenchDaemon | None = None,
    timeout: float | None = None,
) -> None:
    """Wait until ``count`` jobs have appended their line; fail loudly on trouble.

    Trouble is a daemon that died, a job filed in failed/, no job finishing
    for STALL seconds, or the overall ``timeout`` (default: generous for N).
    """
    deadline = time.monotonic() + (timeout if timeout is not None else 60 + count * 0.1)
    last_seen, last_change = log.lines, time.monotonic()
    next_check = 0.0
    while log.poll() < count:
        now = time.monotonic()
        if log.lines != last_seen:
            last_seen, last_change = log.lines, now
        if now >= next_check:
            next_check = now + 1.0
            _check_trouble(spool, log, count, daemon)
        if now - last_change > STALL or now > deadline:
            raise BenchError(
                f"only {log.lines} of {count} jobs finished (stalled or past the deadline); "
                f"{spool.backend}: {folder_counts(spool)}"
            )
        time.sleep(POLL)


def _check_trouble(spool: BenchSpool, log: JobLog, count: int, daemon: BenchDaemon | None) -> None:
    if daemon is not None and not daemon.alive():
        raise BenchError(f"daemon died after {log.lines} of {count} jobs: {daemon.last_words()}")
    failed = spool.count("failed")
    if failed:
        raise BenchError(f"{failed} job(s) in failed/, e.g. {sorted(spool.ids('failed'))[:3]}")


def folder_counts(spool: BenchSpool) -> dict[str, int]:
    return spool.counts()


def check_all_done(
    spool: BenchSpool, log: JobLog, ids: Iterable[str], timeout: float = 60.0
) -> None:
    """Every enqueued id has its done record and its own line in the job log.

    The record is ``done/<id>.json``, or on Redis the job's hash with ``state``
    ``done``. The job writes its line before the daemon files the record, so
    the records are given ``timeout`` seconds to catch up. Any missing or
    unknown id fails the run.
    """
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        done = spool.done_ids(wanted, waiting=True)
        if wanted <= done:
            break
        if time.monotonic() > deadline:
            done = spool.done_ids(wanted)
            break
        time.sleep(POLL)
    missing = wanted - done
    if missing:
        where = "done/ record" if spool.redis is None else "done record in Redis"
        raise BenchError(
            f"{len(missing)} of {len(wanted)} jobs have no {where} "
            f"(e.g. {sorted(missing)[:3]}); {spool.backend}: {folder_counts(spool)}"
        )
    logged = set(log.times)
    if logged != wanted or log.lines != len(wanted):
        raise BenchError(
            f"job log: {log.lines} lines for {len(wanted)} jobs, {len(wanted - logged)} ids "
            f"missing, {len(logged - wanted)} unknown (SPOOLD_JOB_ID wrong or a job ran twice)"
        )


# -- the machine --


def machine_info(folder: Path) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tmp_folder": str(folder),
        "tmp_filesystem": filesystem_of(folder),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def filesystem_of(folder: Path) -> dict[str, str]:
    """The /proc/mounts entry with the longest mount point that holds ``folder``."""
    target = str(folder.resolve())
    best: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and (not best or len(point) > len(best[1])):
                best = fields
    if not best:
        return {}
    return {"device": best[0], "mount": best[1], "type": best[2], "options": best[3]}


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "spoold"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty(spoold/)" if dirty else head


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
