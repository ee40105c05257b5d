"""Periodic jobs on Redis: each firing fires once, however many daemons run the schedule.

Two simulated hosts (``host_config`` of tests/test_redis_hosts.py: each a real
``spoold run`` with its own local folder and ``host_id``) share the test's own
``redis-server`` and run the same ``[[schedule]]`` tables. What they fired is
read back from Redis (the job hashes and the ``schedules`` hash of marks) and
from both daemons' logs, and counted exactly: one job per firing, one
"fired job" line per firing across both hosts. Hours pass through
``SPOOLD_TEST_SCHEDULE_OFFSET`` (seconds added to the clock schedules fire
by), never by waiting. Nothing is mocked.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from harness import Daemon, wait_for
from redis_server import KEY, RedisSpool

from spoold.schedules import Schedule, local_time, parse_schedules

HOUR = 3600
OFFSET = "SPOOLD_TEST_SCHEDULE_OFFSET"
FIRED = re.compile(r"schedule (?P<name>\S+): fired job (?P<id>\S+) \(")


def checked(table: dict[str, Any]) -> Schedule:
    """The schedule the daemon makes of ``table`` (for its ids and the times it logs)."""
    return parse_schedules([table], lambda _class, _method: True)[0]


def start_hosts(
    start_daemon: Callable[..., Daemon], configs: Sequence[Path], offset: float | None = None
) -> list[Daemon]:
    """Start a daemon per config at once (none waits for another), each with the schedule
    clock ``offset`` seconds ahead; return them once every one is ready."""
    env = {OFFSET: repr(offset)} if offset is not None else None
    daemons = [start_daemon(config=config, env=env, ready=False) for config in configs]
    return [daemon.wait_ready() for daemon in daemons]


def offset_to(moment: float) -> float:
    """The offset that puts the schedule clock at ``moment`` now."""
    return moment - time.time()


def firings(redis_spool: RedisSpool) -> dict[str, dict[str, Any]]:
    """Every job in the spool, by id: its ``schedule`` field (name and firing time)."""
    found = {}
    for key in redis_spool.client.scan_iter(match=f"{KEY}job:*"):
        spec = redis_spool.client.hget(key, "spec")
        if spec is not None:
            job_id = key.decode().removeprefix(f"{KEY}job:")
            found[job_id] = json.loads(spec).get("schedule", {})
    return found


def firing_times(redis_spool: RedisSpool, schedule: Schedule) -> list[float]:
    """The firing times of ``schedule``'s jobs in Redis, oldest first; each job's id must
    be the one derived from its name and time."""
    times = []
    for job_id, origin in firings(redis_spool).items():
        if origin.get("name") == schedule.name:
            assert job_id == schedule.job_id(origin["at"]), (job_id, origin)
            times.append(origin["at"])
    return sorted(times)


def mark(redis_spool: RedisSpool, name: str) -> dict[str, Any]:
    """The schedule's mark as Redis keeps it (times in ms)."""
    raw = redis_spool.client.hget(f"{KEY}schedules", name)
    assert raw is not None, f"no mark for {name}"
    return dict(json.loads(raw))


def fired(daemons: Iterable[Daemon], name: str) -> Counter[str]:
    """How many times the daemons' logs say ``fired job ID`` for each id of ``name``."""
    return Counter(
        found["id"]
        for daemon in daemons
        for found in FIRED.finditer(daemon.log_text())
        if found["name"] == name
    )


def plan_logged(daemons: Iterable[Daemon], schedule: Schedule) -> bool:
    """True once every daemon has read ``schedule`` (its first turn logs the plan)."""
    line = f"schedule {schedule.name}: {schedule.target} {schedule.when}"
    return all(line in daemon.log_text() for daemon in daemons)


def stop_all(daemons: Iterable[Daemon]) -> None:
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.log_text()


def spoold(config: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "spoold", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


TICK = {"name": "tick", "class": "testjobs.Noop", "method": "run", "every": "1s",
        "catch_up": "all"}  # fmt: skip


def test_two_hosts_on_one_schedule_fire_each_second_once(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
) -> None:
    """Both hosts wake for the same second, every second, for a few seconds: one job per
    second (no gap, no copy), one "fired job" line per firing across both logs; the host
    that lost the race says nothing or "fired or skipped already"."""
    tick = checked(TICK)
    hosts = start_hosts(start_daemon, [host_config(h, schedule=[TICK]) for h in ("a", "b")])
    wait_for(lambda: plan_logged(hosts, tick), message="a host never read the schedule")
    both_up = time.time()
    wait_for(lambda: len([t for t in firing_times(redis_spool, tick) if t > both_up]) >= 4,
             timeout=10, message="not 4 firings while both hosts ran")  # fmt: skip
    stop_all(hosts)

    times = firing_times(redis_spool, tick)
    first, last = int(times[0]), int(times[-1])
    assert times == [float(t) for t in range(first, last + 1)], "a second fired twice or never"
    ids = [tick.job_id(t) for t in times]
    assert fired(hosts, "tick") == Counter(ids), "not one 'fired job' line per firing"
    assert mark(redis_spool, "tick") == {"considered": last * 1000, "last_job": ids[-1],
                                         "last_fired": last * 1000}  # fmt: skip
    for host in hosts:
        text = host.log_text()
        assert "firing(s) missed" not in text and "skipped:" not in text, text
        for line in text.splitlines():
            if "was fired or skipped already" in line:  # the other host's lost race
                assert any(f"(its id: {job_id})" in line for job_id in ids), line
    print(f"\n[two hosts] {len(ids)} firings; fired by a: {len(fired(hosts[:1], 'tick'))},"
          f" b: {len(fired(hosts[1:], 'tick'))}")  # fmt: skip


HOURLY = {"class": "testjobs.Noop", "method": "run", "cron": "0 * * * *", "timezone": "UTC"}
HOURLY_ALL = {"name": "hourly-all", **HOURLY, "catch_up": "all"}
HOURLY_LATEST = {"name": "hourly-latest", **HOURLY, "catch_up": "latest"}


def test_both_hosts_down_for_hours_catch_up_once_in_total_and_schedule_shows_the_newest(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
) -> None:
    """Both hosts fire the hour H0 (a few seconds after they start, by the offset), stop,
    and come back at once at H0 + 5 h 10 min: catch_up = "all" fires the five missed hours
    once in total (5 jobs, not 10), "latest" fires H0 + 5 h alone. ``spoold schedule
    --json`` then shows each schedule's newest firing, and its next one."""
    every, latest = checked(HOURLY_ALL), checked(HOURLY_LATEST)
    configs = [host_config(h, schedule=[HOURLY_ALL, HOURLY_LATEST]) for h in ("a", "b")]
    h0 = (int(time.time()) // HOUR + 48) * HOUR  # an hour two days ahead
    offset = offset_to(h0 - 4.0)  # both start (and read the schedules) before H0
    first = start_hosts(start_daemon, configs, offset)
    assert time.time() + offset < h0 - 0.5, "the hosts took too long to start"
    wait_for(lambda: len(firings(redis_spool)) == 2, timeout=15, message="H0 never fired")
    stop_all(first)
    assert firing_times(redis_spool, every) == firing_times(redis_spool, latest) == [h0]

    second = start_hosts(start_daemon, configs, offset + 5 * HOUR + 600)
    wait_for(lambda: len(firings(redis_spool)) >= 8 and plan_logged(second, latest),
             timeout=15, message="the missed hours were not caught up")  # fmt: skip
    stop_all(second)

    hours = [h0 + n * HOUR for n in range(6)]
    assert firing_times(redis_spool, every) == hours, "a missed hour fired twice or never"
    assert firing_times(redis_spool, latest) == [h0, hours[-1]]
    assert fired(first, "hourly-all") == Counter([every.job_id(h0)])
    assert fired(second, "hourly-all") == Counter(every.job_id(h) for h in hours[1:])
    assert fired(second, "hourly-latest") == Counter([latest.job_id(hours[-1])])
    logs = "".join(daemon.log_text() for daemon in second)
    span = f"({local_time(every, hours[1])} to {local_time(every, hours[-1])})"
    assert f"schedule hourly-all: 5 firing(s) missed {span} while no daemon fired them;" \
           " catch_up = all: firing 5" in logs  # fmt: skip
    assert f"schedule hourly-latest: 5 firing(s) missed {span} while no daemon fired them;" \
           " catch_up = latest: firing the latest" in logs  # fmt: skip

    rows = {row["name"]: row for row in json.loads(spoold(configs[0], "schedule", "--json"))}
    for schedule in (every, latest):
        row = rows[schedule.name]
        assert (row["last_job"], row["last_fired"]) == (schedule.job_id(hours[-1]), hours[-1])
        assert row["next"] == hours[-1] + HOUR and row["catch_up"] == schedule.catch_up
    text = spoold(configs[0], "schedule")
    assert f"  last firing  {local_time(every, hours[-1])}  job {every.job_id(hours[-1])}" in text


SLOW = {"name": "slow", "class": "testjobs.Sleeper", "method": "run", "params": [1.5],
        "every": "1s", "catch_up": "all", "overlap": False}  # fmt: skip


def test_overlap_false_on_two_hosts_never_runs_two_firings_at_once_and_logs_each_skip(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
) -> None:
    """A 1.5 s job every second, overlap = false, two hosts with two slots each: the jobs'
    attempts never overlap in time; every second from the first firing to the mark is
    either a job or one "skipped" line (on either host) naming the job still running.
    (The host that loses the race for a skipped firing logs it "fired or skipped
    already": not checked here.)"""
    slow = checked(SLOW)
    hosts = start_hosts(start_daemon, [host_config(h, schedule=[SLOW]) for h in ("a", "b")])

    def done() -> int:
        return sum(redis_spool.record(slow.job_id(t)) is not None
                   for t in firing_times(redis_spool, slow))  # fmt: skip

    wait_for(lambda: done() >= 3, timeout=15, message="not 3 firings of the slow job ran")
    stop_all(hosts)

    times = firing_times(redis_spool, slow)
    attempts = []
    for moment in times:
        record = redis_spool.record(slow.job_id(moment))
        if record is not None:
            assert [e["outcome"] for e in record["history"]] == ["ok"], record
            attempts += [(e["started_at"], e["finished_at"]) for e in record["history"]]
    attempts.sort()
    assert len(attempts) >= 3
    for (_, finished), (started, _) in itertools.pairwise(attempts):
        assert started >= finished, f"two firings ran at once: {attempts}"

    considered = mark(redis_spool, "slow")["considered"] / 1000
    logs = "".join(host.log_text() for host in hosts)
    assert fired(hosts, "slow") == Counter(slow.job_id(t) for t in times)
    skipped = 0
    for second in range(int(times[0]), int(considered) + 1):
        if second in times:
            continue
        running = slow.job_id(max(t for t in times if t < second))
        line = (f"schedule slow: the firing for {local_time(slow, second)} skipped: its last"
                f" job {running} still waits or runs (overlap = false)")  # fmt: skip
        assert logs.count(line) == 1, f"{line!r} logged {logs.count(line)} times"
        skipped += 1
    assert skipped >= 1, "nothing was skipped: the test proves nothing"
    assert logs.count("(overlap = false)") == skipped


def test_purged_records_do_not_make_old_firings_fire_again(
    start_daemon: Callable[..., Daemon],
    host_config: Callable[..., Path],
    redis_spool: RedisSpool,
) -> None:
    """Three firings run; ``spoold purge done --older-than 0s`` removes every record, so
    their ids are free again; the host restarts with its schedule clock set back before
    the first of them. The mark, kept apart from the records, says they were fired: none
    fires again, and the next firing is the one after the mark."""
    config = host_config("a", schedule=[TICK])
    tick = checked(TICK)
    (first,) = start_hosts(start_daemon, [config])
    wait_for(lambda: sum(map(bool, map(redis_spool.record, firings(redis_spool)))) >= 3,
             timeout=10, message="not 3 firings ran")  # fmt: skip
    stop_all([first])
    old = firing_times(redis_spool, tick)
    assert all(redis_spool.record(tick.job_id(t)) for t in old), "a firing never ran"
    newest = int(old[-1])
    assert mark(redis_spool, "tick")["considered"] == newest * 1000

    assert spoold(config, "purge", "done", "--older-than", "0s").startswith(
        f"removed {len(old)} records from"
    )
    assert firings(redis_spool) == {}, "purge left jobs behind"
    (row,) = json.loads(spoold(config, "schedule", "--json"))
    assert (row["last_job"], row["last_fired"]) == (tick.job_id(newest), newest)

    (second,) = start_hosts(start_daemon, [config], offset_to(old[0] - 0.5))
    after = tick.job_id(newest + 1)
    wait_for(lambda: redis_spool.record(after), timeout=len(old) + 10,
             message=f"{after} never ran")  # fmt: skip
    stop_all([second])
    again = firing_times(redis_spool, tick)
    assert again[0] == newest + 1, f"fired again: {[t for t in again if t <= newest]}"
    assert again == [float(t) for t in range(newest + 1, int(again[-1]) + 1)]
    text = second.log_text()
    assert not [t for t in old if tick.job_id(t) in text], "an old firing was tried again"
    assert fired([second], "tick") == Counter(tick.job_id(t) for t in again)
