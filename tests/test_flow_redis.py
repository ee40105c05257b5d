"""Flow control on the Redis backend, end to end: several daemons on one private Redis.

Unique jobs (``unique_key``), limits per class (``[limits]`` concurrency and rate,
counted across every daemon of the spool, and ``held_back`` in ``spoold status``)
and follow-up jobs (``on_success`` / ``on_failure``), each with real ``spoold run``
subprocesses (simulated hosts: each its own folder and ``host_id``, one Redis) and
the real client. Which daemon ran an attempt is read from its log ("job <id> started").
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Daemon, read_lines, stays_false, wait_for
from redis_server import KEY, RedisSpool

from spoold.client import follow_up, run_background_job
from spoold.ids import derived_job_id

Hosts = Callable[..., Path]
Record = dict[str, Any]


def shares(daemons: list[Daemon], ids: list[str]) -> list[int]:
    """How many of ``ids`` each daemon started (an attempt each, here)."""
    texts = [daemon.log_text() for daemon in daemons]
    return [sum(f"job {job_id} started" in text for job_id in ids) for text in texts]


def records(redis_spool: RedisSpool, ids: list[str], timeout: float = 20.0) -> dict[str, Record]:
    """The record of each of ``ids``, waiting for them all to be filed."""
    deadline = time.monotonic() + timeout
    return {
        job_id: redis_spool.wait_record(job_id, timeout=max(0.1, deadline - time.monotonic()))
        for job_id in ids
    }


def span(log: Path, label: str, sleep: float, **options: Any) -> str:
    return run_background_job("testjobs.Span", "run", [str(log), label, sleep], **options)


def spans_by_label(log: Path) -> dict[str, dict[str, float]]:
    """Each Span's start and end time, by label; a label started twice fails the test."""
    found: dict[str, dict[str, float]] = {}
    for line in read_lines(log):
        if "event" not in line:
            continue
        times = found.setdefault(line["label"], {})
        assert line["event"] not in times, f"Span {line['label']} ran twice: {line}"
        times[line["event"]] = line["time"]
    return found


def status_json(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "spoold", "status", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done
    return json.loads(done.stdout)


# -- limits per class --


def test_a_rate_of_5_per_second_holds_across_two_daemons(
    start_daemon: Callable[..., Daemon], host_config: Hosts, redis_spool: RedisSpool, tmp_path: Path
) -> None:
    """``rate = "5/s"`` over 50 Span jobs and two daemons of 3 slots each: in every 1 s
    window of start times (and of claim times, on Redis's clock) at most 10 attempts start
    (a burst of 5 plus 5 refilled), the whole run takes at least (50 - 5) / 5 = 9 s, and
    both daemons ran some: the bucket is shared in Redis, not kept per daemon (two buckets
    would let 10/s through). It takes ≥ 9 s by nature (about 10 s here): not chaos-marked,
    the file stays within its 30 s budget."""
    limits = {"testjobs.Span": {"rate": "5/s"}}
    daemons = [start_daemon(config=host_config(host, worker={"concurrency": 3}, limits=limits))
               for host in ("a", "b")]  # fmt: skip
    log = tmp_path / "spans.log"
    ids = [span(log, f"s{n}", 0.01) for n in range(50)]
    filed = records(redis_spool, ids, timeout=40)
    assert {record["status"] for record in filed.values()} == {"done"}

    starts = sorted(times["start"] for times in spans_by_label(log).values())
    assert len(starts) == 50
    busiest = max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts)
    assert busiest <= 10, f"{busiest} starts in one second under a rate of 5/s"
    took = starts[-1] - starts[0]
    print(f"\n[rate 5/s] busiest second: {busiest} starts; 50 starts took {took:.2f}s")
    assert took >= 8.5, f"50 starts at 5/s (burst 5) took {took:.2f}s, not ≥ 9 s"
    # The tokens are taken at the claim, on the server's clock: there the bound is exact.
    claims = sorted(int(redis_spool.client.hget(f"{KEY}job:{job_id}", "claimed")) for job_id in ids)
    most = max(sum(1 for c in claims if t <= c <= t + 1000) for t in claims)
    assert most <= 10, f"{most} claims within one second (server clock) under a rate of 5/s"
    share = shares(daemons, ids)
    assert sum(share) == 50 and all(share), f"the daemons' shares: {share}"


def test_concurrency_1_across_two_daemons_never_overlaps_and_other_classes_keep_running(
    start_daemon: Callable[..., Daemon], host_config: Hosts, redis_spool: RedisSpool, tmp_path: Path
) -> None:
    """``concurrency = 1`` for Span, two daemons of 2 slots: 20 Span jobs (0.1 s each) never
    overlap, whichever daemon runs them, and the Recorder jobs behind them (lower priority)
    run meanwhile on both daemons: a held-back Span holds no slot and blocks no queue."""
    limits = {"testjobs.Span": {"concurrency": 1}}
    daemons = [start_daemon(config=host_config(host, worker={"concurrency": 2}, limits=limits))
               for host in ("a", "b")]  # fmt: skip
    log = tmp_path / "spans.log"
    other = tmp_path / "others.log"
    span_ids = [span(log, f"s{n}", 0.1, priority=5) for n in range(20)]
    other_ids = [
        run_background_job("testjobs.Recorder", "run", [str(other), f"r{n}", 0.1])
        for n in range(20)
    ]
    filed = records(redis_spool, span_ids + other_ids, timeout=40)
    assert {record["status"] for record in filed.values()} == {"done"}

    runs = spans_by_label(log)
    assert len(runs) == 20
    intervals = sorted((times["start"], times["end"], label) for label, times in runs.items())
    for (_, end, before), (start, _, after) in itertools.pairwise(intervals):
        assert start >= end, f"Span {after} started {end - start:.3f}s before {before} ended"
    span_shares = shares(daemons, span_ids)
    print(f"\n[concurrency 1] Spans by daemon: {span_shares}")
    assert sum(span_shares) == 20 and all(span_shares), f"Spans by daemon: {span_shares}"

    other_starts = sorted(line["time"] for line in read_lines(other))
    assert len(other_starts) == 20
    last_span = intervals[-1][0]
    assert other_starts[-1] < last_span, "the Recorders waited for every Span to run first"
    other_shares = shares(daemons, other_ids)
    assert sum(other_shares) == 20 and all(other_shares), f"Recorders by daemon: {other_shares}"


def test_status_shows_the_jobs_held_back_at_their_class_limit_while_they_wait(
    start_daemon: Callable[..., Daemon], host_config: Hosts, redis_spool: RedisSpool, tmp_path: Path
) -> None:
    """While a 3 s Span holds its class's only slot (``concurrency = 1``), the 4 Spans after it
    are held back: ``spoold status --json`` (either host's config) says
    ``"held_back": {"testjobs.Span": 4}``, counted as waiting; a Recorder is not held back and
    runs meanwhile; once they have all run, nothing is held back."""
    limits = {"testjobs.Span": {"concurrency": 1}}
    configs = [host_config(host, worker={"concurrency": 2}, limits=limits) for host in ("a", "b")]
    for config in configs:
        start_daemon(config=config)
    log = tmp_path / "spans.log"
    first = span(log, "first", 3.0)
    wait_for(lambda: "first" in spans_by_label(log), message="the first Span never started")
    rest = [span(log, f"s{n}", 0.0) for n in range(4)]
    other = run_background_job("testjobs.Recorder", "run", [str(tmp_path / "other.log"), "r"])

    def held() -> dict[str, Any]:
        return status_json(configs[0])["held_back"]

    wait_for(lambda: held() == {"testjobs.Span": 4}, timeout=5,
             message=lambda: f"held_back is {held()}")  # fmt: skip
    report = status_json(configs[1])
    assert report["held_back"] == {"testjobs.Span": 4}, report
    assert report["counts"]["incoming"] >= 4, report  # held back, ready all the same
    assert redis_spool.record(first) is None, "the first Span ended before the check"
    assert all(redis_spool.record(job_id) is None for job_id in rest), "a Span was not held back"

    filed = records(redis_spool, [first, *rest, other], timeout=15)
    assert {record["status"] for record in filed.values()} == {"done"}
    first_ended = spans_by_label(log)["first"]["end"]
    assert filed[other]["finished_at"] < first_ended, "the Recorder waited for the Spans"
    assert not status_json(configs[0])["held_back"]


# -- unique jobs --


def test_racing_submitters_of_one_unique_key_leave_exactly_one_live_job(
    start_daemon: Callable[..., Daemon], host_config: Hosts, redis_spool: RedisSpool, tmp_path: Path
) -> None:
    """Two threads submit 10 jobs each with ``unique_key="same"`` at once (straight to Redis),
    and a job file with it is dropped into each host's incoming/: exactly one job is accepted
    (the one Redis's ``unique`` hash names), it runs until its gate opens, and every other one
    is filed rejected, ``duplicate of <its id>``, without running. Once its record is filed,
    the key is free: a new job with it is accepted and runs."""
    folders = {host: tmp_path / f"host-{host}" for host in ("a", "b")}
    configs = {host: host_config(host) for host in folders}
    for config in configs.values():
        start_daemon(config=config)
    log = tmp_path / "ran.log"
    gate = tmp_path / "gate"

    def submit() -> str:  # a Gated job: it runs until ``gate`` exists
        return run_background_job("testjobs.Gated", "run", [str(log), str(gate), 1, False, 30.0],
                                  unique_key="same")  # fmt: skip

    barrier = threading.Barrier(2)
    submitted: list[list[str]] = [[], []]

    def submitter(n: int) -> None:
        barrier.wait()
        submitted[n] += [submit() for _ in range(10)]

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    client_ids = submitted[0] + submitted[1]
    assert len(client_ids) == 20, "a submitter failed"
    holder = redis_spool.client.hget(KEY + "unique", "same")
    assert holder is not None, "no job holds the key"
    holder_id = holder.decode()
    assert holder_id in client_ids
    wait_for(lambda: read_lines(log), message="the holder never started")

    file_ids = [
        run_background_job("testjobs.Recorder", "run", [str(log), f"file-{host}"],
                           spool=folder, unique_key="same")
        for host, folder in folders.items()
    ]  # fmt: skip
    others = [job_id for job_id in client_ids if job_id != holder_id] + file_ids
    filed = records(redis_spool, others, timeout=20)
    for job_id, record in filed.items():
        assert record["status"] == "rejected", (job_id, record)
        assert record["reason"] == f"duplicate of {holder_id}", (job_id, record)
        assert record["attempts"] == 0, (job_id, record)
    assert all(not (folder / "incoming").exists() or not list((folder / "incoming").iterdir())
               for folder in folders.values()), "a job file stayed in incoming/"  # fmt: skip
    assert redis_spool.record(holder_id) is None, "the holder ended before its gate opened"
    assert redis_spool.client.hget(KEY + "unique", "same") == holder
    assert [line["gate"] for line in read_lines(log)] == [str(gate)], "a duplicate ran"

    gate.touch()
    assert redis_spool.wait_record(holder_id)["status"] == "done"
    after = submit()
    record = redis_spool.wait_record(after)
    assert record["status"] == "done", record
    assert len(read_lines(log)) == 2, "the job after the holder did not run, or ran twice"
    assert redis_spool.client.hget(KEY + "unique", "same") is None, "the key is still held"


def test_a_delayed_duplicate_is_rejected_at_once_whichever_way_it_came(
    start_daemon: Callable[..., Daemon], host_config: Hosts, redis_spool: RedisSpool, tmp_path: Path
) -> None:
    """A duplicate with a ``run_at`` a minute away, while the holder runs, is filed rejected
    at once (as the library's ``new_job`` says: "a duplicate is filed rejected at once, not
    at its run_at", and as the file spool does), not scheduled to be rejected a minute
    later: sent through the client, and dropped into either host's incoming/."""
    folders = {host: tmp_path / f"host-{host}" for host in ("a", "b")}
    for host in folders:
        start_daemon(config=host_config(host))
    log, gate = tmp_path / "ran.log", tmp_path / "gate"
    holder = run_background_job("testjobs.Gated", "run", [str(log), str(gate), 1, False, 30.0],
                                unique_key="later")  # fmt: skip
    wait_for(lambda: read_lines(log), message="the holder never started")

    def late(label: str, **where: Any) -> str:
        return run_background_job("testjobs.Recorder", "run", [str(log), label],
                                  unique_key="later", delay=60.0, **where)  # fmt: skip

    ids = {"client": late("client")}
    ids |= {f"incoming/ of {host}": late(host, spool=folder) for host, folder in folders.items()}
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not all(map(redis_spool.record, ids.values())):
        time.sleep(0.02)
    late_ones = {way: redis_spool.record(job_id) for way, job_id in ids.items()}
    not_filed = {way: redis_spool.state(ids[way]) for way, got in late_ones.items() if not got}
    holder_live = redis_spool.record(holder) is None
    gate.touch()
    assert redis_spool.wait_record(holder)["status"] == "done"
    assert holder_live, "the holder ended before its gate opened"
    assert not not_filed, f"duplicates not rejected within 3 s; their state in Redis: {not_filed}"
    for way, record in late_ones.items():
        assert record is not None
        assert record["status"] == "rejected", (way, record)
        assert record["reason"] == f"duplicate of {holder}", (way, record)


# -- follow-up jobs --


def heir_lines(log: Path) -> dict[str, dict[str, Any]]:
    """Each Heir's line, by label; a label that ran twice fails the test."""
    found: dict[str, dict[str, Any]] = {}
    for line in read_lines(log):
        assert line["label"] not in found, f"{line['label']} ran twice"
        found[line["label"]] = line
    return found


def test_a_chain_of_three_follow_ups_runs_once_each_in_order_across_two_daemons(
    start_daemon: Callable[..., Daemon], host_config: Hosts, redis_spool: RedisSpool, tmp_path: Path
) -> None:
    """A on_success B on_success C (Heir jobs), with two daemons up: each runs exactly once,
    in order; each record's ``follow_ups`` names the next, under the id derived from its own;
    each child knows its parent (its ``parent`` field and $SPOOLD_PARENT). All three carry
    one ``unique_key``: a parent frees it as its record is filed, so its follow-up is no
    duplicate of it. A Boom with both branches starts only its ``on_failure``, told the
    failure's reason."""
    for host in ("a", "b"):
        start_daemon(config=host_config(host, worker={"max_retries": 0}))
    log = tmp_path / "heirs.log"

    def heir(label: str, **options: Any) -> dict[str, Any]:
        return follow_up("testjobs.Heir", "run", [str(log), label], **options)

    c = heir("C", unique_key="chain")
    a = run_background_job("testjobs.Heir", "run", [str(log), "A"], unique_key="chain",
                           on_success=heir("B", unique_key="chain", on_success=c))  # fmt: skip
    boom = run_background_job("testjobs.Boom", "run", ["kaput"],
                              on_success=heir("S"), on_failure=heir("F"))  # fmt: skip

    wait_for(lambda: {"C", "F"} <= set(heir_lines(log)), timeout=20,
             message=lambda: f"the chain ran {sorted(heir_lines(log))}")  # fmt: skip
    record_a = redis_spool.wait_record(a)
    (b,) = record_a["follow_ups"]
    assert b == derived_job_id(record_a["finished_at"], f"{a}:on_success")
    record_b = redis_spool.wait_record(b)
    (c_id,) = record_b["follow_ups"]
    assert c_id == derived_job_id(record_b["finished_at"], f"{b}:on_success")
    record_c = redis_spool.wait_record(c_id)
    assert [r["status"] for r in (record_a, record_b, record_c)] == ["done"] * 3
    assert record_c.get("follow_ups") in (None, []), record_c
    assert redis_spool.client.hget(KEY + "unique", "chain") is None, "the key is still held"
    assert record_b["parent"] == {"id": a, "status": "done", "result": "A"}
    assert record_c["parent"] == {"id": b, "status": "done", "result": "B"}

    lines = heir_lines(log)
    assert lines["A"]["parent"] is None and lines["A"]["job"] == a
    assert lines["B"]["parent"] == {"id": a, "status": "done", "result": "A"}
    assert lines["B"]["job"] == b
    assert lines["C"]["parent"] == {"id": b, "status": "done", "result": "B"}
    assert lines["C"]["job"] == c_id
    assert lines["A"]["time"] < lines["B"]["time"] < lines["C"]["time"]

    record_boom = redis_spool.wait_record(boom)
    assert record_boom["status"] == "failed", record_boom
    (f,) = record_boom["follow_ups"]
    assert f == derived_job_id(record_boom["finished_at"], f"{boom}:on_failure")
    assert lines["F"]["job"] == f
    told = lines["F"]["parent"]
    assert told["id"] == boom and told["status"] == "failed", told
    assert told["reason"] == record_boom["reason"] and "kaput" in told["reason"], told
    assert redis_spool.wait_record(f)["status"] == "done"
    assert stays_false(lambda: "S" in heir_lines(log), 0.5), "on_success ran after a failure"
    filed = set(redis_spool.ids("idx:done")) | set(redis_spool.ids("idx:failed"))
    assert filed == {a, b, c_id, boom, f}, "a follow-up was submitted twice, or one too many"
