"""The ``spoold`` command: parse the command line, do one operation, print the outcome.

Thin on purpose: the grammar is in ``cli_parser``, what the admin commands
do is in the backend's ``Catalog`` (``open_catalog``) and ``checking``, submitting is the client,
running is the daemon, and printing is in ``cli_output``. A user error ends as one
line ``spoold: <message>`` on stderr and exit status 2 (usage or config) or
1 (anything else); never a traceback.

The backend is ``[spool] backend``. ``submit`` hands the job to it (the
client's ``submitter_for``): a file in the spool's incoming/, or straight
into Redis. Its ``--json`` output is ``{"id": ..., "file": "<dir>/incoming/<id>.json"}``
for a file spool and ``{"id": ..., "key": "spoold:{<name>}:job:<id>"}`` (the
job's hash) for Redis. A Redis that cannot be reached is one line and exit
status 1, as any other runtime error. ``check`` of a Redis spool also checks
the server's persistence settings (``checking.check_redis``).
"""

from __future__ import annotations

import argparse
import grp
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from spoold import faults
from spoold.backends import open_catalog
from spoold.backends.files import admin
from spoold.backends.files.admin import AdminError
from spoold.backends.files.spool import VIEW_STATES, Spool, SpoolLocked
from spoold.cli import asked, detach
from spoold.cli import output as cli_output
from spoold.cli.checking import check_allowlist, check_redis
from spoold.cli.parser import build_parser
from spoold.cli.pidfile import DetachError, pidfile_state
from spoold.client import job_payload, submitter_for
from spoold.config import Config, ConfigError, find_config_path, load_config, parse_address
from spoold.core.backend import Catalog, CatalogError
from spoold.errors import describe_os_error
from spoold.identity import job_identity
from spoold.job import CANCELLED, Rejected, check_names, constant_refuser, parse_time


class UsageError(Exception):
    """A command line argparse accepted but spoold cannot: exit status 2."""


_no_constant = constant_refuser("is not JSON")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _HANDLERS[args.command]
    try:
        status = handler(args)
        sys.stdout.flush()  # so a closed pipe is reported here, not at exit
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), 2)
    except (CatalogError, SpoolLocked, DetachError) as exc:
        return _fail(str(exc), 1)
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except OSError as exc:
        return _fail(describe_os_error(exc), 1)
    except KeyboardInterrupt:
        return 130
    return status


def _fail(message: str, status: int) -> int:
    print(f"spoold: {message}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    # `spoold list | head` closed our stdout; Python would complain again at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _config(args: argparse.Namespace) -> Config:
    return load_config(find_config_path(args.config))


def _spool(args: argparse.Namespace) -> tuple[Config, Spool]:
    config = _config(args)
    return config, Spool(config.spool.dir)


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)  # a bad config is reported here, before any fork
    if args.detach:
        return _run_detached(args, config)
    if args.pidfile is not None:
        raise UsageError("--pidfile goes with --detach (a foreground daemon writes none)")
    from spoold.backends import open_engine
    from spoold.core.daemon import run_daemon  # loguru and watchdog: only when the daemon runs

    return run_daemon(config, open_engine, open_catalog=open_catalog, burst=args.burst)


def _run_detached(args: argparse.Namespace, config: Config) -> int:
    if args.pidfile is None:
        raise UsageError("--detach needs --pidfile FILE (what 'spoold stop' reads)")
    if args.burst:
        raise UsageError("--burst runs in the foreground; drop --detach")
    job_identity(config.worker, os.geteuid())  # its config errors too, while we have a terminal
    if config.path is not None:  # the daemon works in /: SIGHUP must still find its config
        config = replace(config, path=config.path.absolute())
    pid = detach.start_detached(config, Path(args.pidfile), _detached_daemon)
    print(f"started (pid {pid})")
    return 0


def _detached_daemon(config: Config, on_ready: Callable[[], None]) -> int:
    """The daemon's main, called inside the DaemonContext: sinks and threads start here."""
    from spoold.backends import open_engine
    from spoold.core.daemon import run_daemon

    return run_daemon(config, open_engine, open_catalog=open_catalog, on_ready=on_ready)


def cmd_stop(args: argparse.Namespace) -> int:
    timeout = args.timeout if args.timeout is not None else _stop_timeout(args)
    outcome = detach.stop_daemon(Path(args.pidfile), timeout, kill=args.kill)
    cli_output.stopped(outcome, timeout)
    return 0


def _stop_timeout(args: argparse.Namespace) -> float:
    """[worker] shutdown_timeout + 10 s from the config; 60 s when there is no config."""
    path = find_config_path(args.config)
    explicit = args.config or os.environ.get("SPOOLD_CONFIG")
    if not explicit and not path.exists():
        return 60.0
    return load_config(path).worker.shutdown_timeout + 10.0


def cmd_submit(args: argparse.Namespace) -> int:
    config = _config(args)
    params = submit_params(args.params, args.kwargs)
    run_at = parse_at(args.at) if args.at is not None else None
    _check_submittable(config, args.class_path, args.method)
    now = time.time()
    if args.delay is not None:
        run_at = now + args.delay
    try:
        payload = job_payload(
            args.class_path,
            args.method,
            params,
            now=now,
            priority=args.priority or None,
            run_at=run_at,
            max_retries=args.max_retries,
        )
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    job_id = _submit(config, payload, now)
    if config.spool.backend == "redis":
        from spoold.backends.redis.connection import prefix

        cli_output.submitted(job_id, as_json=args.json, key=f"{prefix(config.spool)}job:{job_id}")
    else:
        file = Spool(config.spool.dir).path("incoming", f"{job_id}.json")
        cli_output.submitted(job_id, as_json=args.json, file=file)
    return 0


def _submit(config: Config, payload: bytes, now: float) -> str:
    """Hand the job to ``[spool]``'s backend: a file in its folder, or straight to Redis."""
    submitter = submitter_for(config, durable=config.spool.fsync)
    if config.spool.backend != "redis":
        return submitter.submit(payload, now=now)
    from spoold.backends.redis.catalog import redis_errors

    with redis_errors(config.spool):
        return submitter.submit(payload, now=now)


def _check_submittable(config: Config, class_path: str, method: str) -> None:
    try:
        check_names(class_path, method)
    except Rejected as exc:  # any daemon would file it as rejected: say so now instead
        raise UsageError(f"the daemon would reject this job: {exc}") from None
    if config.spool.backend == "files":  # a Redis spool takes jobs whatever this host's folder
        spool = Spool(config.spool.dir)
        missing = [f"{state}/" for state in ("tmp", "incoming") if not spool.folder(state).is_dir()]
        if missing:
            raise AdminError(f"{spool.root} has no {' or '.join(missing)}; run 'spoold init' first")
    if not config.is_allowed(class_path, method):
        # Only a warning: the daemon may run with another config than this one.
        cli_output.warn(
            f"{class_path}.{method} is not on the allowlist of {config.path}; "
            "the daemon will reject it unless its own config allows it"
        )


def submit_params(words: list[str], kwargs: str | None) -> list[Any] | dict[str, Any]:
    """PARAMs as a list of JSON values (bare words are strings), or --kwargs as an object."""
    if kwargs is None:
        return [_param(position, word) for position, word in enumerate(words, 1)]
    if words:
        raise UsageError("give PARAMs or --kwargs, not both: params are a list or an object")
    try:
        value = json.loads(kwargs, parse_constant=_no_constant)
    except ValueError as exc:
        raise UsageError(f"--kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--kwargs must be a JSON object, such as '{\"data\": 1}'")
    return value


def _param(position: int, word: str) -> Any:
    try:
        return json.loads(word, parse_constant=_no_constant)
    except ValueError as exc:
        # A word that starts like JSON was meant as JSON: taking it as a string
        # would hide the typo until the job runs.
        if word.lstrip()[:1] in ("[", "{", '"'):
            raise UsageError(f"PARAM {position} is not valid JSON ({exc}): {word:.60}") from None
        return word


def parse_at(text: str) -> float:
    """``--at``: Unix seconds, or an ISO-8601 time with a zone."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        return parse_time(text)
    except Rejected:
        raise UsageError(
            f"--at {text!r}: expected an ISO-8601 time with a zone, such as"
            " 2026-11-29T20:15:00Z, or Unix seconds"
        ) from None


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    catalog = open_catalog(config)
    if args.watch is None:
        _print_status(args, config, catalog)
        return 0
    if args.json:
        raise UsageError("--watch prints text for people and logs; drop --json")
    from spoold.cli.watch import watch_status

    return watch_status(lambda: _print_status(args, config, catalog), catalog, args.watch)


def _print_status(args: argparse.Namespace, config: Config, catalog: Catalog) -> None:
    pidfile = pidfile_state(Path(args.pidfile)) if args.pidfile else None
    running = catalog.running(time.time()) if args.verbose else None
    report = catalog.status(time.time())
    cli_output.status(
        report, as_json=args.json, pidfile=pidfile, running=running, redis=_redis_place(config)
    )


def cmd_schedule(args: argparse.Namespace) -> int:
    config = _config(args)
    marks = open_catalog(config).schedule_marks() if config.schedules else {}
    now = time.time() + faults.schedule_clock_offset()
    cli_output.schedules(config.schedules, marks, now, as_json=args.json)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    config = _config(args)
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UsageError("top needs a terminal; for a log or a pipe use 'spoold status --watch N'")
    from spoold.cli import top  # curses: only for the command that draws

    if os.geteuid() == 0:
        cli_output.warn(
            "top runs as root; it is meant for a member of the watching group"
            " (spoold init --view-group)"
        )
    try:
        return top.run_top(config, args.interval)
    except top.TerminalError as exc:
        return _fail(str(exc), 1)


def cmd_metrics(args: argparse.Namespace) -> int:
    config = _config(args)
    from spoold.cli import metrics  # http.server: only for the command that serves

    try:
        address = parse_address(args.listen or config.metrics.listen)
    except ValueError as exc:
        raise UsageError(f"--listen {exc}" if args.listen else f"[metrics] listen {exc}") from None
    return metrics.serve(config, address)


def cmd_web(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        address = parse_address(args.listen or config.web.listen)
    except ValueError as exc:
        raise UsageError(f"--listen {exc}" if args.listen else f"[web] listen {exc}") from None
    try:
        from spoold.web import server  # Jinja2: the [web] extra, only for this command
    except ImportError as exc:
        raise UsageError(
            f"spoold web needs the web extra: pip install 'spoold[web]' ({exc})"
        ) from None
    return server.serve(config, address, actions=args.allow_actions)


def _redis_place(config: Config) -> str | None:
    """A Redis spool's server (no password) and key prefix; None for a file spool."""
    if config.spool.backend != "redis":
        return None
    from spoold.backends.redis.connection import prefix, safe_url

    return f"{safe_url(config.spool.url)} {prefix(config.spool)}"


def cmd_list(args: argparse.Namespace) -> int:
    catalog = open_catalog(_config(args))
    states = (args.state,) if args.state else admin.LISTED_STATES
    cli_output.job_list(catalog.jobs(states, time.time()), as_json=args.json)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = _config(args)
    cli_output.show(asked.show_asking(open_catalog(config), config, args.job_id), as_json=args.json)
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    return asked.cmd_wait(args, _config(args))


def cmd_cancel(args: argparse.Namespace) -> int:
    return asked.cmd_cancel(args, _config(args))


def cmd_retry(args: argparse.Namespace) -> int:
    catalog = open_catalog(_config(args))
    if bool(args.job_ids) == args.all_failed:
        raise UsageError("give the ids of failed jobs, or --all-failed")
    job_ids = _retriable(catalog) if args.all_failed else args.job_ids
    outcome = catalog.retry(job_ids)
    for job_id in outcome.retried:
        print(f"retried {job_id}")
    for error in outcome.errors:
        _fail(error, 1)
    return 1 if outcome.errors else 0


def _retriable(catalog: Catalog) -> list[str]:
    """The failed jobs --all-failed retries: not those cancelled (on purpose, by someone)."""
    failed = catalog.read("failed", catalog.failed_ids())
    return [job.id for job in failed if (job.document or {}).get("status") != CANCELLED]


def cmd_purge(args: argparse.Namespace) -> int:
    catalog = open_catalog(_config(args))
    removed = catalog.purge(args.state, args.older_than, time.time())
    noun = "record" if len(removed) == 1 else "records"
    print(f"removed {len(removed)} {noun} from {catalog.where(args.state)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    checks = check_allowlist(config)
    redis = check_redis(config) if config.spool.backend == "redis" else None
    cli_output.check(config, checks, as_json=args.json, redis=redis)
    cli_output.check_summary(checks, redis)
    ok = all(check.ok for check in checks) and (redis is None or redis.ok)
    return 0 if ok else 1


def cmd_init(args: argparse.Namespace) -> int:
    _, spool = _spool(args)
    gid = group_id(args.group) if args.group is not None else None
    view_gid = group_id(args.view_group) if args.view_group is not None else None
    made = spool.create()
    for path in made:
        print(f"created {path}")
    if gid is not None:
        # The watching group's folders are said once, with the group they end with.
        watched = {spool.folder(state) for state in VIEW_STATES} if view_gid is not None else set()
        for path, mode in spool.give_to_group(gid):
            if path not in watched:
                print(f"{path}: owner {os.getuid()}, group {args.group} ({gid}), mode {mode:04o}")
    if view_gid is not None:
        _init_view_group(spool, f"{args.view_group} ({view_gid})", view_gid)
    elif gid is None and not made:
        print(f"{spool.root} already has every folder")
    return 0


def _init_view_group(spool: Spool, group: str, gid: int) -> None:
    grant = spool.give_to_view_group(gid)
    for path, mode in grant.folders:
        print(f"{path}: owner {os.getuid()}, group {group}, mode {mode:04o}")
    noun = "file" if grant.files == 1 else "files"
    print(f"{grant.files} existing {noun} in {', '.join(VIEW_STATES)}: group {group}")
    if grant.stats:
        print(f"{spool.stats_path}: group {group}")
    if grant.marks:
        print(f"{spool.schedules_path}: group {group}")


def group_id(name: str) -> int:
    """The gid of group ``name`` (a number is taken as a gid); AdminError if there is none."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise AdminError(f"no group named {name!r}; create it first (groupadd {name})") from None


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "stop": cmd_stop,
    "submit": cmd_submit,
    "status": cmd_status,
    "top": cmd_top,
    "metrics": cmd_metrics,
    "list": cmd_list,
    "show": cmd_show,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "web": cmd_web,
    "retry": cmd_retry,
    "purge": cmd_purge,
    "schedule": cmd_schedule,
    "check": cmd_check,
    "init": cmd_init,
}
