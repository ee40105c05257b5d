"""Periodic jobs on the file spool, end to end with the real daemon (issue 18): each firing
of a ``[[schedule]]`` becomes exactly one job.

What this file proves, each with exact ids and counts:

- ``every = "1s"`` in real time: one job per firing second, with the derived id, run and
  filed in done/ with ``"schedule": {"name", "at"}`` in its record;
- a second daemon on the spool is refused; SIGKILL and restarts (in quick succession too)
  never fire a firing twice nor lose one (catch_up = all);
- a crash between a firing's job and its mark (SPOOLD_FAULT=after_firing): a burst run
  fires nothing, and the restarted daemon finds the id taken, logs "fired or skipped already", and
  the firing stays one job;
- a daemon down for hours: catch_up = all / latest / skip fire exactly what they say, log
  the missed firings, ``spoold schedule --json`` agrees, and a further restart fires nothing;
- overlap = false keeps a schedule's jobs from overlapping (overlap = true lets them);
- daylight-saving days in Europe/Berlin fire ``30 2 * * *`` once (03:00 CEST in spring,
  the first 02:30 in autumn);
- SIGHUP adds, changes and removes schedules;
- a schedule off the allowlist is a config error (exit 2, one line);
- ``spoold schedule`` shows "never", then the last job.

Dates far from today are reached with the test-only ``SPOOLD_TEST_SCHEDULE_OFFSET``, which
moves only the clock the schedules fire by.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conftest import StartDaemon
from harness import Daemon, Spool, spoold_cli, stays_false, wait_for, write_config

from spoold.backends.files.spool import STATES

OFFSET_ENV = "SPOOLD_TEST_SCHEDULE_OFFSET"
FIRED = re.compile(r"schedule (?P<name>\S+): fired job (?P<id>\S+) \(")
ID = re.compile(r"(?P<stamp>\d{8}T\d{6})\.(?P<millis>\d{3})Z-sched-(?P<name>.+)")
MARGIN = 2.0  # seconds between a daemon's start and the firing it must not miss


def utc(text: str) -> float:
    """``"2027-03-28 00:59:58"`` (UTC) as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def expected_id(name: str, at: float) -> str:
    """The id a firing must get, written out here rather than taken from spoold."""
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{round(at * 1000) % 1000:03d}Z-sched-{name}"


def firing_time(job_id: str) -> float:
    """The firing time an id names (whole seconds and milliseconds)."""
    match = ID.fullmatch(job_id)
    assert match is not None, job_id
    moment = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment.timestamp() + int(match["millis"]) / 1000


def at_clock(moment: float) -> dict[str, str]:
    """The env that puts the schedule clock at ``moment`` when the daemon's scheduler first
    looks (the test-only offset, "@T"): however slowly the daemon starts, a firing set
    MARGIN after ``moment`` comes MARGIN after that look."""
    return {OFFSET_ENV: f"@{moment!r}"}


def schedule(name: str, **fields: Any) -> dict[str, Any]:
    """A ``[[schedule]]`` table running testjobs.Noop unless ``fields`` say otherwise."""
    return {"name": name, "class": "testjobs.Noop", "method": "run", **fields}


def fired(daemon: Daemon, name: str | None = None) -> list[str]:
    """The ids a daemon's log says it fired ("fired job ID"), in order."""
    found = (FIRED.search(line) for line in daemon.log_lines())
    return [m["id"] for m in found if m is not None and name in (None, m["name"])]


def all_job_ids(spool: Spool) -> Counter[str]:
    """Every job id in every folder, counted (one job is one file, in one folder)."""
    return Counter(job_id for state in STATES for job_id in spool.job_ids(state))


def wait_done(spool: Spool, ids: Iterable[str], timeout: float = 15.0) -> dict[str, Any]:
    """Wait until each id has its record in done/; return the records by id."""
    wanted = sorted(ids)

    def all_done() -> dict[str, Any]:
        done = spool.records("done")
        return done if all(job_id in done for job_id in wanted) else {}

    return wait_for(all_done, timeout, lambda: f"{wanted} in done/; {spool.summary()}")


def schedule_rows(config: Path, workdir: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``spoold schedule --json``, by schedule name."""
    result = spoold_cli(config, workdir, "schedule", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def lines_with(daemon: Daemon, text: str) -> list[str]:
    return [line for line in daemon.log_lines() if text in line]


def test_every_second_fires_one_job_per_second_with_its_derived_id(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """every = "1s": each second fires once, as the job <time>-sched-tick, which runs and is
    filed in done/ with ``schedule = {name, at}``; no second fired twice or skipped.
    (catch_up = all: with "latest", a daemon stalled for over a second fires only the
    newest of the on-time firings, and this test is about the clock, not that choice.)"""
    daemon = start_daemon(schedule=[schedule("tick", every="1s", catch_up="all")])

    def four_done() -> dict[str, Any]:
        done = spool.records("done")
        return done if len(done) >= 4 else {}

    done = wait_for(four_done, 10, spool.summary)
    daemon.stop()
    ids = fired(daemon, "tick")
    assert len(ids) == len(set(ids)), ids
    assert set(all_job_ids(spool)) == set(ids), "a job file that no firing wrote"
    assert set(done) <= set(ids)
    times = sorted(firing_time(job_id) for job_id in ids)
    assert all(moment == int(moment) for moment in times), times
    assert [b - a for a, b in itertools.pairwise(times)] == [1.0] * (len(times) - 1)
    for job_id, record in done.items():
        at = firing_time(job_id)
        assert job_id == expected_id("tick", at)
        assert record["id"] == job_id
        assert record["status"] == "done"
        assert record["class"] == "testjobs.Noop"
        assert record["schedule"] == {"name": "tick", "at": at}
        assert [entry["outcome"] for entry in record["history"]] == ["ok"]
        assert record["history"][0]["started_at"] >= at


def test_a_second_daemon_is_refused_and_kills_and_restarts_fire_each_second_once(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path]
) -> None:
    """The spool lock turns a second daemon away (exit 1, one line); the first goes on.
    Then SIGKILL and restart, four times in quick succession: with catch_up = all every
    second from the first firing to the last is one job, fired by exactly one daemon."""
    config = daemon_config(schedule=[schedule("tick", every="1s", catch_up="all")])
    first = start_daemon(config=config)
    first.wait_log("fired job")
    second = start_daemon(config=config, ready=False)
    assert second.wait_exit() == 1
    assert second.log_text().strip() == (
        f"spoold: another spoold (pid {first.pid}) is running on this spool"
    )
    assert first.returncode() is None
    before = len(fired(first))
    wait_for(lambda: len(fired(first)) >= before + 2, 10, "the first daemon to go on firing")
    first.kill()
    daemons = [first]
    for _ in range(4):
        daemon = start_daemon(config=config)
        daemons.append(daemon)
        wait_for(functools.partial(fired, daemon), 10, "a firing by the restarted daemon")
        daemon.kill()
    last = start_daemon(config=config)
    daemons.append(last)
    wait_for(lambda: len(fired(last)) >= 2, 10, "two firings by the last daemon")
    so_far = set(all_job_ids(spool))
    wait_done(spool, so_far)
    last.stop()

    everything = [job_id for daemon in daemons for job_id in fired(daemon)]
    duplicates = [job_id for job_id, n in Counter(everything).items() if n > 1]
    assert not duplicates, f"fired twice: {duplicates}"
    files = all_job_ids(spool)
    assert all(n == 1 for n in files.values()), files
    times = sorted(firing_time(job_id) for job_id in files)
    assert sorted(files) == [expected_id("tick", t) for t in times]
    seconds = [times[0] + step for step in range(int(times[-1] - times[0]) + 1)]
    assert times == seconds, "a second without its one job (or with two)"
    done = spool.records("done")
    for job_id in so_far:
        assert done[job_id]["schedule"] == {"name": "tick", "at": firing_time(job_id)}


def test_a_crash_between_a_firing_and_its_mark_leaves_one_job_and_logs_fired_already(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path]
) -> None:
    """SPOOLD_FAULT=after_firing:2: the daemon dies with the second firing's job written and
    its mark not saved. A burst run then runs both jobs and fires nothing (burst mode fires
    no schedule, though one is due). Restarted, the daemon meets the second firing's id
    taken (in done/): "fired or skipped already", and that firing stays one job, run once."""
    config = daemon_config(schedule=[schedule("tick", every="1s", catch_up="all")])
    crashing = start_daemon(config=config, env={"SPOOLD_FAULT": "after_firing:2"})
    assert crashing.wait_exit(15) == -signal.SIGKILL
    (first,) = fired(crashing)
    marks = json.loads((spool.root / "schedules.json").read_text())
    assert marks["tick"]["last_job"] == first, "the mark is the first firing's"
    second = expected_id("tick", firing_time(first) + 1)
    assert set(all_job_ids(spool)) == {first, second}, "the crash left the second job behind"

    burst = start_daemon("--burst", config=config, ready=False)
    assert burst.wait_exit(20) == 0, burst.log_text()
    assert not fired(burst), "burst mode fired a schedule"
    assert not lines_with(burst, "schedule tick")
    assert spool.where(first) == spool.where(second) == ["done"]
    assert set(all_job_ids(spool)) == {first, second}
    assert json.loads((spool.root / "schedules.json").read_text()) == marks

    restarted = start_daemon(config=config)
    line = restarted.wait_log(f"was fired or skipped already (its id: {second}): dropped")
    assert line.split("INFO", 1)[1].strip().startswith("schedule tick: the firing for ")
    wait_for(lambda: fired(restarted), 10, "the next firing")
    restarted.stop()
    assert second not in fired(restarted)
    assert all_job_ids(spool)[second] == 1
    record = spool.records("done")[second]
    assert record["attempts"] == 1
    assert [entry["outcome"] for entry in record["history"]] == ["ok"]
    assert record["schedule"] == {"name": "tick", "at": firing_time(second)}


def test_a_daemon_down_for_hours_catches_up_as_each_catch_up_mode_says(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Three hourly schedules, one per catch_up mode, fire 10:00; the daemon is down until
    16:30. Then "all" fires 11:00 to 16:00 (six jobs), "latest" 16:00 only, "skip" none,
    each with a warning naming the six missed firings; ``spoold schedule --json`` shows
    the last firing and 17:00 next. Back at 17:00:20 (on time) each fires 17:00, "skip"
    too; a further restart fires nothing."""
    modes = ("all", "latest", "skip")
    config = daemon_config(
        schedule=[schedule(m, cron="0 * * * *", timezone="UTC", catch_up=m) for m in modes]
    )

    def ids(mode: str, *hours: int) -> list[str]:
        return [expected_id(mode, utc(f"2027-02-10 {hour:02d}:00:00")) for hour in hours]

    first = start_daemon(config=config, env=at_clock(utc("2027-02-10 10:00:00") - MARGIN))
    for mode in modes:
        first.wait_log(f"fired job {ids(mode, 10)[0]} ")
    wait_done(spool, [ids(m, 10)[0] for m in modes])
    first.stop()

    late = at_clock(utc("2027-02-10 16:30:00"))
    second = start_daemon(config=config, env=late)
    missed = "6 firing(s) missed (2027-02-10 11:00:00 UTC to 2027-02-10 16:00:00 UTC)"
    for mode, what in (("all", "firing 6"), ("latest", "firing the latest"),
                       ("skip", "skipping them")):  # fmt: skip
        line = second.wait_log(f"schedule {mode}: {missed}")
        assert line.endswith(f"while no daemon fired them; catch_up = {mode}: {what}"), line
    wanted = {"all": ids("all", 11, 12, 13, 14, 15, 16), "latest": ids("latest", 16), "skip": []}
    wait_done(spool, [job_id for each in wanted.values() for job_id in each])
    second.stop()
    for mode in modes:
        assert fired(second, mode) == wanted[mode], mode

    rows = schedule_rows(config, tmp_path, late)
    shown = {name: (row["last_job"], row["last_fired"], row["next"]) for name, row in rows.items()}
    assert shown == {
        "all": (ids("all", 16)[0], utc("2027-02-10 16:00:00"), utc("2027-02-10 17:00:00")),
        "latest": (ids("latest", 16)[0], utc("2027-02-10 16:00:00"), utc("2027-02-10 17:00:00")),
        "skip": (ids("skip", 10)[0], utc("2027-02-10 10:00:00"), utc("2027-02-10 17:00:00")),
    }

    third = start_daemon(config=config, env=at_clock(utc("2027-02-10 17:00:20")))
    for mode in modes:
        third.wait_log(f"fired job {ids(mode, 17)[0]} ")
    wait_done(spool, [ids(m, 17)[0] for m in modes])
    third.stop()
    for mode in modes:
        assert fired(third, mode) == ids(mode, 17), mode
    assert not lines_with(third, "missed"), "20 s late is on time"

    fourth = start_daemon(config=config, env=at_clock(utc("2027-02-10 17:40:00")))
    for mode in modes:
        fourth.wait_log(f"schedule {mode}: testjobs.Noop.run cron")
    assert stays_false(lambda: fired(fourth) or lines_with(fourth, "missed"), 1.0)
    for mode in modes:
        assert lines_with(fourth, f"schedule {mode}: testjobs.Noop.run")[0].endswith(
            "; next firing 2027-02-10 18:00:00 UTC"
        )
    fourth.stop()
    assert sorted(all_job_ids(spool)) == sorted(
        ids("all", 10, 11, 12, 13, 14, 15, 16, 17) + ids("latest", 10, 16, 17) + ids("skip", 10, 17)
    )
    assert all(n == 1 for n in all_job_ids(spool).values())


def job_spans(spool: Spool, name: str) -> list[tuple[float, float]]:
    """(started_at, finished_at) of every attempt of ``name``'s jobs in done/, by start."""
    spans = [
        (entry["started_at"], entry["finished_at"])
        for record in spool.records("done").values()
        if record["schedule"]["name"] == name
        for entry in record["history"]
    ]
    return sorted(spans)


TWO_SLOTS = {"concurrency": 2, "shutdown_timeout": 0.5}  # a stop does not wait out a sleeper


def sleeper_every_second(overlap: bool) -> dict[str, Any]:
    return schedule("slow", every="1s", overlap=overlap, **{"class": "testjobs.Sleeper"},
                    params=[2.5])  # fmt: skip


def test_overlap_false_skips_firings_while_the_last_job_runs(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """every 1s, a 2.5 s job, overlap = false, two slots: the firings while a job runs are
    skipped and logged, and no two of its attempts overlap in time."""
    daemon = start_daemon(schedule=[sleeper_every_second(False)], worker=TWO_SLOTS)
    wait_for(lambda: len(spool.job_ids("done")) >= 2, 15, spool.summary)
    daemon.stop()
    ids = fired(daemon, "slow")
    skips = lines_with(daemon, "skipped: its last job")
    assert len(skips) >= 2, daemon.log_text()
    assert skips[0].endswith(f"its last job {ids[0]} still waits or runs (overlap = false)")
    spans = job_spans(spool, "slow")
    assert len(spans) >= 2
    for (_, finished), (started, _) in itertools.pairwise(spans):
        assert started >= finished, f"overlapping attempts: {spans}"
    assert len(all_job_ids(spool)) == len(ids), "a skipped firing left a job"


def test_overlap_true_lets_a_schedules_jobs_run_at_once(
    spool: Spool, start_daemon: StartDaemon
) -> None:
    """The control: the same schedule with overlap = true runs its next job while the last
    one still runs, and skips nothing."""
    daemon = start_daemon(schedule=[sleeper_every_second(True)], worker=TWO_SLOTS)
    wait_for(lambda: len(spool.job_ids("done")) >= 2, 15, spool.summary)
    daemon.stop()
    (first_start, first_end), (second_start, _) = job_spans(spool, "slow")[:2]
    assert second_start < first_end, "the jobs did not overlap"
    assert second_start - first_start < 1.5
    assert not lines_with(daemon, "skipped")


def test_spring_forward_fires_the_missing_0230_once_at_0300_cest(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path], tmp_path: Path
) -> None:
    """``30 2 * * *`` Europe/Berlin on 2027-03-28, when 02:00 CET becomes 03:00 CEST: one job,
    20270328T010000.000Z (03:00 CEST); the next firing is the 29th, and a daemon started
    late that day with catch_up = all finds nothing else due."""
    nightly = schedule("nightly", cron="30 2 * * *", timezone="Europe/Berlin", catch_up="all")
    config = daemon_config(schedule=[nightly])
    job_id = "20270328T010000.000Z-sched-nightly"
    env = at_clock(utc("2027-03-28 01:00:00") - MARGIN)
    daemon = start_daemon(config=config, env=env)
    line = daemon.wait_log(f"fired job {job_id} ")
    assert line.endswith("for 2027-03-28 03:00:00 CEST")
    record = wait_done(spool, [job_id])[job_id]
    assert record["schedule"] == {"name": "nightly", "at": utc("2027-03-28 01:00:00")}
    daemon.stop()
    assert fired(daemon) == [job_id]
    assert schedule_rows(config, tmp_path, env)["nightly"]["next"] == utc("2027-03-29 00:30:00")

    evening = start_daemon(config=config, env=at_clock(utc("2027-03-28 21:59:30")))
    line = evening.wait_log("schedule nightly: testjobs.Noop.run")
    assert line.endswith("next firing 2027-03-29 02:30:00 CEST"), line
    assert stays_false(lambda: fired(evening) or lines_with(evening, "missed"), 1.0)
    evening.stop()
    assert list(all_job_ids(spool)) == [job_id]


def test_fall_back_fires_the_first_0230_only(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path], tmp_path: Path
) -> None:
    """``30 2 * * *`` Europe/Berlin on 2027-10-31, when 02:30 comes twice (00:30 and 01:30
    UTC): the first fires (20271031T003000.000Z); a daemon up across the second 02:30 fires
    nothing, and the next firing is 2027-11-01 02:30 CET (01:30 UTC)."""
    config = daemon_config(
        schedule=[schedule("nightly", cron="30 2 * * *", timezone="Europe/Berlin")]
    )
    job_id = "20271031T003000.000Z-sched-nightly"
    first = start_daemon(config=config, env=at_clock(utc("2027-10-31 00:30:00") - MARGIN))
    assert first.wait_log(f"fired job {job_id} ").endswith("for 2027-10-31 02:30:00 CEST")
    wait_done(spool, [job_id])
    first.stop()

    second_0230 = utc("2027-10-31 01:30:00")
    env = at_clock(second_0230 - MARGIN)
    second = start_daemon(config=config, env=env)
    line = second.wait_log("schedule nightly: testjobs.Noop.run")  # (after the first look)
    planned = time.time()
    assert line.endswith("next firing 2027-11-01 02:30:00 CET"), line
    wait_for(lambda: time.time() >= planned + MARGIN + 2.0, 10)  # the second 02:30, and 2 s
    assert not fired(second), second.log_text()
    assert stays_false(lambda: fired(second), 0.3)
    second.stop()
    row = schedule_rows(config, tmp_path, env)["nightly"]
    assert (row["last_job"], row["next"]) == (job_id, utc("2027-11-01 01:30:00"))
    assert list(all_job_ids(spool)) == [job_id]


def test_sighup_adds_changes_and_removes_schedules(
    spool: Spool, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Reloaded: "keep" goes from every 1s to every 2s, "gone" is removed, "new" is added;
    the log says each, and from the reload on "gone" fires no more, "keep" fires every
    other second and "new" every second."""
    config = tmp_path / "live.toml"
    before = [schedule(name, every="1s", catch_up="all") for name in ("keep", "gone")]
    write_config(config, spool, {"schedule": before})
    daemon = start_daemon(config=config)
    wait_for(lambda: fired(daemon, "keep") and fired(daemon, "gone"), 10, "both to fire")
    after = [schedule("keep", every="2s", catch_up="all"),
             schedule("new", every="1s", catch_up="all")]  # fmt: skip
    write_config(config, spool, {"schedule": after})
    daemon.send(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    daemon.wait_log("schedule keep: changed: testjobs.Noop.run every 2s; next firing")
    daemon.wait_log("schedule gone: removed from the config; it fires no more")
    daemon.wait_log("schedule new: added: testjobs.Noop.run every 1s; next firing")

    def after_reload() -> list[str]:
        lines = daemon.log_lines()
        start = next(i for i, line in enumerate(lines) if "configuration reloaded" in line)
        return lines[start:]

    def fired_after(name: str) -> list[str]:
        found = (FIRED.search(line) for line in after_reload())
        return [m["id"] for m in found if m is not None and m["name"] == name]

    wait_for(lambda: len(fired_after("keep")) >= 2 and len(fired_after("new")) >= 3, 10)
    daemon.stop()
    assert fired_after("gone") == []
    keep = [firing_time(job_id) for job_id in fired_after("keep")]
    assert all(moment % 2 == 0 for moment in keep), keep
    assert [b - a for a, b in itertools.pairwise(keep)] == [2.0] * (len(keep) - 1)
    new = [firing_time(job_id) for job_id in fired_after("new")]
    assert [b - a for a, b in itertools.pairwise(new)] == [1.0] * (len(new) - 1)
    gone = sorted(job_id for job_id in all_job_ids(spool) if job_id.endswith("-sched-gone"))
    assert gone == fired(daemon, "gone"), "a job of the removed schedule after the reload"


OFF_THE_ALLOWLIST = [
    ("method", {"class": "testjobs.Partial", "method": "forbidden"}, "testjobs.Partial.forbidden"),
    ("class", {"class": "testjobs.Unlisted", "method": "run"}, "testjobs.Unlisted.run"),
]


def test_a_schedule_off_the_allowlist_is_a_config_error(
    spool: Spool, daemon_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A schedule whose method or class is not allowed: ``spoold check`` and ``spoold run``
    exit 2 with one line naming the schedule and its target; nothing starts."""
    for case, target, named in OFF_THE_ALLOWLIST:
        config = daemon_config(schedule=[schedule(f"bad-{case}", every="1s", **target)])
        for command in ("check", "run"):
            result = spoold_cli(config, tmp_path, command)
            assert result.returncode == 2, (case, command, result)
            assert "Traceback" not in result.stderr
            assert result.stdout == ""
            assert result.stderr.splitlines() == [
                f'spoold: {config}: [[schedule]] "bad-{case}": {named} is not on the allowlist'
                " ([allow])"
            ]
    assert not (spool.root / ".spoold.lock").exists()
    assert not (spool.root / "schedules.json").exists()
    assert all_job_ids(spool) == Counter()


def test_schedule_command_shows_never_then_the_last_job(
    spool: Spool, start_daemon: StartDaemon, daemon_config: Callable[..., Path], tmp_path: Path
) -> None:
    """``spoold schedule`` names each schedule with its target and settings; "last firing
    never" until it fires, then the job of its last firing."""
    config = daemon_config(
        schedule=[schedule("tick", every="1s", overlap=False),
                  schedule("hourly", cron="0 * * * *", timezone="UTC", catch_up="all")]
    )  # fmt: skip
    before = spoold_cli(config, tmp_path, "schedule")
    assert before.returncode == 0, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0] == "tick: testjobs.Noop.run, every 1s (catch_up = latest, overlap = false)"
    assert lines[1] == "  last firing  never"
    assert lines[2].startswith("  next firing  ")
    assert lines[3] == (
        'hourly: testjobs.Noop.run, cron "0 * * * *" (UTC) (catch_up = all, overlap = true)'
    )
    assert lines[4] == "  last firing  never"
    assert len(lines) == 6

    daemon = start_daemon(config=config)
    wait_for(lambda: fired(daemon, "tick"), 10, "the first firing")
    daemon.stop()
    last = fired(daemon, "tick")[-1]
    after = spoold_cli(config, tmp_path, "schedule").stdout.splitlines()
    assert after[0] == lines[0]
    assert after[1].startswith("  last firing  ")
    assert after[1].endswith(f"  job {last}")
    assert after[4] == "  last firing  never"
