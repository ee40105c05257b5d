"""What the link + unlink fallback costs: ``python -m bench.fallback [--ops N] [--runs R]``.

On a file system without ``renameat2(RENAME_NOREPLACE)`` spoold moves a file
with ``link`` then ``unlink`` (spoold/backends/files/fsio.py). This puts a spool on bindfs
(a FUSE passthrough that answers the flag with EINVAL; mounted here in a
temp folder and unmounted afterwards) and measures, beside the same work on
the ext4 (or whatever) folder underneath:

* per-operation microseconds of a plain ``os.rename``, of ``os.link`` +
  ``os.unlink``, and of ``spoold.backends.files.fsio.rename_noreplace`` on bindfs, and of
  ``rename_noreplace`` underneath, where the flag works;
* the client's ``run_background_job`` calls per second (durable and not);
* the real daemon draining N no-op jobs that wait in incoming/ before it
  starts (bench.workloads.drain_rate), with only the spool on the mount.

Prints one JSON object on stdout (progress on stderr); without bindfs, FUSE
or root it prints ``{"skipped": reason}``. Figures are medians of the runs
with their spread; the two file systems take turns within each run.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/fallback.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ceilings
from bench.bindfs import mounted, renameat2_noreplace, unavailable
from bench.common import (
    JOB_CLASS,
    filesystem_of,
    git_commit,
    machine_info,
    precompile_jobs,
    progress,
    spread,
)
from bench.workloads import drain_rate
from spoold.backends.files.fsio import rename_noreplace
from spoold.client import run_background_job

CLIENT_TURN = 100  # client calls per turn while bindfs and ext4 take turns


# -- (a)..(d): one move, in microseconds --


def _files(folder: Path, n: int) -> list[str]:
    """N small files in ``folder`` (setup, not timed)."""
    names = []
    for i in range(n):
        name = f"m{i:06d}.json"
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, b'{"class": "benchjobs.Bench", "method": "noop"}')
        os.close(fd)
        names.append(name)
    return names


def _link_unlink(src: str, dst: str) -> None:
    os.link(src, dst)
    os.unlink(src)


def _refused(src: str, dst: str) -> None:
    if renameat2_noreplace(src, dst) != errno.EINVAL:
        raise RuntimeError("renameat2(RENAME_NOREPLACE) was expected to fail with EINVAL")


MOVES: dict[str, tuple[str, Callable[[str, str], None]]] = {
    "a_bindfs_os_rename_us": ("bindfs", os.rename),
    "b_bindfs_link_unlink_us": ("bindfs", _link_unlink),
    "c_bindfs_rename_noreplace_us": ("bindfs", rename_noreplace),
    "d_ext4_rename_noreplace_us": ("ext4", rename_noreplace),
    "ext4_os_rename_us": ("ext4", os.rename),
    "bindfs_refused_renameat2_us": ("bindfs", _refused),
}
MOVE_TURN = 100  # moves of one kind per turn: every kind shares the machine's noisy moments


def _pairs(root: Path, n: int) -> list[tuple[str, str]]:
    """N files in root/tmp/ and the names they move to in root/incoming/ (not timed)."""
    tmp, incoming = root / "tmp", root / "incoming"
    for folder in (tmp, incoming):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    return [(f"{tmp}/{name}", f"{incoming}/{name}") for name in _files(tmp, n)]


def time_moves(roots: dict[str, Path], n: int, flip: bool) -> dict[str, float]:
    """Microseconds per move of each kind, N moves each, the kinds taking turns."""
    pairs = {key: _pairs(roots[where] / "moves" / key, n) for key, (where, _m) in MOVES.items()}
    spent = dict.fromkeys(MOVES, 0.0)
    order = list(reversed(MOVES)) if flip else list(MOVES)
    for done in range(0, n, MOVE_TURN):
        for key in order:
            move = MOVES[key][1]
            turn = pairs[key][done : done + MOVE_TURN]
            start = time.perf_counter()
            for src, dst in turn:
                move(src, dst)
            spent[key] += time.perf_counter() - start
        order.reverse()
    return {key: seconds / n * 1e6 for key, seconds in spent.items()}


def moves(roots: dict[str, Path], n: int, runs: int) -> dict[str, Any]:
    found: dict[str, list[float]] = {key: [] for key in MOVES}
    for run in range(runs):
        progress(f"moves run {run + 1}/{runs}: {n} of each kind")
        for key, micros in time_moves(roots, n, flip=run % 2 == 1).items():
            found[key].append(micros)
    return {key: spread(values, 2) for key, values in found.items()}


# -- (e): the client --


def client(roots: dict[str, Path], n: int, runs: int) -> dict[str, Any]:
    """run_background_job calls per second on each file system, no daemon running."""
    found: dict[str, list[float]] = {}
    for run in range(runs):
        progress(f"client run {run + 1}/{runs}: {n} calls x 2 file systems x durable on/off")
        for durable in (True, False):
            kind = "durable" if durable else "not_durable"
            spent = dict.fromkeys(roots, 0.0)
            folders = {
                w: ceilings.make_folders(r / f"client-{run}-{kind}") for w, r in roots.items()
            }
            order = list(roots) if run % 2 == 0 else list(reversed(roots))
            for done in range(0, n, CLIENT_TURN):
                size = min(CLIENT_TURN, n - done)
                for where in order:
                    spent[where] += _time_calls(folders[where], size, durable=durable)
                order.reverse()
            for where in roots:
                found.setdefault(f"{where}_{kind}_per_s", []).append(n / spent[where])
    result: dict[str, Any] = {key: spread(values, 1) for key, values in found.items()}
    for kind in ("durable", "not_durable"):
        result[f"bindfs_over_ext4_{kind}"] = ratio(
            found[f"bindfs_{kind}_per_s"], found[f"ext4_{kind}_per_s"]
        )
    return result


def ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-run ratios (both figures of a run share its noisy moments)."""
    return round(statistics.median(a / b for a, b in zip(numerators, denominators, strict=True)), 3)


def _time_calls(root: Path, n: int, *, durable: bool) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run_background_job(JOB_CLASS, "noop", ["/dev/null"], spool=root, durable=durable)
    return time.perf_counter() - start


# -- (f): the daemon draining a backlog --

# name: (fsync, max_jobs_per_process)
DRAIN_CONFIGS = {"default": (True, 1), "fast": (False, 1000)}


def drain(base: Path, ext4: Path, n: int, runs: int) -> dict[str, Any]:
    """Jobs/s draining N waiting no-op jobs; on bindfs only the spool is on the mount."""
    found: dict[str, list[float]] = {}
    for run in range(runs):
        for config, (fsync, per_process) in DRAIN_CONFIGS.items():
            order = ["ext4", "bindfs"] if run % 2 == 0 else ["bindfs", "ext4"]
            for where in order:
                progress(f"drain run {run + 1}/{runs}: {n} jobs, {config} config, on {where}")
                folder = ext4 / f"drain-{run}-{config}-{where}"
                folder.mkdir()
                if where == "ext4":
                    rate = drain_rate(folder, n, fsync=fsync, per_process=per_process)
                else:
                    # BenchSpool keeps its spool in <folder>/spool: make that the mount.
                    source = base / f"drain-source-{run}-{config}"
                    with mounted(source, folder / "spool"):
                        rate = drain_rate(folder, n, fsync=fsync, per_process=per_process)
                    shutil.rmtree(source, ignore_errors=True)
                shutil.rmtree(folder, ignore_errors=True)
                found.setdefault(f"{config}_{where}", []).append(rate)
    result: dict[str, Any] = {}
    for config in DRAIN_CONFIGS:
        ext4_rate, bindfs_rate = found[f"{config}_ext4"], found[f"{config}_bindfs"]
        result[config] = {
            "ext4_jobs_per_s": spread(ext4_rate, 1),
            "bindfs_jobs_per_s": spread(bindfs_rate, 1),
            "bindfs_over_ext4": ratio(bindfs_rate, ext4_rate),
        }
    result["default"]["config"] = "max_jobs_per_process = 1, fsync = true"
    result["fast"]["config"] = "max_jobs_per_process = 1000, fsync = false"
    return result


# -- the run --


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fallback", description=__doc__)
    parser.add_argument("--ops", type=int, default=2000, help="moves per kind and run")
    parser.add_argument("--client", type=int, default=1000, help="client calls per run and fs")
    parser.add_argument("--drain", type=int, default=2000, help="jobs per drain")
    parser.add_argument("--runs", type=int, default=3, help="runs of the moves and the client")
    parser.add_argument("--drain-runs", type=int, default=1, help="runs of the drains")
    parser.add_argument("--tmp", type=Path, default=None, help="where the temp folders go")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(json.dumps({"benchmark": "fallback", "skipped": reason}))
        return 0
    precompile_jobs()
    started = time.time()
    base = Path(tempfile.mkdtemp(prefix="spoold-bench-fallback-", dir=args.tmp))
    try:
        ext4 = base / "ext4"
        ext4.mkdir()
        with mounted(base / "bindfs-source", base / "bindfs") as mount:
            roots = {"bindfs": mount, "ext4": ext4}
            filesystems = {where: filesystem_of(path) for where, path in roots.items()}
            result_moves = moves(roots, args.ops, args.runs)
            result_client = client(roots, args.client, args.runs)
        result_drain = drain(base, ext4, args.drain, args.drain_runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "fallback",
                "what": "RENAME_NOREPLACE refused (bindfs, FUSE) against the folder underneath",
                "commit": git_commit(),
                "machine": machine_info(base.parent),
                "filesystems": filesystems,
                "moves": {
                    "unit": "microseconds per move (tmp/ to incoming/), median of runs",
                    "runs": args.runs,
                    "n": args.ops,
                    **result_moves,
                },
                "client": {
                    "unit": "run_background_job calls/s, no daemon running",
                    "runs": args.runs,
                    "n": args.client,
                    **result_client,
                },
                "drain": {
                    "unit": "jobs/s from READY=1 to the last job's end; N no-op jobs waiting "
                    "in incoming/ at start (bench.workloads.drain_rate), only the spool on bindfs",
                    "runs": args.drain_runs,
                    "n": args.drain,
                    **result_drain,
                },
                "seconds": round(time.time() - started, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
