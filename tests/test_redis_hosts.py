"""Several daemons on one Redis, as simulated hosts on one machine.

Each daemon is a real ``spoold run`` with its own local folder and ``host_id``
and one shared Redis (``redis_server``); the client submits through Redis. A
host's death is a SIGKILL of its daemon (its launcher then kills the attempts
it runs); a frozen host is a SIGSTOP of its daemon, past the lease, then
SIGCONT. Leases are short here (2 s) so a test waits seconds, not minutes.
Every job must end in exactly one record; executions are counted apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, children_of, wait_for
from redis_server import KEY, RedisSpool
from tcp_proxy import TcpProxy
from test_redis_daemon import submit

from spoold.client import run_background_job

LEASE = 2.0


def kill_host(daemon: Daemon) -> None:
    """A host's death: SIGKILL its daemon, its launcher and every job at the same moment."""
    found, todo = [], [daemon.pid]
    while todo:
        children = children_of(todo.pop())
        found += children
        todo += children
    for pid in [daemon.pid, *found]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    daemon.kill()  # reaps it


def started_by(daemon: Daemon, job_id: str) -> bool:
    return f"job {job_id} started" in daemon.log_text()


def test_three_daemons_share_the_work_and_file_each_job_once(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    daemons = [start_daemon(config=host_config(host, worker={"concurrency": 2}))
               for host in ("a", "b", "c")]  # fmt: skip
    log = tmp_path / "ran.log"
    ids = [submit("Recorder", str(log), str(n), 0.05) for n in range(60)]
    for job_id in ids:
        assert redis_spool.wait_record(job_id, timeout=30)["status"] == "done"
    assert sorted(redis_spool.ids("idx:done")) == sorted(ids)
    assert len(log.read_text().splitlines()) == 60, "a job ran twice"
    shares = [sum(started_by(daemon, job_id) for job_id in ids) for daemon in daemons]
    assert sum(shares) == 60 and all(shares), f"the work was not shared: {shares}"


def test_a_dead_hosts_job_reruns_on_another_within_the_lease(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """SIGKILL the daemon running a job: another host reclaims it once its lease lapses,
    counts an interrupted attempt, runs it; one record. (The first attempt sleeps a minute,
    so that it is still running when its host dies, however slowly the other one starts.)"""
    doomed = start_daemon(config=host_config("doomed"))
    job_id = run_background_job("testjobs.SlowFirst", "run", [str(tmp_path / "ran.log"), 60.0])
    wait_for(lambda: started_by(doomed, job_id), message="the first host never started it")
    survivor = start_daemon(config=host_config("survivor"))
    kill_host(doomed)
    record = redis_spool.wait_record(job_id, timeout=LEASE + 10)
    assert started_by(survivor, job_id)
    assert [(e["outcome"], e.get("cause")) for e in record["history"]] == [
        ("interrupted", "daemon_died"),
        ("ok", None),
    ]
    assert redis_spool.ids("idx:done") == [job_id]


def test_a_frozen_host_past_its_lease_is_fenced_and_the_job_has_one_record(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """SIGSTOP the daemon running a 3 s job for twice the lease: another host reruns it.
    When the frozen one wakes, its claim is stale: its late outcome is refused (or its
    attempt killed, if still running). Executions may be two; records must be one."""
    frozen = start_daemon(config=host_config("frozen"))
    log = tmp_path / "ran.log"
    job_id = run_background_job("testjobs.Recorder", "run", [str(log), "x", 3.0])
    wait_for(lambda: started_by(frozen, job_id), message="the first host never started it")
    frozen.send(signal.SIGSTOP)
    other = start_daemon(config=host_config("other"))
    wait_for(lambda: started_by(other, job_id), timeout=LEASE + 10,
             message="no other host reran the frozen host's job")  # fmt: skip
    frozen.send(signal.SIGCONT)
    record = redis_spool.wait_record(job_id, timeout=20)
    wait_for(lambda: "no longer holds it" in frozen.log_text() or "lease lost" in frozen.log_text(),
             timeout=15, message="the frozen host never noticed its claim was stale")  # fmt: skip
    executions = len(log.read_text().splitlines())
    print(f"\n[frozen host] executions of {job_id}: {executions}; records: 1")
    assert redis_spool.ids("idx:done") == [job_id]
    assert redis_spool.ids("idx:failed") == []
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "ok"]
    assert json.loads(json.dumps(record))["id"] == job_id


def test_status_lists_the_live_daemons_and_what_each_runs(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """Each live daemon (host, pid, busy of how many, when last heard of) with the jobs it
    holds as it holds them, not as its last heartbeat, a third of a lease ago, said."""
    start_daemon(config=host_config("left"))
    right = start_daemon(config=host_config("right", worker={"concurrency": 3}))
    began = tmp_path / "began"
    job_id = run_background_job("testjobs.Sleeper", "run", [5.0, str(began)])
    wait_for(began.exists, message="the job never started")
    runner = "right" if started_by(right, job_id) else "left"

    def status() -> str:
        done = subprocess.run([sys.executable, "-m", "spoold", "status", "--config",
                               str(tmp_path / "host-left.toml")],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        return done.stdout

    # At once, not at the next heartbeat: what a daemon runs is read from the jobs it holds.
    text = status()
    assert "daemons    2 live" in text
    lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert any(line.startswith(f"  {runner} (pid ") and job_id in line for line in lines), text
    assert any("busy 0/3" in line or "busy 1/3" in line for line in lines if "right" in line)


def test_a_graceful_stop_hands_unfinished_work_to_another_host_uncounted(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """SIGTERM a host whose job outlasts shutdown_timeout: the job goes back to wait at once
    (not after a lease), another host runs it, and the stop is not counted an interruption.
    (The first attempt sleeps a minute: still running at the stop, however slow the start.)"""
    leaving = start_daemon(config=host_config("leaving", worker={"shutdown_timeout": 0.3}))
    log = tmp_path / "ran.log"
    job_id = run_background_job("testjobs.SlowFirst", "run", [str(log), 60.0])
    wait_for(lambda: started_by(leaving, job_id), message="the first host never started it")
    staying = start_daemon(config=host_config("staying"))
    assert leaving.stop() == 0
    record = redis_spool.wait_record(job_id, timeout=10)
    assert started_by(staying, job_id)
    assert [(e["outcome"], e.get("cause")) for e in record["history"]] == [
        ("interrupted", "shutdown"),
        ("ok", None),
    ]


def test_a_job_that_keeps_killing_its_host_stops_at_max_interruptions(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """Each host that runs the job dies (SIGKILL); with max_interruptions 2 the second
    reclaim fails it, with the reason, instead of killing every host in turn."""
    worker = {"max_interruptions": 2}
    log = tmp_path / "ran.log"
    hosts = [start_daemon(config=host_config("first", worker=worker))]
    job_id = run_background_job("testjobs.Recorder", "run", [str(log), "x", 30.0])
    hosts += [start_daemon(config=host_config(name, worker=worker)) for name in ("second", "third")]
    for runs in (1, 2):
        wait_for(lambda n=runs: len(log.read_text().splitlines()) == n if log.exists() else False,
                 timeout=LEASE + 10, message=f"run {runs} never started")  # fmt: skip
        (runner,) = [
            host for host in hosts if host.returncode() is None and started_by(host, job_id)
        ]
        kill_host(runner)
    record = redis_spool.wait_record(job_id, timeout=LEASE + 10)
    assert record["status"] == "failed"
    assert "interrupted by the daemon's death 2 times in a row" in record["reason"]
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "interrupted"]
    assert len(log.read_text().splitlines()) == 2


@pytest.fixture
def proxy(redis_server: Any) -> Iterator[TcpProxy]:
    """One host's own link to the test's Redis, to cut and heal."""
    link = TcpProxy(int(redis_server.url.rsplit(":", 1)[1].split("/")[0])).start()
    yield link
    link.stop()


def cut_off_while_running(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    proxy: TcpProxy,
    spool: dict[str, float],
    log: Path,
    seconds: float,
) -> tuple[Daemon, Daemon, str]:
    """The cut-off tests' start: host "cut-off", behind ``proxy``, runs a Recorder job of
    ``seconds`` (into ``log``); host "other", on a direct link, is up, ready to take it over;
    then the proxy cuts the first one off. ``spool``: both hosts' [spool] settings.

    Returns the cut-off host, the other host and the job's id.
    """
    cut_off = start_daemon(config=host_config("cut-off", spool={**spool, "url": proxy.url()}))
    job_id = run_background_job("testjobs.Recorder", "run", [str(log), "x", seconds])
    wait_for(lambda: started_by(cut_off, job_id), message="the cut-off host never started it")
    other = start_daemon(config=host_config("other", spool=spool))
    proxy.cut()
    return cut_off, other, job_id


def test_a_host_cut_off_past_its_lease_kills_its_attempt_and_its_job_reruns_elsewhere(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    """A partition between one host and Redis, longer than the lease: the host kills its
    own attempt ("lease lost", by its own clock), another host reruns the job after the
    lease, and once the link heals the cut-off host's late outcome is refused."""
    fast = {"redis_timeout": 0.4}
    log = tmp_path / "ran.log"
    cut_off, other, job_id = cut_off_while_running(start_daemon, host_config, proxy, fast, log, 6.0)
    cut_off.wait_log(f"job {job_id}: lease lost (not renewed for", timeout=LEASE + 5)
    record = redis_spool.wait_record(job_id, timeout=LEASE + 15)
    proxy.heal()
    assert started_by(other, job_id)
    assert [e["outcome"] for e in record["history"]] == ["interrupted", "ok"]
    wait_for(lambda: "no longer holds it" in cut_off.log_text(), timeout=15,
             message="the cut-off host's late outcome was not refused")  # fmt: skip
    assert redis_spool.ids("idx:done") == [job_id] and redis_spool.ids("idx:failed") == []


def test_a_host_cut_off_for_less_than_its_lease_loses_and_reruns_nothing(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    """Lease 4 s, a 1.5 s partition while the job runs: nothing killed, nothing rerun."""
    spool = {"redis_timeout": 0.4, "lease": 4.0}
    log = tmp_path / "ran.log"
    cut_off, other, job_id = cut_off_while_running(
        start_daemon, host_config, proxy, spool, log, 3.0
    )
    time.sleep(1.5)  # the partition's length is the point of the test
    proxy.heal()
    record = redis_spool.wait_record(job_id, timeout=15)
    assert [e["outcome"] for e in record["history"]] == ["ok"]
    assert len(log.read_text().splitlines()) == 1
    assert "lease lost" not in cut_off.log_text()
    assert not started_by(other, job_id)


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def skewed(seconds: str) -> dict[str, str]:
    """The environment of a daemon whose clock is off by ``seconds`` (Debian's faketime)."""
    if not LIBFAKETIME.exists():
        reason = "faketime is not installed (apt-get install faketime)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run installs it", pytrace=False)
        pytest.skip(reason)
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": seconds}


def test_hosts_whose_clocks_are_off_by_30_s_neither_reclaim_early_nor_start_late(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """Leases and due times are the Redis server's: a host 30 s slow runs a 3 s job on a
    2 s lease while a host 30 s fast looks on, and the fast one never takes it over; a job
    delayed 2 s starts after 2 s, not 30 s early or late, whichever host takes it."""
    slow = start_daemon(config=host_config("slow"), env=skewed("-30s"))
    log = tmp_path / "ran.log"
    long_job = run_background_job("testjobs.Recorder", "run", [str(log), "long", 3.0])
    wait_for(lambda: started_by(slow, long_job), message="the slow host never started it")
    fast = start_daemon(config=host_config("fast"), env=skewed("+30s"))
    submitted = time.time()
    delayed = run_background_job("testjobs.Recorder", "run", [str(log), "delayed"], delay=2.0)
    record = redis_spool.wait_record(long_job, timeout=15)
    assert [e["outcome"] for e in record["history"]] == ["ok"], "reclaimed early"
    assert not started_by(fast, long_job)
    redis_spool.wait_record(delayed, timeout=15)
    runs = {line["label"]: line for line in map(json.loads, log.read_text().splitlines())}
    started = runs["delayed"]["time"]  # the job's own clock: the host's, skewed
    host = "fast" if started_by(fast, delayed) else "slow"
    offset = 30.0 if host == "fast" else -30.0
    waited = started - offset - submitted
    assert 1.9 <= waited <= 4.0, f"the delayed job started {waited:.2f}s after it was submitted"


def test_a_retry_on_a_host_30_s_fast_waits_its_delay_by_the_servers_clock(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """The retry delay is counted on the server's clock, not from the attempt's end time
    as the fast host's worker saw it (30 s ahead: the retry would wait 32 s)."""
    start_daemon(config=host_config("fast", worker={"retry_delay": 2.0}), env=skewed("+30s"))
    counter = tmp_path / "counter"
    job_id = run_background_job("testjobs.Flaky", "run", [str(counter), 1])
    record = redis_spool.wait_record(job_id, timeout=15)
    first, second = record["history"]
    assert (first["outcome"], second["outcome"]) == ("error", "ok")
    waited = second["started_at"] - first["finished_at"]  # both on the host's own clock
    assert 1.9 <= waited <= 4.0, f"the retry waited {waited:.2f}s"


def test_link_resets_and_latency_spikes_orphan_no_claim(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    """One host's link is reset again and again, then slowed past redis_timeout, while 100
    jobs flow: every job runs and is recorded once, none is left claimed by nobody, and no
    attempt is counted as interrupted (a lost answer is settled at once, not a lease later)."""
    spool = {"url": proxy.url(), "redis_timeout": 0.3, "lease": 10.0}
    flaky_link = start_daemon(config=host_config("flaky", spool=spool, worker={"concurrency": 2}))
    log = tmp_path / "ran.log"
    ids = [submit("Recorder", str(log), str(n), 0.01) for n in range(100)]
    for round_ in range(20):
        proxy.delay = 0.4 if round_ % 4 == 3 else 0.0  # a spike past redis_timeout
        time.sleep(0.1)
        proxy.reset()
    proxy.delay = 0.0
    for job_id in ids:
        record = redis_spool.wait_record(job_id, timeout=30)
        assert [e["outcome"] for e in record["history"]] == ["ok"], record["history"]
    assert sorted(redis_spool.ids("idx:done")) == sorted(ids)
    assert redis_spool.ids("active") == [] and redis_spool.ids("due") == []
    runs = [json.loads(line)["label"] for line in log.read_text().splitlines()]
    print(f"\n[flaky link] {len(runs)} executions of {len(ids)} jobs; "
          f"{flaky_link.log_text().count('cannot reach Redis')} lost calls")  # fmt: skip
    assert sorted(set(runs)) == sorted(str(n) for n in range(100))


class HostsChaos:
    """The chaos run's client and its events, driven by one seeded random generator."""

    def __init__(self, rng: random.Random, log: Path, folder: Path) -> None:
        self.rng, self.log, self.folder = rng, log, folder
        self.acknowledged: list[str] = []

    def submit(self, count: int) -> None:
        """``count`` mixed jobs; only those the client returned an id for count as sent."""
        for n in range(count):
            label = f"{len(self.acknowledged)}-{n}"
            options: dict[str, Any] = {"priority": self.rng.choice((0, 0, 5))}
            if self.rng.random() < 0.1:
                options["delay"] = self.rng.uniform(0.1, 1.5)
            flaky = self.rng.random() < 0.1
            target = "testjobs.Flaky" if flaky else "testjobs.Recorder"
            params = ([str(self.folder / f"flaky-{label}"), 1] if flaky
                      else [str(self.log), label, self.rng.uniform(0, 0.05)])  # fmt: skip
            try:
                self.acknowledged.append(run_background_job(target, "run", params, **options))
            except OSError:
                continue  # not acknowledged: Redis was down

    def interrupted(self, redis_spool: RedisSpool) -> int:
        histories = ((redis_spool.record(job_id) or {}).get("history", [])
                     for job_id in self.acknowledged)  # fmt: skip
        return sum(entry["outcome"] == "interrupted" for history in histories for entry in history)


@pytest.mark.chaos
def test_chaos_hosts_die_freeze_and_are_cut_off_and_redis_restarts_yet_each_job_has_one_record(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    redis_server: Any,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    """1,200 mixed jobs (priorities, run_at, one failure then a retry) across three hosts,
    one of them behind a proxy, while a seeded schedule SIGKILLs and restarts hosts,
    freezes one past its lease, cuts the proxied one off past its lease, and restarts Redis
    from its AOF. Every acknowledged job ends in exactly one record, done; nothing is left
    waiting or claimed; executions beyond one per job are counted and printed."""
    seed = int(os.environ.get("SPOOLD_CHAOS_SEED", random.randrange(2**31)))
    print(f"\n[hosts chaos] seed {seed} (SPOOLD_CHAOS_SEED={seed} reruns it)")
    rng = random.Random(seed)
    worker = {"concurrency": 2, "retry_delay": 0.2, "max_interruptions": 20}
    spool = {"redis_timeout": 0.5}
    configs = {
        "a": host_config("a", spool=spool, worker=worker),
        "b": host_config("b", spool=spool, worker=worker),
        "c": host_config("c", spool={**spool, "url": proxy.url()}, worker=worker),
    }
    host_config("client", spool=spool)  # the client's config (SPOOLD_CONFIG): a direct link
    hosts = {name: start_daemon(config=path) for name, path in configs.items()}
    chaos = HostsChaos(rng, tmp_path / "ran.log", tmp_path)
    events = ["kill", "freeze", "cut", "redis", "kill", "freeze"]
    rng.shuffle(events)
    for event in events:
        chaos.submit(200)
        time.sleep(rng.uniform(0.2, 1.0))
        victim = rng.choice(["a", "b"])
        print(f"[hosts chaos] {event} {victim if event in ('kill', 'freeze') else ''}")
        if event == "kill":
            kill_host(hosts[victim])
            hosts[victim] = start_daemon(config=configs[victim])
        elif event == "freeze":
            hosts[victim].send(signal.SIGSTOP)
            time.sleep(LEASE + 1)
            hosts[victim].send(signal.SIGCONT)
        elif event == "cut":
            proxy.cut()
            time.sleep(LEASE + 1)
            proxy.heal()
        else:
            redis_server.kill()
            time.sleep(0.5)
            redis_server.restart()
    sent = chaos.acknowledged
    for job_id in sent:
        assert redis_spool.wait_record(job_id, timeout=60)["status"] == "done", job_id
    assert sorted(redis_spool.ids("idx:done")) == sorted(set(sent)) and len(set(sent)) == len(sent)
    assert redis_spool.ids("idx:failed") == []
    for index in ("ready", "due", "active"):
        assert redis_spool.ids(index) == [], f"left in {index}"
    labels = [json.loads(line)["label"] for line in chaos.log.read_text().splitlines()]
    print(f"[hosts chaos] seed {seed}: {len(sent)} jobs, one record each; "
          f"{len(labels) - len(set(labels))} ran more than once; "
          f"{chaos.interrupted(redis_spool)} interrupted attempt(s)")  # fmt: skip


def test_five_thousand_mixed_jobs_across_three_hosts_each_end_in_one_record(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
    tmp_path: Path,
) -> None:
    """Priorities, run_at, and jobs that fail once and are retried after 0.5 s: every job one
    record, done; the work shared; and a retry waits in Redis's due set, never in a slot:
    the active set, sampled throughout, never holds more than the hosts' six slots."""
    rng = random.Random(5000)
    worker = {"concurrency": 2, "retry_delay": 0.5, "max_jobs_per_process": 200}
    hosts = [start_daemon(config=host_config(name, worker=worker)) for name in "abc"]
    ids, flaky = [], []
    for n in range(5000):
        options: dict[str, Any] = {"priority": rng.choice((0, 0, 0, 5))}
        if rng.random() < 0.05:
            options["delay"] = rng.uniform(0.1, 1.0)
        if rng.random() < 0.05:
            flaky.append(
                run_background_job(
                    "testjobs.Flaky", "run", [str(tmp_path / f"flaky-{n}"), 1], **options
                )
            )
            ids.append(flaky[-1])
        else:
            ids.append(submit("Noop", **options))
    most_active, deadline = 0, time.monotonic() + 120
    while redis_spool.client.zcard(KEY + "idx:done") < len(ids):
        assert time.monotonic() < deadline, "not every job was done within 2 minutes"
        most_active = max(most_active, redis_spool.client.zcard(KEY + "active"))
        time.sleep(0.05)  # a sample of the active set, 20 a second
    assert most_active <= 6, f"{most_active} claimed at once: more than the slots"
    assert sorted(redis_spool.ids("idx:done")) == sorted(ids)
    for job_id in flaky:
        first, second = redis_spool.record(job_id)["history"]  # type: ignore[index]
        assert second["started_at"] - first["finished_at"] >= 0.45
    shares = [sum(f"job {job_id} started" in host.log_text() for job_id in ids[:300])
              for host in hosts]  # fmt: skip
    assert all(shares), f"the work was not shared: {shares} of the first 300"
