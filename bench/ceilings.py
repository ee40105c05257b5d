"""Ceilings: plain Python loops doing a workload's file operations with no framework.

Nothing here imports spoold (the Redis loop is handed a redis-py client). Each
ceiling is what the same machine does, in the same invocation, with the least
code that still does the job's work: the client's write-and-rename, the
daemon's read, claim, fork (2 children at a time) and record. The workloads
report spoold's figure as a fraction of these.

Forking ceilings run in a fresh interpreter (``python -m bench.ceilings KIND ...``,
one JSON line out), because fork costs more in a bigger parent and spoold's
launcher is a fresh, small interpreter too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import select
import sys
import time
from pathlib import Path
from typing import Any

FOLDERS = ("tmp", "incoming", "active", "done")
CHILDREN = 2


def make_folders(root: Path) -> Path:
    for name in FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def job_document(log: str, now: float) -> bytes:
    """A job the size and shape of the client's (about 200 bytes)."""
    return json.dumps(
        {"class": "benchjobs.Bench", "method": "noop", "params": [log], "enqueued_at": now}
    ).encode()


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(folder: Path, name: str, data: bytes, *, fsync: bool) -> None:
    """tmp file in ``folder``, optional fsync, rename over ``name``."""
    temp = folder / f".tmp-{name}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, folder / name)


# -- the client's side --


def enqueue(
    root: Path, n: int, log: str, *, fsync: bool, dir_fsync: bool = False, notify: int = -1
) -> float:
    """N times: json.dumps a job, write tmp/<id>.json, [fsync], rename into incoming/,
    [fsync incoming/], [a byte to the ``notify`` descriptor, the waiting side's inotify].
    Returns jobs per second. String paths: pathlib costs more than the no-fsync loop's
    own file operations, and the client does without it."""
    tmp, incoming = f"{root}/tmp", f"{root}/incoming"
    start = time.perf_counter()
    for i in range(n):
        name = f"c{i:08d}-{os.urandom(5).hex()}.json"
        fd = os.open(f"{tmp}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(fd, job_document(log, time.time()))
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(f"{tmp}/{name}", f"{incoming}/{name}")
        if dir_fsync:
            fsync_dir(Path(incoming))
        if notify >= 0:
            os.write(notify, b".")
    return n / (time.perf_counter() - start)


def redis_submit(
    client: Any, key: str, n: int, log: str, *, start: int = 0
) -> tuple[float, list[str]]:
    """N times: json.dumps a job, ``FCALL spoold_submit 1 <key> <id> <job>`` on one
    connection (``client``, a redis.Redis). What a Redis client is bounded by: one
    round trip each, the server's appendfsync included. The functions library must
    be loaded already. Ids ``r<start + i>-<random>``. Returns (jobs per second, ids)."""
    ids = []
    start_time = time.perf_counter()
    for i in range(start, start + n):
        job_id = f"r{i:08d}-{os.urandom(5).hex()}"
        if client.fcall("spoold_submit", 1, key, job_id, job_document(log, time.time())) != b"ok":
            raise RuntimeError(f"spoold_submit did not take {job_id}")
        ids.append(job_id)
    return n / (time.perf_counter() - start_time), ids


def prefill(root: Path, n: int, log: str = "/dev/null") -> list[str]:
    """Put N job files in incoming/ (setup, not timed, no fsync); return their names."""
    incoming = root / "incoming"
    names = []
    for i in range(n):
        name = f"p{i:08d}.json"
        (incoming / name).write_bytes(job_document(log, time.time()))
        names.append(name)
    return names


# -- the daemon's side --


def _claim(root: Path, name: str) -> dict[str, Any]:
    with open(root / "incoming" / name, "rb") as handle:
        job: dict[str, Any] = json.loads(handle.read())
    os.rename(root / "incoming" / name, root / "active" / name)
    return job


def done_record(job: dict[str, Any], name: str, started: float) -> bytes:
    """The done record of a job that ran once, ended now."""
    return json.dumps({
        **job, "id": name[:-5], "status": "done", "attempts": 1,
        "history": [{"attempt": 1, "started_at": started, "finished_at": time.time(),
                     "outcome": "ok"}],
    }).encode()  # fmt: skip


def waiting_names(incoming: Path | str) -> list[str]:
    """The job files in incoming/, oldest name first."""
    with os.scandir(incoming) as entries:
        return sorted(e.name for e in entries if e.name.endswith(".json") and e.name[0] != ".")


def unfiled(root: Path, n: int) -> str | None:
    """What is wrong with a spool that should hold N records and nothing else, or None."""
    left = {name: len(os.listdir(root / name)) for name in FOLDERS[1:]}
    if left == {"incoming": 0, "active": 0, "done": n}:
        return None
    return f"the spool was left with {left}, not {n} records and nothing else"


def _file_done(root: Path, name: str, job: dict[str, Any], started: float, fsync: bool) -> None:
    write_file(root / "done", name, done_record(job, name, started), fsync=fsync)
    os.unlink(root / "active" / name)


def _noop(_job: dict[str, Any]) -> None:
    return None


def dispatch(root: Path, *, fork: bool, fsync: bool) -> float:
    """Run every job waiting in incoming/: read, json.loads, rename into active/,
    run it (a forked child that exits at once, 2 at a time; or an inline no-op),
    write done/<id>.json (tmp, [fsync], rename), unlink active/<id>.json.
    Returns jobs per second, from the first listing to the last record."""
    start = time.perf_counter()
    names = sorted(n for n in os.listdir(root / "incoming") if n.endswith(".json"))
    if not fork:
        for name in names:
            job = _claim(root, name)
            started = time.time()
            _noop(job)
            _file_done(root, name, job, started, fsync)
        return len(names) / (time.perf_counter() - start)
    running: dict[int, tuple[str, dict[str, Any], float]] = {}
    for name in names:
        if len(running) >= CHILDREN:
            pid, _status = os.waitpid(-1, 0)
            _file_done(root, *running.pop(pid), fsync)
        job = _claim(root, name)
        started = time.time()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        running[pid] = (name, job, started)
    while running:
        pid, _status = os.waitpid(-1, 0)
        _file_done(root, *running.pop(pid), fsync)
    return len(names) / (time.perf_counter() - start)


class GuardedSpool:
    """The least a spool does on disk to keep SPEC.md's "Nothing lost" through a
    power cut, as spoold's file store keeps it (spoold/backends/files/store.py):

    * a claim is a rename into active/; before any record is filed, the folders
      the claims changed (incoming/, active/) are fsynced, so that a power cut
      cannot bring back a job whose record survived (it would run twice);
    * a record is written whole beside the job as ``active/<id>.to-done``
      (fsynced), the job is unlinked and the record renamed into done/;
    * done/ is fsynced once at the end of the turn, for every record of it.

    With ``fsync`` off (spoold's ``[spool] fsync = false``) the same files are made,
    renamed and unlinked, and nothing is fsynced.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.incoming, self.active, self.done = (f"{root}/{n}" for n in FOLDERS[1:])
        self.claims_unsynced = False
        self.records_unsynced = False
        self.reports: dict[int, int] = {}  # a child's pid: the pipe it reports on (--run-job)

    def claim(self, name: str) -> dict[str, Any]:
        job = _claim(self.root, name)
        self.claims_unsynced = True
        return job

    def sync_claims(self) -> None:
        if self.claims_unsynced and self.fsync:
            fsync_dir(Path(self.incoming))
            fsync_dir(Path(self.active))
            self.claims_unsynced = False

    def outcome(self, pid: int) -> None:
        """Read the report of a child that ran its job (--run-job): one JSON line."""
        report = self.reports.pop(pid, -1)
        if report >= 0:
            try:
                if json.loads(os.read(report, 4096))["outcome"] != "ok":
                    raise RuntimeError(f"child {pid} did not report ok")
            finally:
                os.close(report)

    def file(self, name: str, job: dict[str, Any], started: float) -> None:
        marker = self.marker(name)
        self.write_record(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640),
                          job, name, started)  # fmt: skip
        self.sync_claims()
        self.move(name, marker)

    def marker(self, name: str) -> str:
        return f"{self.active}/{name[:-5]}.to-done"

    def write_record(self, fd: int, job: dict[str, Any], name: str, started: float) -> None:
        """Write the job's done record into ``fd`` (fsynced with ``fsync``), and close it."""
        try:
            os.write(fd, done_record(job, name, started))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def move(self, name: str, marker: str) -> None:
        """The job's file unlinked, its whole marker renamed into done/."""
        os.unlink(f"{self.active}/{name}")
        os.rename(marker, f"{self.done}/{name}")
        self.records_unsynced = True

    def close(self) -> None:
        """Remove what the filing keeps beside the jobs between turns (nothing, here)."""

    def end_turn(self) -> None:
        """What spoold's daemon does after a turn has handed out the next attempts."""
        self.sync_claims()
        if self.records_unsynced and self.fsync:
            fsync_dir(Path(self.done))
            self.records_unsynced = False


def guarded_dispatch(root: Path, n: int, log: str, *, client: bool, run_job: bool) -> float:
    """The W1 ceiling with spoold's guarantees: ``dispatch --fork --fsync`` doing
    GuardedSpool's file operations, in turns as spoold's daemon takes them (reap
    what has ended and file it, claim up to 2 and fork, then the turn's folder
    fsyncs). Children exit at once; with ``run_job`` each runs the bench's job body
    in Python and reports (``_run_job``). With ``client``, a forked process submits the
    N jobs durably meanwhile (tmp, fsync, rename, fsync incoming/, as spoold's
    client does by default) and the time runs from its start, as W1 times spoold;
    without, the N jobs wait in incoming/ already (prefilled, untimed) and it runs
    from the first listing. Returns jobs per second, to the last turn's end."""
    spool = GuardedSpool(root)
    start = time.perf_counter()
    submitter, news = 0, -1
    if client:
        news, notify = os.pipe()
        submitter = os.fork()
        if submitter == 0:
            try:
                enqueue(root, n, log, fsync=True, dir_fsync=True, notify=notify)
            finally:
                os._exit(0)
        os.close(notify)
    running: dict[int, tuple[str, dict[str, Any], float]] = {}
    waiting: list[str] = []
    filed = 0
    while filed < n:
        ended = [pid for pid in _reap(block=len(running) >= CHILDREN) if pid in running]
        for pid in ended:
            spool.outcome(pid)
            spool.file(*running.pop(pid))
        filed += len(ended)
        if not waiting and len(running) < CHILDREN:
            waiting = waiting_names(spool.incoming)
        launched = _launch(spool, waiting, running, run_job)
        spool.end_turn()
        if not ended and not launched:
            news = _wait_for_news(news, bool(running))
    elapsed = time.perf_counter() - start
    if submitter:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(submitter, 0)
    return n / elapsed


def _wait_for_news(news: int, running: bool) -> int:
    """A slot is free and nothing new waits: sleep until the client says it submitted
    (as spoold sleeps in epoll until inotify says so), for at most 0.1 ms while a child
    runs (it exits at once). Returns the descriptor, or -1 once the client has closed it."""
    if news < 0:
        time.sleep(0.0001)
        return news
    readable, _, _ = select.select([news], [], [], 0.0001 if running else None)
    if readable and not os.read(news, 65536):
        os.close(news)
        return -1
    return news


def cpu_per_job(n: int) -> dict[str, float]:
    """This process's CPU (user + system) per job so far, and its reaped children's."""
    return {
        who: round((usage.ru_utime + usage.ru_stime) * 1000 / n, 3)
        for who, usage in (
            ("self", resource.getrusage(resource.RUSAGE_SELF)),
            ("children", resource.getrusage(resource.RUSAGE_CHILDREN)),
        )
    }


def _launch(
    spool: GuardedSpool,
    waiting: list[str],
    running: dict[int, tuple[str, dict[str, Any], float]],
    run_job: bool,
) -> int:
    """Claim the first waiting jobs into the free slots, a child forked for each."""
    launched = 0
    while waiting and len(running) < CHILDREN:
        name = waiting.pop(0)
        job = spool.claim(name)
        started = time.time()
        report, out = os.pipe() if run_job else (-1, -1)
        pid = os.fork()
        if pid == 0:
            if run_job:
                _run_job(job, out)
            os._exit(0)
        if run_job:
            os.close(out)
            spool.reports[pid] = report
        running[pid] = (name, job, started)
        launched += 1
    return launched


def _run_job(job: dict[str, Any], out: int) -> None:
    """What a child of a runner with a process per attempt does at the least: import the
    job's module (not imported before the fork: nothing is imported for a job before its
    check), call the bench's job body (bench/peerjobs.py, one line to the log), and
    report the outcome to its parent as a line of JSON."""
    try:
        module = importlib.import_module("bench.peerjobs")
        module.Record().record(job["params"][0], job["enqueued_at"])
        os.write(out, json.dumps({"outcome": "ok", "result": None}).encode() + b"\n")
    finally:
        os._exit(0)


def _reap(*, block: bool) -> list[int]:
    """The pids of the children that have ended: waits for one if ``block``."""
    ended: list[int] = []
    flags = 0 if block else os.WNOHANG
    while True:
        try:
            pid, _status = os.waitpid(-1, flags)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append(pid)
        flags = os.WNOHANG


def fork_only(n: int) -> float:
    """Fork N children that exit at once, 2 at a time, reaping each: children per second."""
    start = time.perf_counter()
    running = 0
    for _ in range(n):
        if running >= CHILDREN:
            os.waitpid(-1, 0)
            running -= 1
        if os.fork() == 0:
            os._exit(0)
        running += 1
    while running:
        os.waitpid(-1, 0)
        running -= 1
    return n / (time.perf_counter() - start)


def _start_child(log: str, name: str) -> int:
    """Fork a child that appends "<id> <start> <end>" to ``log`` (as the bench job does)."""
    pid = os.fork()
    if pid == 0:
        try:
            now = time.time()
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f"{name[:-5]} {now!r} {time.time()!r}\n".encode())
        finally:
            os._exit(0)
    return pid


def poll_and_fork(root: Path, n: int, log: str, *, fsync: bool, interval: float = 0.0001) -> None:
    """The latency ceiling: list incoming/ every ``interval`` s; claim each new job
    (read, json.loads, rename into active/) and fork a child that records its
    start time; file its record when it is reaped. Stops after ``n`` jobs."""
    incoming = root / "incoming"
    running: dict[int, tuple[str, dict[str, Any], float]] = {}
    started_jobs = 0
    print("ready", flush=True)
    while started_jobs < n or running:
        names = waiting_names(incoming)
        for name in names:
            job = _claim(root, name)
            running[_start_child(log, name)] = (name, job, time.time())
            started_jobs += 1
        while running:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            _file_done(root, *running.pop(pid), fsync)
        if not names:
            time.sleep(interval)


def first_job(root: Path, log: str) -> None:
    """The backlog ceiling: list incoming/, pick the oldest name, read and parse it,
    fork a child that records its start time, reap it. Moves nothing."""
    with os.scandir(root / "incoming") as entries:
        name = min(e.name for e in entries if e.name.endswith(".json") and e.name[0] != ".")
    with open(root / "incoming" / name, "rb") as handle:
        json.loads(handle.read())
    os.waitpid(_start_child(log, name), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceilings")
    parser.add_argument("kind", choices=("dispatch", "guarded", "fork", "poll", "first"))
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--log", default="/dev/null")
    parser.add_argument("--fork", action="store_true")
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument(
        "--client",
        action="store_true",
        help="guarded: a forked client submits the N jobs durably meanwhile",
    )
    parser.add_argument(
        "--run-job",
        action="store_true",
        help="guarded: each child runs the bench's job body and reports it",
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if args.kind == "dispatch":
        result["rate"] = dispatch(args.root, fork=args.fork, fsync=args.fsync)
    elif args.kind == "guarded":
        result["rate"] = guarded_dispatch(
            args.root, args.n, args.log, client=args.client, run_job=args.run_job
        )
        result["cpu_ms_per_job"] = cpu_per_job(args.n)
    elif args.kind == "fork":
        result["rate"] = fork_only(args.n)
    elif args.kind == "poll":
        poll_and_fork(args.root, args.n, args.log, fsync=args.fsync)
    else:
        first_job(args.root, args.log)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
