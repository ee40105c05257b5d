"""The stats the real daemon publishes for watchers, on the file spool and on Redis.

The daemon takes a snapshot every ``[metrics] interval`` and at stop; the CLI's
catalog reads it back (``open_catalog(config).stats()``), as ``spoold metrics``,
``spoold top`` and the dashboard do. On the file spool it is ``stats.json`` in
the spool's root, readable by the group of ``done/`` (the watching group); on
Redis a key per daemon that expires, so a dead daemon's figures age out. Also
here: the long-wait WARNING and INFO, and retention on the file spool.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

from harness import Daemon, Spool, job, stays_false, wait_for

from spoold.backends import open_catalog
from spoold.client import run_background_job
from spoold.config import load_config
from spoold.snapshot import Snapshot

FAST = {"metrics": {"interval": 0.2}}  # a snapshot five times a second


def snapshots(config: Path) -> list[Snapshot]:
    return open_catalog(load_config(config)).stats()


def published_with(config: Path, wanted: Callable[[Snapshot], bool]) -> Snapshot:
    """Poll the catalog until a snapshot satisfies ``wanted``; that snapshot."""

    def found() -> Snapshot | None:
        return next((s for s in snapshots(config) if wanted(s)), None)

    return wait_for(found, 10.0, lambda: f"no such snapshot among {snapshots(config)}")


def test_the_file_spool_daemon_publishes_its_stats_for_the_watching_group(
    spool: Spool, start_daemon: Callable[..., Daemon], daemon_config: Callable[..., Path]
) -> None:
    """Jobs done, failed and rejected are counted in ``stats.json`` (0640, the group of
    done/); a last snapshot is written at stop, after the last job."""
    config = daemon_config(**FAST, worker={"max_retries": 0})
    daemon = start_daemon(config=config)
    spool.drop_job("fine", job("Noop"))
    spool.drop_job("broken", job("Boom"))
    spool.drop_job("evil", {"class": "evil.Class", "method": "run", "params": []})
    for name, state in (("fine", "done"), ("broken", "failed"), ("evil", "failed")):
        spool.wait_record(name, state)

    snapshot = published_with(config, lambda s: sum(s.rejected.values()) == 1
                              and s.jobs_finished.get("testjobs.Boom"))  # fmt: skip
    assert snapshot.received == {"testjobs.Noop": 1, "testjobs.Boom": 1}
    assert snapshot.rejected == {"not_allowed": 1}
    assert snapshot.jobs_finished == {"testjobs.Noop": {"done": 1},
                                      "testjobs.Boom": {"failed": 1}}  # fmt: skip
    assert snapshot.pid == daemon.pid and snapshot.backend == "files"
    info = os.stat(spool.root / "stats.json")
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_gid == os.stat(spool.folder("done")).st_gid

    spool.drop_job("last", job("Noop"))
    spool.wait_record("last", "done")
    stopping = time.time()
    assert daemon.stop() == 0
    final = snapshots(config)[0]
    assert final.taken_at >= stopping and final.received["testjobs.Noop"] == 2


def test_on_redis_each_daemon_publishes_and_a_dead_ones_stats_expire(
    start_daemon: Callable[..., Daemon], redis_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Two daemons (two hosts: a local folder each), a snapshot each; SIGKILL one and its
    snapshot is gone within three intervals, while the other's stays fresh."""
    configs = [redis_config(**FAST, spool={"dir": str(Spool(tmp_path / host).create().root),
                                           "host_id": host})
               for host in ("left", "right")]  # fmt: skip
    config = configs[0]
    first, second = (start_daemon(config=path) for path in configs)
    job_id = run_background_job("testjobs.Noop", "run", [])
    published_with(config, lambda s: sum(sum(by.values()) for by in s.jobs_finished.values()))
    pids = wait_for(lambda: {s.pid for s in snapshots(config)} == {first.pid, second.pid}
                    or None, 10.0, lambda: str(snapshots(config)))  # fmt: skip
    assert pids
    finished = sum(sum(by.values()) for s in snapshots(config) for by in s.jobs_finished.values())
    assert finished == 1, job_id
    received = sum(sum(s.received.values()) for s in snapshots(config))
    assert received == 1, "a job the client handed Redis straight was not counted received"
    first.send(signal.SIGKILL)
    first.wait_exit()
    wait_for(lambda: [s.pid for s in snapshots(config)] == [second.pid], 10.0,
             lambda: str(snapshots(config)))  # fmt: skip
    assert not snapshots(config)[0].stale(time.time())


def test_a_long_wait_is_logged_when_it_begins_and_when_it_ends(
    start_daemon: Callable[..., Daemon], daemon_config: Callable[..., Path], spool: Spool
) -> None:
    """One slot held by a 2.5 s job; the next job waits longer than long_wait (1 s): one
    WARNING naming the wait, then one INFO once it runs; systemd's status carries it."""
    config = daemon_config(metrics={"interval": 0.2, "long_wait": 1.0},
                           worker={"concurrency": 1})  # fmt: skip
    daemon = start_daemon(config=config)
    spool.drop_job("slow", job("Sleeper", params=[2.5]))
    daemon.wait_log("job slow started")
    spool.drop_job("next", job("Noop"))
    warning = daemon.wait_log("longer than [metrics] long_wait (1s)")
    assert " WARNING " in warning and "1/1 busy, 1 ready" in warning
    ended = daemon.wait_log("no job waits longer than [metrics] long_wait")
    assert " INFO " in ended
    spool.wait_record("next", "done")
    assert len([ln for ln in daemon.log_lines() if "has waited" in ln]) == 1


def test_retention_on_the_file_spool_removes_old_records_when_asked_and_only_then(
    spool: Spool, start_daemon: Callable[..., Daemon], daemon_config: Callable[..., Path]
) -> None:
    """Off by default (an upgrade never deletes what a user keeps until purge); with
    ``[retention] done = "1h"`` the daemon removes a done record older than that at its
    first turn, logs it, and keeps the fresh one and every failed record."""
    plain = start_daemon(config=daemon_config())
    for name in ("old", "new"):
        spool.drop_job(name, job("Noop"))
        spool.wait_record(name, "done")
    spool.drop_job("broken", job("Boom", max_retries=0))
    spool.wait_record("broken", "failed")
    two_hours_ago = time.time() - 7200
    for state, name in (("done", "old"), ("failed", "broken")):
        os.utime(spool.folder(state) / f"{name}.json", (two_hours_ago, two_hours_ago))
    assert plain.stop() == 0
    again = start_daemon(config=daemon_config())
    again.wait_log("ready:")
    assert spool.record("old", "done") is not None, "removed without [retention]"
    assert again.stop() == 0

    keeping = start_daemon(config=daemon_config(retention={"done": "1h"}))
    keeping.wait_log("retention: removed 1 done record(s) finished more than 1h ago")
    assert spool.record("old", "done") is None
    assert spool.record("new", "done") is not None
    assert spool.record("broken", "failed") is not None


def test_the_daemon_writes_a_node_exporter_textfile_when_asked(
    spool: Spool,
    start_daemon: Callable[..., Daemon],
    daemon_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """``[metrics] textfile``: the daemon renders its own snapshot into the Prometheus text
    format node_exporter's textfile collector reads (renamed into place whole, world
    readable, no leftovers); the counts it cannot know without listing its records (done,
    failed) are left out rather than shown as 0."""
    from prometheus_client.parser import text_string_to_metric_families

    textfile = tmp_path / "textfiles" / "spoold.prom"
    textfile.parent.mkdir()
    config = daemon_config(metrics={"interval": 0.2, "textfile": str(textfile)})
    start_daemon(config=config)
    spool.drop_job("fine", job("Noop"))
    spool.wait_record("fine", "done")

    def samples() -> list[tuple[str, dict[str, str], float]]:
        text = textfile.read_text() if textfile.exists() else ""
        return [(sample.name, sample.labels, sample.value)
                for family in text_string_to_metric_families(text)
                for sample in family.samples]  # fmt: skip

    done = ("spoold_jobs_finished_total", {"class": "testjobs.Noop", "status": "done"}, 1.0)
    wait_for(lambda: done in samples(), 10.0, lambda: str(samples()))
    states = {labels["state"] for name, labels, _ in samples() if name == "spoold_jobs"}
    assert states == {"incoming", "scheduled", "active"}
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert [p.name for p in textfile.parent.iterdir()] == ["spoold.prom"]


def test_a_job_retried_while_the_daemon_runs_keeps_its_id(
    spool: Spool,
    start_daemon: Callable[..., Daemon],
    daemon_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """``spoold retry`` puts the job into incoming/ before it removes the failed record (so a
    crash between the two loses neither); a running daemon that sees the job first waits
    for the record to go rather than give the job a fresh id. Five times over, since it is
    a race the daemon used to win (found by ``spoold top``'s retry key)."""
    import subprocess
    import sys

    config = daemon_config(worker={"max_retries": 0})
    daemon = start_daemon(config=config)
    for round_ in range(5):
        counter = tmp_path / f"counter-{round_}"
        name = f"flaky-{round_}"
        spool.drop_job(name, job("Flaky", params=[str(counter), 1]))
        spool.wait_record(name, "failed")
        command = [sys.executable, "-m", "spoold", "retry", name, "--config", str(config)]
        retried = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert retried.returncode == 0, retried.stderr
        record = spool.wait_record(name, "done")
        assert record["attempts"] == 1 and record["result"] == 2
    assert "renamed to" not in daemon.log_text()


def test_a_retry_whose_record_goes_late_is_received_once(
    spool: Spool,
    start_daemon: Callable[..., Daemon],
    daemon_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """``spoold retry`` has put the job back into incoming/ and not yet removed its failed
    record: the daemon looks at the job again every 10 ms until the record goes, and it
    was received once, not at every look (a retry from the dashboard was logged twice,
    and each look counted in ``received``). Held here for half a second."""
    config = daemon_config(**FAST, worker={"max_retries": 0})
    daemon = start_daemon(config=config)
    counter = tmp_path / "counter"
    document = job("Flaky", params=[str(counter), 1])
    spool.drop_job("slow-retry", document)
    spool.wait_record("slow-retry", "failed")

    spool.drop_job("slow-retry", document)  # as the retry does, before the unlink
    assert stays_false(lambda: spool.record("slow-retry", "done") is not None, 0.5)
    (spool.folder("failed") / "slow-retry.json").unlink()
    record = spool.wait_record("slow-retry", "done")
    assert record["attempts"] == 1 and record["result"] == 2
    received = [line for line in daemon.log_lines() if "job slow-retry received" in line]
    assert len(received) == 2, received  # its submission and its retry
    published_with(config, lambda s: s.jobs_finished.get("testjobs.Flaky", {}).get("done") == 1)
    assert snapshots(config)[0].received == {"testjobs.Flaky": 2}
    assert "renamed to" not in daemon.log_text()
