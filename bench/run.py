"""Run the benchmark suite: ``python -m bench.run [--quick] [--only W1,W3] [--runs 3]``.

Prints one JSON document on stdout (progress and a summary table go to stderr)
and writes it to bench/results/latest.json and bench/results/<UTC time>.json.
Every figure in it is measured in this invocation, except RQ's 158 jobs/s,
which is labelled as reported in issue #5.
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
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    RESULTS,
    BenchError,
    git_commit,
    machine_info,
    precompile_jobs,
    progress,
)
from bench.workloads import WORKLOADS, Context

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


def run_workloads(ctx: Context, names: list[str]) -> tuple[list[dict[str, Any]], bool]:
    results: list[dict[str, Any]] = []
    ok = True
    for name in names:
        for part in WORKLOADS[name]:
            started = time.monotonic()
            try:
                entries = part(ctx)
            except BenchError as exc:
                ok = False
                progress(f"{name} FAILED: {exc}")
                entries = [{"workload": name, "part": part.__name__, "error": str(exc)}]
            except Exception as exc:
                ok = False
                progress(f"{name} FAILED:\n{traceback.format_exc()}")
                entries = [
                    {
                        "workload": name,
                        "part": part.__name__,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                ]
            for item in entries:
                item["seconds"] = round(time.monotonic() - started, 1)
            results.extend(entries)
    return results, ok


def headline(figure: Any) -> str:
    if not isinstance(figure, dict):
        return "-"
    if "median" in figure:
        return f"{figure['median']:g} ({figure['min']:g}..{figure['max']:g})"
    first = next(iter(figure.items()))
    return f"{first[0]} {headline(first[1])}"


def summary(results: list[dict[str, Any]]) -> str:
    lines = []
    for item in results:
        name = item["workload"]
        if "error" in item:
            lines.append(f"{name}: ERROR {item['error']}")
        elif "skipped" in item:
            lines.append(f"{name}: skipped: {item['skipped']}")
        else:
            lines.append(
                f"{name}: spoold {headline(item['spoold'])} {item.get('unit', '')}; "
                f"ceiling {headline(item['ceiling'])}; ratio {item.get('ratio', '-')}; "
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
    progress(f"workloads {','.join(names)}, {runs} run(s) each, sizes {sizes}, in {workdir}")
    precompile_jobs()
    ctx = Context(workdir=workdir, runs=runs, sizes=sizes, jobs_per_process=args.jobs_per_process)
    try:
        results, ok = run_workloads(ctx, names)
    finally:
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
