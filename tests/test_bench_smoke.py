"""Smoke test of the benchmark suite (bench/): every workload runs on a tiny N.

No timing assertions: only that ``python -m bench.run`` finishes, every
workload W1..W5 is reported with numeric, positive figures, and every job it
enqueued was done (the suite itself fails a run that loses one). Its daemons
(and its redis-server) carry this test's leak-check token, so one left behind
fails the test. ``--backend both`` is run on W1..W3 too, where redis-server is
installed (skipped elsewhere, failed in CI, as the Redis backend's tests are).
``python -m bench.web`` (the dashboard on a large spool) runs on 300 records:
its JSON has every page, with positive figures, and it cleans up after itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from numbers import Real
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT
from redis_server import require as require_redis

DEADLINE = 120.0  # seconds; the tiny run takes about 15


def run_bench(tmp_path: Path, token: str, *extra: str) -> tuple[int, str, str]:
    tiny = ["--scale", "0.002", "--runs", "1", "--tmp", str(tmp_path)]
    return run_module("bench.run", token, *tiny, "--out", str(tmp_path / "results"), *extra)


def run_module(module: str, token: str, *args: str) -> tuple[int, str, str]:
    """``python -m module args``: its exit status, stdout and stderr; SIGTERM (it stops its
    own daemons on it) and a failure after DEADLINE."""
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "SPOOLD_TEST_TOKEN": token}
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"{module} took over {DEADLINE}s:\n{err[-5000:]}")
    return proc.returncode, out, err


def numbers(figure: Any) -> list[float]:
    """Every median/min/max in a figure (a spread, or a dict of spreads)."""
    if isinstance(figure, dict) and "median" in figure:
        return [figure["median"], figure["min"], figure["max"]]
    assert isinstance(figure, dict) and figure, figure
    return [value for inner in figure.values() for value in numbers(inner)]


@pytest.mark.slow
def test_every_workload_runs_on_a_tiny_n(tmp_path: Path, leak_check: str) -> None:
    code, out, err = run_bench(tmp_path, leak_check)
    assert code == 0, err[-5000:]
    document = json.loads(out)
    assert document == json.loads((tmp_path / "results" / "latest.json").read_text())
    assert document["machine"]["cpus"] and document["all_ran"] is True
    results = document["results"]
    assert {r["workload"][:2] for r in results} == {"W1", "W2", "W3", "W4", "W5"}
    assert not [r for r in results if "error" in r]
    ran = [r for r in results if "skipped" not in r]
    assert {r["workload"] for r in ran} >= {"W1", "W2", "W3", "W4", "W5"}
    for result in ran:
        name = result["workload"]
        assert result["n"] > 0 and result["runs"] == 1, name
        assert isinstance(result["met"], bool), name
        if not name.startswith("W5"):
            values = numbers(result["spoold"]) + numbers(result["ceiling"]) + [result["ratio"]]
            assert all(isinstance(v, Real) and v > 0 for v in values), (name, values)
        if not name.startswith("W1-client"):
            assert result["every_job_done"] is True, name
    (w5,) = [r for r in ran if r["workload"] == "W5"]
    (samples,) = w5["samples"]
    assert [s["after_jobs"] for s in samples] == [0, w5["n"] // 10, w5["n"]]
    for sample in samples:
        for key in ("daemon_rss_kb", "daemon_fds", "launcher_rss_kb", "launcher_fds"):
            assert isinstance(sample[key], int) and sample[key] > 0, (key, sample)


@pytest.mark.slow
def test_w1_to_w3_run_on_files_and_redis_side_by_side(tmp_path: Path, leak_check: str) -> None:
    require_redis()
    code, out, err = run_bench(tmp_path, leak_check, "--only", "W1,W2,W3", "--backend", "both")
    assert code == 0, err[-5000:]
    document = json.loads(out)
    assert document["all_ran"] is True and document["backends"] == ["files", "redis"]
    assert document["redis"]["version"] and "always" in document["redis"]["command"]
    results = document["results"]
    assert not [r for r in results if "error" in r or "skipped" in r]
    files = [r for r in results if r["backend"] == "files"]
    redis = [r for r in results if r["backend"] == "redis"]
    assert {r["workload"][:2] for r in redis} == {"W1", "W2", "W3"}
    assert len(redis) == len(files) - 1  # one Redis client entry for the two file ones
    for result in redis:
        name = result["workload"]
        assert name.endswith(" [redis]") and result["n"] > 0 and result["runs"] == 1, name
        values = numbers(result["spoold"]) + numbers(result["ceiling"]) + [result["ratio"]]
        assert all(isinstance(v, Real) and v > 0 for v in values), (name, values)
        assert numbers(result["files_beside"]["spoold"]), name  # the file spool's, same runs
        if not name.startswith("W1-client"):
            assert result["every_job_done"] is True, name
    (w1,) = [r for r in redis if r["workload"] == "W1 [redis]"]
    assert w1["redis_fcall_submit_per_s"]["median"] > 0
    (w1_files,) = [r for r in files if r["workload"] == "W1"]
    assert w1["ceiling"] == w1_files["ceiling"]  # one ceiling run beside both backends


WEB_PAGES = {"overview", "done", "done_deep", "failed", "done_class_1_in_10",
             "done_class_none", "job", "metrics"}  # fmt: skip


@pytest.mark.slow
def test_the_web_bench_runs_on_a_tiny_spool(tmp_path: Path, leak_check: str) -> None:
    """bench/web.py on 300 done and 30 failed records, 2 rounds: only the JSON's shape."""
    returncode, out, err = run_module("bench.web", leak_check, "--records", "300", "--failed",
                                      "30", "--repeat", "2", "--scan-limit", "100",
                                      "--tmp", str(tmp_path))  # fmt: skip
    assert returncode == 0, err[-5000:]
    document = json.loads(out)
    assert document["benchmark"] == "web" and isinstance(document["target_met"], bool)
    assert document["machine"]["cpus"] and document["machine"]["python"]
    assert document["records"] == {"done": 300, "failed": 30, "scheduled": 5}
    assert document["repeat"] == 2 and document["scan_limit"] == 100
    assert document["fill_seconds"] > 0 and document["cold_overview_ms"] > 0
    pages = document["pages"]
    assert set(pages) == WEB_PAGES
    for name, page in pages.items():
        figures = [page["p50_ms"], page["p95_ms"], page["max_ms"]]
        assert all(isinstance(v, Real) and v > 0 for v in figures), (name, figures)
        assert page["p50_ms"] <= page["p95_ms"] <= page["max_ms"], (name, figures)
        assert page["bytes"] > 0 and isinstance(page["under_200ms"], bool), name
    assert pages["done_class_none"]["capped"] is True  # read 100 of 300, none matched
    assert pages["done_class_none"]["scanned"] == 100
    assert pages["done_class_none"]["matches"] == 0
    assert pages["done_class_1_in_10"]["matches"] > 0
    assert not list(tmp_path.iterdir()), "the temp spool was left behind"


def test_the_relay_floor_runs_on_a_few_jobs(leak_check: str) -> None:
    """bench/relay.py on 6 jobs a run: both shapes at each amount of work, and the workers
    and the relay reaped (it fails if a job's line is missing)."""
    returncode, out, err = run_module("bench.relay", leak_check, "--jobs", "6", "--runs", "1",
                                      "--work-ms", "0,0.5")  # fmt: skip
    assert returncode == 0, err[-5000:]
    document = json.loads(out)
    assert document["suite"] == "relay" and document["jobs"] == 6
    shapes = [(entry["shape"], entry["daemon_work_ms"]) for entry in document["results"]]
    assert shapes == [("direct", 0.0), ("relay", 0.0), ("direct", 0.5), ("relay", 0.5)]
    for entry in document["results"]:
        ratio = entry["ratio_to_ideal"]["median"]
        assert 0 < ratio <= 1, entry  # (a job's 50 ms sleep is a floor: never above ideal)
        assert entry["gap_p50_ms"]["median"] >= 0, entry
        assert entry["on_disk"] is False, entry


def test_the_relay_floor_on_disk_files_every_job(leak_check: str) -> None:
    """``--spool``: the deciding process files each record and claims each job in a real
    spool (bench/ceilings.py's GuardedSpool, fsync off); a run that leaves a job anywhere
    but done/ fails (``OnDisk.check``)."""
    returncode, out, err = run_module("bench.relay", leak_check, "--jobs", "6", "--runs", "1",
                                      "--work-ms", "0", "--spool")  # fmt: skip
    assert returncode == 0, err[-5000:]
    results = json.loads(out)["results"]
    assert [(e["shape"], e["on_disk"]) for e in results] == [("direct", True), ("relay", True)]
    for entry in results:
        assert 0 < entry["ratio_to_ideal"]["median"] <= 1, entry


def test_the_relay_floor_files_every_job_with_spares_and_after_the_send(leak_check: str) -> None:
    """``--filing plain,spares,after-send``: each way files every job and leaves no spare
    or marker behind in active/ (``OnDisk.check``), with a process per job (fsync on) too."""
    for extra in ([], ["--per-attempt"]):
        returncode, out, err = run_module(
            "bench.relay", leak_check, "--jobs", "6", "--runs", "1", "--work-ms", "0",
            "--spool", "--filing", "plain,spares,after-send", *extra,
        )  # fmt: skip
        assert returncode == 0, err[-5000:]
        results = json.loads(out)["results"]
        assert [e["filing"] for e in results] == ["plain"] * 2 + ["spares"] * 2 + ["after-send"] * 2
        for entry in results:
            assert 0 < entry["ratio_to_ideal"]["median"] <= 1, entry
    returncode, _out, err = run_module("bench.relay", leak_check, "--spool", "--filing", "fast")
    assert returncode == 2 and "--filing: fast is not one of" in err, err[-2000:]


def test_the_relay_floor_with_a_process_per_job_files_every_job(leak_check: str) -> None:
    """``--per-attempt --spool``: spares forked by the deciding process, or by a relay as
    spoold's launcher forks them, each running one job; every job filed (fsync on), and
    every process reaped (the leak check fails a run that leaves one)."""
    returncode, out, err = run_module("bench.relay", leak_check, "--jobs", "6", "--runs", "1",
                                      "--work-ms", "0", "--spool", "--per-attempt")  # fmt: skip
    assert returncode == 0, err[-5000:]
    results = json.loads(out)["results"]
    assert [e["shape"] for e in results] == ["spares", "spares-relay"]
    for entry in results:
        assert 0 < entry["ratio_to_ideal"]["median"] <= 1, entry
