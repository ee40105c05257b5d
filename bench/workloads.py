"""The five workloads (W1..W5), each run against the real daemon beside its ceiling.

Every function takes the suite's ``Context`` and returns result entries: plain
dicts that ``bench.run`` prints as JSON. A run that loses a job, stalls or
sees its daemon die raises BenchError; ``bench.run`` records that as the
workload's error. Figures are medians of ``ctx.runs`` runs with their spread;
a ratio is the median of the per-run ratios (spoold and its ceiling run one
after the other in each run, so a noisy moment hits both).

W1, W2 and W3 run spoold on each of ``ctx.backends`` ("files", "redis") in
every run, beside one ceiling run: an entry per backend, the Redis one named
"<workload> [redis]". W4 and W5 measure the file spool only.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ceilings
from bench.common import (
    CONCURRENCY,
    JOB_CLASS,
    ROOT,
    BenchDaemon,
    BenchError,
    BenchSpool,
    DaemonRefused,
    JobLog,
    RedisPlace,
    check_all_done,
    daemon_env,
    percentile,
    progress,
    spread,
    wait_for_jobs,
)
from bench.disk import DiskGate
from bench.redisserver import RedisServer
from spoold.client import run_background_job

RQ_JOBS_PER_S = 158.0  # RQ's fork-per-job worker: reported in issue #5, not measured here
RQ_SOURCE = "reported in issue #5, not measured here"
W2_INTERVAL = 0.02
W3_SLEEP = 0.05
W3_IDEAL = CONCURRENCY / W3_SLEEP  # 40 jobs/s with 2 workers
W5_MAX_WAITING = 2000  # W5 feeds the next jobs once no more than this many wait
MB = 1e6  # targets are in MB (10^6 bytes); /proc reports kB (KiB)
BACKENDS = ("files", "redis")


@dataclass
class Context:
    """What every workload needs: where to put spools, how many runs, the sizes, the backends.

    ``backends``: those the current part runs spoold on (``bench.run`` sets it
    per part). ``redis``: the bench's own redis-server, when Redis runs.
    """

    workdir: Path
    runs: int
    sizes: dict[str, int]
    jobs_per_process: int
    backends: tuple[str, ...] = ("files",)
    # False: a run's folder stays until the invocation's temp folder goes (bench.peers).
    # After thousands of deletions, making a file on an ext4 without a journal is
    # slow for a minute or more (bench/disk.py), and the next run would be timed on it.
    remove_folders: bool = True
    disk: DiskGate | None = None  # bench.peers: each run first waits for the disk (bench/disk.py)
    redis: RedisServer | None = None
    redis_client: Any = None  # a redis.Redis on ``redis``: reads records, drops a run's keys
    _count: int = field(default=0)
    _names: list[str] = field(default_factory=list)

    @contextmanager
    def folder(self, name: str) -> Iterator[Path]:
        """A fresh folder for one run, removed afterwards (W4 and W5 leave 100,000 files)
        unless ``remove_folders`` is off; the Redis spools made meanwhile are deleted from
        the server too."""
        self._count += 1
        path = self.workdir / f"{self._count:03d}-{name}"
        path.mkdir()
        try:
            yield path
        finally:
            if self.remove_folders:
                shutil.rmtree(path, ignore_errors=True)
            self._drop_names()

    def spool(
        self, folder: Path, backend: str, *, fsync: bool = True, per_process: int = 1
    ) -> BenchSpool:
        """A bench spool in ``folder/<backend>``; on Redis, under a name of its own."""
        place = self.place(f"{folder.name}-{backend}") if backend == "redis" else None
        return BenchSpool(
            folder / backend, fsync=fsync, max_jobs_per_process=per_process, redis=place
        )

    def place(self, label: str) -> RedisPlace:
        """A fresh spool name in the bench's redis-server (keys ``spoold:{<name>}:...``)."""
        if self.redis is None:
            raise BenchError("no redis-server was started for this run")
        name = f"bench-{os.getpid()}-{len(self._names) + 1:03d}-{label}"
        self._names.append(name)
        return RedisPlace(self.redis.url, name, self.redis_client)

    def order(self, run: int) -> tuple[str, ...]:
        """The backends in the order this run uses them: reversed every other run."""
        return self.backends if run % 2 == 0 else tuple(reversed(self.backends))

    def _drop_names(self) -> None:
        """Delete every key of the Redis spools made so far (not timed): each run starts
        on a server holding only what earlier runs left in its append-only file."""
        if self.redis_client is None or self.redis is None or not self.redis.alive():
            return
        while self._names:
            name = self._names.pop()
            batch = list(self.redis_client.scan_iter(match=f"spoold:{{{name}}}:*", count=1000))
            for start in range(0, len(batch), 1000):
                self.redis_client.unlink(*batch[start : start + 1000])


def labelled(workload: str, backend: str) -> str:
    return workload if backend == "files" else f"{workload} [redis]"


@contextmanager
def running_daemon(spool: BenchSpool) -> Iterator[BenchDaemon]:
    daemon = BenchDaemon(spool).start()
    try:
        yield daemon.wait_ready().wait_idle()
    finally:
        daemon.stop()


def submit(spool: BenchSpool, method: str = "noop", *args: Any, durable: bool = True) -> str:
    """One job through the real client: Bench.<method>(job log, *args)."""
    return spool.submit(method, *args, durable=durable)


def run_batch(
    spool: BenchSpool,
    daemon: BenchDaemon,
    n: int,
    method: str = "noop",
    *args: Any,
    durable: bool = True,
) -> dict[str, float]:
    """Enqueue N jobs as fast as the client can into a running daemon; wait for all.

    jobs_per_s: N over (first enqueue .. last job's own end time);
    enqueue_per_s: N over the client's time for the N calls.
    """
    log = JobLog(spool.job_log)
    t0 = time.time()
    ids = [spool.submit(method, *args, durable=durable) for _ in range(n)]
    enqueued = time.time()
    wait_for_jobs(spool, log, n, daemon)
    check_all_done(spool, log, ids)
    end = max(e for _s, e in log.times.values())
    return {"jobs_per_s": n / (end - t0), "enqueue_per_s": n / (enqueued - t0)}


def drain_rate(folder: Path, n: int, *, fsync: bool, per_process: int) -> float:
    """Jobs/s for spoold to run N jobs that wait in incoming/ before it starts (no client
    running meanwhile), from READY=1 to the last job's own end: what the ceilings measure."""
    spool = BenchSpool(folder, fsync=fsync, max_jobs_per_process=per_process)
    names = ceilings.prefill(spool.root, n, str(spool.job_log))
    os.sync()
    return _drain(spool, n, [name[:-5] for name in names])


def redis_drain_rate(
    ctx: Context, folder: Path, n: int, *, fsync: bool, per_process: int
) -> tuple[float, float]:
    """The same on Redis: N jobs put in by the plain ``FCALL spoold_submit`` loop (no daemon
    running), then the daemon started. Returns (drain jobs/s, the loop's submits/s)."""
    spool = BenchSpool(
        folder, fsync=fsync, max_jobs_per_process=per_process, redis=ctx.place(folder.name)
    )
    submit_rate, ids = fcall_submit(spool, n)
    os.sync()
    return _drain(spool, n, ids), submit_rate


def fcall_submit(spool: BenchSpool, n: int, start: int = 0) -> tuple[float, list[str]]:
    """``ceilings.redis_submit`` into ``spool`` (its functions library loaded first, untimed)."""
    from spoold.backends.redis.connection import load_library

    assert spool.redis is not None
    load_library(spool.redis.client)
    return ceilings.redis_submit(
        spool.redis.client, spool.redis.key, n, str(spool.job_log), start=start
    )


def _drain(spool: BenchSpool, n: int, ids: list[str]) -> float:
    log = JobLog(spool.job_log)
    daemon = BenchDaemon(spool).start()
    try:
        daemon.wait_ready()
        ready = time.time()
        wait_for_jobs(spool, log, n, daemon)
        check_all_done(spool, log, ids)
    finally:
        daemon.stop()
    return n / (max(e for _s, e in log.times.values()) - ready)


def ceiling_process(kind: str, *args: str) -> dict[str, Any]:
    """Run ``python -m bench.ceilings KIND ARGS`` in a fresh interpreter; its JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.ceilings", kind, *args],
        cwd=ROOT,
        env=daemon_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def dispatch_ceiling(folder: Path, n: int, *, fork: bool, fsync: bool) -> float:
    root = ceilings.make_folders(folder)
    ceilings.prefill(root, n)
    args = ["--root", str(root), *(["--fork"] if fork else []), *(["--fsync"] if fsync else [])]
    return float(ceiling_process("dispatch", *args)["rate"])


def guarded_ceiling(folder: Path, n: int, *, run_job: bool) -> float:
    """``python -m bench.ceilings guarded --client [--run-job]``: the W1 ceiling doing the
    fsyncs spoold's guarantees need, with a durable client submitting beside it; with
    ``run_job`` each child runs the bench's job body in Python (one line to a log)."""
    root = ceilings.make_folders(folder)
    log = folder / "job.log"
    args = ["--root", str(root), "--n", str(n), "--log", str(log), "--client"]
    rate = float(ceiling_process("guarded", *args, *(["--run-job"] if run_job else []))["rate"])
    if (wrong := ceilings.unfiled(root, n)) is not None:
        raise BenchError(f"the guarded ceiling: {wrong}")
    if run_job and (lines := len(log.read_bytes().splitlines())) != n:
        raise BenchError(f"the guarded ceiling's children ran {lines} of {n} jobs")
    return rate


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def entry(
    workload: str,
    what: str,
    runs: int,
    n: int,
    target: str,
    met: bool,
    backend: str = "files",
    **figures: Any,
) -> dict[str, Any]:
    """One result. A workload that ran jobs through spoold gets ``every_job_done``: each
    run checked that every enqueued id has its done record (done/<id>.json, or its
    job hash in Redis in state done) and its own job-log line (a run that lost one
    raised BenchError instead)."""
    checked = {} if workload.startswith("W1-client") else {"every_job_done": True}
    return {
        "workload": labelled(workload, backend),
        "backend": backend,
        "what": what,
        "runs": runs,
        "n": n,
        **figures,
        **checked,
        "target": target,
        "met": met,
    }


REDIS_NOTE = (
    "spoold on Redis: the daemon's config says [spool] backend = \"redis\" with the bench's "
    "own redis-server (appendonly yes, appendfsync always: every submit and every record is "
    "fsynced by Redis before its reply) and a spool name of this run's own; the client "
    "submits with spoold.client.job_payload + submitter_for(config) (one FCALL spoold_submit "
    "each); every job's done record is read back from Redis"
)


def backend_what(what: str, backend: str) -> str:
    return what if backend == "files" else f"{what}. {REDIS_NOTE}"


# -- W1: throughput --


def w1_default(ctx: Context) -> list[dict[str, Any]]:
    n = ctx.sizes["W1"]
    spoold: dict[str, list[float]] = {b: [] for b in ctx.backends}
    enqueue: dict[str, list[float]] = {b: [] for b in ctx.backends}
    drained: dict[str, list[float]] = {b: [] for b in ctx.backends}
    fcall: list[float] = []
    ceiling, forks = [], []
    for run in range(ctx.runs):
        progress(f"W1 default run {run + 1}/{ctx.runs}: {n} no-op jobs on {'+'.join(ctx.backends)}")
        with ctx.folder("w1") as folder:
            if run % 2:  # the ceiling goes first in every other run, in case order matters
                ceiling.append(dispatch_ceiling(folder / "ceiling", n, fork=True, fsync=True))
            for backend in ctx.order(run):
                os.sync()
                spool = ctx.spool(folder, backend, fsync=True)
                with running_daemon(spool) as daemon:
                    result = run_batch(spool, daemon, n, durable=True)
                spoold[backend].append(result["jobs_per_s"])
                enqueue[backend].append(result["enqueue_per_s"])
            os.sync()
            if not run % 2:
                ceiling.append(dispatch_ceiling(folder / "ceiling", n, fork=True, fsync=True))
            for backend in ctx.backends:
                if backend == "files":
                    rate = drain_rate(folder / "drain", n, fsync=True, per_process=1)
                else:
                    rate, submits = redis_drain_rate(
                        ctx, folder / "drain-redis", n, fsync=True, per_process=1
                    )
                    fcall.append(submits)
                drained[backend].append(rate)
            forks.append(float(ceiling_process("fork", "--n", str(n))["rate"]))
    entries = []
    for backend in ctx.backends:
        ratio = ratios(spoold[backend], ceiling)
        vs_rq = median(spoold[backend]) / RQ_JOBS_PER_S
        extra: dict[str, Any] = {}
        if backend == "redis":
            extra = {
                "redis_fcall_submit_per_s": spread(fcall, 1),
                "redis_fcall_submit_what": "a plain loop of FCALL spoold_submit (json.dumps a "
                "job, one call, one connection) from one client, no daemon running: what the "
                "client is bounded by (it fills the backlog of drain_jobs_per_s below)",
                "client_over_fcall_loop": round(median(ratios(enqueue[backend], fcall)), 3),
            }
        entries.append(
            entry(
                "W1",
                backend_what(
                    "throughput, default config (a fresh process per attempt, fsync on): "
                    f"{n} no-op jobs enqueued as fast as the client can (durable=True) into an "
                    "idle daemon; jobs/s from the first enqueue to the last job's own end time",
                    backend,
                ),
                ctx.runs,
                n,
                target=">= 85% of the fork+fsync ceiling with 2 children; >= 5x RQ (158 jobs/s)",
                met=median(ratio) >= 0.85 and vs_rq >= 5,
                backend=backend,
                unit="jobs/s",
                spoold=spread(spoold[backend], 1),
                ceiling=spread(ceiling, 1),
                ceiling_what="one process: list incoming/, per job read + json.loads + rename "
                "into active/ + fork a child that exits at once (2 at a time, waitpid), after "
                "the reap write done/<id>.json (tmp + fsync + rename) and unlink "
                "active/<id>.json",
                ratio=round(median(ratio), 3),
                ratio_runs=[round(r, 3) for r in ratio],
                client_enqueue_per_s_during_run=spread(enqueue[backend], 1),
                **extra,
                rq_reference={
                    "jobs_per_s": RQ_JOBS_PER_S,
                    "source": RQ_SOURCE,
                    "spoold_over_rq": round(vs_rq, 2),
                },
                informative={
                    "launcher_fork_ceiling_children_per_s": spread(forks, 1),
                    "what": "a single-threaded process forking children that exit at once, "
                    "2 at a time",
                    **_drain_figures(drained[backend], ceiling, backend),
                },
            )
        )
    return entries


def _drain_figures(drained: list[float], ceiling: list[float], backend: str) -> dict[str, Any]:
    """The informative drain figures: spoold on a waiting backlog, as the ceiling runs."""
    where = (
        "waiting in incoming/"
        if backend == "files"
        else "waiting in Redis (put there by the FCALL spoold_submit loop)"
    )
    return {
        "drain_jobs_per_s": spread(drained, 1),
        "drain_ratio_to_ceiling": round(median(ratios(drained, ceiling)), 3),
        "drain_what": f"the same N jobs {where} before the daemon starts, no client "
        "running: jobs/s from READY=1 to the last job's end (the ceiling too times a waiting "
        "backlog, while the figure above shares the 2 cores with the client)",
    }


def w1_fast(ctx: Context) -> list[dict[str, Any]]:
    n, per_process = ctx.sizes["W1"], ctx.jobs_per_process
    name = f"W1-fast (max_jobs_per_process={per_process}, fsync=false)"
    what = (
        f"throughput with [worker] max_jobs_per_process = {per_process} and [spool] fsync = "
        f"false: {n} no-op jobs enqueued with durable=False into an idle daemon"
    )
    target = ">= 60% of the no-fork ceiling (fsync off)"
    spoold: dict[str, list[float]] = {b: [] for b in ctx.backends}
    drained: dict[str, list[float]] = {b: [] for b in ctx.backends}
    ceiling, ceiling_fsync = [], []
    for run in range(ctx.runs):
        progress(f"W1 fast run {run + 1}/{ctx.runs}: {n} no-op jobs on {'+'.join(ctx.backends)}")
        with ctx.folder("w1fast") as folder:
            if run % 2:  # the ceiling goes first in every other run, in case order matters
                ceiling.append(dispatch_ceiling(folder / "c1", n, fork=False, fsync=False))
            try:
                for backend in ctx.order(run):
                    os.sync()
                    spool = ctx.spool(folder, backend, fsync=False, per_process=per_process)
                    with running_daemon(spool) as daemon:
                        result = run_batch(spool, daemon, n, durable=False)
                    spoold[backend].append(result["jobs_per_s"])
            except DaemonRefused as exc:
                progress(f"W1 fast skipped: {exc}")
                return [
                    {
                        "workload": labelled(name, backend),
                        "backend": backend,
                        "what": what,
                        "target": target,
                        "skipped": str(exc),
                    }
                    for backend in ctx.backends
                ]
            os.sync()
            if not run % 2:
                ceiling.append(dispatch_ceiling(folder / "c1", n, fork=False, fsync=False))
            ceiling_fsync.append(dispatch_ceiling(folder / "c2", n, fork=False, fsync=True))
            for backend in ctx.backends:
                if backend == "files":
                    rate = drain_rate(folder / "drain", n, fsync=False, per_process=per_process)
                else:
                    rate, _ = redis_drain_rate(
                        ctx, folder / "drain-redis", n, fsync=False, per_process=per_process
                    )
                drained[backend].append(rate)
    entries = []
    for backend in ctx.backends:
        ratio = ratios(spoold[backend], ceiling)
        note = {}
        if backend == "redis":
            note = {
                "note": "fsync = false and durable=False change nothing on Redis, which still "
                "fsyncs each submit and each record (appendfsync always, which the backend "
                "requires): the no-fork ceiling with fsync is the closer comparison"
            }
        entries.append(
            entry(
                name,
                backend_what(what, backend),
                ctx.runs,
                n,
                target=target,
                met=median(ratio) >= 0.60,
                backend=backend,
                unit="jobs/s",
                spoold=spread(spoold[backend], 1),
                ceiling=spread(ceiling, 1),
                ceiling_what="the fork+fsync ceiling's loop with the job called inline (no "
                "fork) and no fsync",
                ratio=round(median(ratio), 3),
                ratio_runs=[round(r, 3) for r in ratio],
                **note,
                informative={
                    "no_fork_ceiling_with_fsync_jobs_per_s": spread(ceiling_fsync, 1),
                    "ratio_to_it": round(median(ratios(spoold[backend], ceiling_fsync)), 3),
                    **_drain_figures(drained[backend], ceiling, backend),
                },
            )
        )
    return entries


CLIENT_CHUNK = 100  # enqueues per turn when the client and its ceilings take turns
CLIENT_FIGURES = ("durable", "fsync", "dirsync", "fast", "plain",
                  "redis_submitter", "redis_fcall", "redis_config")  # fmt: skip


def _time_client(root: Path, n: int, *, durable: bool) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run_background_job(JOB_CLASS, "noop", [str(root / "jobs.log")], spool=root, durable=durable)
    return n / (time.perf_counter() - start)


def _file_step(key: str, root: Path) -> Callable[[int], float]:
    """Seconds for n enqueues into ``root``: the client, or one of the ceiling loops."""

    def step(n: int) -> float:
        if key in ("durable", "fast"):
            return n / _time_client(root, n, durable=key == "durable")
        rate = ceilings.enqueue(root, n, str(root / "jobs.log"), fsync=key != "plain",
                                dir_fsync=key == "dirsync")  # fmt: skip
        return n / rate

    return step


@contextmanager
def client_config(config: Path) -> Iterator[None]:
    """SPOOLD_CONFIG names ``config`` (and no SPOOLD_SPOOL_DIR) in this process, meanwhile."""
    saved = {k: os.environ.get(k) for k in ("SPOOLD_CONFIG", "SPOOLD_SPOOL_DIR")}
    os.environ["SPOOLD_CONFIG"] = str(config)
    os.environ.pop("SPOOLD_SPOOL_DIR", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _redis_steps(ctx: Context, folder: Path) -> dict[str, Callable[[int], float]]:
    """The Redis client's turns: the bench's submit path (payload + submitter_for), the
    plain FCALL loop, and ``run_background_job`` as an application calls it (no spool=,
    SPOOLD_CONFIG naming the config: it reads the config on every call)."""
    from spoold.backends.redis.connection import load_library

    spools = {key: ctx.spool(folder / key, "redis") for key in ("submitter", "fcall", "config")}
    load_library(ctx.redis_client)  # server-wide; the daemon loads it too, none runs here
    fcalls = [0]

    def submitter(n: int) -> float:
        spool = spools["submitter"]
        start = time.perf_counter()
        for _ in range(n):
            spool.submit(durable=True)
        return time.perf_counter() - start

    def fcall(n: int) -> float:
        place = spools["fcall"].redis
        assert place is not None
        log = str(spools["fcall"].job_log)
        rate, _ids = ceilings.redis_submit(place.client, place.key, n, log, start=fcalls[0])
        fcalls[0] += n
        return n / rate

    def config(n: int) -> float:
        spool = spools["config"]
        log = [str(spool.job_log)]
        with client_config(spool.config):
            start = time.perf_counter()
            for _ in range(n):
                run_background_job(JOB_CLASS, "noop", log)
            return time.perf_counter() - start

    return {"redis_submitter": submitter, "redis_fcall": fcall, "redis_config": config}


def _take_turns(steps: dict[str, Callable[[int], float]], n: int, flip: bool) -> dict[str, float]:
    """Jobs/s of each step, run in turns of CLIENT_CHUNK enqueues each.

    This VM's disk goes through slow spells of seconds (fsyncs take ten times as
    long): figures taken one after the other can land in different spells, and
    turns of a few hundred milliseconds make them share every spell.
    """
    keys = tuple(steps)
    spent = dict.fromkeys(keys, 0.0)
    os.sync()  # the last workload's dirty pages would otherwise be written back meanwhile
    done = 0
    while done < n:
        size = min(CLIENT_CHUNK, n - done)
        order = reversed(keys) if flip else keys
        for key in order:
            spent[key] += steps[key](size)
        done += size
        flip = not flip
    return {key: n / spent[key] for key in keys}


def w1_client(ctx: Context) -> list[dict[str, Any]]:
    """The client alone (no daemon running), against tmp + [fsync] + rename loops, and on
    Redis against a plain FCALL spoold_submit loop."""
    n = ctx.sizes["client"]
    figures: dict[str, list[float]] = {k: [] for k in CLIENT_FIGURES}
    for run in range(ctx.runs):
        progress(f"W1 client run {run + 1}/{ctx.runs}: {n} enqueues on {'+'.join(ctx.backends)}")
        with ctx.folder("client") as folder:
            # Each figure next to its ceilings, taking turns with them.
            groups: list[dict[str, Callable[[int], float]]] = []
            if "files" in ctx.backends:
                for keys in (("fast", "plain"), ("durable", "fsync", "dirsync")):
                    groups.append(
                        {k: _file_step(k, ceilings.make_folders(folder / k)) for k in keys}
                    )
            if "redis" in ctx.backends:
                groups.append(_redis_steps(ctx, folder))
            for steps in groups:
                for key, rate in _take_turns(steps, n, flip=run % 2 == 1).items():
                    figures[key].append(rate)
    entries = []
    common = "spoold.client.run_background_job from one Python process, no daemon running"
    if "files" in ctx.backends:
        durable_ratio = ratios(figures["durable"], figures["fsync"])
        fast_ratio = ratios(figures["fast"], figures["plain"])
        entries += [
            entry(
                "W1-client (durable=True)",
                f"client enqueue rate: {n} jobs, {common}",
                ctx.runs,
                n,
                target=">= 90% of the tmp+fsync+rename ceiling",
                met=median(durable_ratio) >= 0.90,
                unit="jobs/s",
                spoold=spread(figures["durable"], 1),
                ceiling=spread(figures["fsync"], 1),
                ceiling_what="a loop: json.dumps a job of the same size, write tmp/<id>.json, "
                "fsync it, rename into incoming/",
                ratio=round(median(durable_ratio), 3),
                ratio_runs=[round(r, 3) for r in durable_ratio],
                informative={
                    "ceiling_with_incoming_dir_fsync_jobs_per_s": spread(figures["dirsync"], 1),
                    "ratio_to_it": round(median(ratios(figures["durable"], figures["dirsync"])), 3),
                    "note": "the client also fsyncs incoming/ after the rename (README's "
                    "protocol); the issue's ceiling does not, this one does",
                },
            ),
            entry(
                "W1-client (durable=False)",
                f"client enqueue rate without fsync: {n} jobs, {common}",
                ctx.runs,
                n,
                target=">= 90% of the tmp+rename ceiling",
                met=median(fast_ratio) >= 0.90,
                unit="jobs/s",
                spoold=spread(figures["fast"], 1),
                ceiling=spread(figures["plain"], 1),
                ceiling_what="the same loop without fsync",
                ratio=round(median(fast_ratio), 3),
                ratio_runs=[round(r, 3) for r in fast_ratio],
            ),
        ]
    if "redis" in ctx.backends:
        ratio = ratios(figures["redis_submitter"], figures["redis_fcall"])
        entries.append(
            entry(
                "W1-client",
                f"client submit rate on Redis: {n} jobs through spoold.client.job_payload + "
                "submitter_for(config) (one FCALL spoold_submit per job on the connection the "
                "client keeps), from one Python process, no daemon running; the bench's "
                "redis-server fsyncs each one (appendfsync always)",
                ctx.runs,
                n,
                target=">= 90% of the plain FCALL loop",
                met=median(ratio) >= 0.90,
                backend="redis",
                unit="jobs/s",
                spoold=spread(figures["redis_submitter"], 1),
                ceiling=spread(figures["redis_fcall"], 1),
                beside="W1-client (durable=True)",  # bench.run gives its figure beside
                ceiling_what="a loop on one redis-py connection: json.dumps a job of the same "
                "size, FCALL spoold_submit 1 <prefix> <id> <job> (bench.ceilings.redis_submit)",
                ratio=round(median(ratio), 3),
                ratio_runs=[round(r, 3) for r in ratio],
                informative={
                    "run_background_job_via_SPOOLD_CONFIG_per_s": spread(
                        figures["redis_config"], 1
                    ),
                    "ratio_to_fcall_loop": round(
                        median(ratios(figures["redis_config"], figures["redis_fcall"])), 3
                    ),
                    "what": "run_background_job(class, method, params) with no spool= and "
                    "SPOOLD_CONFIG naming the Redis config, as an application calls it "
                    "(it stats the config file on every call, and reads it only when it changed)",
                },
            )
        )
    return entries


# -- W2: latency --


def feed_steadily(submit: Callable[[], str], n: int) -> tuple[dict[str, float], list[float]]:
    """One job every 20 ms through ``submit``: ({job id: time the call returned},
    each call's duration in ms)."""
    returned = {}
    calls = []
    start = time.monotonic()
    for i in range(n):
        pause = start + i * W2_INTERVAL - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        began = time.perf_counter()
        job_id = submit()
        returned[job_id] = time.time()
        calls.append((time.perf_counter() - began) * 1000)
    return returned, calls


def latencies_ms(returned: dict[str, float], log: JobLog) -> dict[str, float]:
    values = [(log.times[job_id][0] - t) * 1000 for job_id, t in returned.items()]
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def w2_ceiling(folder: Path, n: int) -> dict[str, float]:
    root = ceilings.make_folders(folder)
    log = JobLog(folder / "jobs.log")
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.ceilings",
            "poll",
            "--root",
            str(root),
            "--n",
            str(n),
            "--log",
            str(log.path),
            "--fsync",
        ],
        cwd=ROOT,
        env=daemon_env(),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise BenchError("the W2 ceiling did not start")
            params = [str(log.path)]
            returned, _calls = feed_steadily(
                lambda: run_background_job(JOB_CLASS, "noop", params, spool=root, durable=False),
                n,
            )
            deadline = time.monotonic() + 60
            while log.poll() < n:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise BenchError(f"W2 ceiling: {log.lines} of {n} jobs started")
                time.sleep(0.02)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return latencies_ms(returned, log)


def w2_latency(ctx: Context) -> list[dict[str, Any]]:
    return _w2(ctx, 1)


def w2_reuse(ctx: Context) -> list[dict[str, Any]]:
    return _w2(ctx, ctx.jobs_per_process)


def _config_text(per_process: int) -> str:
    if per_process == 1:
        return "default config"
    return f"max_jobs_per_process = {per_process} (fsync on)"


def _w2(ctx: Context, per_process: int) -> list[dict[str, Any]]:
    name = "W2" if per_process == 1 else "W2-reuse"
    n = ctx.sizes["W2"]
    keys = ("p50", "p90", "p99", "max")
    spoold: dict[str, dict[str, list[float]]] = {b: {k: [] for k in keys} for b in ctx.backends}
    calls: dict[str, dict[str, list[float]]] = {b: {"p50": [], "p99": []} for b in ctx.backends}
    ceiling: dict[str, list[float]] = {k: [] for k in keys}
    for run in range(ctx.runs):
        progress(
            f"{name} run {run + 1}/{ctx.runs}: {n} jobs, one every 20 ms, "
            f"on {'+'.join(ctx.backends)}"
        )
        with ctx.folder("w2") as folder:
            for backend in ctx.order(run):
                spool = ctx.spool(folder, backend, fsync=True, per_process=per_process)
                with running_daemon(spool) as daemon:
                    log = JobLog(spool.job_log)
                    submit_one = functools.partial(spool.submit, durable=False)
                    returned, durations = feed_steadily(submit_one, n)
                    wait_for_jobs(spool, log, n, daemon)
                    check_all_done(spool, log, returned)
                for key, value in latencies_ms(returned, log).items():
                    spoold[backend][key].append(value)
                calls[backend]["p50"].append(percentile(durations, 50))
                calls[backend]["p99"].append(percentile(durations, 99))
            for key, value in w2_ceiling(folder / "ceiling", n).items():
                ceiling[key].append(value)
    entries = []
    for backend in ctx.backends:
        p50, p99 = median(spoold[backend]["p50"]), median(spoold[backend]["p99"])
        call = (
            "durable=False, so the call is ~0.1 ms and its fsyncs do not count"
            if backend == "files"
            else "on Redis the call waits for the server's fsync (appendfsync always), "
            "which is before the moment it returns and so does not count"
        )
        entries.append(
            entry(
                name,
                backend_what(
                    f"latency, {_config_text(per_process)}: {n} jobs, one every 20 ms, into an "
                    "idle daemon; enqueue-to-start = the job's own start time minus the moment "
                    f"the client call returned ({call})",
                    backend,
                ),
                ctx.runs,
                n,
                target="p50 <= 1.5 ms, p99 <= 5 ms",
                met=p50 <= 1.5 and p99 <= 5,
                backend=backend,
                unit="ms",
                spoold={k: spread(v, 3) for k, v in spoold[backend].items()},
                ceiling={k: spread(v, 3) for k, v in ceiling.items()},
                ceiling_what="the same feeder (the file client, durable=False); one process "
                "lists incoming/ every 0.1 ms, reads + json.loads + renames each new job into "
                "active/ and forks a child that records its start time (as the bench job "
                "does); records filed with fsync after the reap",
                ratio=round(median(ratios(spoold[backend]["p50"], ceiling["p50"])), 2),
                ratio_meaning="spoold's p50 over the ceiling's p50 (lower is better)",
                informative={
                    "client_call_ms": {k: spread(v, 3) for k, v in calls[backend].items()},
                    "what": "how long each submit call took (not part of the latency)",
                },
            )
        )
    return entries


# -- W3: real work --


def w3_real_work(ctx: Context) -> list[dict[str, Any]]:
    return _w3(ctx, 1)


def w3_reuse(ctx: Context) -> list[dict[str, Any]]:
    return _w3(ctx, ctx.jobs_per_process)


def _w3(ctx: Context, per_process: int) -> list[dict[str, Any]]:
    name = "W3" if per_process == 1 else "W3-reuse"
    n = ctx.sizes["W3"]
    spoold: dict[str, list[float]] = {b: [] for b in ctx.backends}
    for run in range(ctx.runs):
        progress(
            f"{name} run {run + 1}/{ctx.runs}: {n} jobs that sleep 50 ms "
            f"on {'+'.join(ctx.backends)}"
        )
        with ctx.folder("w3") as folder:
            for backend in ctx.order(run):
                spool = ctx.spool(folder, backend, fsync=True, per_process=per_process)
                with running_daemon(spool) as daemon:
                    result = run_batch(spool, daemon, n, "sleep", W3_SLEEP)
                spoold[backend].append(result["jobs_per_s"])
    entries = []
    for backend in ctx.backends:
        ratio = [v / W3_IDEAL for v in spoold[backend]]
        entries.append(
            entry(
                name,
                backend_what(
                    f"real work, {_config_text(per_process)}: {n} jobs that sleep 50 ms, "
                    "enqueued as fast as the client can (durable=True); jobs/s from the first "
                    "enqueue to the last end",
                    backend,
                ),
                ctx.runs,
                n,
                target=">= 95% of ideal",
                met=median(ratio) >= 0.95,
                backend=backend,
                unit="jobs/s",
                spoold=spread(spoold[backend], 2),
                ceiling={"median": W3_IDEAL, "min": W3_IDEAL, "max": W3_IDEAL},
                ceiling_what="ideal: 2 workers x 1 / 0.05 s (arithmetic, not a run)",
                ratio=round(median(ratio), 3),
                ratio_runs=[round(r, 3) for r in ratio],
            )
        )
    return entries


# -- W4: backlog --


def w4_ceiling(spool: BenchSpool, folder: Path) -> float:
    """Seconds from spawning the backlog ceiling to its first child's start."""
    log = JobLog(folder / "ceiling-jobs.log")
    spawned = time.time()
    ceiling_process("first", "--root", str(spool.root), "--log", str(log.path))
    if log.poll() != 1:
        raise BenchError("the W4 ceiling started no job")
    return min(s for s, _e in log.times.values()) - spawned


def w4_backlog(ctx: Context) -> list[dict[str, Any]]:
    n = ctx.sizes["W4"]
    keys = ("first_job_s", "ready_s", "drain_s", "daemon_peak_rss_mb", "launcher_peak_rss_mb")
    spoold: dict[str, list[float]] = {k: [] for k in keys}
    ceiling = []
    for run in range(ctx.runs):
        progress(f"W4 run {run + 1}/{ctx.runs}: {n} jobs waiting in incoming/ at start")
        with ctx.folder("w4") as folder:
            spool = BenchSpool(
                folder / "spoold", fsync=False, max_jobs_per_process=ctx.jobs_per_process
            )
            ids = [submit(spool, durable=False) for _ in range(n)]
            ceiling.append(w4_ceiling(spool, folder))
            log = JobLog(spool.job_log)
            daemon = BenchDaemon(spool).start()
            try:
                daemon.wait_ready(timeout=600)
                ready = time.time()
                wait_for_jobs(spool, log, n, daemon)
                check_all_done(spool, log, ids)
                peak = daemon.footprint()
            finally:
                daemon.stop()
            starts = [s for s, _e in log.times.values()]
            spoold["first_job_s"].append(min(starts) - daemon.spawned_at)
            spoold["ready_s"].append(ready - daemon.spawned_at)
            spoold["drain_s"].append(max(e for _s, e in log.times.values()) - daemon.spawned_at)
            spoold["daemon_peak_rss_mb"].append(peak["daemon_hwm_kb"] * 1024 / MB)
            spoold["launcher_peak_rss_mb"].append(peak.get("launcher_hwm_kb", 0) * 1024 / MB)
    first, rss = median(spoold["first_job_s"]), median(spoold["daemon_peak_rss_mb"])
    return [
        entry(
            "W4",
            f"backlog, with max_jobs_per_process = {ctx.jobs_per_process} and fsync = false "
            f"(so that {n:,} jobs drain in minutes): {n} jobs already in incoming/ when the daemon "
            "starts; seconds from spawning `spoold run` to the first job's own start time and "
            "to the last job's end; peak RSS (VmHWM) of the daemon and of its launcher",
            ctx.runs,
            n,
            target="first job started <= 1 s after start; daemon peak RSS <= 80 MB",
            met=first <= 1.0 and rss <= 80,
            unit="s / MB",
            spoold={k: spread(v, 3) for k, v in spoold.items()},
            drain_jobs_per_s=round(n / median(spoold["drain_s"]), 1),
            ceiling={"first_job_s": spread(ceiling, 4)},
            ceiling_what="informative: a fresh `python -m bench.ceilings first` lists incoming/, "
            "reads and parses the oldest job and forks a child that records its start time; "
            "seconds from spawn to that start",
            ratio=round(median(ratios(spoold["first_job_s"], ceiling)), 1),
            ratio_meaning="spoold's time to the first job over the ceiling's (lower is better)",
        )
    ]


# -- W5: long life --


def _settled_footprint(daemon: BenchDaemon) -> dict[str, Any]:
    """The footprint once the launcher's children stay the same for 0.3 s: every job is
    done by then, and what is left are idle workers (a spare, or reused workers)."""
    deadline = time.monotonic() + 30
    seen, same = "?", 0
    while time.monotonic() < deadline and same < 3:
        launcher = daemon.launcher_pid()
        try:
            children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text()
        except (OSError, TypeError):
            children = "?"
        same = same + 1 if children == seen else 0
        seen = children
        time.sleep(0.1)
    return daemon.footprint()


def w5_one_daemon(folder: Path, n: int, per_process: int) -> list[dict[str, Any]]:
    """N jobs through one daemon; the footprint at start, after N/10 and after N."""
    spool = BenchSpool(folder / "spoold", fsync=False, max_jobs_per_process=per_process)
    log = JobLog(spool.job_log)
    marks = [max(1, n // 10), n]
    ids: list[str] = []
    samples = []
    with running_daemon(spool) as daemon:
        samples.append({"after_jobs": 0, **_settled_footprint(daemon)})
        started = time.time()
        for mark in marks:
            while len(ids) < mark:
                batch = min(mark - len(ids), 500)
                # room for the batch: no more than W5_MAX_WAITING unfinished after it
                wait_for_jobs(spool, log, len(ids) + batch - W5_MAX_WAITING, daemon)
                ids.extend(submit(spool, durable=False) for _ in range(batch))
            wait_for_jobs(spool, log, mark, daemon)
            check_all_done(spool, log, ids)
            samples.append(
                {
                    "after_jobs": mark,
                    "seconds": round(time.time() - started, 1),
                    **_settled_footprint(daemon),
                }
            )
    return samples


def w5_long_life(ctx: Context) -> list[dict[str, Any]]:
    n = ctx.sizes["W5"]
    runs = []
    for run in range(ctx.runs):
        progress(f"W5 run {run + 1}/{ctx.runs}: {n} jobs through one daemon")
        with ctx.folder("w5") as folder:
            runs.append(w5_one_daemon(folder, n, ctx.jobs_per_process))

    def mb(samples: list[dict[str, Any]], i: int, key: str) -> float:
        return float(samples[i][key]) * 1024 / MB

    idle = [max(mb(s, i, "daemon_rss_kb") for i in range(3)) for s in runs]
    growth = [mb(s, 2, "daemon_rss_kb") - mb(s, 0, "daemon_rss_kb") for s in runs]
    late = [mb(s, 2, "daemon_rss_kb") - mb(s, 1, "daemon_rss_kb") for s in runs]

    # The launcher holds 3 descriptors per worker it has (pidfd, report and request
    # pipes), and how many idle workers it has at a sample varies (0 to 2, as they
    # are replaced every max_jobs_per_process jobs): its own are what is left.
    def own_fds(sample: dict[str, Any]) -> int:
        return int(sample["launcher_fds"]) - 3 * int(sample.get("launcher_children", 0))

    fds_flat = all(
        s[0]["daemon_fds"] == s[1]["daemon_fds"] == s[2]["daemon_fds"]
        and own_fds(s[0]) == own_fds(s[1]) == own_fds(s[2])
        for s in runs
    )
    return [
        entry(
            "W5",
            f"long life, with max_jobs_per_process = {ctx.jobs_per_process} and fsync = false "
            f"(the fork-per-attempt path's long life is `make chaos`'s test_long_life): "
            f"{n} jobs through one daemon (fed by the client, "
            f"durable=False, at most {W5_MAX_WAITING} waiting); RSS and open fds of the daemon "
            f"and its launcher when idle at start, after {marks_text(n)}",
            ctx.runs,
            n,
            target="daemon RSS <= 40 MB idle; growth <= 5 MB and fds flat over the run",
            met=median(idle) <= 40 and median(growth) <= 5 and fds_flat,
            unit="MB",
            spoold={
                "daemon_idle_rss_mb_max": spread(idle, 2),
                "daemon_rss_growth_mb": spread(growth, 2),
                "daemon_rss_growth_after_first_tenth_mb": spread(late, 2),
            },
            fds_flat=fds_flat,
            samples=runs,
            ceiling=None,
            ceiling_what="none (targets only)",
        )
    ]


def marks_text(n: int) -> str:
    return f"{max(1, n // 10):,} and after {n:,} jobs"


# Each workload's parts; a part that fails is reported as such and the next one runs.
WORKLOADS: dict[str, list[Callable[[Context], list[dict[str, Any]]]]] = {
    "W1": [w1_default, w1_fast, w1_client],
    "W2": [w2_latency, w2_reuse],
    "W3": [w3_real_work, w3_reuse],
    "W4": [w4_backlog],
    "W5": [w5_long_life],
}

# The backends each workload runs spoold on: W4 and W5 measure the file spool only.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "W1": BACKENDS,
    "W2": BACKENDS,
    "W3": BACKENDS,
    "W4": ("files",),
    "W5": ("files",),
}
