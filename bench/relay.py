"""W3's round-trip floor: how close to ideal 50 ms jobs on 2 slots can get on this machine
when every job's end must reach a deciding process before the slot's next job starts.

``python -m bench.relay [--jobs 400] [--runs 3] [--work-ms 0,0.75] [--spool [--filing ...]]
[--per-attempt]`` (about a minute).

No spoold here: plain Python processes and socketpairs. Two workers each sleep 50 ms per
job, then report; a "daemon" process answers each report by sending that slot its next
job, after ``work`` ms of busy work (0: the floor of the trip alone; 0.75: about what
spoold's daemon spends filing an outcome and claiming the next job with reused workers,
measured hop by hop in docs/PERFORMANCE.md). With ``--spool`` that work is done on disk
besides: the jobs wait as files in a spool, and the daemon files each record and claims
each next job as the least runner with spoold's guarantees does (``OnDisk``), fsync off
as in W3's reused configuration. With ``--per-attempt`` each job runs in a process of
its own, as by spoold's default (fsync on with ``--spool``), in two shapes of its own:
``spares``, forked by the deciding process, and ``spares-relay``, forked by a relay
process as spoold's launcher forks them. Otherwise, two shapes with reused workers:

- ``direct``: worker <-> daemon;
- ``relay``: worker <-> relay <-> daemon, where the relay only passes messages on, as
  spoold's launcher does between its workers and the daemon.

With ``--spool``, ``--filing plain,spares,after-send`` runs the least runner's filing in
up to three ways, alternating in one invocation: ``plain`` (``GuardedSpool``: the marker
made, written, the job unlinked, the marker renamed into done/, all before the next
request); ``spares`` (the marker written into an empty file made ahead, at the end of the
turn before, then renamed to the marker's name: no file is made on the path);
``after-send`` (spares, and the unlink and the rename into done/ left until after the
turn's requests: the whole marker is the commit point, as recovery finishes its move).
Both keep the rule that no job starts before the outcome that freed its slot is on disk.

Each figure is jobs/s from the first request to the last job's end (as W3 counts it, from
the jobs' own time stamps) over the ideal 40, and the median gap between a slot's job end
and its next start. Prints one JSON document; a summary on stderr.
"""

from __future__ import annotations

import argparse
import heapq
import importlib
import json
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import ceilings

SLOTS = 2
SLEEP = 0.05
IDEAL = SLOTS / SLEEP
QUIT = b"quit"
JOB_MODULE = "bench.peerjobs"  # what W3's jobs run: imported by --per-attempt's children only


def _worker(sock: socket.socket, log_fd: int) -> None:
    """A reused worker: run each request as it comes; exit at QUIT."""
    while True:
        message = sock.recv(4096)
        if not message or message == QUIT:
            os._exit(0)
        _run(message, sock, log_fd)


def _run(request: bytes, sock: socket.socket, log_fd: int) -> None:
    """The job: read the request (a job's JSON), sleep 50 ms, append "start end", report."""
    json.loads(request)
    start = time.time()
    time.sleep(SLEEP)
    os.write(log_fd, f"{start!r} {time.time()!r}\n".encode())
    sock.sendall(b"done")


def _frame(slot: int, body: bytes) -> bytes:
    """A message between the daemon and a relay: the slot it is for or from, then its body."""
    return b"%d:%s\n" % (slot, body)


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(slot, body) of each message in ``data`` (one read holds whole messages here)."""
    for frame in filter(None, data.split(b"\n")):
        slot, body = frame.split(b":", 1)
        yield int(slot), body


def _relay(up: socket.socket, downs: list[socket.socket]) -> None:
    """Pass each worker's report up, tagged with its slot, and each request down."""
    poller = select.poll()
    for sock in (up, *downs):
        poller.register(sock, select.POLLIN)
    slot_of = {sock.fileno(): slot for slot, sock in enumerate(downs)}
    while True:
        for fd, _event in poller.poll():
            if fd == up.fileno():
                data = up.recv(4096)
                if not data:  # the daemon closed its end: the run is over
                    os._exit(0)
                for slot, body in _frames(data):
                    downs[slot].sendall(body)
            else:
                data = os.read(fd, 64)
                if data:
                    up.sendall(_frame(slot_of[fd], data))
                else:  # a worker exited after its QUIT
                    poller.unregister(fd)


def _busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def _one_job(sock: socket.socket, log_fd: int) -> None:
    """A spare: wait for one request, import the job's module (after the request, as
    spoold's rule that nothing is imported before the allowlist passes has it), sleep
    50 ms, append "start end", report, exit."""
    message = sock.recv(4096)
    if message and message != QUIT:
        importlib.import_module(JOB_MODULE)
        _run(message, sock, log_fd)
    os._exit(0)


class Spares:
    """A process per job, as spoold's default runs them, forked by the process that holds
    this (the deciding one, or the relay): each slot has a spare forked ahead
    (``_one_job``), which takes one request and exits after its report; the slot's next
    spare is forked once the request has gone out, off its path."""

    def __init__(self, log_fd: int) -> None:
        if JOB_MODULE in sys.modules:
            raise RuntimeError(f"{JOB_MODULE} is imported already: its children would not")
        self.log_fd = log_fd
        self.spares = [self._fork() for _ in range(SLOTS)]
        self.running: dict[socket.socket, tuple[int, int]] = {}  # socket: (slot, pid)
        self.children: list[int] = []  # reaped at the end of the run

    def _fork(self) -> tuple[socket.socket, int]:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _one_job(theirs, self.log_fd)
        theirs.close()
        return ours, pid

    def send(self, slot: int, body: bytes) -> None:
        sock, pid = self.spares[slot]
        sock.sendall(body)
        if body == QUIT:
            sock.close()
            self.children.append(pid)
            return
        self.running[sock] = (slot, pid)
        self.spares[slot] = self._fork()

    def reports(self) -> list[int]:
        ready, _, _ = select.select(list(self.running), [], [])
        return self.take_reports(ready)

    def take_reports(self, ready: list[socket.socket]) -> list[int]:
        """The slots of the running jobs among ``ready`` (their reports read)."""
        slots = []
        for sock in ready:
            if sock in self.running:
                sock.recv(64)
                slot, pid = self.running.pop(sock)
                sock.close()
                self.children.append(pid)
                slots.append(slot)
        return slots

    def close(self) -> None:
        return None


def _forking_relay(up: socket.socket, log_fd: int) -> None:
    """spoold's default shape, least: this process (the launcher) forks the spares, hands
    each request to its slot's spare, and passes each report up; it reaps its children
    and exits once the daemon closes its end."""
    spares = Spares(log_fd)
    while True:
        ready, _, _ = select.select([up, *spares.running], [], [])
        for slot in spares.take_reports(ready):
            up.sendall(_frame(slot, b"done"))
        if up not in ready:
            continue
        data = up.recv(4096)
        if not data:
            for pid in spares.children:
                os.waitpid(pid, 0)
            os._exit(0)
        for slot, body in _frames(data):
            spares.send(slot, body)


class Direct:
    """The daemon talks to each worker on the worker's own socket."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        self.children: list[int] = []

    def send(self, slot: int, body: bytes) -> None:
        self.socks[slot].sendall(body)

    def reports(self) -> list[int]:
        ready, _, _ = select.select(self.socks, [], [])
        for sock in ready:
            sock.recv(64)
        return [self.socks.index(sock) for sock in ready]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


class Relayed:
    """The daemon talks to one relay process, which talks to the workers."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        """``serve``: the relay process's life on its end of the daemon's socket
        (``_relay`` or ``_forking_relay``; neither returns, each ends with os._exit)."""
        self.up, relay_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            self.up.close()
            serve(relay_end)
        relay_end.close()
        self.children = [pid]

    def send(self, slot: int, body: bytes) -> None:
        self.up.sendall(_frame(slot, body))

    def reports(self) -> list[int]:
        return [slot for slot, _body in _frames(self.up.recv(4096))]

    def close(self) -> None:
        """After the QUITs: the relay passes them on, then sees this end closed and exits."""
        self.up.close()


REUSED = ("direct", "relay")  # the two shapes with reused workers
PER_ATTEMPT = ("spares", "spares-relay")  # the same two shapes with a process per job


def _start_workers(log_fd: int) -> tuple[list[socket.socket], list[int]]:
    pairs = [socket.socketpair() for _ in range(SLOTS)]
    pids = []
    for ours, theirs in pairs:
        pid = os.fork()
        if pid == 0:
            ours.close()
            _worker(theirs, log_fd)
        theirs.close()
        pids.append(pid)
    return [ours for ours, _theirs in pairs], pids


class Tokens:
    """No spool: a request is an empty job, and a report is only counted."""

    def request(self, slot: int) -> bytes:
        return b"{}"

    def report(self, slot: int) -> None:
        return None

    def end_turn(self) -> None:
        return None


FILINGS = ("plain", "spares", "after-send")
SPARES = SLOTS * 2  # empty files kept ready in active/: a turn files at most SLOTS records


class LeanerSpool(ceilings.GuardedSpool):
    """GuardedSpool's filing with the file's creation off the path (a spare made at the end
    of the turn before) and, with ``after_send``, the unlink and the rename into done/
    too: they wait for the end of the turn, after its requests. The marker is whole
    before either, so a crash still loses nothing (recovery finishes a whole marker's
    move), and the next job still starts only after its slot's outcome is on disk."""

    def __init__(self, root: Path, *, fsync: bool, after_send: bool) -> None:
        super().__init__(root, fsync=fsync)
        self.after_send = after_send
        self.spares: list[str] = []
        self.made = 0
        self.moves: list[tuple[str, str]] = []  # (job's name, its whole marker)
        self._make_spares()

    def _make_spares(self) -> None:
        while len(self.spares) < SPARES:
            self.made += 1
            spare = f"{self.active}/.spare-{self.made}"
            os.close(os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
            self.spares.append(spare)

    def file(self, name: str, job: dict[str, Any], started: float) -> None:
        marker, spare = self.marker(name), self.spares.pop()
        self.write_record(os.open(spare, os.O_WRONLY), job, name, started)
        os.rename(spare, marker)
        if self.fsync:  # a made file's fsync makes its name durable on ext4; a rename's, not
            ceilings.fsync_dir(Path(self.active))
        self.sync_claims()
        if self.after_send:
            self.moves.append((name, marker))
        else:
            self.move(name, marker)

    def end_turn(self) -> None:
        for name, marker in self.moves:
            self.move(name, marker)
        self.moves.clear()
        self._make_spares()
        super().end_turn()

    def close(self) -> None:
        for spare in self.spares:
            os.unlink(spare)


class OnDisk:
    """The daemon's file work per job, as the least runner with spoold's guarantees does
    it (GuardedSpool): a slot's next job is claimed (read, parsed, renamed into active/)
    before it is sent; a report files the slot's record (written beside the job in
    active/, the job unlinked, the record renamed into done/) before anything else
    happens. With ``fsync`` (W3's default configuration) the record is fsynced, the
    claims' folders before it, and done/ at the end of the turn, after the requests;
    without (W3's reused configuration), nothing is. ``filing``: one of FILINGS."""

    def __init__(self, root: Path, jobs: int, *, fsync: bool, filing: str = "plain") -> None:
        ceilings.prefill(ceilings.make_folders(root), jobs)
        self.spool = (
            ceilings.GuardedSpool(root, fsync=fsync)
            if filing == "plain"
            else LeanerSpool(root, fsync=fsync, after_send=filing == "after-send")
        )
        self.waiting = ceilings.waiting_names(self.spool.incoming)[::-1]  # oldest last: pop()
        self.running: dict[int, tuple[str, dict[str, Any], float]] = {}

    def request(self, slot: int) -> bytes:
        name = self.waiting.pop()
        job = self.spool.claim(name)
        self.running[slot] = (name, job, time.time())
        return json.dumps(job).encode()

    def report(self, slot: int) -> None:
        self.spool.file(*self.running.pop(slot))

    def end_turn(self) -> None:
        self.spool.end_turn()

    def check(self, jobs: int) -> None:
        self.spool.close()
        if (wrong := ceilings.unfiled(self.spool.root, jobs)) is not None:
            raise RuntimeError(wrong)


def _open(shape: str, log_fd: int) -> tuple[Direct | Relayed | Spares, list[int]]:
    """The shape's channel, and the pids of the workers it did not fork itself."""
    if shape == "spares":
        return Spares(log_fd), []
    if shape == "spares-relay":
        return Relayed(lambda end: _forking_relay(end, log_fd)), []
    socks, pids = _start_workers(log_fd)
    if shape == "direct":
        return Direct(socks), pids
    return Relayed(lambda end: _relay(end, socks)), pids


def run_once(
    jobs: int, shape: str, work: float, folder: Path, spool: bool, filing: str = "plain"
) -> dict[str, float]:
    """One run: the jobs through 2 slots, the daemon in this process; with ``spool``,
    the jobs wait in a fresh spool under ``folder`` and the daemon files (as ``filing``
    says) and claims (fsynced with a process per job, as spoold's default)."""
    log = folder / "jobs.log"
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    disk = None
    if spool:
        root = Path(tempfile.mkdtemp(dir=folder))
        disk = OnDisk(root, jobs, fsync=shape in PER_ATTEMPT, filing=filing)
    work_of = disk or Tokens()
    channel, pids = _open(shape, log_fd)
    started = time.time()
    for slot in range(SLOTS):
        channel.send(slot, work_of.request(slot))
    sent, done = SLOTS, 0
    while done < jobs:
        for slot in channel.reports():
            work_of.report(slot)
            _busy(work)
            done += 1
            if sent < jobs:
                channel.send(slot, work_of.request(slot))
                sent += 1
        work_of.end_turn()
    for slot in range(SLOTS):
        channel.send(slot, QUIT)
    channel.close()
    for pid in pids + channel.children:
        os.waitpid(pid, 0)
    os.close(log_fd)
    if disk:
        disk.check(jobs)
    return _figures(log, jobs, started)


def _figures(log: Path, jobs: int, started: float) -> dict[str, float]:
    spans = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    if len(spans) != jobs:
        raise RuntimeError(f"{len(spans)} job lines for {jobs} jobs")
    frees = [end for _start, end in spans[:SLOTS]]
    heapq.heapify(frees)
    gaps = []
    for start, end in spans[SLOTS:]:
        gaps.append(start - heapq.heappop(frees))
        heapq.heappush(frees, end)
    last_end = max(end for _start, end in spans)
    return {
        "ratio_to_ideal": jobs / (last_end - started) / IDEAL,
        "gap_p50_ms": statistics.median(gaps) * 1000,
        "gap_mean_ms": statistics.mean(gaps) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-ms", default="0,0.75", help="comma-separated daemon work, ms")
    parser.add_argument(
        "--spool",
        action="store_true",
        help="the daemon also files each record and claims each job on disk",
    )
    parser.add_argument(
        "--per-attempt",
        action="store_true",
        help="a process per job (spares forked by the daemon; fsync on with --spool) "
        "instead of the two shapes with reused workers",
    )
    parser.add_argument(
        "--filing",
        default="plain",
        help=f"with --spool, comma-separated ways to file a record, alternated: {FILINGS}",
    )
    args = parser.parse_args(argv)
    works = [float(value) for value in args.work_ms.split(",")]
    filings = args.filing.split(",") if args.spool else ["plain"]
    if unknown := set(filings) - set(FILINGS):
        parser.error(f"--filing: {', '.join(sorted(unknown))} is not one of {FILINGS}")
    results: list[dict[str, Any]] = []
    shapes = PER_ATTEMPT if args.per_attempt else REUSED
    with tempfile.TemporaryDirectory() as folder:
        for work in works:
            runs: dict[tuple[str, str], list[dict[str, float]]] = {
                (shape, filing): [] for filing in filings for shape in shapes
            }
            for _ in range(args.runs):
                for (shape, filing), figures in runs.items():  # alternating: drift hits all
                    figures.append(run_once(
                        args.jobs, shape, work / 1000, Path(folder), args.spool, filing
                    ))  # fmt: skip
            for (shape, filing), figures in runs.items():
                entry: dict[str, Any] = {"shape": shape, "daemon_work_ms": work,
                                         "on_disk": args.spool, "filing": filing}  # fmt: skip
                for key in ("ratio_to_ideal", "gap_p50_ms", "gap_mean_ms"):
                    values = [f[key] for f in figures]
                    entry[key] = {"median": round(statistics.median(values), 3),
                                  "runs": [round(v, 3) for v in values]}  # fmt: skip
                results.append(entry)
                ratio, p50, mean = (entry[key]["median"] for key in
                                    ("ratio_to_ideal", "gap_p50_ms", "gap_mean_ms"))  # fmt: skip
                print(f"{shape:6s} {filing:10s} work {work} ms: {ratio:.3f} of ideal, "
                      f"gap p50 {p50:.2f} ms, mean {mean:.2f} ms", file=sys.stderr)  # fmt: skip
    document = {"suite": "relay", "jobs": args.jobs, "runs": args.runs, "slots": SLOTS,
                "sleep_s": SLEEP, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "results": results}  # fmt: skip
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
