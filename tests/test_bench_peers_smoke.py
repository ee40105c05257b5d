"""Smoke test of ``python -m bench.peers`` (spoold beside RQ, Celery and Huey) on a tiny N.

Only spoold's default system runs (``--systems spoold-files``): the peers need
their own venv from PyPI, which a test does not install. What it checks is the
harness and its document: W1..W3 each reported with positive figures, every
job's line checked, spoold's records counted, the system's version and config,
the table on stderr with its "keeps a record of a no-op" column, the W1 and W2
ceilings beside spoold-files (run by default), with W1's informative guarded
ceilings (their records and, with the job run, its lines counted by the
harness), the results written to
``--out``, and the temp folder removed. The daemons carry the leak
check's token, so one left behind fails the test. No timing assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from numbers import Real
from pathlib import Path

import pytest
from harness import ROOT

DEADLINE = 120.0  # seconds; it takes about 7


@pytest.mark.slow
def test_the_peers_harness_runs_spoold_on_a_tiny_n(tmp_path: Path, leak_check: str) -> None:
    work, out = tmp_path / "work", tmp_path / "results"
    work.mkdir()
    command = [sys.executable, "-m", "bench.peers", "--systems", "spoold-files", "--runs", "1",
               "--size", "W1=5", "--size", "W2=5", "--size", "W3=4", "--settle", "2",
               "--tmp", str(work), "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "SPOOLD_TEST_TOKEN": leak_check},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    document = json.loads(done.stdout)
    assert document == json.loads((out / "peers-latest.json").read_text())
    assert len(list(out.glob("peers-*.json"))) == 2  # latest and the timestamped one
    assert document["all_ran"] is True and document["runs"] == 1
    assert document["sizes"] == {"W1": 5, "W2": 5, "W3": 4}
    assert document["machine"]["cpus"] and document["peers_venv"] is None
    assert document["redis"] is None  # no system here needs it
    assert document["settle_limit_s"] == 2 and "bench/disk.py" in document["file_system"]

    (name,) = document["systems"]
    system = document["systems"][name]
    assert name == "spoold-files" and system["workers"] == 2
    assert system["keeps_record_of_noop"] is True and system["version"]["spoold"]
    assert system["config"]["spoold.toml"]["worker"]["max_jobs_per_process"] == 1

    results = {r["workload"]: r for r in document["results"]}
    assert set(results) == {"W1", "W2", "W3"}
    for workload, result in results.items():
        assert result["system"] == "spoold-files" and result["every_job_done"] is True
        assert result["records_kept_runs"] == [result["n"]], workload
        assert result["fs_probe_pairs_per_s"]["median"] > 0, workload  # the disk before it
        assert 0 <= result["settle_s"]["median"] < 2 + 10, workload  # --settle, a slow probe more
    for workload in ("W1", "W3"):
        rate = results[workload]["jobs_per_s"]
        assert all(isinstance(rate[k], Real) and rate[k] > 0 for k in ("median", "min", "max"))
    assert results["W3"]["ideal_jobs_per_s"] == 40
    latency = results["W2"]["latency_ms"]
    assert list(latency) == ["p50", "p90", "p99", "max"]
    assert 0 < latency["p50"]["median"] <= latency["max"]["median"]

    ceilings = document["ceilings"]  # run by default beside W1 and W2, same N
    assert list(ceilings) == ["W1", "W1-guarded", "W1-guarded-job", "W2"]
    for name in ("W1", "W1-guarded", "W1-guarded-job"):
        assert ceilings[name]["n"] == 5 and ceilings[name]["jobs_per_s"]["median"] > 0, name
        assert ceilings[name]["ratio"]["median"] > 0, name
    for name in ("W1-guarded", "W1-guarded-job"):  # no target: the figure explains W1's
        assert ceilings[name]["target"] == "informative" and "met" not in ceilings[name]
    assert ceilings["W2"]["n"] == 5 and ceilings["W2"]["latency_ms"]["p50"]["median"] > 0
    for item in ceilings.values():
        assert item["compared_with"] == "spoold-files"
    assert ceilings["W1"]["ratio"]["median"] > 0
    # W2's ratio counts spoold from the moment its durable enqueue call returned, and
    # the job may start before the call's last fsync does: below zero is a real value.
    assert isinstance(ceilings["W2"]["ratio"]["median"], Real)
    assert ceilings["W2"]["ratio_with_call"]["median"] > 0  # from before the call: never
    assert "ceilings (bench/ceilings.py" in done.stderr
    assert "| W1 guarded, each child running the job in Python (jobs/s) | 5 |" in done.stderr

    assert "keeps a record of a no-op" in done.stderr
    assert "| spoold-files |" in done.stderr and "yes (done record; W1 kept 5 of 5)" in done.stderr
    assert not list(work.iterdir()), "the temp folder was left behind"
