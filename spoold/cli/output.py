"""How the ``spoold`` commands print: aligned lines for people, ``--json`` for scripts.

Every function prints one command's outcome to stdout; warnings go to
stderr as ``spoold: warning: ...`` so stdout stays clean for pipes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spoold.backends.files.spool import STATES
from spoold.cli.checking import ClassCheck, RedisCheck
from spoold.cli.detach import StopOutcome
from spoold.cli.pidfile import PidfileState
from spoold.config import Config
from spoold.core.backend import JobSummary, LiveDaemon, Mark, RunningJob, SpoolStatus, StoredJob
from spoold.durations import seconds
from spoold.schedules import Schedule, local_time

_ERROR_WIDTH = 100  # a list line shows the start of the error; `show` has the rest


def warn(message: str) -> None:
    print(f"spoold: warning: {message}", file=sys.stderr)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def format_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: the largest unit that fits, rounded down."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def submitted(
    job_id: str, *, as_json: bool, file: Path | None = None, key: str | None = None
) -> None:
    """The id; with ``--json`` also where the job is: its ``file`` (a file spool) or its Redis
    ``key`` (``{"id": ..., "key": "spoold:{<name>}:job:<id>"}``)."""
    if not as_json:
        print(job_id)
    elif key is not None:
        print_json({"id": job_id, "key": key})
    else:
        print_json({"id": job_id, "file": str(file)})


def status(
    report: SpoolStatus,
    *,
    as_json: bool,
    pidfile: PidfileState | None = None,
    running: list[RunningJob] | None = None,
    redis: str | None = None,
) -> None:
    """The spool's counts and daemon; with ``pidfile`` its state, with ``running`` the jobs.

    ``redis`` (a Redis spool: its server and key prefix) is one more line, and a key in JSON.
    """
    if as_json:
        _status_json(report, pidfile, running, redis)
        return
    print(f"spool      {report.root}")
    if redis is not None:
        print(f"redis      {redis}")
    print(f"daemon     {_daemon_text(report.daemon_pid)}")
    if pidfile is not None:
        print(f"pidfile    {pidfile.describe()}")
    for state in STATES:
        # A folder the caller may not list is left out of the counts: unknown, not 0.
        print(f"{state:<10} {report.counts.get(state, '? (not readable by you)')}")
    if report.held_back:
        each = ", ".join(f"{name} {count}" for name, count in sorted(report.held_back.items()))
        print(f"held back  {sum(report.held_back.values())} ready at their class's [limits]: "
              f"{each}")  # fmt: skip
    if report.oldest_waiting_id:
        age = format_age(report.oldest_waiting_age or 0.0)
        print(f"oldest waiting job: {report.oldest_waiting_id}, submitted {age} ago")
    if redis is not None:
        _live_daemons(report.daemons)
    if running is not None:
        _running_jobs(running)
    if report.missing:
        warn(f"missing folders: {', '.join(report.missing)} (run 'spoold init')")


def _status_json(
    report: SpoolStatus,
    pidfile: PidfileState | None,
    running: list[RunningJob] | None,
    redis: str | None,
) -> None:
    extra: dict[str, Any] = {}
    if redis is not None:
        extra["redis"] = redis
    if pidfile is not None:
        extra["pidfile"] = asdict(pidfile)
    if running is not None:
        extra["running_jobs"] = [asdict(job) for job in running]
    document = {**asdict(report), "daemon_running": report.daemon_pid is not None, **extra}
    if redis is None:
        del document["daemons"]  # a file spool has one daemon: "daemon_pid" says which
    print_json(document)


def _live_daemons(daemons: tuple[LiveDaemon, ...]) -> None:
    """The daemons sharing a Redis spool: host, busy of how many, when last heard of."""
    print(f"daemons    {len(daemons)} live")
    for daemon in daemons:
        jobs = ", ".join(daemon.running) or "no job"
        print(f"  {daemon.host} (pid {daemon.pid})  busy {daemon.busy}/{daemon.max}"
              f"  heard of {format_age(daemon.heard_ago)} ago  running: {jobs}")  # fmt: skip


def _running_jobs(running: list[RunningJob]) -> None:
    if not running:
        print("running jobs: none")
        return
    print("running jobs:")
    id_width = max(len(job.id) for job in running)
    target_width = max(len(job.target) for job in running)
    for job in running:
        print(
            f"  {job.id:<{id_width}}  {job.target:<{target_width}}"
            f"  attempt {job.attempt:<3}  {format_age(job.running_for):>4}"
        )


def stopped(outcome: StopOutcome, timeout: float) -> None:
    """What ``spoold stop`` did: stopped, killed, or there was nothing to stop."""
    if outcome.pid is None:
        print(outcome.state.describe())
    elif outcome.killed:
        warn(f"pid {outcome.pid} still running after {seconds(timeout)}: sent SIGKILL")
        print(f"killed (pid {outcome.pid})")
    else:
        print(f"stopped (pid {outcome.pid})")


def _daemon_text(pid: int | None) -> str:
    if pid is None:
        return "not running"
    return "running" if pid < 0 else f"running (pid {pid})"


def job_list(jobs: list[JobSummary], *, as_json: bool) -> None:
    if as_json:
        print_json([asdict(job) for job in jobs])
        return
    id_width = max((len(job.id) for job in jobs), default=0)
    target_width = max((len(job.target) for job in jobs), default=0)
    for job in jobs:
        print(_job_line(job, id_width, target_width))


def _job_line(job: JobSummary, id_width: int, target_width: int) -> str:
    state = job.status if job.status == "rejected" else job.state
    attempts = "1 attempt" if job.attempts == 1 else f"{job.attempts} attempts"
    error = (job.error or "").strip().splitlines()[:1]
    line = (
        f"{job.id:<{id_width}}  {state:<9}  {job.target:<{target_width}}"
        f"  {attempts:<10}  {format_age(job.age):>4}"
    )
    return f"{line}  {error[0][:_ERROR_WIDTH]}" if error else line.rstrip()


def show(stored: StoredJob, *, as_json: bool) -> None:
    if as_json:
        print_json(_found(stored))
        return
    print(f"# {stored.path}")
    if stored.document is None:
        print(f"# {stored.problem}; its text follows")
        print(stored.text)
        return
    document, tracebacks = _split_tracebacks(stored.document)
    print_json(document)
    for attempt, text in tracebacks:
        print(f"\n# traceback of attempt {attempt}:\n{text.rstrip()}")


def _found(stored: StoredJob) -> dict[str, Any]:
    found = {"id": stored.id, "state": stored.state, "path": str(stored.path)}
    if stored.document is None:
        return {**found, "document": None, "problem": stored.problem, "text": stored.text}
    return {**found, "document": stored.document}


def _split_tracebacks(document: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
    """Tracebacks read badly as JSON strings: print them as text after the document."""
    history = document.get("history")
    if not isinstance(history, list):
        return document, []
    entries, tracebacks = [], []
    for entry in history:
        if isinstance(entry, dict) and isinstance(entry.get("traceback"), str):
            tracebacks.append((entry.get("attempt", "?"), entry["traceback"]))
            entries.append({**entry, "traceback": "(printed below)"})
        else:
            entries.append(entry)
    return {**document, "history": entries}, tracebacks


def check(
    config: Config, checks: list[ClassCheck], *, as_json: bool, redis: RedisCheck | None = None
) -> None:
    """The allowlist's report; with ``redis`` (a Redis spool) its persistence settings too."""
    if as_json:
        report: dict[str, Any] = {
            "config": str(config.path),
            "ok": all(c.ok for c in checks) and (redis is None or redis.ok),
            "classes": [{**asdict(c), "ok": c.ok} for c in checks],
        }
        report["schedules"] = [
            {"name": s.name, "target": s.target, "when": s.when} for s in config.schedules
        ]
        if redis is not None:
            report["redis"] = {
                "url": redis.url,
                "ok": redis.ok,
                "problems": list(redis.problems),
                "error": redis.error,
                "require_durable": redis.required,
            }
        print_json(report)
        return
    if redis is None:
        print(f"config {config.path}: valid; spool {config.spool.dir}")
    else:
        print(
            f"config {config.path}: valid; spool {config.spool.name!r} in Redis at {redis.url},"
            f" job files in {config.spool.dir}"
        )
    for item in checks:
        verdict = "ok  " if item.ok else "FAIL"
        detail = ", ".join(item.methods) if item.ok else "; ".join(item.problems)
        print(f"{verdict} {item.class_path}: {detail}")
    for schedule in config.schedules:
        print(f"ok   schedule {schedule.name}: {schedule.target}, {schedule.when}")
    if not checks:
        warn("the [allow] table is empty: the daemon will reject every job")
    if redis is not None:
        _redis_check(redis)


def _redis_check(redis: RedisCheck) -> None:
    if redis.error is not None:
        print(f"FAIL redis: {redis.error}")
    elif not redis.problems:
        print(f"ok   redis {redis.url}: {', '.join(redis.wanted)}")
    elif redis.required:
        for problem in redis.problems:
            print(f"FAIL redis {redis.url}: {problem}")
    else:
        for problem in redis.problems:
            warn(
                f"redis {redis.url}: {problem}; it can lose acknowledged jobs"
                " (accepted: [spool] require_durable = false)"
            )


def check_summary(checks: list[ClassCheck], redis: RedisCheck | None = None) -> None:
    """One line on stderr for each part of the report that failed (a FAIL line); else nothing."""
    failed = sum(not item.ok for item in checks)
    if failed or (redis is not None and not redis.ok):
        sys.stdout.flush()  # the report first, where both streams go to one place
    if failed:
        noun = "class" if len(checks) == 1 else "classes"
        print(f"spoold check: {failed} of {len(checks)} allowed {noun} failed", file=sys.stderr)
    if redis is not None and not redis.ok:
        why = (
            "cannot be reached"
            if redis.error is not None
            else "can lose acknowledged jobs ([spool] require_durable = true)"
        )
        print(f"spoold check: the Redis at {redis.url} {why}", file=sys.stderr)


def schedules(
    defined: Sequence[Schedule], marks: Mapping[str, Mark], now: float, *, as_json: bool
) -> None:
    """``spoold schedule``: each schedule, its last firing as the spool keeps it, its next."""
    rows = [_schedule_row(schedule, marks.get(schedule.name), now) for schedule in defined]
    if as_json:
        print_json(rows)
        return
    if not defined:
        print("no schedules: add [[schedule]] tables to the config (README, Periodic jobs)")
        return
    for schedule, row in zip(defined, rows, strict=True):
        settings = f"catch_up = {schedule.catch_up}, overlap = {str(schedule.overlap).lower()}"
        print(f"{schedule.name}: {schedule.target}, {schedule.when} ({settings})")
        if row["last_fired"] is None:
            print("  last firing  never")
        else:
            print(
                f"  last firing  {local_time(schedule, row['last_fired'])}  job {row['last_job']}"
            )
        print(f"  next firing  {local_time(schedule, row['next'])}")


def _schedule_row(schedule: Schedule, mark: Mark | None, now: float) -> dict[str, Any]:
    since = max(now, mark.considered) if mark is not None else now
    return {
        "name": schedule.name,
        "class": schedule.class_path,
        "method": schedule.method,
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone or None,
        "catch_up": schedule.catch_up,
        "overlap": schedule.overlap,
        "last_fired": mark.last_fired if mark else None,
        "last_job": mark.last_job if mark else None,
        "next": schedule.next_after(since),
    }
