"""``spoold top``'s pure parts: ``render`` on hand-built views, the figures, and ``gather``
reading a real spool (the curses program itself runs under tmux: test_top_tmux.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import snapshots
from conftest import StartDaemon
from harness import Spool, job, wait_for, write_config
from snapshots import NOW

from spoold.backends import open_catalog
from spoold.cli.render import render, visible_rows
from spoold.cli.top import details_lines, retry_job, retry_refusal
from spoold.cli.view import (
    FailureRow,
    RunningRow,
    TopView,
    finished_rate,
    gather,
    rate_text,
    short_duration,
    stats_summary,
)
from spoold.config import load_config
from spoold.core.backend import LiveDaemon, SpoolStatus
from spoold.snapshot import Minute, RunningAttempt, Snapshot

ROOT = Path(__file__).resolve().parent.parent
MINUTE = int(NOW // 60 * 60)
RUN_ID = "20270115T080000.000Z-1111111111"
FAIL_ID = "20270115T075000.000Z-2222222222"
OLD_ID = "20270115T070000.000Z-3333333333"


def snapshot(host: str = "web-1", **fields: Any) -> Snapshot:
    """A fresh snapshot of a daemon on ``host``, up for an hour, idle, with ``fields`` changed."""
    return snapshots.snapshot(host, **fields)


def status(daemon_pid: int | None = 100, **counts: int) -> SpoolStatus:
    every = {state: 0 for state in ("tmp", "incoming", "scheduled", "active", "done", "failed")}
    return SpoolStatus(Path("/srv/spool"), {**every, **counts}, [], None, None, daemon_pid)


def busy_view() -> TopView:
    """One daemon running one attempt, two failures (one of them rejected)."""
    snap = snapshot(
        busy=1,
        oldest_wait=3.4,
        minutes=[Minute(MINUTE - 60, done=10, failed=2)],
        running=[RunningAttempt(RUN_ID, "app.jobs.Report.build", 2, NOW - 12, 60.0)],
    )
    return TopView(
        now=NOW,
        place="/srv/spool",
        snapshots=(snap,),
        status=status(incoming=3, scheduled=1, active=1, done=120, failed=2),
        running=(RunningRow(RUN_ID, "app.jobs.Report.build", 2, NOW - 12, 60.0, "web-1"),),
        failures=(
            FailureRow(
                FAIL_ID, "app.jobs.Mailer.send", 4, 65, "ConnectionRefusedError: " + "x" * 300
            ),
            FailureRow(OLD_ID, "?.?", 0, 4000, "not valid JSON: Expecting value", rejected=True),
        ),
    )


def text(lines: list[str]) -> str:
    return "\n".join(lines)


def assert_fits(lines: list[str], width: int, height: int) -> None:
    assert len(lines) <= height, lines
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, too_long


# -- the header --


def test_header_shows_the_daemon_busy_rate_counts_and_oldest_wait() -> None:
    lines = render(busy_view(), 120, 30)
    screen = text(lines)
    assert lines[0].startswith("spoold top  /srv/spool")
    assert "web-1 pid 100 (up 1h00m, stats fresh)" in lines[1]
    assert "busy 1/4" in screen
    # An hour up: the last 5 full minutes are averaged, and the header says so.
    assert "2.4 jobs/min (avg of last 5 min)" in screen
    assert "oldest wait 3s" in screen
    assert "incoming 3   scheduled 1   active 1   done 120   failed 2" in screen
    assert len(lines) == 30 and lines[-1].startswith("q quit")


def test_busy_is_summed_over_fresh_daemons_and_a_stale_one_says_so() -> None:
    view = replace(
        busy_view(),
        snapshots=(
            snapshot(busy=2, slots=4),
            snapshot(host="web-2", pid=200, busy=3, slots=8, backend="files"),
            snapshot(host="web-3", pid=300, busy=5, slots=5, taken_at=NOW - 60),
        ),
        status=replace(status(), daemon_pid=-1),  # running, its pid unreadable: all count
    )
    screen = text(render(view, 160, 30))
    assert "busy 5/12" in screen  # web-3's figures are a minute old: left out
    assert "daemons 3:" in screen
    assert "web-3 pid 300 (STALE: no stats for 60s: stuck?)" in screen


def test_a_stopped_daemons_last_snapshot_counts_for_nothing() -> None:
    view = replace(busy_view(), status=status(daemon_pid=None))  # the spool's lock is free
    lines = render(view, 120, 30)
    assert "web-1 pid 100 (NOT RUNNING; its last stats are 1s old)" in lines[1]
    assert "busy ?" in text(lines)
    assert render(view, 40, 8)[0].startswith("daemon DOWN")


def test_redis_daemons_without_stats_are_listed_from_their_heartbeats() -> None:
    live = (
        LiveDaemon("a", 1, 1, 2, 0.5, (RUN_ID,)),
        LiveDaemon("b", 2, 0, 2, 1.0, ()),
    )
    view = TopView(NOW, "redis://r:6379/0 spoold:{x}:", status=replace(status(), daemons=live))
    screen = text(render(view, 120, 20))
    assert "daemons 2: a pid 1 (heard of 0s ago); b pid 2 (heard of 1s ago)" in screen
    assert "busy 1/4" in screen


@pytest.mark.parametrize(
    ("up_for", "minutes", "expected"),
    [
        (30, [Minute(MINUTE - 60, done=9)], "jobs/min - (up 30s)"),  # no full minute yet
        (90, [Minute(MINUTE - 60, done=7, failed=2), Minute(MINUTE, done=50)],
         "9 jobs/min (last full min)"),
        (150, [Minute(MINUTE - 120, done=3), Minute(MINUTE - 60, done=2)],
         "2.5 jobs/min (avg of last 2 min)"),
        # Quiet minutes are not in the ring: they count as none finished. The minute in
        # progress and those before the window are left out.
        (3600, [Minute(MINUTE - 600, done=99), Minute(MINUTE - 60, done=10),
                Minute(MINUTE, done=99)],
         "2 jobs/min (avg of last 5 min)"),
    ],
)  # fmt: skip
def test_jobs_per_minute_says_over_which_minutes(
    up_for: float, minutes: list[Minute], expected: str
) -> None:
    rate = finished_rate([snapshot(started_at=NOW - up_for, minutes=minutes)], NOW)
    assert rate_text(rate) == expected


def test_jobs_per_minute_without_stats() -> None:
    assert rate_text(finished_rate([], NOW)) == "jobs/min ? (no stats)"
    view = TopView(NOW, "/srv/spool", status=status())
    lines = render(view, 100, 20)
    assert "daemon  running pid 100 (no stats published yet)" in lines[1]
    assert "jobs/min ? (no stats)" in lines[2]


def test_short_durations() -> None:
    assert [short_duration(s) for s in (0, 12.9, 99, 100, 3599, 3600, 86399, 400000)] == [
        "0s", "12s", "99s", "1m40s", "59m59s", "1h00m", "23h59m", "4d15h",
    ]  # fmt: skip


# -- the tables --


def test_running_jobs_show_elapsed_against_timeout() -> None:
    view = replace(
        busy_view(),
        running=(
            RunningRow(RUN_ID, "app.jobs.Report.build", 2, NOW - 12, 60.0),
            RunningRow("20270115T080001.000Z-4444444444", "app.X.y", 1, NOW - 250, 0.0),
            RunningRow("20270115T080002.000Z-5555555555", "app.X.z", 1, NOW - 70, 60.0),
        ),
    )
    lines = render(view, 120, 30)
    row = next(line for line in lines if RUN_ID in line)
    assert "12s/60s" in row and "app.jobs.Report.build" in row and " 2 " in row
    assert any("4m10s/no limit" in line for line in lines)
    assert any("70s/60s  OVER" in line for line in lines)
    assert "ELAPSED/TIMEOUT" in text(lines)


def test_running_jobs_read_without_a_snapshot_have_no_timeout() -> None:
    view = replace(
        busy_view(),
        snapshots=(),
        running=(RunningRow(RUN_ID, "app.jobs.Report.build", 1, NOW - 5, None),),
        running_from_snapshots=False,
    )
    screen = text(render(view, 120, 30))
    assert "RUNNING 1  (read from the jobs: no stats, no timeouts)" in screen
    assert "5s/?" in screen


def test_failures_are_cut_to_the_width_and_cleaned() -> None:
    view = replace(
        busy_view(),
        failures=(
            FailureRow(FAIL_ID, "app.Evil.run", 1, 5, "ValueError: \x1b[2Jwiped\nsecond line\x9b"),
            *busy_view().failures,
        ),
    )
    for width in (60, 80, 120, 200):
        lines = render(view, width, 30)
        assert_fits(lines, width, 30)
        mailer = next(line for line in lines if "2222222222" in line and "Connection" in line)
        assert mailer.endswith("...") and len(mailer) == width
    screen = text(render(view, 120, 30))
    assert "\x1b" not in screen and "\x9b" not in screen
    assert "ValueError:  [2Jwiped second line" in screen
    assert "rejected: not valid JSON: Expecting value" in screen
    assert "FAILED 3  (newest first)" in screen


def test_failures_keep_the_end_of_the_id_when_the_screen_is_narrow() -> None:
    lines = render(busy_view(), 80, 30)
    mailer = next(line for line in lines if "Mailer" in line)
    assert "..000Z-2222222222  65s" in mailer and FAIL_ID not in mailer
    assert "app.jobs.Mailer.send" in mailer
    assert FAIL_ID in next(line for line in render(busy_view(), 120, 30) if "Mailer" in line)


def test_the_filter_narrows_both_tables_by_id_or_class_method() -> None:
    view = busy_view()
    lines = render(view, 120, 30, filter_text="MAILER")
    screen = text(lines)
    assert "Mailer" in screen and "Report" not in screen and OLD_ID not in screen
    assert "RUNNING 0 of 1" in screen and "(none match the filter)" in screen
    assert "FAILED 1 of 2" in screen
    assert "[filter: MAILER, Esc clears]" in lines[-1]
    by_id = text(render(view, 120, 30, filter_text="3333"))
    assert OLD_ID in by_id and FAIL_ID not in by_id and RUN_ID not in by_id
    assert [row.job_id for row in visible_rows(view, "report")] == [RUN_ID]


def test_the_selection_marker_runs_through_both_tables() -> None:
    view = busy_view()
    marked = [[line for line in render(view, 120, 30, selected=n) if line.startswith("> ")]
              for n in (0, 1, 2, 99, -5)]  # fmt: skip
    assert [len(lines) for lines in marked] == [1, 1, 1, 1, 1]
    assert RUN_ID in marked[0][0]
    assert FAIL_ID in marked[1][0]
    assert OLD_ID in marked[2][0] and OLD_ID in marked[3][0]  # past the end: the last row
    assert RUN_ID in marked[4][0]


def test_a_selection_below_the_window_scrolls_its_table() -> None:
    failures = tuple(
        FailureRow(f"20270115T07{n:02d}00.000Z-{n:010d}", "app.X.y", 1, n, f"error {n}")
        for n in range(40)
    )
    view = replace(busy_view(), failures=failures)
    lines = render(view, 100, 20, selected=1 + 30)  # the running row, then failure 30
    assert_fits(lines, 100, 20)
    selected = [line for line in lines if line.startswith("> ")]
    assert len(selected) == 1 and "error 30" in selected[0]
    title = next(line for line in lines if line.startswith("FAILED"))
    assert "of 40: j/k scroll)" in title


def test_a_message_takes_the_footer() -> None:
    lines = render(busy_view(), 80, 24, message="retry 2027...? y/n")
    assert lines[-1] == "retry 2027...? y/n"


@pytest.mark.parametrize(
    ("width", "height"), [(40, 10), (20, 5), (80, 3), (10, 2), (1, 1), (200, 4), (39, 40)]
)
@pytest.mark.parametrize("which", ["busy", "empty", "errors"])
def test_a_small_terminal_gets_what_fits(width: int, height: int, which: str) -> None:
    view = {
        "busy": busy_view(),
        "empty": TopView(NOW, "/srv/spool", status=status(daemon_pid=None)),
        "errors": TopView(
            NOW, "/srv/spool", errors=("cannot reach Redis at redis://x: " + "y" * 90,)
        ),
    }[which]
    for selected in (0, 1, 5):
        lines = render(
            view, width, height, selected=selected, filter_text="a" if selected == 5 else ""
        )
        assert_fits(lines, width, height)
        assert len(lines) == height  # the footer on the last line


def test_forty_by_ten_still_shows_a_running_job_and_a_failure() -> None:
    lines = render(busy_view(), 40, 10)
    assert_fits(lines, 40, 10)
    screen = text(lines)
    assert lines[0] == "daemon up busy 1/4 run 1 wait 3 fail 2"
    assert "12s/60s" in screen and "..1111111111" in screen and "..2222222222" in screen
    assert lines[-1] == "q quit  / filter  j/k  Enter  R retry"


def test_an_empty_spool() -> None:
    view = TopView(NOW, "/srv/spool", status=status(daemon_pid=None))
    lines = render(view, 100, 20)
    screen = text(lines)
    assert "daemon  NOT RUNNING" in lines[1]
    assert "incoming 0   scheduled 0   active 0   done 0   failed 0" in screen
    assert "RUNNING 0" in screen and "FAILED 0  (newest first)" in screen
    assert screen.count("(none)") == 2


def test_a_read_error_is_one_line_and_the_rest_still_draws() -> None:
    view = replace(busy_view(), status=None, errors=("Permission denied: /srv/spool/failed",))
    lines = render(view, 100, 20, selected=1)
    errors = [line for line in lines if line.startswith("! ")]
    assert errors == ["! Permission denied: /srv/spool/failed (retrying every 2s)"]
    assert "jobs ?" in text(lines)


def test_zero_size_draws_nothing() -> None:
    assert render(busy_view(), 0, 10) == [] and render(busy_view(), 10, 0) == []


def test_stats_summary_for_status_watch() -> None:
    fresh = snapshot(
        busy=1, slots=2,
        minutes=[Minute(MINUTE - 3000, failed=4), Minute(MINUTE - 60, done=5, failed=1)],
    )  # fmt: skip
    assert stats_summary([fresh], NOW) == (
        "stats      busy 1/2, 6 finished in the last full minute, 5 failed in the last hour"
        " (1 daemon)"
    )
    stale = snapshot(taken_at=NOW - 100)
    expected = "stats      none fresh (the last: web-1 pid 100, 1m40s ago)"
    assert stats_summary([stale], NOW) == expected
    assert stats_summary([], NOW) is None


# -- reading a real spool --


def failed_record(job_id: str, error: str, finished_at: float, **fields: Any) -> bytes:
    history = [
        {"attempt": 1, "started_at": finished_at - 1, "finished_at": finished_at,
         "outcome": "error", "error": error, "traceback": f"Traceback\n{error}\n"}
    ]  # fmt: skip
    document = {"id": job_id, "class": "testjobs.Boom", "method": "run", "params": [],
                "status": "failed", "attempts": 1, "history": history,
                "finished_at": finished_at, **fields}  # fmt: skip
    return json.dumps(document).encode()


@pytest.fixture
def file_catalog(spool: Spool, tmp_path: Path) -> Any:
    config = load_config(write_config(tmp_path / "config.toml", spool))
    return config, open_catalog(config)


def test_gather_reads_the_snapshot_the_counts_and_the_failures(
    spool: Spool, file_catalog: Any
) -> None:
    _, catalog = file_catalog
    now = NOW + 30
    (spool.folder("failed") / f"{OLD_ID}.json").write_bytes(failed_record(OLD_ID, "old", now - 500))
    (spool.folder("failed") / f"{FAIL_ID}.json").write_bytes(failed_record(FAIL_ID, "new", now - 5))
    attempt = RunningAttempt(RUN_ID, "testjobs.Sleeper.run", 1, now - 3, 30.0)
    (spool.root / "stats.json").write_bytes(snapshot(taken_at=now - 1, running=[attempt]).to_json())
    view = gather(catalog, str(spool.root), now)
    assert view.errors == ()
    assert [s.host for s in view.snapshots] == ["web-1"]
    assert view.status is not None and view.status.counts["failed"] == 2
    assert [(f.job_id, f.error, f.age) for f in view.failures] == [
        (FAIL_ID, "new", 5.0), (OLD_ID, "old", 500.0),
    ]  # fmt: skip
    # No daemon holds the spool's lock: the snapshot is a stopped daemon's, so the
    # running attempts come from active/ (none) rather than from it.
    assert view.running == () and not view.running_from_snapshots
    screen = text(render(view, 120, 30))
    assert "NOT RUNNING" in screen and "3s/30s" not in screen


def test_gather_falls_back_to_the_jobs_in_active(spool: Spool, file_catalog: Any) -> None:
    _, catalog = file_catalog
    (spool.folder("active") / f"{RUN_ID}.json").write_bytes(
        json.dumps({"class": "testjobs.Sleeper", "method": "run", "history": []}).encode()
    )
    claimed = os.lstat(spool.folder("active") / f"{RUN_ID}.json").st_ctime
    view = gather(catalog, str(spool.root), claimed + 7)
    assert [(r.job_id, r.target, r.attempt, r.timeout) for r in view.running] == [
        (RUN_ID, "testjobs.Sleeper.run", 1, None)
    ]
    assert "7s/?" in text(render(view, 120, 30))


def test_the_running_list_is_the_jobs_in_active_not_an_old_snapshot(
    spool: Spool, start_daemon: StartDaemon, file_catalog: Any
) -> None:
    """A snapshot is up to an interval old. The list is read with the counts, so both agree:
    an attempt the snapshot lists that has ended since is left out, one it does not list
    yet is shown (timeout unknown), and one it lists gets its start and timeout from it."""
    _, catalog = file_catalog
    start_daemon(metrics={"interval": 60})  # no new snapshot while the test writes its own
    spool.drop_job("napping", job("Sleeper", params=[30]))
    wait_for(lambda: spool.job_ids("active") == ["napping"], 15, spool.summary)
    stats = spool.root / "stats.json"
    wait_for(stats.exists, 15, spool.summary)
    published = Snapshot.from_json(stats.read_bytes())
    now = time.time()
    ended = RunningAttempt(RUN_ID, "testjobs.Sleeper.run", 1, now - 5, 30.0)
    stats.write_bytes(replace(published, taken_at=now, busy=1, running=[ended]).to_json())
    view = gather(catalog, str(spool.root), time.time())
    assert view.status is not None and view.status.counts["active"] == 1
    assert [(r.job_id, r.attempt, r.timeout) for r in view.running] == [("napping", 1, None)]
    assert view.running_from_snapshots
    screen = text(render(view, 120, 30))
    assert "RUNNING 1" in screen and RUN_ID not in screen and "/?" in screen
    napping = RunningAttempt("napping", "testjobs.Sleeper.run", 1, now - 2, 45.0)
    stats.write_bytes(replace(published, taken_at=now, busy=1, running=[napping]).to_json())
    view = gather(catalog, str(spool.root), now + 1)
    assert [(r.job_id, r.started_at, r.timeout) for r in view.running] == [
        ("napping", now - 2, 45.0)
    ]
    assert "3s/45s" in text(render(view, 120, 30))


def test_gather_reads_only_the_newest_ids_of_a_large_failed_folder(
    spool: Spool, file_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spoold.cli import view

    _, catalog = file_catalog
    monkeypatch.setattr(view, "FAILED_READ_ALL", 3)  # what 1,000 records would do, with 5
    monkeypatch.setattr(view, "FAILED_NEWEST_IDS", 2)
    ids = [f"20270115T07000{n}.000Z-000000000{n}" for n in range(5)]
    for n, job_id in enumerate(ids):
        (spool.folder("failed") / f"{job_id}.json").write_bytes(failed_record(job_id, f"e{n}", NOW))
    view = gather(catalog, str(spool.root), NOW + 1)
    assert [row.job_id for row in view.failures] == [ids[4], ids[3]]
    assert "FAILED 2  (newest first, of the 2 newest ids)" in text(render(view, 120, 30))


def test_a_redis_that_cannot_be_reached_is_one_line_in_the_view(
    spool: Spool, tmp_path: Path
) -> None:
    from redis_server import free_port, require

    require()
    sections = {"spool": {"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0",
                          "redis_timeout": 1.0, "require_durable": False}}  # fmt: skip
    config = load_config(write_config(tmp_path / "config.toml", spool, sections))
    view = gather(open_catalog(config), "redis", NOW)
    assert len(view.errors) == 1 and view.errors[0].startswith("cannot reach Redis at redis://")
    lines = render(view, 120, 30)
    assert [line for line in lines if line.startswith("! ")] == [
        f"! {view.errors[0]} (retrying every 2s)"
    ]


def test_details_are_what_show_prints_without_control_characters(
    spool: Spool, file_catalog: Any
) -> None:
    _, catalog = file_catalog
    record = failed_record(FAIL_ID, "ValueError: \x1b]0;owned\x07", NOW, params=["\u009b31m"])
    (spool.folder("failed") / f"{FAIL_ID}.json").write_bytes(record)
    lines = details_lines(catalog, FAIL_ID)
    assert lines[0] == f"# {spool.folder('failed') / FAIL_ID}.json"
    assert "# traceback of attempt 1:" in lines
    assert not any(char in line for line in lines for char in "\x1b\x07\x9b")
    assert details_lines(catalog, OLD_ID) == [
        f"cannot show {OLD_ID}: no job {OLD_ID} in {spool.root}"
    ]


def test_retry_from_the_view(spool: Spool, file_catalog: Any, tmp_path: Path) -> None:
    config, catalog = file_catalog
    (spool.folder("failed") / f"{FAIL_ID}.json").write_bytes(failed_record(FAIL_ID, "x", NOW))
    assert retry_refusal(config) is None
    assert retry_job(catalog, FAIL_ID) == f"retried {FAIL_ID}: it waits in incoming again"
    assert spool.job_ids("incoming") == [FAIL_ID] and spool.job_ids("failed") == []
    again = retry_job(catalog, FAIL_ID)
    assert again == f"retry failed: job {FAIL_ID} is in incoming/; only failed jobs can be retried"
    # A folder this user cannot write: the view refuses before asking (here: it is gone).
    os.rename(spool.folder("incoming"), tmp_path / "elsewhere")
    refusal = retry_refusal(config)
    assert refusal is not None and refusal.startswith("you may not retry here:")
    assert str(spool.folder("incoming")) in refusal


# -- the command --


def run_spoold(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "spoold", *args], capture_output=True,
                          text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip


def test_top_without_a_terminal_says_so_and_exits_2(spool: Spool, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", spool)
    result = run_spoold("top", "--config", str(config))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "spoold: top needs a terminal; for a log or a pipe use 'spoold status --watch N'\n"
    )


def test_status_watch_refuses_json_and_a_zero_interval(spool: Spool, tmp_path: Path) -> None:
    config = str(write_config(tmp_path / "config.toml", spool))
    result = run_spoold("status", "--config", config, "--watch", "1", "--json")
    assert (result.returncode, result.stderr) == (
        2, "spoold: --watch prints text for people and logs; drop --json\n",
    )  # fmt: skip
    result = run_spoold("status", "--config", config, "--watch", "0")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "at least 0.1 seconds" in result.stderr


def test_the_counts_say_how_many_jobs_their_class_limits_hold_back() -> None:
    """``[limits]``: the jobs passed over for their class's limit are counted beside the
    states, and only when there are any (issue 20)."""
    held = replace(status(incoming=12), held_back={"app.jobs.Report": 9, "app.jobs.Mail": 2})
    screen = "\n".join(render(TopView(NOW, "/srv/spool", status=held), 120, 30))
    assert "incoming 12" in screen and "held back 11 (class limits)" in screen
    screen = "\n".join(render(TopView(NOW, "/srv/spool", status=status(incoming=12)), 120, 30))
    assert "held back" not in screen
