"""Periodic jobs without a daemon: ``[[schedule]]`` tables read through the config, when
each schedule fires (``spoold/schedules.py``, cron across daylight-saving days), the id of
each firing, and the scheduler's decisions (``spoold/core/scheduler.py``) on the memory
engine of tests/memory_backend.py, whose ``fire`` follows the file spool's
(``spoold/backends/files/firings.py``).

Time is the test's: ``Scheduler.tick(now)`` is called at explicit moments, given as
seconds after ``T0``, and each firing is checked by its exact derived id. The daemon
tests (tests/test_schedules.py, tests/test_redis_schedules.py) check the same decisions
on real spools.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from memory_backend import MemoryEngine

from spoold.config import Config, ConfigError, config_from_mapping
from spoold.core.backend import ALREADY, FIRED, OVERLAP, Accepted, Firing, Mark, Taken
from spoold.core.judge import Judge
from spoold.core.scheduler import ON_TIME, Scheduler
from spoold.identity import JobIdentity
from spoold.ids import is_valid_id, new_job_id
from spoold.live import Live
from spoold.schedules import Schedule, firing_id

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC: a multiple of a minute, 5 minutes, an hour
TARGET = {"class": "app.jobs.Report", "method": "run"}
ALLOW = {"app.jobs.Report": ["run", "rebuild"]}


def utc(text: str) -> float:
    """``"2027-03-28 01:00"`` (UTC) as a Unix time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def table(name: str = "nightly", **keys: Any) -> dict[str, Any]:
    """A ``[[schedule]]`` table that reads as good: every 5 minutes unless ``keys`` say."""
    if "cron" not in keys:
        keys.setdefault("every", "5m")
    return {"name": name, **TARGET, **{k: v for k, v in keys.items() if v is not None}}


def config(*tables: Any) -> Config:
    return config_from_mapping({"allow": ALLOW, "schedule": list(tables)}, base=Path("/etc/spoold"))


# -- the tables, read through the config --


def refusal(schedules: Any) -> str:
    """The one-line message a bad ``schedule`` value gives (fails if it is accepted)."""
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"allow": ALLOW, "schedule": schedules}, base=Path("/etc/spoold"))
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"colour": "red"}, "colour: unknown key"),
        ({"cron": "* * * * *", "every": "5m"}, 'either cron = "m h dom mon dow" or every ='),
        ({"every": None, "cron": None}, 'either cron = "m h dom mon dow" or every ='),
        ({"cron": "61 * * * *"}, "cron: bad minute, got '61 * * * *'"),
        ({"cron": "0 30 2 * * *"}, "cron: expected 5 fields"),
        ({"cron": "30 2 * * *", "timezone": "Mars/Olympus"}, "timezone: no zone 'Mars/Olympus'"),
        ({"every": "5m", "timezone": "Europe/Berlin"}, "timezone: only for cron"),
        ({"every": "0s"}, "every: expected a period such as"),
        ({"every": "5x"}, "every: expected a period such as"),
        ({"every": 5}, "every: expected a period such as"),
        ({"every": "36501d"}, "every: at most 36500d, got '36501d'"),
        ({"every": "3000000d"}, "every: at most 36500d"),
        ({"every": "9" * 40 + "s"}, "every: expected a period such as"),
        ({"params": "--all"}, "params: expected a list or a table"),
        ({"params": 3}, "params: expected a list or a table"),
        ({"catch_up": "sometimes"}, "catch_up: expected one of skip, latest, all"),
        ({"overlap": "no"}, "overlap: expected true or false"),
        ({"priority": True}, "priority: expected a whole number, got True"),
        ({"priority": 1.5}, "priority: expected a whole number, got 1.5"),
        ({"max_retries": -1}, "max_retries: expected at least 0, got -1"),
        ({"class": "app.jobs.Other"}, "app.jobs.Other.run is not on the allowlist"),
        ({"method": "delete"}, "app.jobs.Report.delete is not on the allowlist"),
        ({"method": "_secret"}, "app.jobs.Report._secret is not on the allowlist"),
    ],
)
def test_a_bad_schedule_table_is_refused_naming_the_schedule_and_the_key(
    keys: dict[str, Any], words: str
) -> None:
    message = refusal([table(**keys)])
    assert message.startswith('[[schedule]] "nightly": ')
    assert words in message


def test_a_table_without_a_name_is_refused_by_its_number() -> None:
    message = refusal([table("first"), {**TARGET, "every": "1m"}])
    assert message.startswith("[[schedule]] number 2: name: expected a string")


def test_two_schedules_of_one_name_are_refused() -> None:
    message = refusal([table(every="1m"), table(every="1h")])
    assert message == '[[schedule]] "nightly": a second schedule of that name'


def test_a_name_whose_ids_would_be_another_schedules_is_refused() -> None:
    """A safe name spelled as another name's slug and hash would share its ids."""
    lookalike = firing_id("a b", 0).split("-sched-", 1)[1]
    assert lookalike.startswith("a-b-")
    message = refusal([table("a b"), table(lookalike)])
    assert message == f'[[schedule]] "{lookalike}": its ids would be another schedule\'s'


@pytest.mark.parametrize("given", [{"name": "nightly", **TARGET, "every": "5m"}, "x", [1]])
def test_schedule_that_is_not_an_array_of_tables_is_refused(given: Any) -> None:
    assert refusal(given) == "[[schedule]]: expected tables ([[schedule]] headers)"


def test_a_good_table_gives_its_schedule_with_the_defaults() -> None:
    (schedule,) = config(table(cron="30  2 * * *")).schedules
    assert schedule == Schedule(
        name="nightly",
        class_path="app.jobs.Report",
        method="run",
        params=[],
        cron="30 2 * * *",  # spaces made single
        every=None,
        timezone="",
        catch_up="latest",
        overlap=True,
        priority=None,
        timeout=None,
        max_retries=None,
    )


def test_a_table_with_every_key_gives_each_of_them() -> None:
    first, second = config(
        table("weekly", cron="0 6 * * 1", timezone="Europe/Berlin", params={"full": True},
              catch_up="all", overlap=False, priority=-3, timeout=90, max_retries=0),
        table("often", every="90s", params=[1, "two"], catch_up="skip"),
    ).schedules  # fmt: skip
    assert (first.cron, first.timezone, first.params) == ("0 6 * * 1", "Europe/Berlin",
                                                         {"full": True})  # fmt: skip
    assert (first.catch_up, first.overlap, first.priority) == ("all", False, -3)
    assert (first.timeout, first.max_retries) == (90.0, 0)
    assert (second.every, second.cron, second.params) == (90, None, [1, "two"])
    assert second.catch_up == "skip"
    assert config().schedules == ()


def test_the_longest_every_plans_and_fires_without_leaving_the_calendar() -> None:
    """A century is the most: its times stay within what dates and ids can say."""
    rig = Rig(table("rare", every="36500d"))
    assert rig.tick(0) == []
    due = rig.scheduler.next_wakeup()
    assert due is not None and T0 < due <= T0 + 36500 * 86400
    assert is_valid_id(firing_id("rare", due))


# -- when a schedule fires --


def every(seconds: int, name: str = "often") -> Schedule:
    return Schedule(name, "app.jobs.Report", "run", [], None, seconds, "")


def cron(expression: str, timezone: str, name: str = "nightly") -> Schedule:
    return Schedule(name, "app.jobs.Report", "run", [], expression, None, timezone)


def test_every_fires_at_the_multiples_of_its_period_since_the_epoch() -> None:
    schedule = every(300)
    assert schedule.next_after(T0 + 123.4) == T0 + 300
    assert schedule.next_after(T0) == T0 + 300  # strictly after
    assert schedule.due_between(T0 - 1, T0 + 900, 10) == ([T0, T0 + 300, T0 + 600, T0 + 900],
                                                        False)  # fmt: skip
    daily = every(86400)
    assert daily.next_after(utc("2027-03-27 23:59")) == utc("2027-03-28 00:00")


def test_due_between_is_after_exclusive_and_upto_inclusive() -> None:
    schedule = every(60)
    assert schedule.due_between(T0, T0 + 180, 10) == ([T0 + 60, T0 + 120, T0 + 180], False)
    assert schedule.due_between(T0, T0 + 59.9, 10) == ([], False)
    assert schedule.due_between(T0, T0 + 180, 3) == ([T0 + 60, T0 + 120, T0 + 180], False)
    assert schedule.due_between(T0, T0 + 180, 2) == ([T0 + 120, T0 + 180], True)


def test_a_cron_time_skipped_by_spring_forward_fires_once_at_the_first_minute_after() -> None:
    """2027-03-28 in Berlin: 02:00 CET is 03:00 CEST; "30 2" fires at 03:00 CEST."""
    schedule = cron("30 2 * * *", "Europe/Berlin")
    times, more = schedule.due_between(utc("2027-03-27 02:00"), utc("2027-03-29 02:00"), 10)
    assert times == [utc("2027-03-28 01:00"), utc("2027-03-29 00:30")]
    assert not more


def test_a_cron_time_repeated_by_fall_back_fires_once_the_first_time() -> None:
    """2027-10-31 in Berlin: 03:00 CEST is 02:00 CET; "30 2" fires at the first 02:30
    (00:30 UTC), not again at the second (01:30 UTC)."""
    schedule = cron("30 2 * * *", "Europe/Berlin")
    times, _ = schedule.due_between(utc("2027-10-30 02:00"), utc("2027-11-01 02:00"), 10)
    assert times == [utc("2027-10-31 00:30"), utc("2027-11-01 01:30")]


def test_an_hourly_cron_fires_each_real_hour_once_on_the_fall_back_day() -> None:
    schedule = cron("0 * * * *", "Europe/Berlin")
    times, _ = schedule.due_between(utc("2027-10-30 21:30"), utc("2027-10-31 04:30"), 100)
    assert times == [utc("2027-10-30 22:00") + hour * 3600 for hour in range(7)]


def test_an_hourly_cron_names_no_instant_twice_on_the_spring_forward_day() -> None:
    schedule = cron("0 * * * *", "Europe/Berlin")
    times, _ = schedule.due_between(utc("2027-03-27 21:30"), utc("2027-03-28 04:30"), 100)
    assert times == [utc("2027-03-27 22:00") + hour * 3600 for hour in range(7)]


def test_a_long_outage_of_a_frequent_schedule_gives_the_newest_most_quickly() -> None:
    """A 1 s schedule over a year is not walked second by second."""
    upto = T0 + 365 * 86400 + 0.5
    started = time.monotonic()
    times, more = every(1).due_between(T0, upto, 1000)
    assert time.monotonic() - started < 2.0
    assert more
    assert times == [T0 + 365 * 86400 - 999 + second for second in range(1000)]


def test_a_long_outage_of_a_minutely_cron_gives_the_newest_most_quickly() -> None:
    upto = utc("2027-12-01 12:00") + 30
    started = time.monotonic()
    times, more = cron("* * * * *", "Europe/Berlin").due_between(T0, upto, 1000)
    assert time.monotonic() - started < 2.0
    assert more
    assert times == [utc("2027-12-01 12:00") - 60 * (999 - minute) for minute in range(1000)]


# -- the id of a firing --


def test_a_safe_name_is_kept_in_its_firing_id() -> None:
    assert firing_id("nightly", utc("2027-03-28 01:00")) == "20270328T010000.000Z-sched-nightly"
    assert firing_id("a_b-C9", T0 + 0.25) == "20270115T080000.250Z-sched-a_b-C9"


@pytest.mark.parametrize("name", ["Nightly report", "a/b", "Grüße", "../../etc", "-x", "日报"])
def test_an_unsafe_name_gives_a_valid_id_with_a_hash(name: str) -> None:
    job_id = firing_id(name, T0)
    assert is_valid_id(job_id)
    stamp, safe = job_id.split("-sched-", 1)
    assert stamp == "20270115T080000.000Z"
    digest = safe.rsplit("-", 1)[1]
    assert len(digest) == 8 and int(digest, 16) >= 0
    assert "/" not in safe and ".." not in safe
    assert firing_id(name, T0) == job_id  # the same on every daemon


def test_names_that_slug_alike_never_share_ids() -> None:
    names = ["a b", "a-b", "a_b", "a  b", "a/b", "a.b", "A b"]
    ids = {firing_id(name, T0) for name in names}
    assert len(ids) == len(names)
    assert firing_id("Nightly report", T0) == firing_id("Nightly report", T0)
    assert firing_id("Nightly report", T0).endswith("-sched-Nightly-report-06f212f8")


def test_firing_ids_sort_by_time_with_ordinary_ids() -> None:
    """Mixed with ``new_job_id`` ids, firing ids sort by the moment each stands for."""
    millis = [1_800_000_000_497 + step for step in range(6)]
    made = [
        new_job_id(millis[0] / 1000 + 0.0002),
        firing_id("zzz", millis[1] / 1000),
        new_job_id(millis[2] / 1000 + 0.0002),
        firing_id("Nightly report", millis[3] / 1000),
        firing_id("aaa", millis[4] / 1000),
        new_job_id(millis[5] / 1000 + 0.0002),
    ]
    assert sorted(made) == made
    same = [firing_id("nightly", T0), new_job_id(T0 + 0.0002)]
    assert same[0][:20] == same[1][:20] == "20270115T080000.000Z"


# -- the memory engine's fire and skip (as the file spool's) --


def firing(at: float, *, name: str = "often", exclusive: bool = False) -> Firing:
    schedule = every(60, name)
    return Firing(name, at, schedule.job_id(at), b'{"class": "app.jobs.Report", "method": '
                  b'"run"}', exclusive)  # fmt: skip


def test_fire_submits_once_and_moves_the_mark() -> None:
    engine = MemoryEngine(clock_start=T0)
    assert engine.fire(firing(T0)) == FIRED
    assert engine.schedule_marks() == {"often": Mark(T0, firing_id("often", T0), T0)}
    assert engine.fire(firing(T0)) == ALREADY  # the mark is at it
    assert engine.fire(firing(T0 - 60)) == ALREADY  # ... and past this one
    engine.skip_firings("often", T0 - 600)  # never back
    assert engine.schedule_marks()["often"].considered == T0
    engine.skip_firings("often", T0 + 600)  # forward only, the last job kept
    assert engine.schedule_marks() == {"often": Mark(T0 + 600, firing_id("often", T0), T0)}
    assert engine.counts().busy  # the one submission, not read yet


def test_fire_finds_a_taken_id_fired_already_wherever_the_job_is() -> None:
    """Handed in, ready, claimed, or filed: the id is taken, the mark (lost) moves to it."""
    rig = Rig(table("often", every="1m"))
    engine = rig.engine
    assert engine.fire(firing(T0)) == FIRED
    for step in ("handed in", "ready", "claimed", "filed"):
        if step == "ready":
            rig.read()
        elif step == "claimed":
            taken = rig.claim(firing_id("often", T0))
        elif step == "filed":
            rig.finish(taken)
        engine.marks.clear()  # schedules.json lost
        assert engine.fire(firing(T0)) == ALREADY, step
        assert engine.schedule_marks() == {"often": Mark(T0)}, step
    assert engine.record(firing_id("often", T0)) is not None
    assert engine.ready_ids() == engine.waiting_ids() == engine.claimed_ids() == []
    assert not engine.counts().busy


def test_an_exclusive_firing_overlaps_while_the_last_job_waits_or_runs() -> None:
    rig = Rig(table("often", every="1m"))
    engine = rig.engine
    first = firing_id("often", T0)
    assert engine.fire(firing(T0, exclusive=True)) == FIRED
    assert engine.fire(firing(T0 + 60, exclusive=True)) == OVERLAP  # handed in, not read
    assert engine.schedule_marks()["often"] == Mark(T0 + 60, first, T0)
    rig.read()
    assert engine.fire(firing(T0 + 120, exclusive=True)) == OVERLAP  # ready
    taken = rig.claim(first)
    assert engine.fire(firing(T0 + 180, exclusive=True)) == OVERLAP  # claimed
    assert engine.schedule_marks()["often"] == Mark(T0 + 180, first, T0)
    rig.finish(taken)
    assert engine.fire(firing(T0 + 240, exclusive=True)) == FIRED
    assert engine.schedule_marks()["often"] == Mark(T0 + 240, firing_id("often", T0 + 240),
                                                    T0 + 240)  # fmt: skip
    assert engine.fire(firing(T0 + 300)) == FIRED  # not exclusive: its last job no matter


# -- the scheduler's decisions --


class Rig:
    """A scheduler over a memory engine, ticked by the test; what it fires is read (judged
    and made ready) after each tick."""

    def __init__(self, *tables: dict[str, Any], engine: MemoryEngine | None = None) -> None:
        self.live = Live(config(*tables), JobIdentity())
        self.engine = engine if engine is not None else MemoryEngine(clock_start=T0)
        self.engine.open(Judge(self.live), T0)
        self.scheduler = Scheduler(self.engine, self.live)

    def tick(self, after: float) -> list[str]:
        """A tick ``after`` seconds past T0; the ids it fired, in order."""
        self.scheduler.tick(T0 + after)
        return self.read(after)

    def read(self, after: float = 0.0) -> list[str]:
        """Read what was handed in, as the daemon does; each one must be accepted."""
        fired = []
        for arrival in self.engine.receive(T0 + after):
            assert isinstance(arrival.verdict, Accepted), arrival.verdict
            self.engine.accept(arrival)
            fired.append(arrival.ref)
        return fired

    def claim(self, job_id: str) -> Taken:
        taken = self.engine.take_ready(self.engine.now)
        assert isinstance(taken, Taken) and taken.job.id == job_id
        return taken

    def finish(self, taken: Taken) -> None:
        record = taken.job.record("done", self.engine.now, result=None)
        assert self.engine.finish(taken.claim, "done", record) == taken.job.id

    def reload(self, *tables: dict[str, Any]) -> None:
        self.live.swap(config(*tables), JobIdentity())


def ids(name: str, *afters: float) -> list[str]:
    return [firing_id(name, T0 + after) for after in afters]


def test_a_new_schedule_counts_from_when_it_is_first_read() -> None:
    """Read at T0 + 30: the firing of T0 is not missed, T0 + 60 is the first."""
    rig = Rig(table("often", every="1m"))
    assert rig.tick(30) == []
    assert rig.engine.schedule_marks() == {}
    assert rig.tick(59.9) == []
    assert rig.tick(60) == ids("often", 60)


def test_an_on_time_schedule_fires_once_each_period() -> None:
    rig = Rig(table("often", every="1m"))
    fired = [job_id for after in (0, 60, 60, 61, 90, 119, 120, 180.5, 185) for job_id in
             rig.tick(after)]  # fmt: skip
    assert fired == ids("often", 60, 120, 180)
    job = rig.claim(fired[0]).job
    assert job.submitted["schedule"] == {"name": "often", "at": T0 + 60}
    assert (job.class_path, job.method) == ("app.jobs.Report", "run")


def test_after_an_outage_catch_up_all_fires_each_missed_firing() -> None:
    rig = Rig(table("often", catch_up="all"))
    assert rig.tick(0) == []
    assert rig.tick(1020) == ids("often", 300, 600, 900)
    assert rig.tick(1030) == []
    assert rig.tick(1200) == ids("often", 1200)


def test_after_an_outage_catch_up_latest_fires_the_newest_only() -> None:
    rig = Rig(table("often", catch_up="latest"))
    rig.tick(0)
    assert rig.tick(1020) == ids("often", 900)
    newest = firing_id("often", T0 + 900)
    assert rig.engine.schedule_marks()["often"] == Mark(T0 + 900, newest, T0 + 900)
    assert rig.tick(1030) == []


def test_after_an_outage_catch_up_skip_fires_none_when_the_newest_is_late() -> None:
    rig = Rig(table("often", catch_up="skip"))
    rig.tick(0)
    assert ON_TIME < 1020 - 900  # the newest firing, 900, is late
    assert rig.tick(1020) == []
    assert rig.engine.schedule_marks()["often"] == Mark(T0 + 900)  # skipped: the mark moved
    assert rig.tick(1030) == []
    assert rig.tick(1200) == ids("often", 1200)


def test_after_an_outage_catch_up_skip_fires_the_newest_when_it_is_on_time() -> None:
    rig = Rig(table("often", catch_up="skip"))
    rig.tick(0)
    assert rig.tick(900 + ON_TIME) == ids("often", 900)
    assert rig.engine.schedule_marks()["often"].considered == T0 + 900
    assert rig.tick(900 + ON_TIME + 5) == []


def test_a_restarted_scheduler_catches_up_from_the_mark() -> None:
    """The marks outlive the daemon: a new scheduler counts from them, not from its start."""
    first = Rig(table("often", catch_up="all"))
    first.tick(0)
    assert first.tick(300) == ids("often", 300)
    second = Rig(table("often", catch_up="all"), engine=first.engine)
    assert second.tick(1000) == ids("often", 600, 900)


def test_overlap_false_skips_a_firing_while_the_last_job_waits_or_runs() -> None:
    rig = Rig(table("often", every="1m", overlap=False))
    rig.tick(0)
    (first,) = rig.tick(60)
    assert rig.tick(120) == []  # ready, not claimed
    taken = rig.claim(first)
    assert rig.tick(180) == []  # claimed
    assert rig.engine.schedule_marks()["often"] == Mark(T0 + 180, first, T0 + 60)
    rig.finish(taken)
    assert rig.tick(240) == ids("often", 240)


def test_overlap_true_fires_while_the_last_job_still_runs() -> None:
    rig = Rig(table("often", every="1m"))
    rig.tick(0)
    (first,) = rig.tick(60)
    rig.claim(first)
    assert rig.tick(120) == ids("often", 120)


def test_two_schedulers_on_one_engine_fire_each_firing_once() -> None:
    tables = (table("often", every="1m", catch_up="all"), table("slow", every="5m"))
    one = Rig(*tables)
    two = Rig(*tables, engine=one.engine)
    fired: list[str] = []
    for turn, after in enumerate((0, 60, 60.5, 120, 300, 900, 960)):
        for rig in (one, two) if turn % 2 else (two, one):  # either may tick first
            rig.scheduler.tick(T0 + after)
        fired += one.read(after)
    expected = ids("often", 60, 120, 180, 240, 300) + ids("slow", 300)
    expected += ids("often", *range(360, 901, 60)) + ids("slow", 900) + ids("often", 960)
    assert sorted(fired) == sorted(expected)
    assert len(fired) == len(set(fired))


def test_a_firing_whose_mark_was_lost_but_whose_job_exists_is_not_fired_again() -> None:
    """Another daemon fired it and the marks were lost: the id is taken, so "already"."""
    one = Rig(table("often", every="1m"))
    two = Rig(table("often", every="1m"), engine=one.engine)
    one.tick(0)
    two.tick(0)
    assert one.tick(60) == ids("often", 60)
    one.engine.marks.clear()
    assert two.tick(60) == []
    assert one.engine.schedule_marks() == {"often": Mark(T0 + 60)}
    assert one.engine.ready_ids() == ids("often", 60)
    assert two.tick(120) == ids("often", 120)


def test_a_reload_adds_changes_and_removes_schedules() -> None:
    rig = Rig(table("kept", every="1m"), table("changed", every="1m"), table("gone", every="1m"))
    rig.tick(0)
    assert sorted(rig.tick(60)) == sorted(ids("kept", 60) + ids("changed", 60) + ids("gone", 60))
    rig.reload(table("kept", every="1m"), table("changed", every="5m"), table("added", every="1m"))
    assert rig.tick(90) == []  # "added" counts from here
    assert sorted(rig.tick(120)) == sorted(ids("kept", 120) + ids("added", 120))
    fired = [job_id for after in (180, 240, 300) for job_id in rig.tick(after)]
    assert sorted(fired) == sorted(
        ids("kept", 180, 240, 300) + ids("added", 180, 240, 300) + ids("changed", 300)
    )
    assert sorted(rig.scheduler.plan) == ["added", "changed", "kept"]


def test_next_wakeup_is_the_next_due_firing() -> None:
    rig = Rig(table("often", every="1m"), table("slow", every="5m"))
    assert rig.scheduler.next_wakeup() is None  # nothing planned before the first tick
    rig.tick(30)
    assert rig.scheduler.next_wakeup() == T0 + 60
    rig.tick(60)
    assert rig.scheduler.next_wakeup() == T0 + 120
    rig.reload(table("slow", every="5m"))
    rig.tick(70)
    assert rig.scheduler.next_wakeup() == T0 + 300
    rig.reload()
    rig.tick(80)
    assert rig.scheduler.next_wakeup() is None


def test_a_name_with_a_control_character_is_refused() -> None:
    message = refusal([table(name="two\nlines")])
    assert "name: expected 1 to 100 printable characters" in message


def test_a_changed_schedule_does_not_catch_up_the_old_schedules_time() -> None:
    """An hourly schedule made every minute (catch_up all): the minutes since its last
    hourly firing were never firings of it; it counts from the reload."""
    rig = Rig(table("often", every="1h", catch_up="all"))
    rig.tick(0)
    assert rig.tick(3600) == ids("often", 3600)
    rig.reload(table("often", every="1m", catch_up="all"))
    assert rig.tick(3600 + 1830) == []  # read at 1:30:30: the next minute is the first
    assert rig.tick(3600 + 1860) == ids("often", 3600 + 1860)


def test_firings_crowded_into_one_turn_fire_the_newest_for_latest_and_all_for_all() -> None:
    """A turn stalled for 3 s with a 1 s period: three firings come due at once, on time."""
    latest = Rig(table("often", every="1s", catch_up="latest"))
    every_one = Rig(table("often", every="1s", catch_up="all"))
    for rig in (latest, every_one):
        rig.tick(0)
        assert rig.tick(1) == ids("often", 1)
    assert latest.tick(4) == ids("often", 4)
    assert latest.tick(5) == ids("often", 5)  # the mark moved past 2 and 3
    assert every_one.tick(4) == ids("often", 2, 3, 4)
