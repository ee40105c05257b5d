"""Run the benchmark suite: ``python -m bench.run [--quick] [--only W1,W3] [--runs 3]``.

Prints one JSON document on stdout (progress and a summary table go to stderr)
and writes it to bench/results/latest.json and bench/results/<UTC time>.json.
Every figure in it is measured in this invocation, except RQ's 158 jobs/s,
which is labelled as reported in issue #5.

``--backend files`` (the default) runs spoold on the file spool; ``redis`` on
the bench's own redis-server; ``both`` runs W1, W2 and W3 on files then on
Redis in each run, beside one ceiling run, and reports the Redis entry
("W1 [redis]") right after the file spool's, with the file spool's figure
beside it. W4 and W5 measure the file spool only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    RESULTS,
    BenchError,
    daemon_env,
    filesystem_of,
    git_commit,
    machine_info,
    precompile_jobs,
    progress,
)
from bench.redisserver import RedisServer, unavailable
from bench.redisserver import version as redis_version
from bench.workloads import SUPPORTED, WORKLOADS, Context, labelled

Part = Callable[[Context], list[dict[str, Any]]]
FULL = {"W1": 5000, "client": 5000, "W2": 300, "W3": 400, "W4": 100_000, "W5": 100_000}
QUICK = {"W1": 1000, "client": 1000, "W2": 100, "W3": 100, "W4": 1500, "W5": 2000}
SMALLEST = {"W1": 10, "client": 10, "W2": 5, "W3": 4, "W4": 20, "W5": 20}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run each (< 2 min)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per workload (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--scale", type=float, default=None, help="multiply the full sizes (e.g. 0.01)"
    )
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="KEY=N",
        help=f"set one size ({', '.join(FULL)})",
    )
    parser.add_argument(
        "--jobs-per-process",
        type=int,
        default=1000,
        help="max_jobs_per_process for the fast W1 variant",
    )
    parser.add_argument(
        "--backend",
        choices=("files", "redis", "both"),
        default="files",
        help="the spool spoold runs on in W1..W3: files (default), redis (a private "
        "redis-server the bench starts), or both (files then redis in each run)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where the temp spools go")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON is written")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.upper().split(","))) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def sizes_for(args: argparse.Namespace) -> dict[str, int]:
    sizes = dict(QUICK if args.quick else FULL)
    if args.scale is not None:
        sizes = {k: max(SMALLEST[k], round(v * args.scale)) for k, v in FULL.items()}
    for item in args.size:
        key, _, value = item.partition("=")
        if key not in FULL or not value.isdigit() or int(value) < 1:
            raise SystemExit(
                f"--size {item}: expected one of {', '.join(FULL)} = a positive number"
            )
        sizes[key] = int(value)
    return sizes


def backends_of(choice: str) -> tuple[str, ...]:
    return ("files", "redis") if choice == "both" else (choice,)


def run_workloads(
    ctx: Context, names: list[str], backends: tuple[str, ...], skipped: dict[str, str]
) -> tuple[list[dict[str, Any]], bool]:
    """Each part of each workload on the backends it supports, of ``backends``; a backend
    in ``skipped`` (redis-server missing) gets a "skipped" entry with the reason."""
    results: list[dict[str, Any]] = []
    ok = True
    for name in names:
        for backend in backends:
            if backend not in SUPPORTED[name]:
                results.append({
                    "workload": labelled(name, backend),
                    "backend": backend,
                    "skipped": f"{name} measures the file spool only "
                    "(run it with --backend files or both)",
                })  # fmt: skip
        wanted = tuple(b for b in backends if b in SUPPORTED[name])
        ctx.backends = tuple(b for b in wanted if b not in skipped)
        for part in WORKLOADS[name] if ctx.backends else []:
            entries = run_part(ctx, name, part)
            ok = ok and not any("error" in item for item in entries)
            results.extend(pair_up(entries))
        for backend in wanted:
            if backend in skipped:
                results.append({"workload": labelled(name, backend), "backend": backend,
                                "skipped": skipped[backend]})  # fmt: skip
    return results, ok


def run_part(ctx: Context, name: str, part: Part) -> list[dict[str, Any]]:
    """One part's entries, or one entry with its error."""
    started = time.monotonic()
    try:
        entries = part(ctx)
    except BenchError as exc:
        progress(f"{name} FAILED: {exc}")
        entries = [{"workload": name, "part": part.__name__, "error": str(exc)}]
    except Exception as exc:
        progress(f"{name} FAILED:\n{traceback.format_exc()}")
        entries = [
            {"workload": name, "part": part.__name__, "error": f"{type(exc).__name__}: {exc}"}
        ]
    for item in entries:
        item["seconds"] = round(time.monotonic() - started, 1)
        if "error" in item:
            item["backend"] = "+".join(ctx.backends)
    return entries


def pair_up(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each Redis entry the file spool's figure of the same runs (``files_beside``)."""
    files = {e["workload"]: e for e in entries if e.get("backend") == "files" and "spoold" in e}
    for item in entries:
        if item.get("backend") != "redis" or "spoold" not in item:
            continue
        twin = files.get(item.pop("beside", item["workload"].removesuffix(" [redis]")))
        if twin is not None:
            item["files_beside"] = {
                "workload": twin["workload"],
                "spoold": twin["spoold"],
                "ratio": twin.get("ratio"),
            }
    return entries


def start_redis(ctx: Context, folder: Path) -> dict[str, Any]:
    """Start the bench's own redis-server in ``folder``; what the document says of it."""
    import redis

    server = RedisServer(folder, env=daemon_env()).start()
    ctx.redis = server
    ctx.redis_client = redis.Redis.from_url(server.url)
    progress(f"redis-server {redis_version()} on {server.url}, in {folder}")
    return {
        "version": redis_version(),
        "command": server.command(),
        "folder_filesystem": filesystem_of(folder),
    }


def stop_redis(ctx: Context) -> None:
    if ctx.redis_client is not None:
        ctx.redis_client.close()
        ctx.redis_client = None
    if ctx.redis is not None:
        ctx.redis.stop()


def headline(figure: Any) -> str:
    if not isinstance(figure, dict):
        return "-"
    if "median" in figure:
        return f"{figure['median']:g} ({figure['min']:g}..{figure['max']:g})"
    first = next(iter(figure.items()))
    return f"{first[0]} {headline(first[1])}"


def brief(figure: Any) -> str:
    """A figure's median (the first key's, for a dict of figures such as W2's p50..max)."""
    if not isinstance(figure, dict):
        return "-"
    if "median" in figure:
        return f"{figure['median']:g}"
    first = next(iter(figure.items()))
    return f"{first[0]} {brief(first[1])}"


def summary(results: list[dict[str, Any]]) -> str:
    lines = []
    for item in results:
        name = item["workload"]
        if "error" in item:
            lines.append(f"{name}: ERROR {item['error']}")
        elif "skipped" in item:
            lines.append(f"{name}: skipped: {item['skipped']}")
        else:
            beside = item.get("files_beside")
            files = f" (files {brief(beside['spoold'])})" if beside else ""
            files_ratio = f" (files {beside['ratio']})" if beside else ""
            fcall = item.get("redis_fcall_submit_per_s")
            loop = f"; plain FCALL spoold_submit loop {brief(fcall)}/s" if fcall else ""
            lines.append(
                f"{name}: spoold {headline(item['spoold'])}{files} {item.get('unit', '')}; "
                f"ceiling {headline(item['ceiling'])}; ratio {item.get('ratio', '-')}"
                f"{files_ratio}{loop}; "
                f"target {item['target']}: {'met' if item['met'] else 'NOT met'}"
            )
    return "\n".join(lines)


def write_results(document: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds: every daemon is stopped on the way


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    names = [n for n in WORKLOADS if not args.only or n in args.only.upper().split(",")]
    runs = args.runs or (1 if args.quick else 3)
    sizes = sizes_for(args)
    workdir = Path(tempfile.mkdtemp(prefix="spoold-bench-", dir=args.tmp))
    started = time.monotonic()
    progress(
        f"workloads {','.join(names)} on {args.backend}, {runs} run(s) each, sizes {sizes}, "
        f"in {workdir}"
    )
    precompile_jobs()
    ctx = Context(workdir=workdir, runs=runs, sizes=sizes, jobs_per_process=args.jobs_per_process)
    backends = backends_of(args.backend)
    skipped: dict[str, str] = {}
    redis_info: dict[str, Any] | None = None
    try:
        if "redis" in backends and any("redis" in SUPPORTED[n] for n in names):
            reason = unavailable()
            if reason is not None:
                progress(reason)
                skipped["redis"] = reason
                redis_info = {"skipped": reason}
            else:
                redis_info = start_redis(ctx, workdir / "redis")
        results, ok = run_workloads(ctx, names, backends, skipped)
    finally:
        stop_redis(ctx)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    document = {
        "suite": "spoold benchmarks (bench/)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([os.path.basename(sys.executable), "-m", "bench.run", *sys.argv[1:]]),
        "git": git_commit(),
        "machine": machine_info(workdir.parent),
        "runs": runs,
        "sizes": sizes,
        "backends": list(backends),
        "redis": redis_info,
        "seconds": round(time.monotonic() - started, 1),
        "all_ran": ok,
        "results": results,
    }
    write_results(document, args.out)
    print(json.dumps(document, indent=2), flush=True)
    progress(
        f"done in {document['seconds']} s; results in {args.out / 'latest.json'}\n"
        + summary(results)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
