"""spoold beside its peers: ``python -m bench.peers [--runs N] [--quick] [--only W1,W2,W3]
[--systems ...] [--no-ceilings] [--keep]`` (``make bench-peers``).

Installs RQ, Celery (Redis broker) and Huey into a venv of their own in the
bench's temp folder, starts a private redis-server, and runs W1, W2 and W3
on each system beside spoold in the same invocation, 2 workers everywhere.
Every system runs the same job body (bench/peerjobs.py), which appends one
line (enqueue time, start, end, pid) with one O_APPEND write; every figure
comes from those lines, never from a system's own log, and every run checks
that each enqueued job wrote exactly one line. In the same invocation, once
per run: the W1 and W2 ceilings of ``make bench`` (bench/workloads.py's
``dispatch_ceiling`` and ``w2_ceiling``; ``--no-ceilings`` skips them), with
spoold-files' ratio to each, and beside W1 two informative ones
(``guarded_ceiling``): its loop doing the fsyncs spoold's guarantees need
with a durable client beside it, and the same with each child running the
job in Python; and ``spoold-redis-4daemons`` runs W3 (2 x N jobs) on 4
daemons sharing one Redis queue, with the CPU of their process trees and of
the redis-server. See bench/README.md.

Prints one JSON document on stdout (progress and a table on stderr) and
writes it to bench/results/peers-latest.json and peers-<UTC time>.json.
``--report FILE`` prints the table of a saved document as Markdown.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import py_compile
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/peers.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_DIR,
    RESULTS,
    BenchError,
    git_commit,
    machine_info,
    percentile,
    precompile_spoold,
    progress,
    spread,
)
from bench.disk import DiskGate
from bench.peersystems import (
    WORKERS,
    LineLog,
    Peers,
    System,
    all_systems,
    check_lines,
    open_session,
    redis_flush,
    wait_lines,
)
from bench.redisserver import unavailable
from bench.run import _stop_on_sigterm, start_redis, stop_redis
from bench.workloads import (
    W2_INTERVAL,
    W3_SLEEP,
    Context,
    dispatch_ceiling,
    guarded_ceiling,
    median,
    w2_ceiling,
)

WORKLOADS = ("W1", "W2", "W3")
FULL = {"W1": 5000, "W2": 300, "W3": 400}
QUICK = {"W1": 500, "W2": 100, "W3": 100}
PEER_PACKAGES = ("rq", "celery[redis]", "huey", "redis")
NEEDS = {"rq": ("rq", "redis"), "celery": ("celery[redis]",), "huey": ("huey",)}
PIP_TIMEOUT = 900.0
SETTLE_LIMIT = 30.0  # seconds a run waits at most for the disk (bench/disk.py)
WHAT = {
    "W1": "N no-op jobs enqueued as fast as the client can into idle workers; jobs/s = N / "
    "(the last job's own end - the first enqueue)",
    "W2": "one job every 20 ms into idle workers; latency = the job's own start - its enqueue "
    "time (taken right before the enqueue call, so the call counts)",
    "W3": "N jobs that each sleep 50 ms, enqueued as fast as the client can; jobs/s as W1, "
    "against the ideal: slots x 1 / 0.05 s (40 with 2 workers; 160 for spoold-redis-4daemons, "
    "4 daemons x 2, which runs 2 x N jobs and also reports the CPU of its 4 daemons' process "
    "trees and of the redis-server over the run)",
}
CEILING_OF = "spoold-files"  # spoold's default: the system the ceilings are compared with
CEILINGS = {
    "W1": {
        "label": "W1 fork+fsync, 2 children (jobs/s)",
        "what": "bench/ceilings.py dispatch --fork --fsync, as make bench's W1 ceiling "
        "(bench.workloads.dispatch_ceiling): N no-op jobs waiting in incoming/ (written untimed); "
        "one fresh process lists incoming/, per job read + json.loads + rename into active/, "
        "forks a child that exits at once (2 at a time), files done/<id>.json (tmp, fsync, "
        "rename) after the reap; jobs/s over its own loop",
        "target": ">= 0.6",
        "ratio_meaning": "spoold-files' W1 jobs/s over the ceiling's (the same run)",
    },
    "W1-guarded": {
        "label": "W1 guarded: spoold's fsyncs, a durable client beside (jobs/s)",
        "what": "bench/ceilings.py guarded --client (bench.workloads.guarded_ceiling): the W1 "
        "ceiling's loop doing on disk what spoold's guarantees need (a power cut loses no job "
        "and runs none twice), as spoold's file store does it: before a record is filed the "
        "claims' folders (incoming/, active/) are fsynced; each record is written beside the "
        "job as active/<id>.to-done (fsync), the job unlinked, the record renamed into done/, "
        "and done/ fsynced once a turn; turns as spoold's daemon takes them; children exit at "
        "once. A forked client submits the N jobs durably meanwhile (tmp, fsync, rename, fsync "
        "incoming/) and the time runs from its start, as W1 times spoold",
        "target": "informative",
        "ratio_meaning": "spoold-files' W1 jobs/s over this ceiling's (the same run)",
    },
    "W1-guarded-job": {
        "label": "W1 guarded, each child running the job in Python (jobs/s)",
        "what": "bench/ceilings.py guarded --client --run-job: W1-guarded, with each child "
        "doing the least a runner with a Python process per attempt does: import the job's "
        "module after the fork (nothing is imported for a job before its check), call the "
        "bench's job body (one line to the log, as every system's W1 job), and report the "
        "outcome to its parent as a line of JSON on a pipe",
        "target": "informative",
        "ratio_meaning": "spoold-files' W1 jobs/s over this ceiling's (the same run)",
    },
    "W2": {
        "label": "W2 0.1 ms poll + fork (p50 ms)",
        "what": "bench/ceilings.py poll, as make bench's W2 ceiling (bench.workloads.w2_ceiling): "
        "the file client (durable=False) feeds one job every 20 ms; one fresh process lists "
        "incoming/ every 0.1 ms, reads + json.loads + renames each new job into active/ and forks "
        "a child that records its start time; records filed with fsync after the reap; latency = "
        "the child's start - the moment the client call returned",
        "target": "<= 1.3",
        "ratio_meaning": "spoold-files' W2 p50 over the ceiling's p50 (the same run); spoold's "
        "latency counted as the ceiling's, from the moment the enqueue call returned "
        "(ratio_with_call: spoold's W2 p50 as the table gives it, from before the call, "
        "which is durable=True there)",
    },
}
JOB_BODY = (
    "bench/peerjobs.py record(log, enqueued, sleep): sleeps if asked, then appends "
    '"<enqueued> <start> <end> <pid>" with one os.write on an O_APPEND descriptor; RQ '
    "enqueues it as it is, Celery and Huey through a decorated task calling it "
    "(bench/peer_celery.py, bench/peer_huey.py), spoold as peerjobs.Record.record "
    "(allowlisted). The enqueue time is taken by the enqueuer right before each enqueue "
    "call and passed as an argument"
)
FILE_SYSTEM = (
    "each run in a fresh folder under the bench's temp folder, kept until the invocation "
    "ends: this kind of VM's ext4 has no journal, and without one ext4 skips every inode "
    "deleted in the last 60 to 300 s when it makes a file (fs/ext4/ialloc.c, "
    "recently_deleted), so after thousands of deletions a file costs about 1 ms to make "
    "instead of 30 us (docs/PERFORMANCE.md): deleting a run's folder would slow the next "
    "system's run. Before each run (bench/disk.py): os.sync(), then probes of 200 create + "
    "write + rename pairs in a fresh folder, every 0.2 s until one is at least half the best "
    "probe of the invocation (at most --settle seconds, 30 by default; the best starts from "
    "10 s of probes before the first run): every system starts on a disk at speed, and pays "
    "for its own deletions. fs_probe_pairs_per_s: the last probe before each run; settle_s: "
    "the wait"
)
READINESS = (
    "spoold: READY=1, its launcher up, then 1 s idle (bench/workloads.py running_daemon). "
    "Peers: their worker processes up (RQ: both workers registered; Celery: a ping answered, "
    "2 pool children; Huey: the consumer's 2 worker processes), 2 warm-up jobs run (to "
    "another log), then 1 s idle. spoold's client runs in the bench's process, each peer's "
    "in a process of its own in the peers' venv (bench/peerclient.py)"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated workloads: W1,W2,W3")
    kinds = {s.name: s.kind for s in all_systems()}
    names = list(kinds)
    parser.add_argument(
        "--systems",
        default="",
        help="comma-separated systems, or kinds (spoold, rq, celery, huey: each of that kind): "
        + ", ".join(names),
    )
    parser.add_argument("--size", action="append", default=[], metavar="W1=N",
                        help="set one workload's N")  # fmt: skip
    parser.add_argument("--venv", type=Path, default=None,
                        help="the peers' venv here (made if missing, kept) instead of a fresh "
                        "one in the temp folder")  # fmt: skip
    parser.add_argument("--tmp", type=Path, default=None, help="where the temp folder goes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON is written")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--settle", type=float, default=SETTLE_LIMIT, metavar="SECONDS",
                        help="before each run, wait at most this long for the disk to be at "
                        f"speed (bench/disk.py; default {SETTLE_LIMIT:g}; 0: probe once, "
                        "no wait)")  # fmt: skip
    parser.add_argument("--no-ceilings", action="store_true",
                        help="do not run the ceilings (bench/ceilings.py: W1, W1-guarded, "
                        "W1-guarded-job, W2) beside the systems (run by default with W1, "
                        "W2)")  # fmt: skip
    parser.add_argument("--report", type=Path, default=None,
                        help="print the table of a saved document (Markdown) and exit")  # fmt: skip
    args = parser.parse_args(argv)
    only = [w for w in args.only.upper().split(",") if w]
    if set(only) - set(WORKLOADS):
        parser.error(f"unknown workload(s): {', '.join(sorted(set(only) - set(WORKLOADS)))}")
    args.workloads = [w for w in WORKLOADS if not only or w in only]
    wanted = [s for s in args.systems.split(",") if s]
    unknown = [s for s in wanted if not any(s in (n, k) for n, k in kinds.items())]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}; known: {', '.join(names)}")
    args.selected = [n for n, k in kinds.items() if not wanted or n in wanted or k in wanted]
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    args.ceilings = (
        []
        if args.no_ceilings
        else [name for name in CEILINGS if ceiling_workload(name) in args.workloads]
    )
    args.sizes = dict(QUICK if args.quick else FULL)
    for item in args.size:
        key, _, value = item.partition("=")
        if key.upper() not in FULL or not value.isdigit() or int(value) < 1:
            parser.error(f"--size {item}: expected W1, W2 or W3 = a positive number")
        args.sizes[key.upper()] = int(value)
    return args


# -- the peers' venv --


def make_venv(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Create (if missing) the venv at ``path`` and pip-install the peers into it.

    Returns what the document says of it and {package: why it failed} for each
    package that could not be installed (all of them when the venv itself failed).
    """
    info: dict[str, Any] = {"path": str(path), "packages": list(PEER_PACKAGES)}
    started = time.monotonic()
    if not (path / "bin" / "python").exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(path)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if made.returncode != 0:
            reason = f"python -m venv failed: {_last(made.stderr)}"
            return {**info, "skipped": reason}, dict.fromkeys(PEER_PACKAGES, reason)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]  # fmt: skip
    failed: dict[str, str] = {}
    if _pip(pip, PEER_PACKAGES) is not None:  # one at a time, to say which one failed
        for package in PEER_PACKAGES:
            why = _pip(pip, (package,))
            if why is not None:
                failed[package] = f"pip install {package} failed: {why}"
    info["install_seconds"] = round(time.monotonic() - started, 1)
    info["commands"] = [
        f"{sys.executable} -m venv {path}",
        " ".join([*pip, *PEER_PACKAGES]),
    ]
    if failed:
        info["failed"] = failed
    return info, failed


def _pip(pip: list[str], packages: tuple[str, ...]) -> str | None:
    """Why ``pip install packages`` failed, or None."""
    try:
        done = subprocess.run([*pip, *packages], capture_output=True, text=True, check=False,
                              timeout=PIP_TIMEOUT)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"no answer within {PIP_TIMEOUT:g} s"
    return None if done.returncode == 0 else _last(done.stderr or done.stdout)


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no message)"


def precompile() -> None:
    """The job body and the apps compiled once (PYTHONDONTWRITEBYTECODE is set here): a
    worker that imports them per job pays what a deployed application pays."""
    for name in ("__init__", "peerjobs", "peer_celery", "peer_huey", "peerclient", "benchjobs"):
        source = str(BENCH_DIR / f"{name}.py")
        py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True)
    precompile_spoold()


# -- the runs --


def measure(
    system: System, workload: str, n: int, ctx: Context, peers: Peers | None, folder: Path
) -> dict[str, Any]:
    """One run of one workload on one system: its figures."""
    interval = W2_INTERVAL if workload == "W2" else 0.0
    sleep = W3_SLEEP if workload == "W3" else 0.0
    probe, waited = settle(ctx, folder)
    with open_session(system, ctx, peers, folder) as session:
        log = LineLog(session.log)
        batch = session.feed(n, interval, sleep)
        wait_lines(session, log, n)
        kept = session.finish(batch)
    log.poll()  # a line written after the N-th (a job run twice) counts too
    lines = check_lines(log, batch)
    first = batch.enqueued[0]
    figures: dict[str, Any] = {
        "kept": kept,
        "pids": len({line.pid for line in lines.values()}),
        "enqueue_per_s": n / (batch.returned[-1] - first),
        "fs_probe_pairs_per_s": probe,
        "settle_s": waited,
        **session.extra,
    }
    if workload in ("W1", "W3"):
        figures["jobs_per_s"] = n / (max(line.end for line in lines.values()) - first)
    else:
        waits = [(line.start - line.enqueued) * 1000 for line in lines.values()]
        calls = [(r - e) * 1000 for e, r in zip(batch.enqueued, batch.returned, strict=True)]
        figures["latency_ms"] = {
            "p50": percentile(waits, 50),
            "p90": percentile(waits, 90),
            "p99": percentile(waits, 99),
            "max": max(waits),
        }
        returned = dict(zip(batch.enqueued, batch.returned, strict=True))
        after = [(line.start - returned[line.enqueued]) * 1000 for line in lines.values()]
        figures["after_return_p50_ms"] = percentile(after, 50)  # as the W2 ceiling measures
        figures["call_ms"] = {"p50": percentile(calls, 50), "p99": percentile(calls, 99)}
    return figures


def settle(ctx: Context, folder: Path) -> tuple[float, float]:
    """Before a run: the last run's dirty pages written back (not during this one), then
    the disk waited for (bench/disk.py). Its speed then, and the wait."""
    assert ctx.disk is not None, "main() gives the context its gate"
    os.sync()
    return ctx.disk.settle(folder / "disk-probes")


def run_all(
    ctx: Context, systems: list[System], peers: Peers | None, workloads: list[str],
    sizes: dict[str, int], runs: int, ceilings: list[str],
) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], dict[tuple[str, str], str]]:  # fmt: skip
    """Every run: each workload on each system (the systems' order reversed every other
    run), and, for the workloads in ``ceilings``, one run of each of its ceilings (last,
    or first every other run, and then in the reverse order: key ("ceiling", name)). A
    system that fails a workload is not run on it again."""
    figures: dict[tuple[str, str], list[dict[str, Any]]] = {}
    errors: dict[tuple[str, str], str] = {}
    started = time.monotonic()
    for run in range(runs):
        order: list[System | None] = [*systems, None]  # None: the ceiling
        if run % 2:
            order.reverse()
        for workload in workloads:
            for system in order:
                if system is None:
                    for name in ceilings if run % 2 == 0 else ceilings[::-1]:
                        if ceiling_workload(name) == workload:
                            run_ceiling(name, sizes[workload], ctx, figures, errors)
                    continue
                key = (system.name, workload)
                if key in errors or workload not in system.workloads:
                    continue
                n = sizes[workload] * system.n_factor
                progress(f"run {run + 1}/{runs} {workload} {system.name}: {n} jobs "
                         f"({time.monotonic() - started:.0f} s in)")  # fmt: skip
                run_one(system, workload, n, ctx, peers, figures, errors)
    return figures, errors


def run_one(
    system: System, workload: str, n: int, ctx: Context, peers: Peers | None,
    figures: dict[tuple[str, str], list[dict[str, Any]]], errors: dict[tuple[str, str], str],
) -> None:  # fmt: skip
    """One run of one workload on one system; its figures or its error recorded."""
    key = (system.name, workload)
    try:
        with ctx.folder(f"{workload.lower()}-{system.name}") as folder:
            result = measure(system, workload, n, ctx, peers, folder)
        figures.setdefault(key, []).append(result)
        progress(f"  {brief_run(workload, result)}")
    except BenchError as exc:
        errors[key] = str(exc)
        progress(f"{workload} {system.name} FAILED: {exc}")
    except Exception as exc:
        errors[key] = f"{type(exc).__name__}: {exc}"
        progress(f"{workload} {system.name} FAILED:\n{traceback.format_exc()}")
    finally:
        if system.kind in ("rq", "celery"):
            redis_flush(ctx)


def ceiling_workload(name: str) -> str:
    """The workload a ceiling stands beside: "W1" for "W1", "W1-guarded" and so on."""
    return name.partition("-")[0]


def run_ceiling(
    name: str, n: int, ctx: Context, figures: dict[tuple[str, str], list[dict[str, Any]]],
    errors: dict[tuple[str, str], str],
) -> None:  # fmt: skip
    """One run of a ceiling (bench/workloads.py's own code for it)."""
    key = ("ceiling", name)
    if key in errors:
        return
    progress(f"  {name} ceiling: {n} jobs")
    try:
        with ctx.folder(f"{name.lower()}-ceiling") as folder:
            probe, waited = settle(ctx, folder)
            result: dict[str, Any] = {"fs_probe_pairs_per_s": probe, "settle_s": waited}
            if name == "W1":
                result["jobs_per_s"] = dispatch_ceiling(folder / "ceiling", n, fork=True,
                                                        fsync=True)  # fmt: skip
            elif name.startswith("W1-guarded"):
                result["jobs_per_s"] = guarded_ceiling(folder / "ceiling", n,
                                                       run_job=name.endswith("-job"))  # fmt: skip
            else:
                result["latency_ms"] = w2_ceiling(folder / "ceiling", n)
            progress(f"  {brief_ceiling(result)}")
        figures.setdefault(key, []).append(result)
    except Exception as exc:
        errors[key] = f"{type(exc).__name__}: {exc}"
        progress(f"{name} ceiling FAILED:\n{traceback.format_exc()}")


def brief_ceiling(result: dict[str, Any]) -> str:
    if "jobs_per_s" in result:
        return f"{result['jobs_per_s']:.1f} jobs/s"
    return brief_run("W2", result)


def brief_run(workload: str, result: dict[str, Any]) -> str:
    if workload == "W2":
        lat = result["latency_ms"]
        return "latency ms " + " / ".join(f"{k} {v:.2f}" for k, v in lat.items())
    text = f"{result['jobs_per_s']:.1f} jobs/s; kept {result['kept']}; pids {result['pids']}"
    if "cpu_pct" in result:
        text += (
            f"; cpu daemons {result['cpu_pct']:.0f}%, redis {result.get('redis_cpu_pct', 0):.0f}%"
        )
    return text


def ceilings_doc(
    ceilings: list[str], sizes: dict[str, int],
    figures: dict[tuple[str, str], list[dict[str, Any]]], errors: dict[tuple[str, str], str],
) -> dict[str, Any]:  # fmt: skip
    """Each ceiling's runs, and spoold-files' ratio to it run by run (median, min, max)."""
    doc: dict[str, Any] = {}
    for name in ceilings:
        workload = ceiling_workload(name)
        item: dict[str, Any] = {**CEILINGS[name], "n": sizes[workload],
                                "compared_with": CEILING_OF}  # fmt: skip
        key = ("ceiling", name)
        if key in errors:
            doc[name] = {**item, "error": errors[key]}
            continue
        runs = figures.get(key, [])
        spoold = figures.get((CEILING_OF, workload), [])
        item["runs"] = len(runs)
        if runs:
            item["fs_probe_pairs_per_s"] = spread([r["fs_probe_pairs_per_s"] for r in runs], 0)
            item["settle_s"] = spread([r["settle_s"] for r in runs], 2)
        if workload == "W1":
            ceiling = [r["jobs_per_s"] for r in runs]
            item.update(unit="jobs/s", jobs_per_s=spread(ceiling, 1))
            pairs = [(s["jobs_per_s"], c) for s, c in zip(spoold, ceiling, strict=False)]
            item["spoold_jobs_per_s_runs"] = [round(s, 1) for s, _c in pairs]
        else:
            keys = ("p50", "p90", "p99", "max")
            ceiling = [r["latency_ms"]["p50"] for r in runs]
            item.update(unit="ms", latency_ms={k: spread([r["latency_ms"][k] for r in runs], 3)
                                               for k in keys})  # fmt: skip
            pairs = [(s["after_return_p50_ms"], c) for s, c in zip(spoold, ceiling, strict=False)]
            with_call = [s["latency_ms"]["p50"] / c for s, c in zip(spoold, ceiling, strict=False)]
            item["spoold_p50_ms_runs"] = [round(s, 3) for s, _c in pairs]
            item["spoold_p50_with_call_ms_runs"] = [
                round(s["latency_ms"]["p50"], 3) for s in spoold[: len(pairs)]
            ]
            if with_call:
                item["ratio_with_call"] = spread(with_call, 3)
        if len(pairs) == len(runs) and pairs:
            ratio = [s / c for s, c in pairs]
            item["ratio"] = spread(ratio, 3)
            if item["target"] != "informative":
                limit = float(item["target"].split()[1])
                value = item["ratio"]["median"]
                item["met"] = value >= limit if item["target"].startswith(">=") else value <= limit
        else:
            item["ratio"] = None
            item["ratio_note"] = f"{CEILING_OF} did not run (or failed) {workload} in every run"
        doc[name] = item
    return doc


def entry(system: System, workload: str, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's figures on one workload: medians of the runs with min/max."""
    item: dict[str, Any] = {"system": system.name, "workload": workload, "what": WHAT[workload],
                            "n": n, "runs": len(runs)}  # fmt: skip
    if workload in ("W1", "W3"):
        rates = [r["jobs_per_s"] for r in runs]
        item.update(unit="jobs/s", jobs_per_s=spread(rates, 1))
        if workload == "W3":
            ideal = system.slots / W3_SLEEP
            ratio = [v / ideal for v in rates]
            item.update(ideal_jobs_per_s=ideal, ratio_to_ideal=round(median(ratio), 3),
                        ratio_runs=[round(r, 3) for r in ratio])  # fmt: skip
            if system.daemons > 1:
                item["daemons"] = system.daemons
        for name in ("cpu_pct", "redis_cpu_pct"):
            if all(name in r for r in runs):
                item[name] = spread([r[name] for r in runs], 1)
        if "cpu_pct" in item:
            item["cpu_what"] = (
                "cpu_pct: utime + stime + cutime + cstime (/proc/<pid>/stat) summed over each "
                "daemon's process tree (the daemon, its launcher, the job workers), from just "
                "before the first enqueue to every done record found, over that wall time, in % "
                "of one core; redis_cpu_pct: the same for the redis-server"
            )
    else:
        keys = ("p50", "p90", "p99", "max")
        item.update(
            unit="ms",
            latency_ms={k: spread([r["latency_ms"][k] for r in runs], 2) for k in keys},
            enqueue_call_ms={k: spread([r["call_ms"][k] for r in runs], 3) for k in ("p50", "p99")},
        )
    item.update(
        enqueue_per_s=spread([r["enqueue_per_s"] for r in runs], 1),
        fs_probe_pairs_per_s=spread([r["fs_probe_pairs_per_s"] for r in runs], 0),
        settle_s=spread([r["settle_s"] for r in runs], 2),
        records_kept_runs=[r["kept"] for r in runs],
        distinct_job_pids_runs=[r["pids"] for r in runs],
        every_job_done=True,
    )
    return item


def results_of(
    systems: list[System], workloads: list[str], sizes: dict[str, int],
    figures: dict[tuple[str, str], list[dict[str, Any]]], errors: dict[tuple[str, str], str],
    skipped: dict[str, str],
) -> list[dict[str, Any]]:  # fmt: skip
    results = []
    for system in systems:
        for workload in workloads:
            if workload not in system.workloads:
                continue
            key = (system.name, workload)
            base = {"system": system.name, "workload": workload}
            if system.name in skipped:
                results.append({**base, "skipped": skipped[system.name]})
            elif key in errors:
                results.append({**base, "error": errors[key]})
            elif key in figures:
                n = sizes[workload] * system.n_factor
                results.append(entry(system, workload, n, figures[key]))
    return results


def system_doc(system: System, peers: Peers | None, skipped: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "what": system.what,
        "kind": system.kind,
        "workers": WORKERS,
        "keeps_record_of_noop": system.keeps_record,
        "keeps_record_why": system.keeps_record_why,
    }
    if system.daemons > 1:
        doc.update(daemons=system.daemons, workload_n_factor=system.n_factor)
    if skipped is not None:
        return {**doc, "skipped": skipped}
    if peers is not None and system.needs_venv:
        doc["worker_commands"] = [" ".join(c) for c in peers.worker_commands(system)]
    return {**doc, "version": system.version, "config": system.config}


# -- the table --


def kept_text(system_name: str, doc: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The "keeps a record of a no-op" cell: what the system does, and what W1 counted."""
    claim = "yes" if doc["keeps_record_of_noop"] else "no"
    why = {"spoold": "done record", "rq": "job hash, result_ttl 500 s",
           "celery": "no result backend", "huey": "store_none off"}[doc["kind"]]  # fmt: skip
    counted = ""
    for item in results:
        if item["system"] == system_name and item["workload"] == "W1" and "n" in item:
            kept, n = median(item["records_kept_runs"]), item["n"]
            counted = f"; W1 kept {kept:g} of {n}"
            if (kept == n) != doc["keeps_record_of_noop"]:
                counted += " (NOT as documented)"
    return f"{claim} ({why}{counted})"


def table(document: dict[str, Any]) -> str:
    """The results as a Markdown table: one row per system."""
    header = ["system", "W1 jobs/s", "W2 p50 / p90 / p99 / max ms",
              "W3 jobs/s (x ideal: 40; 160 on 4 daemons)",
              "keeps a record of a no-op", "version"]  # fmt: skip
    rows = [header, ["---"] * len(header)]
    results = document["results"]
    for name, doc in document["systems"].items():
        cells = {w: "-" for w in WORKLOADS}
        for item in results:
            if item["system"] != name:
                continue
            cells[item["workload"]] = _cell(item)
        if "skipped" in doc:
            cells = {w: "skipped" for w in WORKLOADS}
        version = " ".join(f"{k} {v}" for k, v in doc.get("version", {}).items())
        rows.append([name, cells["W1"], cells["W2"], cells["W3"],
                     kept_text(name, doc, results), version])  # fmt: skip
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    for name, doc in document["systems"].items():
        if "skipped" in doc:
            lines.append(f"{name} skipped: {doc['skipped']}")
    for item in results:
        if "error" in item:
            lines.append(f"{item['system']} {item['workload']} ERROR: {item['error']}")
    lines.extend(ceilings_lines(document.get("ceilings") or {}))
    return "\n".join(lines)


def ceilings_lines(ceilings: dict[str, Any]) -> list[str]:
    """The "ceilings" section under the table: each ceiling and spoold-files' ratio to it."""
    if not ceilings:
        return []
    lines = ["", "ceilings (bench/ceilings.py, one run beside each run of the systems):", ""]
    lines += ["| ceiling | n | ceiling | spoold-files | ratio | target |", "|---" * 6 + "|"]
    for key, item in ceilings.items():
        if "error" in item:
            lines.append(f"| {key} | {item['n']} | ERROR: {item['error']} | | | |")
            continue
        workload = ceiling_workload(key)
        if workload == "W1":
            value, spoold = _spread(item["jobs_per_s"]), item["spoold_jobs_per_s_runs"]
        else:
            value, spoold = _spread(item["latency_ms"]["p50"]), item["spoold_p50_ms_runs"]
        name = CEILINGS[key]["label"]
        spoold_text = (
            f"{median(spoold):g} (runs {', '.join(f'{v:g}' for v in spoold)})" if spoold else "-"
        )
        ratio = item["ratio"]
        ratio_text = "-" if ratio is None else _spread(ratio)
        if workload == "W2" and "ratio_with_call" in item:
            ratio_text += f"; with the call x{item['ratio_with_call']['median']:g}"
        met = "" if "met" not in item else (" met" if item["met"] else " NOT met")
        lines.append(f"| {name} | {item['n']} | {value} | {spoold_text} | {ratio_text} | "
                     f"{item['target']}{met} |")  # fmt: skip
    return lines


def _spread(value: dict[str, Any]) -> str:
    return f"{value['median']:g} ({value['min']:g}..{value['max']:g})"


def _cell(item: dict[str, Any]) -> str:
    if "error" in item:
        return "ERROR"
    if "skipped" in item:
        return "skipped"
    if "latency_ms" in item:
        return " / ".join(f"{item['latency_ms'][k]['median']:.2f}" for k in item["latency_ms"])
    rate = item["jobs_per_s"]
    text = f"{rate['median']:g} ({rate['min']:g}..{rate['max']:g})"
    if "ratio_to_ideal" in item:
        text += f" x{item['ratio_to_ideal']:.2f}"
        if item["ideal_jobs_per_s"] != WORKERS / W3_SLEEP:
            text += f" of {item['ideal_jobs_per_s']:g}"
    if "cpu_pct" in item:
        text += f"; CPU daemons {_spread(item['cpu_pct'])}%"
    if "redis_cpu_pct" in item:
        text += f", redis-server {_spread(item['redis_cpu_pct'])}%"
    return text


# -- the whole --


def prepare_peers(
    systems: list[System], workdir: Path, venv: Path | None, skipped: dict[str, str]
) -> tuple[Peers | None, dict[str, Any] | None]:
    """The peers' venv, if any peer is selected; the skips its failures make."""
    peer_systems = [s for s in systems if s.needs_venv and s.name not in skipped]
    if not peer_systems:
        return None, None
    path = venv.resolve() if venv is not None else workdir / "peers-venv"
    progress(f"installing {' '.join(PEER_PACKAGES)} into {path}")
    info, failed = make_venv(path)
    for system in peer_systems:
        reasons = [failed[p] for p in NEEDS[system.kind] if p in failed]
        if reasons:
            skipped[system.name] = reasons[0]
    progress(f"peers' venv ready in {info.get('install_seconds', '?')} s")
    return Peers(path), info


def describe_peers(
    systems: list[System], peers: Peers, workdir: Path, skipped: dict[str, str]
) -> None:
    """Each peer's versions and configuration, read in its venv (a peer whose client does
    not load is skipped)."""
    for system in systems:
        if not system.needs_venv or system.name in skipped:
            continue
        try:
            info = peers.info(system, workdir / "info" / system.name)
        except BenchError as exc:
            skipped[system.name] = str(exc)
            continue
        versions = info["versions"]
        keys = {"rq": ("rq", "redis"), "celery": ("celery", "kombu", "billiard", "redis"),
                "huey": ("huey",)}[system.kind]  # fmt: skip
        system.version = {k: versions[k] for k in ("python", *keys) if k in versions}
        system.config = info["config"]
        if system.kind == "rq":
            system.config["worker_class"] = system.options["worker_class"]
        if system.kind == "huey":
            storage = system.config["storage_options"]
            for key, where in (("path", "huey"), ("filename", "huey.db")):
                if key in storage:
                    storage[key] = f"<each run's temp folder>/{where}"
            consumer = system.config.pop("consumer_defaults")
            system.config["consumer"] = {**consumer, "workers": WORKERS, "worker_type": "process"}
            system.config["consumer_note"] = "-w 2 -k process on the command line, the rest "
            "Huey's defaults: idle workers poll the storage, from initial_delay growing by "
            "backoff up to max_delay, and go back to initial_delay once they find a task"


def spoold_version() -> dict[str, str]:
    try:
        version = metadata.version("spoold")
    except metadata.PackageNotFoundError:
        version = "?"
    return {"spoold": version, "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = parse_args(argv)
    if args.report is not None:
        try:
            print(table(json.loads(args.report.read_text())))
        except (OSError, ValueError) as exc:
            print(f"bench.peers: --report {args.report}: not a saved document ({exc})",
                  file=sys.stderr)  # fmt: skip
            return 2
        return 0
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    runs = args.runs or (1 if args.quick else 3)
    systems = [s for s in all_systems() if s.name in args.selected]
    workdir = Path(tempfile.mkdtemp(prefix="spoold-peers-", dir=args.tmp))
    started = time.monotonic()
    progress(f"systems {','.join(s.name for s in systems)}; workloads {','.join(args.workloads)}; "
             f"{runs} run(s); sizes {args.sizes}; in {workdir}")  # fmt: skip
    precompile()
    ctx = Context(workdir=workdir, runs=runs, sizes=args.sizes, jobs_per_process=1000,
                  remove_folders=False, disk=DiskGate(args.settle))  # fmt: skip
    skipped: dict[str, str] = {}
    redis_info: dict[str, Any] | None = None
    venv_info: dict[str, Any] | None = None
    peers: Peers | None = None
    for system in systems:
        if system.kind == "spoold":
            system.version = spoold_version()
    try:
        if any(s.needs_redis for s in systems):
            reason = unavailable()
            if reason is not None:
                progress(reason)
                redis_info = {"skipped": reason}
                skipped.update({s.name: reason for s in systems if s.needs_redis})
            else:
                redis_info = start_redis(ctx, workdir / "redis")
                redis_info["shared_by"] = [s.name for s in systems if s.needs_redis]
        peers, venv_info = prepare_peers(systems, workdir, args.venv, skipped)
        if peers is not None:
            peers.redis_url = ctx.redis.url if ctx.redis is not None else ""
            describe_peers(systems, peers, workdir, skipped)
        running = [s for s in systems if s.name not in skipped]
        figures, errors = run_all(ctx, running, peers, args.workloads, args.sizes, runs,
                                  args.ceilings)  # fmt: skip
    finally:
        stop_redis(ctx)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results = results_of(systems, args.workloads, args.sizes, figures, errors, skipped)
    document = {
        "suite": "spoold beside RQ, Celery and Huey (bench/peers.py)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([os.path.basename(sys.executable), "-m", "bench.peers", *argv]),
        "git": git_commit(),
        "machine": machine_info(workdir.parent),
        "runs": runs,
        "sizes": args.sizes,
        "workers": WORKERS,
        "workloads": {w: WHAT[w] for w in args.workloads},
        "job_body": JOB_BODY,
        "readiness": READINESS,
        "file_system": FILE_SYSTEM,
        "settle_limit_s": args.settle,
        "redis": redis_info,
        "peers_venv": venv_info,
        "systems": {s.name: system_doc(s, peers, skipped.get(s.name)) for s in systems},
        "seconds": round(time.monotonic() - started, 1),
        "all_ran": not errors,
        "results": results,
        "ceilings": ceilings_doc(args.ceilings, args.sizes, figures, errors),
    }
    write_results(document, args.out)
    print(json.dumps(document, indent=2), flush=True)
    progress(f"done in {document['seconds']} s; results in {args.out / 'peers-latest.json'}\n"
             + table(document))  # fmt: skip
    return 0 if not errors else 1


def write_results(document: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"peers-{stamp}.json").write_text(text)
    (out / "peers-latest.json").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
