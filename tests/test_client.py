"""``run_background_job``: one whole file in incoming/, its id returned, bad params refused."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import spoold
from spoold import run_background_job, runBackgroundJob
from spoold.backends.files.spool import Spool
from spoold.ids import new_job_id
from spoold.job import parse_job


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The client falls back on these; a developer's own settings must not leak in.
    monkeypatch.delenv("SPOOLD_SPOOL_DIR", raising=False)
    monkeypatch.delenv("SPOOLD_CONFIG", raising=False)
    Spool(tmp_path / "spool").create()
    return tmp_path / "spool"


def job_file(root: Path, job_id: str) -> dict[str, Any]:
    return dict(json.loads((root / "incoming" / f"{job_id}.json").read_bytes()))


def test_returns_the_id_of_one_file_in_incoming_and_leaves_tmp_empty(root: Path) -> None:
    before = time.time()
    job_id = run_background_job("app.jobs.SomeClass", "some_method", ["p1", 2], spool=root)
    assert os.listdir(root / "incoming") == [f"{job_id}.json"]
    assert os.listdir(root / "tmp") == []
    job = job_file(root, job_id)
    assert job["class"] == "app.jobs.SomeClass"
    assert job["method"] == "some_method"
    assert job["params"] == ["p1", 2]
    assert before <= job["enqueued_at"] <= time.time()
    assert "run_at" not in job and "priority" not in job


def test_the_file_is_one_the_daemon_accepts(root: Path) -> None:
    job_id = run_background_job(
        "app.jobs.Report", "build", {"year": 2026}, spool=root, priority=10, max_retries=5,
        retry_delay=1.5, timeout=30,
    )  # fmt: skip
    path = root / "incoming" / f"{job_id}.json"
    job = parse_job(path.read_bytes(), job_id=job_id, mtime=path.stat().st_mtime)
    assert (job.class_path, job.method, job.params) == ("app.jobs.Report", "build", {"year": 2026})
    assert (job.priority, job.max_retries, job.retry_delay, job.timeout) == (10, 5, 1.5, 30.0)


def test_params_default_to_none_and_tuples_become_lists(root: Path) -> None:
    assert job_file(root, run_background_job("a.B", "c", spool=root))["params"] == []
    assert job_file(root, run_background_job("a.B", "c", (1, "x"), spool=root))["params"] == [
        1,
        "x",
    ]


@pytest.mark.parametrize(
    "params",
    [[object()], {"when": datetime.now(UTC)}, [float("nan")], [{1, 2}], "not a list", 42],
)
def test_params_that_are_not_json_raise_type_error_and_write_nothing(
    root: Path, params: Any
) -> None:
    with pytest.raises(TypeError):
        run_background_job("a.B", "c", params, spool=root)
    assert os.listdir(root / "incoming") == []
    assert os.listdir(root / "tmp") == []


def test_run_background_job_camel_case_alias(root: Path) -> None:
    assert runBackgroundJob is run_background_job
    assert "runBackgroundJob" in spoold.__all__
    job_id = runBackgroundJob("App.Jobs.SomeClass", "someMethod", ["p1", "p2"], spool=root)
    assert job_file(root, job_id)["method"] == "someMethod"


def test_the_spool_comes_from_spoold_spool_dir(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOOLD_SPOOL_DIR", str(root))
    job_id = run_background_job("a.B", "c")
    assert os.listdir(root / "incoming") == [f"{job_id}.json"]


def test_the_spool_comes_from_the_config_last(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "spoold.toml"
    config.write_text('[spool]\ndir = "spool"\n')  # relative to the config's folder
    monkeypatch.setenv("SPOOLD_CONFIG", str(config))
    job_id = run_background_job("a.B", "c")
    assert os.listdir(root / "incoming") == [f"{job_id}.json"]


def test_an_explicit_spool_wins_over_the_environment(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOOLD_SPOOL_DIR", str(tmp_path / "elsewhere"))
    job_id = run_background_job("a.B", "c", spool=root)
    assert os.listdir(root / "incoming") == [f"{job_id}.json"]


def test_delay_sets_run_at_from_the_submission_time(root: Path) -> None:
    job = job_file(root, run_background_job("a.B", "c", delay=60, spool=root))
    assert job["run_at"] == pytest.approx(job["enqueued_at"] + 60)


@pytest.mark.parametrize(
    "run_at",
    [
        1893456000,
        1893456000.0,
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_run_at_takes_unix_seconds_or_an_aware_datetime(root: Path, run_at: Any) -> None:
    job = job_file(root, run_background_job("a.B", "c", run_at=run_at, spool=root))
    assert job["run_at"] == 1893456000.0


def test_run_at_refuses_a_naive_datetime_or_a_delay_too(root: Path) -> None:
    with pytest.raises(TypeError):
        run_background_job("a.B", "c", run_at=datetime(2030, 1, 1), spool=root)
    with pytest.raises(TypeError):
        run_background_job("a.B", "c", run_at=1893456000, delay=5, spool=root)
    assert os.listdir(root / "incoming") == []


def test_ids_sort_in_submission_order(root: Path) -> None:
    ids = []
    for _ in range(5):
        ids.append(run_background_job("a.B", "c", spool=root))
        time.sleep(0.002)  # ids carry milliseconds: same-millisecond ids have no order
    assert sorted(ids) == ids
    assert sorted(os.listdir(root / "incoming")) == [f"{job_id}.json" for job_id in ids]


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(999.998, 999.999), (59.999, 60.0), (1767225599.999, 1767225600.0), (1e9, 4e9)],
)
def test_ids_sort_by_time_across_unit_boundaries(earlier: float, later: float) -> None:
    assert new_job_id(earlier) < new_job_id(later)


def test_without_the_spool_folders_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_background_job("a.B", "c", spool=tmp_path / "no-spool")
    assert not (tmp_path / "no-spool").exists()


def test_durable_false_still_writes_a_whole_file(root: Path) -> None:
    job_id = run_background_job("a.B", "c", [1], spool=root, durable=False)
    assert job_file(root, job_id)["params"] == [1]
    assert os.listdir(root / "tmp") == []


def test_the_client_reads_its_config_again_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``spool=``, the config names the spool; it is read once and again only when
    the file changes (each call used to parse it)."""
    first, second = (Spool(tmp_path / name) for name in ("first", "second"))
    for spool in (first, second):
        spool.create()
    config = tmp_path / "spoold.toml"
    config.write_text(f'[spool]\ndir = "{first.root}"\n')
    monkeypatch.setenv("SPOOLD_CONFIG", str(config))
    monkeypatch.delenv("SPOOLD_SPOOL_DIR", raising=False)
    one = run_background_job("app.Jobs", "run", durable=False)
    config.write_text(f'[spool]\ndir = "{second.root}"\n# longer now\n')
    two = run_background_job("app.Jobs", "run", durable=False)
    assert first.job_names("incoming") == [f"{one}.json"]
    assert second.job_names("incoming") == [f"{two}.json"]
