"""The five workloads (W1..W5), each run against the real daemon beside its ceiling.

Every function takes the suite's ``Context`` and returns result entries: plain
dicts that ``bench.run`` prints as JSON. A run that loses a job, stalls or
sees its daemon die raises BenchError; ``bench.run`` records that as the
workload's error. Figures are medians of ``ctx.runs`` runs with their spread;
a ratio is the median of the per-run ratios (spoold and its ceiling run one
after the other in each run, so a noisy moment hits both).
"""

from __future__ import annotations

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
    check_all_done,
    daemon_env,
    percentile,
    progress,
    spread,
    wait_for_jobs,
)
from spoold.client import run_background_job

RQ_JOBS_PER_S = 158.0  # RQ's fork-per-job worker: reported in issue #5, not measured here
RQ_SOURCE = "reported in issue #5, not measured here"
W2_INTERVAL = 0.02
W3_SLEEP = 0.05
W3_IDEAL = CONCURRENCY / W3_SLEEP  # 40 jobs/s with 2 workers
W5_MAX_WAITING = 2000  # W5 feeds the next jobs once no more than this many wait
MB = 1e6  # targets are in MB (10^6 bytes); /proc reports kB (KiB)


@dataclass
class Context:
    """What every workload needs: where to put spools, how many runs, the sizes."""

    workdir: Path
    runs: int
    sizes: dict[str, int]
    jobs_per_process: int
    _count: int = field(default=0)

    @contextmanager
    def folder(self, name: str) -> Iterator[Path]:
        """A fresh folder for one run, removed afterwards (W4 and W5 leave 100,000 files)."""
        self._count += 1
        path = self.workdir / f"{self._count:03d}-{name}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_daemon(spool: BenchSpool) -> Iterator[BenchDaemon]:
    daemon = BenchDaemon(spool).start()
    try:
        yield daemon.wait_ready().wait_idle()
    finally:
        daemon.stop()


def submit(spool: BenchSpool, method: str = "noop", *args: Any, durable: bool = True) -> str:
    """One job through the real client: Bench.<method>(job log, *args)."""
    return run_background_job(
        JOB_CLASS, method, [str(spool.job_log), *args], spool=spool.root, durable=durable
    )


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
    ids = [submit(spool, method, *args, durable=durable) for _ in range(n)]
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
    log = JobLog(spool.job_log)
    daemon = BenchDaemon(spool).start()
    try:
        daemon.wait_ready()
        ready = time.time()
        wait_for_jobs(spool, log, n, daemon)
        check_all_done(spool, log, [name[:-5] for name in names])
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


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def entry(
    workload: str, what: str, runs: int, n: int, target: str, met: bool, **figures: Any
) -> dict[str, Any]:
    """One result. A workload that ran jobs through spoold gets ``every_job_done``: each
    run checked that every enqueued id has its done/ record and its own job-log line
    (a run that lost one raised BenchError instead)."""
    checked = {} if workload.startswith("W1-client") else {"every_job_done": True}
    return {
        "workload": workload,
        "what": what,
        "runs": runs,
        "n": n,
        **figures,
        **checked,
        "target": target,
        "met": met,
    }


# -- W1: throughput --


def w1_default(ctx: Context) -> list[dict[str, Any]]:
    n = ctx.sizes["W1"]
    spoold, enqueue, ceiling, forks, drained = [], [], [], [], []
    for run in range(ctx.runs):
        progress(f"W1 default run {run + 1}/{ctx.runs}: {n} no-op jobs")
        with ctx.folder("w1") as folder:
            if run % 2:  # the ceiling goes first in every other run, in case order matters
                ceiling.append(dispatch_ceiling(folder / "ceiling", n, fork=True, fsync=True))
            os.sync()
            spool = BenchSpool(folder / "spoold", fsync=True)
            with running_daemon(spool) as daemon:
                result = run_batch(spool, daemon, n, durable=True)
            spoold.append(result["jobs_per_s"])
            enqueue.append(result["enqueue_per_s"])
            os.sync()
            if not run % 2:
                ceiling.append(dispatch_ceiling(folder / "ceiling", n, fork=True, fsync=True))
            drained.append(drain_rate(folder / "drain", n, fsync=True, per_process=1))
            forks.append(float(ceiling_process("fork", "--n", str(n))["rate"]))
    ratio = ratios(spoold, ceiling)
    vs_rq = median(spoold) / RQ_JOBS_PER_S
    return [
        entry(
            "W1",
            "throughput, default config (a fresh process per attempt, fsync on): "
            f"{n} no-op jobs enqueued as fast as the client can (durable=True) into an idle "
            "daemon; jobs/s from the first enqueue to the last job's own end time",
            ctx.runs,
            n,
            target=">= 85% of the fork+fsync ceiling with 2 children; >= 5x RQ (158 jobs/s)",
            met=median(ratio) >= 0.85 and vs_rq >= 5,
            unit="jobs/s",
            spoold=spread(spoold, 1),
            ceiling=spread(ceiling, 1),
            ceiling_what="one process: list incoming/, per job read + json.loads + rename "
            "into active/ + fork a child that exits at once (2 at a time, waitpid), after the "
            "reap write done/<id>.json (tmp + fsync + rename) and unlink active/<id>.json",
            ratio=round(median(ratio), 3),
            ratio_runs=[round(r, 3) for r in ratio],
            client_enqueue_per_s_during_run=spread(enqueue, 1),
            rq_reference={
                "jobs_per_s": RQ_JOBS_PER_S,
                "source": RQ_SOURCE,
                "spoold_over_rq": round(vs_rq, 2),
            },
            informative={
                "launcher_fork_ceiling_children_per_s": spread(forks, 1),
                "what": "a single-threaded process forking children that exit at once, 2 at a time",
                **_drain_figures(drained, ceiling),
            },
        )
    ]


def _drain_figures(drained: list[float], ceiling: list[float]) -> dict[str, Any]:
    """The informative drain figures: spoold on a waiting backlog, as the ceiling runs."""
    return {
        "drain_jobs_per_s": spread(drained, 1),
        "drain_ratio_to_ceiling": round(median(ratios(drained, ceiling)), 3),
        "drain_what": "the same N jobs waiting in incoming/ before the daemon starts, no client "
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
    spoold, ceiling, ceiling_fsync, drained = [], [], [], []
    for run in range(ctx.runs):
        progress(f"W1 fast run {run + 1}/{ctx.runs}: {n} no-op jobs")
        with ctx.folder("w1fast") as folder:
            if run % 2:  # the ceiling goes first in every other run, in case order matters
                ceiling.append(dispatch_ceiling(folder / "c1", n, fork=False, fsync=False))
            os.sync()
            try:
                spool = BenchSpool(folder / "spoold", fsync=False, max_jobs_per_process=per_process)
                with running_daemon(spool) as daemon:
                    spoold.append(run_batch(spool, daemon, n, durable=False)["jobs_per_s"])
            except DaemonRefused as exc:
                progress(f"W1 fast skipped: {exc}")
                return [{"workload": name, "what": what, "target": target, "skipped": str(exc)}]
            os.sync()
            if not run % 2:
                ceiling.append(dispatch_ceiling(folder / "c1", n, fork=False, fsync=False))
            ceiling_fsync.append(dispatch_ceiling(folder / "c2", n, fork=False, fsync=True))
            drained.append(drain_rate(folder / "drain", n, fsync=False, per_process=per_process))
    ratio = ratios(spoold, ceiling)
    return [
        entry(
            name,
            what,
            ctx.runs,
            n,
            target=target,
            met=median(ratio) >= 0.60,
            unit="jobs/s",
            spoold=spread(spoold, 1),
            ceiling=spread(ceiling, 1),
            ceiling_what="the fork+fsync ceiling's loop with the job called inline (no fork) "
            "and no fsync",
            ratio=round(median(ratio), 3),
            ratio_runs=[round(r, 3) for r in ratio],
            informative={
                "no_fork_ceiling_with_fsync_jobs_per_s": spread(ceiling_fsync, 1),
                "ratio_to_it": round(median(ratios(spoold, ceiling_fsync)), 3),
                **_drain_figures(drained, ceiling),
            },
        )
    ]


def _time_client(root: Path, n: int, *, durable: bool) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run_background_job(JOB_CLASS, "noop", [str(root / "jobs.log")], spool=root, durable=durable)
    return n / (time.perf_counter() - start)


CLIENT_CHUNK = 100  # enqueues per turn when the client and its ceilings take turns


def _client_step(key: str, root: Path, n: int) -> float:
    """Seconds for n enqueues into ``root``: the client, or one of the ceiling loops."""
    if key in ("durable", "fast"):
        return n / _time_client(root, n, durable=key == "durable")
    rate = ceilings.enqueue(root, n, str(root / "jobs.log"), fsync=key != "plain",
                            dir_fsync=key == "dirsync")  # fmt: skip
    return n / rate


def _take_turns(keys: tuple[str, ...], folder: Path, n: int, flip: bool) -> dict[str, float]:
    """Jobs/s of each of ``keys``, run in turns of CLIENT_CHUNK enqueues each.

    This VM's disk goes through slow spells of seconds (fsyncs take ten times as
    long): figures taken one after the other can land in different spells, and
    turns of a few hundred milliseconds make them share every spell.
    """
    roots = {key: ceilings.make_folders(folder / key) for key in keys}
    spent = dict.fromkeys(keys, 0.0)
    os.sync()  # the last workload's dirty pages would otherwise be written back meanwhile
    done = 0
    while done < n:
        size = min(CLIENT_CHUNK, n - done)
        order = reversed(keys) if flip else keys
        for key in order:
            spent[key] += _client_step(key, roots[key], size)
        done += size
        flip = not flip
    return {key: n / spent[key] for key in keys}


def w1_client(ctx: Context) -> list[dict[str, Any]]:
    """The client alone (no daemon running), against tmp + [fsync] + rename loops."""
    n = ctx.sizes["client"]
    figures: dict[str, list[float]] = {
        k: [] for k in ("durable", "fsync", "dirsync", "fast", "plain")
    }
    for run in range(ctx.runs):
        progress(f"W1 client run {run + 1}/{ctx.runs}: {n} enqueues x 5")
        with ctx.folder("client") as folder:
            # Each figure next to its ceilings, taking turns with them.
            for keys in (("fast", "plain"), ("durable", "fsync", "dirsync")):
                for key, rate in _take_turns(keys, folder, n, flip=run % 2 == 1).items():
                    figures[key].append(rate)
    durable_ratio = ratios(figures["durable"], figures["fsync"])
    fast_ratio = ratios(figures["fast"], figures["plain"])
    common = "spoold.client.run_background_job from one Python process, no daemon running"
    return [
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
                "note": "the client also fsyncs incoming/ after the rename (README's protocol); "
                "the issue's ceiling does not, this one does",
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


# -- W2: latency --


def feed_steadily(root: Path, log: str, n: int) -> dict[str, float]:
    """One job every 20 ms through the client (durable=False); {job id: time the call returned}."""
    returned = {}
    start = time.monotonic()
    for i in range(n):
        pause = start + i * W2_INTERVAL - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        job_id = run_background_job(JOB_CLASS, "noop", [log], spool=root, durable=False)
        returned[job_id] = time.time()
    return returned


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
            returned = feed_steadily(root, str(log.path), n)
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
    spoold: dict[str, list[float]] = {k: [] for k in keys}
    ceiling: dict[str, list[float]] = {k: [] for k in keys}
    for run in range(ctx.runs):
        progress(f"{name} run {run + 1}/{ctx.runs}: {n} jobs, one every 20 ms")
        with ctx.folder("w2") as folder:
            spool = BenchSpool(folder / "spoold", fsync=True, max_jobs_per_process=per_process)
            with running_daemon(spool) as daemon:
                log = JobLog(spool.job_log)
                returned = feed_steadily(spool.root, str(spool.job_log), n)
                wait_for_jobs(spool, log, n, daemon)
                check_all_done(spool, log, returned)
            for key, value in latencies_ms(returned, log).items():
                spoold[key].append(value)
            for key, value in w2_ceiling(folder / "ceiling", n).items():
                ceiling[key].append(value)
    p50, p99 = median(spoold["p50"]), median(spoold["p99"])
    return [
        entry(
            name,
            f"latency, {_config_text(per_process)}: {n} jobs, one every 20 ms, into an idle "
            "daemon; "
            "enqueue-to-start = the job's own start time minus the moment the client call "
            "returned (durable=False, so the call is ~0.1 ms and its fsyncs do not count)",
            ctx.runs,
            n,
            target="p50 <= 1.5 ms, p99 <= 5 ms",
            met=p50 <= 1.5 and p99 <= 5,
            unit="ms",
            spoold={k: spread(v, 3) for k, v in spoold.items()},
            ceiling={k: spread(v, 3) for k, v in ceiling.items()},
            ceiling_what="the same feeder; one process lists incoming/ every 0.1 ms, reads + "
            "json.loads + renames each new job into active/ and forks a child that records "
            "its start time (as the bench job does); records filed with fsync after the reap",
            ratio=round(median(ratios(spoold["p50"], ceiling["p50"])), 2),
            ratio_meaning="spoold's p50 over the ceiling's p50 (lower is better)",
        )
    ]


# -- W3: real work --


def w3_real_work(ctx: Context) -> list[dict[str, Any]]:
    return _w3(ctx, 1)


def w3_reuse(ctx: Context) -> list[dict[str, Any]]:
    return _w3(ctx, ctx.jobs_per_process)


def _w3(ctx: Context, per_process: int) -> list[dict[str, Any]]:
    name = "W3" if per_process == 1 else "W3-reuse"
    n = ctx.sizes["W3"]
    spoold = []
    for run in range(ctx.runs):
        progress(f"{name} run {run + 1}/{ctx.runs}: {n} jobs that sleep 50 ms")
        with ctx.folder("w3") as folder:
            spool = BenchSpool(folder / "spoold", fsync=True, max_jobs_per_process=per_process)
            with running_daemon(spool) as daemon:
                spoold.append(run_batch(spool, daemon, n, "sleep", W3_SLEEP)["jobs_per_s"])
    ratio = [v / W3_IDEAL for v in spoold]
    return [
        entry(
            name,
            f"real work, {_config_text(per_process)}: {n} jobs that sleep 50 ms, enqueued as "
            "fast as the client can (durable=True); jobs/s from the first enqueue to the last end",
            ctx.runs,
            n,
            target=">= 95% of ideal",
            met=median(ratio) >= 0.95,
            unit="jobs/s",
            spoold=spread(spoold, 2),
            ceiling={"median": W3_IDEAL, "min": W3_IDEAL, "max": W3_IDEAL},
            ceiling_what="ideal: 2 workers x 1 / 0.05 s (arithmetic, not a run)",
            ratio=round(median(ratio), 3),
            ratio_runs=[round(r, 3) for r in ratio],
        )
    ]


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
