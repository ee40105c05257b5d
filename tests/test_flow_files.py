"""Flow control on the file spool, end to end with the real daemon (issue 20): unique jobs,
limits per class, follow-up jobs.

What this file proves, from the jobs' own log lines and the records they leave:

- ``[limits]`` concurrency = 1: fifty Span attempts never overlap while four worker slots
  are free, and a lower-priority class runs meanwhile (held back jobs hold no slot);
  ``spoold status`` (text and ``--json``) shows the jobs held back while they are;
- ``[limits]`` rate = "5/s": in any second at most a burst of 5 plus 5 refilled starts,
  and twenty jobs take at least (20 - 5) / 5 seconds;
- ``unique_key``: racing submitters with one key get one holder, every other filed
  rejected "duplicate of <holder>"; the key is free again once the holder is filed;
  it is held while the holder waits in scheduled/ (run_at, a retry's wait) and freed by
  a cancel; ``unique=True`` derives the documented SHA-256 of the canonical JSON;
- ``on_success`` / ``on_failure``: a chain of three runs once each, in order, each told
  its parent (``parent`` in its record, ``$SPOOLD_PARENT`` while it runs) and named in
  its parent's ``follow_ups``; only the branch that matches the outcome starts; a
  follow-up off the allowlist rejects its parent at once and imports nothing; one a
  reload took off the allowlist lets the parent finish and is filed rejected, unrun;
- a crash at ``before_follow_up`` / ``after_follow_up``: the restarted daemon files the
  parent once and its follow-up is submitted once and run once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import StartDaemon
from harness import (
    JOBS_DIR,
    Daemon,
    Spool,
    daemon_env,
    default_sections,
    read_lines,
    spoold_cli,
    stays_false,
    toml_text,
    wait_for,
)

from spoold import client
from spoold.backends.files.spool import STATES
from spoold.client import follow_up, unique_key_for

SPAN_LIMIT = {"limits": {"testjobs.Span": {"concurrency": 1}}}
OFF_LIST = "is not on the allowlist"
HELD_BACK = re.compile(r"^held back  (\d+) ready at their class's \[limits\]: (.*)$", re.M)


def spans(log: Path) -> list[tuple[float, float, str]]:
    """Each Span attempt as (start, end, label), sorted by start; every start has its end."""
    starts = {line["label"]: line["time"] for line in read_lines(log) if line["event"] == "start"}
    ends = {line["label"]: line["time"] for line in read_lines(log) if line["event"] == "end"}
    assert set(starts) == set(ends), f"unfinished attempts: {set(starts) ^ set(ends)}"
    return sorted((starts[label], ends[label], label) for label in starts)


def overlaps(attempts: list[tuple[float, float, str]]) -> list[tuple[str, str]]:
    """Pairs of consecutive attempts (by start) where the later began before the earlier ended."""
    return [(a[2], b[2]) for a, b in itertools.pairwise(attempts) if b[0] < a[1]]


def all_ids(spool: Spool) -> Counter[str]:
    """Every job id in every folder, counted (one job is one file, in one folder)."""
    return Counter(job_id for state in STATES for job_id in spool.job_ids(state))


def wait_done(spool: Spool, ids: list[str], timeout: float = 15.0) -> dict[str, Any]:
    """Wait until each id has its record in done/; return done/'s records by id."""

    def all_done() -> dict[str, Any]:
        done = spool.records("done")
        return done if all(job_id in done for job_id in ids) else {}

    return wait_for(all_done, timeout, lambda: f"{ids} in done/; {spool.summary()}")


def submit_all(count: int, submit: Callable[[int], str], threads: int = 2) -> list[str]:
    """``submit(i)`` for i in range(count), from ``threads`` threads started at one barrier."""
    barrier = threading.Barrier(threads)
    found: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(5)
            found[n].extend(submit(i) for i in range(n, count, threads))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors, errors
    return [job_id for ids in found for job_id in ids]


# -- limits per class --


def test_a_concurrency_limit_of_one_never_overlaps_and_starves_no_other_class(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """[limits] testjobs.Span concurrency = 1, [worker] concurrency = 4: of fifty Span jobs
    (the top priority) no two attempts overlap, yet the Recorder jobs submitted after them
    (lower priority) all run and are filed while Span jobs still wait: a Span held back is
    passed over and holds no worker slot. All wait before the daemon starts, so that its
    order is the priority alone: without the limit every Span would go first."""
    span_log, recorder_log = tmp_path / "spans.jsonl", tmp_path / "recorders.jsonl"
    span_ids = [
        spool.submit(
            "testjobs.Span", "run", [str(span_log), f"s{n}", 0.02], priority=10, durable=False
        )
        for n in range(50)
    ]
    recorder_ids = [
        spool.submit("testjobs.Recorder", "run", [str(recorder_log), f"r{n}", 0.05], durable=False)
        for n in range(6)
    ]
    start_daemon(worker={"concurrency": 4}, **SPAN_LIMIT)
    done = wait_done(spool, span_ids + recorder_ids, timeout=30)
    attempts = spans(span_log)
    assert len(attempts) == 50, f"{len(attempts)} Span attempts, not 50"
    assert overlaps(attempts) == [], f"Span attempts overlapped: {overlaps(attempts)[:5]}"
    last_span_start = attempts[-1][0]
    filed = sorted(done[job_id]["finished_at"] for job_id in recorder_ids)
    assert filed[-1] < last_span_start, (
        f"the last Recorder was filed at {filed[-1]}, after the last Span started at "
        f"{last_span_start}: the Span jobs at their limit kept the other class waiting"
    )
    assert len(read_lines(recorder_log)) == 6


def test_status_shows_the_jobs_held_back_by_their_class_limit(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """While one Span runs at concurrency 1 and the others are ready, ``spoold status`` has
    the line "held back  N ready at their class's [limits]: testjobs.Span N" and
    ``--json`` has ``"held_back": {"testjobs.Span": N}``; once all are done, neither."""
    log = tmp_path / "spans.jsonl"
    daemon = start_daemon(metrics={"interval": 0.5}, **SPAN_LIMIT)
    ids = [spool.submit("testjobs.Span", "run", [str(log), f"s{n}", 0.6]) for n in range(4)]
    wait_for(lambda: read_lines(log), 10, "the first Span started")

    def held_back_line() -> re.Match[str] | None:
        match = HELD_BACK.search(spoold_cli(daemon.config, tmp_path, "status").stdout)
        return match if match is not None and int(match[1]) >= 1 else None

    match = wait_for(held_back_line, 10, "a held back line in spoold status")
    assert match[2] == f"testjobs.Span {match[1]}", match[0]
    assert 1 <= int(match[1]) <= 3, match[0]

    def held_back_json() -> dict[str, Any] | None:
        result = spoold_cli(daemon.config, tmp_path, "status", "--json")
        assert result.returncode == 0, result.stderr
        held = json.loads(result.stdout)["held_back"]
        return held if held else None

    held = wait_for(held_back_json, 10, "held_back in spoold status --json")
    assert set(held) == {"testjobs.Span"}, held
    assert 1 <= held["testjobs.Span"] <= 3, held
    wait_done(spool, ids)
    assert overlaps(spans(log)) == []

    def nothing_held_back() -> bool:
        result = spoold_cli(daemon.config, tmp_path, "status", "--json")
        return json.loads(result.stdout)["held_back"] == {}

    wait_for(nothing_held_back, 10, "held_back empty once every Span is done")
    assert HELD_BACK.search(spoold_cli(daemon.config, tmp_path, "status").stdout) is None


def test_a_rate_limit_allows_a_burst_then_its_refill(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """rate = "5/s" on testjobs.Span, twenty jobs, four worker slots: in any window of one
    second at most 5 (the burst) + 5 (the refill) attempts start, the first five start at
    once, and the twenty take at least (20 - 5) / 5 = 3 s from first start to last."""
    log = tmp_path / "spans.jsonl"
    ids = [spool.submit("testjobs.Span", "run", [str(log), f"s{n}"]) for n in range(20)]
    start_daemon(worker={"concurrency": 4}, limits={"testjobs.Span": {"rate": "5/s"}})
    wait_done(spool, ids, timeout=20)
    starts = sorted(start for start, _, _ in spans(log))
    assert len(starts) == 20
    busiest = max(sum(t <= other < t + 1.0 for other in starts) for t in starts)
    assert busiest <= 10, f"{busiest} starts within one second: {starts}"
    took = starts[-1] - starts[0]
    assert took >= (20 - 5) / 5 - 0.1, f"twenty starts took {took:.2f}s, under 3 s: {starts}"
    assert took < 6.0, f"twenty starts took {took:.2f}s: the rate held them back too long"
    assert starts[4] - starts[0] < 0.5, f"no burst of five at first: {starts[:6]}"


# -- unique jobs --


def test_racing_submitters_of_one_unique_key_get_one_holder_then_a_free_key(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Two threads submit thirty jobs with unique_key "k" at once, while the first accepted
    one (a Gated job) runs: exactly that one runs, every other is filed rejected
    "duplicate of <holder>". Once the holder is filed done, a new job with the key is
    accepted and runs."""
    log, gate = tmp_path / "gated.jsonl", tmp_path / "gate"
    start_daemon(worker={"concurrency": 4})

    def submit(n: int) -> str:
        return spool.submit("testjobs.Gated", "run", [str(log), str(gate), n], unique_key="k")

    ids = submit_all(30, submit)
    assert len(set(ids)) == 30

    def one_holder_left() -> list[str]:
        failed = spool.records("failed")
        left = [job_id for job_id in ids if job_id not in failed]
        return left if len(left) == 1 and read_lines(log) else []

    (holder,) = wait_for(one_holder_left, 15, spool.summary)
    assert spool.where(holder) == ["active"], spool.summary()
    failed = spool.records("failed")
    for job_id in ids:
        if job_id != holder:
            assert failed[job_id]["status"] == "rejected", failed[job_id]
            assert failed[job_id]["reason"] == f"duplicate of {holder}", failed[job_id]
    assert len(read_lines(log)) == 1, read_lines(log)
    gate.touch()
    record = spool.wait_record(holder)
    assert record["unique_key"] == "k"
    again = submit(99)
    assert spool.wait_record(again)["status"] == "done"
    assert len(read_lines(log)) == 2
    assert sorted(spool.job_ids("done")) == sorted([holder, again])


def test_unique_true_derives_the_documented_key(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """``unique=True`` keys a job by the SHA-256 (hex) of the UTF-8 canonical JSON of class,
    method and params (sorted keys, no spaces, non-ASCII as is), written out here by hand
    as another language's producer would: unique_key_for agrees, the record carries it,
    and a job submitted with that key by hand is a duplicate of the unique=True one."""
    log, gate = tmp_path / "gated.jsonl", tmp_path / "gate-café☕"
    params = {"size": 1, "log": str(log), "gate": str(gate)}
    canonical = (
        '{"class":"testjobs.Gated","method":"run",'
        f'"params":{{"gate":"{gate}","log":"{log}","size":1}}}}'
    )
    assert json.loads(canonical) == {"class": "testjobs.Gated", "method": "run", "params": params}
    by_hand = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert unique_key_for("testjobs.Gated", "run", params) == by_hand
    start_daemon()
    holder = spool.submit("testjobs.Gated", "run", params, unique=True)
    wait_for(lambda: read_lines(log), 10, "the unique=True job started")
    twin = spool.submit("testjobs.Gated", "run", {**params, "size": 2}, unique_key=by_hand)
    assert spool.wait_rejected(twin)["reason"] == f"duplicate of {holder}"
    gate.touch()
    assert spool.wait_record(holder)["unique_key"] == by_hand


def test_a_unique_key_is_held_while_its_job_waits_in_scheduled_and_freed_by_a_cancel(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A job with unique_key "later" delayed 60 s holds the key in scheduled/: a twin is
    rejected as its duplicate; cancelled, it frees the key, and the next one runs. A Flaky
    job waiting in scheduled/ for its retry holds its key too, until it is filed done."""
    log = tmp_path / "recorder.jsonl"
    counter = tmp_path / "flaky.jsonl"
    start_daemon(worker={"concurrency": 2})
    later = spool.submit(
        "testjobs.Recorder", "run", [str(log), "later"], delay=60, unique_key="later"
    )
    wait_for(lambda: spool.where(later) == ["scheduled"], 10, spool.summary)
    twin = spool.submit("testjobs.Recorder", "run", [str(log), "twin"], unique_key="later")
    assert spool.wait_rejected(twin)["reason"] == f"duplicate of {later}"
    assert client.cancel(later, spool=spool.root) is True
    assert spool.wait_record(later, "failed")["status"] == "cancelled"
    free = spool.submit("testjobs.Recorder", "run", [str(log), "free"], unique_key="later")
    assert spool.wait_record(free)["status"] == "done"
    assert [line["label"] for line in read_lines(log)] == ["free"]

    flaky = spool.submit(
        "testjobs.Flaky",
        "run",
        [str(counter), 1],
        max_retries=1,
        retry_delay=1.0,
        unique_key="retry",
    )
    wait_for(lambda: read_lines(counter) and spool.where(flaky) == ["scheduled"], 10, spool.summary)
    waiting_twin = spool.submit("testjobs.Noop", "run", unique_key="retry")
    assert spool.wait_rejected(waiting_twin)["reason"] == f"duplicate of {flaky}"
    assert spool.wait_record(flaky)["attempts"] == 2
    after = spool.submit("testjobs.Noop", "run", unique_key="retry")
    assert spool.wait_record(after)["status"] == "done"


# -- follow-up jobs --


def test_a_chain_of_three_runs_once_each_in_order_and_each_knows_its_parent(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A on_success B on_success C (all Heir): each runs once, A then B then C. B and C are
    told their parent (id, status "done", result) in ``$SPOOLD_PARENT`` and in their
    records' ``parent``; each record's ``follow_ups`` names the next id; C's names none."""
    log = tmp_path / "heir.jsonl"
    start_daemon()
    c = follow_up("testjobs.Heir", "run", [str(log), "C"])
    b = follow_up("testjobs.Heir", "run", [str(log), "B"], on_success=c)
    a_id = spool.submit("testjobs.Heir", "run", [str(log), "A"], on_success=b)
    a = spool.wait_record(a_id)
    (b_id,) = a["follow_ups"]
    b_record = spool.wait_record(b_id)
    (c_id,) = b_record["follow_ups"]
    c_record = spool.wait_record(c_id)
    assert "follow_ups" not in c_record, c_record
    assert "parent" not in a, a
    assert b_record["parent"] == {"id": a_id, "status": "done", "result": "A"}
    assert c_record["parent"] == {"id": b_id, "status": "done", "result": "B"}
    assert stays_false(lambda: len(read_lines(log)) > 3, 0.3), read_lines(log)
    lines = read_lines(log)
    assert [(line["label"], line["job"]) for line in lines] == [
        ("A", a_id),
        ("B", b_id),
        ("C", c_id),
    ]
    assert lines[0]["time"] < lines[1]["time"] < lines[2]["time"]
    assert [line["parent"] for line in lines] == [None, b_record["parent"], c_record["parent"]]
    assert sorted(spool.job_ids("done")) == sorted([a_id, b_id, c_id])
    assert all_ids(spool) == Counter({a_id: 1, b_id: 1, c_id: 1}), spool.summary()


def test_only_the_branch_that_matches_the_outcome_starts(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A Boom job (max_retries 0) with on_success X and on_failure Y: only Y runs, told its
    parent failed and why. A Noop with on_failure Z only, done: starts nothing, and its
    record has no ``follow_ups``."""
    log = tmp_path / "heir.jsonl"
    start_daemon()
    boom = spool.submit(
        "testjobs.Boom",
        "run",
        ["kaput"],
        max_retries=0,
        on_success=follow_up("testjobs.Heir", "run", [str(log), "X"]),
        on_failure=follow_up("testjobs.Heir", "run", [str(log), "Y"]),
    )
    fine = spool.submit(
        "testjobs.Noop", "run", on_failure=follow_up("testjobs.Heir", "run", [str(log), "Z"])
    )
    failed = spool.wait_record(boom, "failed")
    assert failed["status"] == "failed"
    (y_id,) = failed["follow_ups"]
    y = spool.wait_record(y_id)
    assert y["params"] == [str(log), "Y"]
    assert y["parent"]["id"] == boom
    assert y["parent"]["status"] == "failed"
    assert "ValueError: kaput" in y["parent"]["reason"], y["parent"]
    assert "result" not in y["parent"], y["parent"]
    done = spool.wait_record(fine)
    assert "follow_ups" not in done, done
    assert stays_false(lambda: len(read_lines(log)) > 1, 0.3), read_lines(log)
    (line,) = read_lines(log)
    assert (line["label"], line["job"]) == ("Y", y_id)
    assert line["parent"] == y["parent"]
    assert all_ids(spool) == Counter({boom: 1, fine: 1, y_id: 1}), spool.summary()


def test_a_cancelled_parent_starts_nothing_and_a_retried_one_starts_once(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A running Gated parent with on_success and on_failure, cancelled: filed cancelled,
    no ``follow_ups``, nothing started. A Flaky parent that fails once and succeeds on its
    retry: its on_success starts once (not per attempt), its on_failure never."""
    log, gated, gate = tmp_path / "heir.jsonl", tmp_path / "gated.jsonl", tmp_path / "gate"
    counter = tmp_path / "flaky.jsonl"
    start_daemon()

    def heir(label: str) -> dict[str, Any]:
        return follow_up("testjobs.Heir", "run", [str(log), label])

    cancelled = spool.submit(
        "testjobs.Gated",
        "run",
        [str(gated), str(gate), 1],
        on_success=heir("S1"),
        on_failure=heir("F1"),
    )
    wait_for(lambda: read_lines(gated), 10, "the Gated parent started")
    assert client.cancel(cancelled, spool=spool.root) is True
    record = spool.wait_record(cancelled, "failed")
    assert record["status"] == "cancelled" and "follow_ups" not in record, record
    retried = spool.submit(
        "testjobs.Flaky",
        "run",
        [str(counter), 1],
        max_retries=1,
        retry_delay=0.2,
        on_success=heir("S2"),
        on_failure=heir("F2"),
    )
    record = spool.wait_record(retried)
    assert record["attempts"] == 2, record
    (child,) = record["follow_ups"]
    assert spool.wait_record(child)["parent"] == {"id": retried, "status": "done", "result": 2}
    assert stays_false(lambda: len(read_lines(log)) > 1, 0.3), read_lines(log)
    assert [(line["label"], line["job"]) for line in read_lines(log)] == [("S2", child)]
    assert all_ids(spool) == Counter({cancelled: 1, retried: 1, child: 1}), spool.summary()


def test_a_follow_up_off_the_allowlist_rejects_its_parent_and_imports_nothing(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Parents whose on_success, on_failure, or follow-up's own on_success names a class off
    the allowlist (marker_module.Marked, whose import leaves a mark) are filed rejected at
    once, the reason naming the branch; the parents never run and nothing is imported.
    (The mark would show: importing marker_module in the daemon's environment leaves it.)"""
    log = tmp_path / "recorder.jsonl"
    marker = tmp_path / "marker-module-imported"
    start_daemon()
    marked = follow_up("marker_module.Marked", "run")
    parents = {
        "on_success: ": spool.submit("testjobs.Recorder", "run", [str(log)], on_success=marked),
        "on_failure: ": spool.submit("testjobs.Recorder", "run", [str(log)], on_failure=marked),
        "on_success: on_success: ": spool.submit(
            "testjobs.Recorder",
            "run",
            [str(log)],
            on_success=follow_up("testjobs.Noop", "run", on_success=marked),
        ),
    }
    for prefix, parent in parents.items():
        record = spool.wait_rejected(parent)
        assert record["reason"] == f'{prefix}class "marker_module.Marked" {OFF_LIST}', record
        assert "follow_ups" not in record, record
    assert not log.exists(), "a rejected parent ran"
    assert sorted(all_ids(spool)) == sorted(parents.values()), spool.summary()
    assert not marker.exists(), "marker_module was imported"
    env = {**daemon_env(tmp_path, "marker-check", None), "PYTHONPATH": str(JOBS_DIR)}
    subprocess.run([sys.executable, "-c", "import marker_module"], env=env, check=True)
    assert marker.exists(), "the marker check is blind: importing marker_module left no mark"


def test_a_reload_that_drops_the_follow_ups_class_files_the_follow_up_rejected(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A Gated parent with on_success marker_module.Marked (allowed at first) runs; a reload
    (SIGHUP) takes Marked off the allowlist; the parent, let go, is filed done with
    ``follow_up_rejected`` and ``follow_ups``, and the follow-up is filed rejected, not on
    the allowlist, never run and never imported."""
    log, gate = tmp_path / "gated.jsonl", tmp_path / "gate"
    marker = tmp_path / "marker-module-imported"
    sections: dict[str, Any] = default_sections(spool)
    sections["allow"] = {**sections["allow"], "marker_module.Marked": ["run"]}
    config = tmp_path / "reload.toml"
    config.write_text(toml_text(sections))
    daemon: Daemon = start_daemon(config=config)
    parent = spool.submit(
        "testjobs.Gated",
        "run",
        [str(log), str(gate), 3],
        on_success=follow_up("marker_module.Marked", "run"),
    )
    wait_for(lambda: read_lines(log), 10, lambda: f"the parent started; {spool.summary()}")
    sections["allow"] = {k: v for k, v in sections["allow"].items() if k != "marker_module.Marked"}
    config.write_text(toml_text(sections))
    daemon.send(1)  # SIGHUP
    daemon.wait_log("configuration reloaded")
    gate.touch()
    record = spool.wait_record(parent)
    assert record["status"] == "done" and record["result"] == "xxx", record
    (child,) = record["follow_ups"]
    assert OFF_LIST in record["follow_up_rejected"], record
    assert "marker_module.Marked" in record["follow_up_rejected"], record
    rejected = spool.wait_rejected(child)
    assert OFF_LIST in rejected["reason"], rejected
    assert "marker_module.Marked" in rejected["reason"], rejected
    assert "history" not in rejected or rejected["history"] == [], rejected
    assert stays_false(marker.exists, 0.3), "the rejected follow-up was imported"
    assert all_ids(spool) == Counter({parent: 1, child: 1}), spool.summary()
    assert daemon.returncode() is None


# The on_failure route takes the same steps through the store (a record filed failed/):
# the slow suite only (make chaos), to keep this file's share of make test small.
@pytest.mark.parametrize(
    "branch", ["on_success", pytest.param("on_failure", marks=pytest.mark.chaos)]
)
@pytest.mark.parametrize("point", ["before_follow_up", "after_follow_up"])
def test_a_crash_while_a_follow_up_is_submitted_submits_and_runs_it_once(
    point: str,
    branch: str,
    spool: Spool,
    start_daemon: StartDaemon,
    daemon_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """SPOOLD_FAULT=before_follow_up (record marker written, follow-up not yet submitted) or
    after_follow_up (follow-up in incoming/, record not yet moved out of active/), for a
    Heir parent's on_success and a Boom parent's on_failure: the daemon dies there; the
    restarted one files the parent's record once and its Heir follow-up is submitted once
    and runs once, told its parent; nothing is left in active/ or incoming/."""
    log = tmp_path / "heir.jsonl"
    config = daemon_config(worker={"max_retries": 0})
    armed = start_daemon(config=config, env={"SPOOLD_FAULT": point})
    child_job = follow_up("testjobs.Heir", "run", [str(log), "child"])
    if branch == "on_success":
        parent = spool.submit("testjobs.Heir", "run", [str(log), "parent"], on_success=child_job)
        folder, told = "done", {"status": "done", "result": "parent"}
    else:
        parent = spool.submit("testjobs.Boom", "run", ["kaput"], on_failure=child_job)
        folder, told = "failed", {"status": "failed"}
    assert armed.wait_exit(15) == -9, f"the daemon did not die at {point}"
    # Died between writing the record's marker and unlinking the job: both in active/.
    marker_name = f"{parent}.to-{folder}"
    assert spool.names("active") == [f"{parent}.json", marker_name], spool.summary()
    marker = json.loads((spool.folder("active") / marker_name).read_bytes())
    (child,) = marker["follow_ups"]
    expected_incoming = [f"{child}.json"] if point == "after_follow_up" else []
    assert spool.names("incoming") == expected_incoming, spool.summary()
    parent_lines = ["parent"] if branch == "on_success" else []
    assert [line["label"] for line in read_lines(log)] == parent_lines

    start_daemon(config=config)
    record = spool.wait_record(parent, folder)
    assert record["status"] == folder and record["follow_ups"] == [child], record
    child_record = spool.wait_record(child)
    assert {k: child_record["parent"].get(k) for k in told} == told, child_record["parent"]
    assert child_record["parent"]["id"] == parent
    wait_for(lambda: spool.names("active") == [], 10, spool.summary)
    assert stays_false(lambda: len(read_lines(log)) > len(parent_lines) + 1, 0.3)
    lines = read_lines(log)
    assert [line["label"] for line in lines] == [*parent_lines, "child"], lines
    assert lines[-1]["job"] == child and lines[-1]["parent"] == child_record["parent"]
    assert child_record["attempts"] == 1
    assert all_ids(spool) == Counter({parent: 1, child: 1}), spool.summary()
    assert spool.names("incoming") == [] and spool.names("tmp") == [], spool.summary()
