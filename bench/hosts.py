"""Several daemons on one Redis queue: ``python -m bench.hosts [--quick]``.

Starts a private redis-server (bench/redisserver.py, ``appendfsync always``)
and, per run, 1 to 4 real daemons (``python -m spoold run``), each with its
own local ``[spool] dir`` and ``host_id`` and the same ``url`` and ``name``
(a fresh name per run), ``concurrency = 2`` and ``max_jobs_per_process =
1000``. It prints one JSON document:

* ``scaling``: N jobs submitted as fast as the client can into running, idle
  daemons; jobs/s from the first submit to the last job's own end time (job
  log), for 50 ms jobs (with the ratio to the ideal, slots x 20/s) and no-op
  jobs; ``cpu_pct``: utime+stime of the daemons and their launchers over
  the run, over the wall time, in % of one core (``redis_cpu_pct`` likewise
  for redis-server).
* ``pickup``: 100 no-op jobs, one every 20 ms, into 1 and 3 idle daemons;
  the job's own start time minus the time the submit call returned (ms).
* ``reclaim``: a 30 s job running on daemon A, daemon B idle; A and its
  processes SIGKILLed; seconds from the kill to the job's own start on B,
  and that over ``lease``.

Every daemon is stopped (SIGTERM, wait) and the server too; nothing is
written to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/hosts.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_DIR,
    JOB_CLASS,
    BenchDaemon,
    BenchError,
    BenchSpool,
    JobLog,
    RedisPlace,
    check_all_done,
    daemon_env,
    machine_info,
    percentile,
    precompile_jobs,
    progress,
    toml_text,
    wait_for_jobs,
)
from bench.redisserver import RedisServer, unavailable
from bench.redisserver import version as redis_version
from bench.workloads import feed_steadily
from spoold.client import job_payload, submitter_for
from spoold.config import load_config

CONCURRENCY = 2
PER_PROCESS = 1000
SLEEP = 0.05
HOLD = 30.0  # the reclaimed job's length: it must still be running when B takes it
FULL = {"sleep": 400, "noop": 2000, "pickup": 100}
QUICK = {"sleep": 200, "noop": 500, "pickup": 100}
DAEMONS = (1, 2, 3, 4)
PICKUP_DAEMONS = (1, 3)
LEASES = (2.0, 5.0)
HOLD_CLASS = "hostjobs.Hold"
TICK = os.sysconf("SC_CLK_TCK")


class Cluster:
    """``count`` daemons sharing one Redis spool name; one job log for all of them."""

    def __init__(self, ctx: Context, label: str, count: int, lease: float = 30.0) -> None:
        ctx.count += 1
        folder = ctx.workdir / f"{ctx.count:03d}-{label}"
        name = f"hosts-{os.getpid()}-{ctx.count:03d}-{label}"
        place = RedisPlace(ctx.server.url, name, ctx.client)
        self.job_log = folder / "jobs.log"
        self.starts_log = folder / "starts.log"
        self.spools = []
        for host in range(count):
            spool = BenchSpool(
                folder / f"host{host}", max_jobs_per_process=PER_PROCESS, redis=place
            )
            spool.job_log = self.job_log  # every host's jobs append to the same log
            spool.config.write_text(toml_text(_sections(spool, name, f"host{host}", lease)))
            self.spools.append(spool)
        self.daemons: list[Any] = []

    @property
    def spool(self) -> Any:
        """The spool the client submits through and the checks read (any host's: same queue)."""
        return self.spools[0]

    def start(self, hosts: range) -> list[Any]:
        """Start these hosts' daemons together; return once each is ready and idle."""
        started = [BenchDaemon(self.spools[h]).start() for h in hosts]
        self.daemons.extend(started)
        for daemon in started:
            daemon.wait_ready()
        for daemon in started:
            daemon.wait_idle(settle=0.0)
        time.sleep(1.0)  # idle, not starting
        return started

    def check_alive(self) -> None:
        for daemon in self.daemons:
            if not daemon.alive():
                raise BenchError(f"a daemon died: {daemon.last_words()}")

    def pids(self) -> list[int]:
        """The daemons and their children (the launchers)."""
        found = []
        for daemon in self.daemons:
            if daemon.alive():
                found.append(daemon.pid)
                found.extend(children(daemon.pid))
        return found

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()


def _sections(spool: Any, name: str, host_id: str, lease: float) -> dict[str, Any]:
    worker: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "python_path": [str(BENCH_DIR)],
        "max_jobs_per_process": PER_PROCESS,
        "timeout": 60.0,
        "shutdown_timeout": 2.0,  # the held 30 s job is cut short at the end
        "max_retries": 0,
    }
    if os.geteuid() == 0:
        worker["user"] = "root"
    return {
        "spool": {"dir": str(spool.root), "backend": "redis", "url": spool.redis.url,
                  "name": name, "host_id": host_id, "lease": lease, "rescan_interval": 5.0},
        "worker": worker,
        "log": {"file": str(spool.workdir / "daemon.log"), "level": "WARNING"},
        "allow": {JOB_CLASS: ["noop", "sleep"], HOLD_CLASS: ["hold"]},
    }  # fmt: skip


@contextmanager
def cluster(ctx: Context, label: str, count: int, lease: float = 30.0) -> Iterator[Cluster]:
    group = Cluster(ctx, label, count, lease)
    try:
        yield group
    finally:
        group.stop()


# -- /proc --


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found.append(child)
        found.extend(descendants(child))
    return found


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process, in clock ticks (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # fields from the 3rd (state) on
    return int(fields[11]) + int(fields[12])  # 14th and 15th


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


class CpuMeter:
    """CPU of a fixed set of processes between ``__init__`` and ``stop()``."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = {pid: cpu_ticks(pid) for pid in pids}
        self.began = time.monotonic()

    def stop(self) -> float:
        """Percent of one core over the interval."""
        wall = time.monotonic() - self.began
        used = 0
        for pid, before in self.start.items():
            after = cpu_ticks(pid)
            if before is None or after is None:
                raise BenchError(f"process {pid} came or went during the run")
            used += after - before
        return 100.0 * used / TICK / wall


# -- the figures --


def scaling_run(ctx: Context, count: int, method: str, n: int) -> dict[str, Any]:
    args: tuple[Any, ...] = (SLEEP,) if method == "sleep" else ()
    with cluster(ctx, f"scale-{method}-{count}", count) as group:
        group.start(range(count))
        spool = group.spool
        log = JobLog(group.job_log)
        daemons = CpuMeter(group.pids())
        server = CpuMeter([ctx.server.proc.pid])
        t0 = time.time()
        ids = [spool.submit(method, *args) for _ in range(n)]
        submitted = time.time()
        wait_for_jobs(spool, log, n)
        group.check_alive()
        check_all_done(spool, log, ids)
        cpu, redis_cpu = daemons.stop(), server.stop()
        end = max(e for _s, e in log.times.values())
    figure: dict[str, Any] = {
        "daemons": count,
        "jobs": n,
        "jobs_per_s": round(n / (end - t0), 1),
        "submit_per_s": round(n / (submitted - t0), 1),
        "cpu_pct": round(cpu, 1),
        "redis_cpu_pct": round(redis_cpu, 1),
    }
    if method == "sleep":
        ideal = count * CONCURRENCY / SLEEP
        figure["ideal_jobs_per_s"] = ideal
        figure["ratio_to_ideal"] = round(figure["jobs_per_s"] / ideal, 3)
    return figure


def pickup_run(ctx: Context, count: int, n: int) -> dict[str, Any]:

    with cluster(ctx, f"pickup-{count}", count) as group:
        group.start(range(count))
        spool = group.spool
        log = JobLog(group.job_log)
        returned, _calls = feed_steadily(lambda: spool.submit("noop"), n)
        wait_for_jobs(spool, log, n)
        group.check_alive()
        check_all_done(spool, log, returned)
    values = [(log.times[job_id][0] - t) * 1000 for job_id, t in returned.items()]
    return {
        "daemons": count,
        "jobs": n,
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(max(values), 2),
    }


def read_starts(path: Path) -> list[tuple[str, float, int, int]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        job_id, start, pid, ppid = line.split()
        found.append((job_id, float(start), int(pid), int(ppid)))
    return found


def wait_starts(group: Cluster, count: int, timeout: float) -> list[tuple[str, float, int, int]]:
    deadline = time.monotonic() + timeout
    while len(starts := read_starts(group.starts_log)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{len(starts)} start line(s) of {count} within {timeout}s")
        time.sleep(0.005)
    return starts


def reclaim_run(ctx: Context, lease: float) -> dict[str, Any]:
    with cluster(ctx, f"reclaim-{lease:g}", 2, lease=lease) as group:
        (host_a,) = group.start(range(1))

        submitter = submitter_for(load_config(group.spool.config), durable=True)
        now = time.time()
        params = [str(group.starts_log), HOLD]
        job_id = submitter.submit(job_payload(HOLD_CLASS, "hold", params, now=now), now=now)
        first = wait_starts(group, 1, 30.0)[0]
        if first[0] != job_id or first[3] not in children(host_a.pid):
            raise BenchError(f"the job did not start on daemon A: {first}")
        (host_b,) = group.start(range(1, 2))
        doomed = [host_a.pid, *descendants(host_a.pid)]
        killed = time.time()
        for pid in doomed:  # the host dies: the daemon, its launcher, the job's worker
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        host_a.proc.wait()
        again = wait_starts(group, 2, lease * 3 + 30)[1]
        if again[0] != job_id or again[3] not in children(host_b.pid):
            raise BenchError(f"the job did not start again on daemon B: {again}")
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in doomed):
            if time.monotonic() > deadline:
                raise BenchError(f"processes of the killed daemon survive: {doomed}")
            time.sleep(0.05)
    seconds = again[1] - killed
    return {
        "lease_s": lease,
        "reclaim_s": round(seconds, 3),
        "ratio_to_lease": round(seconds / lease, 3),
    }


# -- the whole --


class Context:
    def __init__(self, workdir: Path, server: RedisServer, client: Any) -> None:
        self.workdir = workdir
        self.server = server
        self.client = client
        self.count = 0


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs, and every run's jobs/s."""
    merged = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    merged["jobs_per_s_runs"] = [run["jobs_per_s"] for run in runs]
    return merged


def measure(sizes: dict[str, int], runs: int, tmp: str | None) -> dict[str, Any]:
    import redis

    precompile_jobs()
    with tempfile.TemporaryDirectory(prefix="spoold-bench-hosts-", dir=tmp) as folder:
        workdir = Path(folder)
        server = RedisServer(workdir / "redis", env=daemon_env()).start()
        try:
            ctx = Context(workdir, server, redis.Redis.from_url(server.url))
            result: dict[str, Any] = {
                "machine": machine_info(workdir),
                "redis": redis_version(),
                "concurrency_per_daemon": CONCURRENCY,
                "max_jobs_per_process": PER_PROCESS,
                "scaling_runs": runs,
                "scaling": {"sleep_50ms": [], "noop": []},
                "pickup": [],
                "reclaim": [],
            }
            for method, key in (("sleep", "sleep_50ms"), ("noop", "noop")):
                for count in DAEMONS:
                    progress(
                        f"scaling {key}: {count} daemon(s), {sizes[method]} jobs, {runs} run(s)"
                    )
                    each = [scaling_run(ctx, count, method, sizes[method]) for _ in range(runs)]
                    result["scaling"][key].append(median_of(each))
            for count in PICKUP_DAEMONS:
                progress(f"pickup: {count} daemon(s)")
                result["pickup"].append(pickup_run(ctx, count, sizes["pickup"]))
            for lease in LEASES:
                progress(f"reclaim: lease {lease:g} s")
                result["reclaim"].append(reclaim_run(ctx, lease))
            return result
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="200 and 500 jobs instead of 400 and 2000"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per scaling figure, median (3; 1 with --quick)"
    )
    parser.add_argument("--tmp", default=None, help="where the temp folder goes")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    reason = unavailable()
    if reason is not None:
        print(json.dumps({"skipped": reason}))
        return
    print(json.dumps(measure(QUICK if args.quick else FULL, runs, args.tmp), indent=2))


if __name__ == "__main__":
    main()
