"""The ``spoold`` command line: its subcommands, options and help texts.

Only the grammar lives here; ``cli`` runs the commands. Every subcommand
takes ``--config``, and each has a description and an example in its
``--help`` so that the help alone is enough to use it. A usage mistake is
reported as one line, like every other user error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import NoReturn

from spoold.backends.files.admin import LISTED_STATES, AdminError
from spoold.backends.files.maintenance import parse_age

Formatter = argparse.RawDescriptionHelpFormatter


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like spoold's other errors."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        self.exit(2, f"spoold: {where}{message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    parser = Parser(
        prog="spoold",
        formatter_class=Formatter,
        description=(
            "Run background jobs from a JSON file spool: clients drop job files into\n"
            "<spool>/incoming/, the daemon runs the allowed ones in forked workers with\n"
            "retries, and files each outcome under done/ or failed/."
        ),
        epilog=(
            "examples:\n"
            "  spoold init --config config/spoold.toml\n"
            "  spoold run --config config/spoold.toml\n"
            "  spoold run --detach --pidfile /run/spoold.pid    then    spoold stop --pidfile ...\n"
            "  spoold submit app.jobs.SomeClass some_method p1 p2 --config config/spoold.toml\n"
            "  spoold list failed\n\n"
            "Without --config, spoold reads $SPOOLD_CONFIG, else /etc/spoold/spoold.toml.\n"
            "Run 'spoold COMMAND --help' for each command's options."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_run, _stop, _submit, _status, _top, _metrics, _web, _list, _show, _wait, _cancel,
                _retry, _purge, _schedule, _check, _init):  # fmt: skip
        add(commands)
    return parser


@dataclass(frozen=True)
class HelpText:
    summary: str  # the line in `spoold --help`
    description: str
    example: str


def _command(
    commands: argparse._SubParsersAction[Parser],
    name: str,
    text: HelpText,
    *,
    json_output: bool = False,
) -> Parser:
    parser = commands.add_parser(
        name,
        help=text.summary,
        description=text.description,
        epilog=f"example:\n  {text.example}",
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the config file (default: $SPOOLD_CONFIG, else /etc/spoold/spoold.toml)",
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def _run(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "run",
        HelpText(
            "run the daemon (in the foreground, or --detach)",
            "Run the daemon in the foreground until SIGTERM or Ctrl-C (this is what systemd\n"
            "starts). It logs to stderr and to [log] file. Exit status: 0 after a clean stop.\n\n"
            "--detach --pidfile FILE daemonizes instead (for hosts without systemd): the\n"
            "daemon leaves the terminal, works in /, with umask 027, logs only to [log] file\n"
            "(which must be set), and holds FILE locked with its pid for as long as it runs.\n"
            "The command returns once the daemon has scanned the spool and takes jobs,\n"
            "printing its pid; exit status 1 with the reason if it could not start (another\n"
            "daemon on the pidfile or the spool, a log file it cannot open...).",
            "spoold run --config config/spoold.toml    or    spoold run --detach --pidfile"
            " /run/spoold.pid",
        ),
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="daemonize (needs --pidfile and [log] file); return once the daemon is ready",
    )
    parser.add_argument(
        "--pidfile",
        metavar="FILE",
        help="with --detach: the pidfile the daemon holds locked while it runs",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="run every job that is ready now, with its retries, then exit; jobs due later"
        " stay in the spool; exit status 1 if any job failed or was rejected",
    )


def _stop(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "stop",
        HelpText(
            "stop a daemon started with run --detach",
            "Send SIGTERM to the daemon holding FILE and wait until it has exited (it\n"
            "lets running jobs finish for up to [worker] shutdown_timeout). Like\n"
            "'systemctl stop', stopping a daemon that is not running (no pidfile, or a\n"
            "stale one left by a crash) succeeds and says so. Exit status 1 if it is\n"
            "still running after the timeout (unless --kill). Running it again sends a\n"
            "second SIGTERM, on which the daemon stops its running jobs at once.",
            "spoold stop --pidfile /run/spoold.pid --timeout 60",
        ),
    )
    parser.add_argument(
        "--pidfile", required=True, metavar="FILE", help="the pidfile given to run --detach"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="seconds to wait for the daemon to exit (default: [worker] shutdown_timeout"
        " + 10 from the config, or 60 without a config)",
    )
    parser.add_argument(
        "--kill", action="store_true", help="SIGKILL the daemon if it is still running then"
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _submit(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "submit",
        HelpText(
            "enqueue a job and print its id",
            "Write a job into the spool's incoming/ folder and print its id. The daemon\n"
            "runs CLASS().METHOD(*PARAMs), or CLASS().METHOD(**KWARGS) with --kwargs.\n"
            'Each PARAM is read as JSON (42, true, null, [1,2], {"a":1}, "quoted");\n'
            "anything that is not JSON is taken as a string. Put '--' before a PARAM\n"
            "that starts with '-'.",
            "spoold submit app.jobs.SomeClass some_method p1 42 --priority 10 --delay 60",
        ),
        json_output=True,
    )
    parser.add_argument("class_path", metavar="CLASS", help="dotted class path, app.jobs.SomeClass")
    parser.add_argument("method", metavar="METHOD", help="method name, some_method")
    parser.add_argument("params", metavar="PARAM", nargs="*", help="positional arguments")
    parser.add_argument("--kwargs", metavar="JSON", help="keyword arguments, a JSON object")
    parser.add_argument(
        "--priority", type=int, default=0, metavar="N", help="higher runs first (default 0)"
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, metavar="S", help="do not start for S seconds")
    when.add_argument(
        "--at",
        metavar="TIME",
        help="do not start before TIME: ISO-8601 with a zone (2026-11-29T20:15:00Z)"
        " or Unix seconds",
    )
    parser.add_argument(
        "--max-retries",
        type=_count,
        metavar="N",
        help="retries after the first attempt (default: [worker] max_retries)",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _schedule(commands: argparse._SubParsersAction[Parser]) -> None:
    _command(
        commands,
        "schedule",
        HelpText(
            "list the periodic jobs ([[schedule]]) with their last and next firing",
            "List each [[schedule]] of the config: what it runs and when (cron in its\n"
            "zone, or every N), what it does with missed firings (catch_up) and overlaps,\n"
            "its last firing (the time it was for, and the job's id) as the spool keeps it,\n"
            "and its next firing. Exit status 0; 1 if the spool cannot be read.",
            "spoold schedule --config /etc/spoold/spoold.toml",
        ),
        json_output=True,
    )


def _status(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "status",
        HelpText(
            "show job counts per folder and whether a daemon runs",
            "Show how many jobs each spool folder holds, the age of the oldest job waiting\n"
            "in incoming/ or scheduled/ (since it was submitted), and whether a daemon\n"
            "holds this spool. Exit status 0 either way.",
            "spoold status --verbose --pidfile /run/spoold.pid",
        ),
        json_output=True,
    )
    parser.add_argument(
        "--pidfile",
        metavar="FILE",
        help="also say whether the daemon of this pidfile (run --detach) is running",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also list the running jobs (in active/) and how long each has run",
    )
    parser.add_argument(
        "--watch",
        type=_interval,
        metavar="N",
        help="print the status again every N seconds, each time under a timestamp line,"
        " with a line of the daemons' figures (busy, jobs finished, failures), until"
        " Ctrl-C; plain text for a log or a pipe (see also 'spoold top')",
    )


def _interval(text: str) -> float:
    value = _seconds(text)
    if value < 0.1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 0.1 seconds")
    return value


def _top(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "top",
        HelpText(
            "a live view of the daemons, running jobs and failures",
            "A live view in the terminal, refreshed every --interval seconds: the daemons\n"
            "(and whether their stats are fresh), workers busy of how many, jobs per state,\n"
            "jobs finished per minute and the oldest wait; then the running jobs with their\n"
            "elapsed time against their timeout, and the newest failures with their error.\n\n"
            "keys: q quit; / filter by id or class.method (Enter applies, Esc cancels or\n"
            "clears); up/down or j/k select; Enter shows the selected job (as 'spoold show');\n"
            "R retries the selected failed job, after y/n (only if you may write the spool's\n"
            "incoming/ and failed/). Meant for a member of the watching group (spoold init\n"
            "--view-group), not root. Needs a terminal: for a log or a pipe use\n"
            "'spoold status --watch N'.",
            "spoold top --config /etc/spoold/spoold.toml --interval 5",
        ),
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="S",
        help="seconds between refreshes (default 2)",
    )


def _metrics(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "metrics",
        HelpText(
            "serve Prometheus metrics over HTTP",
            "Serve the daemons' figures in Prometheus's text format at /metrics, read at\n"
            "each scrape: jobs per state from the spool, counters and histograms from the\n"
            "stats snapshots the daemons take every [metrics] interval. Listens on\n"
            "[metrics] listen (default 127.0.0.1:9464), or a unix socket (unix:/path, mode\n"
            "0660). Off loopback it needs [metrics] token_file and answers only requests\n"
            "with 'Authorization: Bearer <token>'. A separate process: run it as a member\n"
            "of the group that may read the spool, not root. It serves until SIGTERM or\n"
            "Ctrl-C (exit 0); a spool it cannot read at a scrape is a 503 with the reason.",
            "spoold metrics --config /etc/spoold/spoold.toml --listen 127.0.0.1:9464",
        ),
    )
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        help="host:port or unix:/path to listen on (default: [metrics] listen)",
    )


def _web(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "web",
        HelpText(
            "serve the web dashboard",
            "Serve a dashboard of the spool: the daemons, jobs per state, throughput, the\n"
            "jobs of each state with filters, each job's record and attempts; /metrics as\n"
            "'spoold metrics' serves it. Needs 'pip install spoold[web]'. Listens on\n"
            "[web] listen (default 127.0.0.1:9465) or a unix socket (unix:/path, mode 0660,\n"
            "for a reverse proxy). Read-only unless --allow-actions. Job contents (params,\n"
            "results, tracebacks) are shown only to viewers who signed in with [web]\n"
            "token_file or basic_auth_file; off loopback one of them is required. Run it as\n"
            "a member of the watching group (spoold init --view-group), not root.",
            "spoold web --config /etc/spoold/spoold.toml --listen 127.0.0.1:9465",
        ),
    )
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        help="host:port or unix:/path to listen on (default: [web] listen)",
    )
    parser.add_argument(
        "--allow-actions",
        action="store_true",
        help="let signed-in viewers retry failed jobs and purge records (default: read-only)",
    )


def _list(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "list",
        HelpText(
            "one line per job",
            "Print one line per job: id, state, class.method, attempts, age, and the last\n"
            "error. Age counts from when a record finished (done, failed) or a job was\n"
            "submitted (incoming, scheduled, active). Jobs are listed oldest id first.",
            "spoold list failed",
        ),
        json_output=True,
    )
    parser.add_argument(
        "state",
        metavar="STATE",
        nargs="?",
        choices=LISTED_STATES,
        help=f"only this folder: {', '.join(LISTED_STATES)} (default: all of them)",
    )


def _show(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "show",
        HelpText(
            "print one job's file or record",
            "Print the job file or record of job ID, from whichever folder holds it, with\n"
            "each attempt's traceback printed in full below it.",
            "spoold show 20261129T201512.123Z-3f9a1c2b7e",
        ),
        json_output=True,
    )
    parser.add_argument("job_id", metavar="ID", help="the job id that submit printed")


def _wait(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "wait",
        HelpText(
            "wait for a job to end and print its record",
            "Wait until job ID has a record, then print it as 'spoold show' does. Exit status:\n"
            "0 done; 1 failed, cancelled or rejected; 2 --timeout ran out first; 3 no such\n"
            "job. A submitter may wait for its own jobs: it asks the daemon, which answers\n"
            "when the record is filed. Whoever may read the spool waits on it directly\n"
            "(inotify, or Redis's notice of the filing), with no daemon needed.",
            "spoold wait 20261129T201512.123Z-3f9a1c2b7e --timeout 60",
        ),
        json_output=True,
    )
    parser.add_argument("job_id", metavar="ID", help="the job id that submit printed")
    parser.add_argument(
        "--timeout", type=_seconds_arg, metavar="S", help="give up after S seconds (exit 2)"
    )


def _cancel(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "cancel",
        HelpText(
            "cancel waiting or running jobs",
            "Cancel each job ID: one that waits is filed to failed/ with status 'cancelled';\n"
            "one that runs gets SIGTERM, then SIGKILL 2 s later, is not retried, and is filed\n"
            "'cancelled' (unless it succeeded first). A job that already has a record is left\n"
            "as it is (exit 1). Asks the running daemon; a submitter may cancel its own jobs,\n"
            "root and the daemon's user any.",
            "spoold cancel 20261129T201512.123Z-3f9a1c2b7e",
        ),
    )
    parser.add_argument("job_ids", metavar="ID", nargs="+", help="ids of jobs to cancel")


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return value


def _retry(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "retry",
        HelpText(
            "put failed jobs back into incoming/",
            "Put jobs from failed/ back into incoming/ under the same id, as they were\n"
            "submitted; attempts start afresh and the old record is removed. A rejected\n"
            "job goes back with its original bytes (fix the allowlist or the file first).\n"
            "--all-failed leaves cancelled jobs alone; name one to retry it.",
            "spoold retry 20261129T201512.123Z-3f9a1c2b7e    or    spoold retry --all-failed",
        ),
    )
    parser.add_argument("job_ids", metavar="ID", nargs="*", help="ids of failed jobs")
    parser.add_argument(
        "--all-failed", action="store_true", help="retry every job in failed/ but the cancelled"
    )


def _purge(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "purge",
        HelpText(
            "delete old records from done/ or failed/",
            "Delete the records in done/ or failed/ that finished longer ago than AGE\n"
            "(by the record's finished_at, else the file's modification time).",
            "spoold purge done --older-than 7d",
        ),
    )
    parser.add_argument("state", metavar="STATE", choices=("done", "failed"), help="done or failed")
    parser.add_argument(
        "--older-than",
        required=True,
        type=_age,
        metavar="AGE",
        help="a number and a unit: 30s, 15m, 12h, 7d or 2w",
    )


def _age(text: str) -> float:
    try:
        return parse_age(text)
    except AdminError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check(commands: argparse._SubParsersAction[Parser]) -> None:
    _command(
        commands,
        "check",
        HelpText(
            "validate the config and the allowlist",
            "Load and validate the config, then import each allowed class (with [worker]\n"
            "python_path first on sys.path) and check that each allowed method exists and\n"
            "can be called. Prints one line per class; exit status 1 on any problem.\n"
            "Importing runs the job modules' top-level code.",
            "spoold check --config config/spoold.toml",
        ),
        json_output=True,
    )


def _init(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _command(
        commands,
        "init",
        HelpText(
            "create the spool folders",
            "Create the spool root and its folders (tmp, incoming, scheduled, active, done,\n"
            "failed) with their modes, and print what was made. Existing folders are left\n"
            "as they are, unless --group or --view-group is given. Run it as the user the\n"
            "daemon runs as: the folders it changes are given to you.\n\n"
            "--group GROUP, the submit group, lets the members of GROUP submit jobs: the\n"
            "root and every folder get GROUP, with these modes: root 2711; tmp/ 3730 and\n"
            "incoming/ 3770 (members create files there but cannot delete or rename anyone\n"
            "else's, nor list tmp/); scheduled/, active/, done/ and failed/ 0700 (nobody\n"
            "but you reads other people's jobs or records).\n\n"
            "--view-group GROUP, the watching group, lets the members of GROUP read and\n"
            "change nothing: scheduled/, active/, done/ and failed/ get GROUP and mode 2750\n"
            "(setgid: each job and record the daemon writes there, 0640, takes GROUP), and\n"
            "so do the files already there and stats.json: what 'spoold status', 'list',\n"
            "'show', 'metrics' and 'top' read. Members cannot submit unless they are in the\n"
            "submit group too. Without --view-group those four folders stay 0700.",
            "spoold init --group spoold-submit --view-group spoold-view "
            "--config /etc/spoold/spoold.toml",
        ),
    )
    parser.add_argument(
        "--group",
        metavar="GROUP",
        help="the submit group: a group name or gid whose members may submit jobs",
    )
    parser.add_argument(
        "--view-group",
        metavar="GROUP",
        help="the watching group: a group name or gid whose members may read jobs, records "
        "and stats, and change nothing",
    )
