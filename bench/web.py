"""The dashboard on a large spool: ``python -m bench.web [--records N] [--quick]``.

The target: the overview and the list pages answer in under 200 ms with
100,000 records in done/. This makes a temp spool (``spoold init``, ``fsync =
false``, an allowlist of two classes), runs a few real jobs through a real
``spoold run --burst`` (done, failed with a traceback, rejected, and a few
held back by a delay, which the daemon files in scheduled/), and copies the
records it wrote to fill done/ with N records (default 100,000; ``--quick``
10,000) and failed/ with ``--failed`` (1,000), in the daemon's own format
(``spoold.job.encode``): ids from ``spoold.ids.new_job_id`` at increasing
times over the last two weeks, varying class, method, params, finished_at and
the file's mtime (= finished_at). One record in 10 of done/ is
``webjobs.Report``, the rest ``webjobs.Mail``. Filling is timed on its own.

It then starts the real ``python -m spoold web --listen 127.0.0.1:0`` (no
auth: loopback) and times, with http.client and one request per connection
(as the server answers), from connect to the last byte of the body: the first
overview of the fresh process (``cold_overview_ms``: it stats every record of
failed/ once, ``FilingTimes``), then, after one warm-up request each, every
page of ``PAGES`` once per round, ``--repeat`` rounds (20; ``--quick`` 5).
Each page reports p50, p95 and max in ms. The target is judged (reported,
never asserted) on p50 and p95 of the overview and the list pages; the search
that stops at ``[web] scan_limit``, the job page and /metrics are reported
beside it. It prints one JSON object on stdout (progress on stderr); the web
process is stopped (SIGTERM) and the temp folder removed, even on error.
Nothing is written to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/web.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchError,
    daemon_env,
    git_commit,
    machine_info,
    percentile,
    proc_status,
    progress,
    toml_text,
)
from spoold.client import job_payload, run_background_job
from spoold.config import DEFAULT_WEB
from spoold.ids import new_job_id
from spoold.job import encode

FULL = {"records": 100_000, "repeat": 20}
QUICK = {"records": 10_000, "repeat": 5}
FAILED = 1000  # records in failed/: at most FAILED_READ_ALL, so the overview reads them all
SCHEDULED = 5
TARGET_MS = 200.0
SPAN = 14 * 86400.0  # the records' times: the last two weeks, oldest first
REJECTED_EVERY = 20  # one failed/ record in 20 is a rejection
REPORT_EVERY = 10  # one done/ record in 10 is webjobs.Report
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 60.0
CLASSES = {"webjobs.Mail": ["send", "digest"], "webjobs.Report": ["build", "fail"]}
NO_CLASS = "webjobs.Nothing"  # matches no record: the search runs to the scan limit
JOBS_MODULE = '''\
"""The web benchmark's jobs (written by bench/web.py into its temp folder)."""


class Mail:
    def send(self, to, subject):
        return {"sent": to, "subject": subject}

    def digest(self, to, subject):
        return {"sent": to, "subject": subject, "digest": True}


class Report:
    def build(self, month):
        return None

    def fail(self, month):
        raise ValueError(f"no data for {month}")
'''
# The pages timed: name -> whether the target (p50 and p95 under 200 ms) applies.
TARGETED = ("overview", "done", "done_deep", "failed", "done_class_1_in_10")


@dataclass
class Filled:
    done_ids: list[str]  # sorted, oldest first
    failed_ids: list[str]
    scheduled: int
    seconds: float  # writing the generated records (not the real jobs)


# -- the spool --


def write_config(workdir: Path, scan_limit: int) -> Path:
    jobs = workdir / "jobs"
    jobs.mkdir()
    (jobs / "webjobs.py").write_text(JOBS_MODULE)
    worker: dict[str, Any] = {
        "concurrency": 2,
        "python_path": [str(jobs)],
        "max_retries": 0,
        "timeout": 60.0,
        "shutdown_timeout": 10.0,
    }
    if os.geteuid() == 0:
        worker["user"] = "root"  # a root daemon needs an explicit job user; say it on purpose
    sections = {
        "spool": {"dir": str(workdir / "spool"), "fsync": False},
        "worker": worker,
        "log": {"file": str(workdir / "daemon.log"), "level": "WARNING"},
        "web": {"scan_limit": scan_limit},
        "allow": CLASSES,
    }
    config = workdir / "spoold.toml"
    config.write_text(toml_text(sections))
    spoold(workdir, "init", "--config", str(config))
    return config


def spoold(workdir: Path, *args: str, ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run([sys.executable, "-m", "spoold", *args], cwd=workdir, env=daemon_env(),
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode not in ok:
        words = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()
        raise BenchError(f"spoold {args[0]} exited with {done.returncode}: {words[-1]}")


def real_records(workdir: Path, config: Path) -> dict[str, dict[str, Any]]:
    """Run a few real jobs through ``spoold run --burst``; the records it wrote, by kind."""
    spool = workdir / "spool"
    submit = {
        "mail": ("webjobs.Mail", "send", ["ada@example.com", "Invoice 1"]),
        "report": ("webjobs.Report", "build", ["2026-01"]),
        "failed": ("webjobs.Report", "fail", ["2026-02"]),
        "rejected": ("webjobs.Mail", "spam", ["bob@example.com"]),
    }
    ids = {kind: run_background_job(cls, method, params, spool=spool, durable=False)
           for kind, (cls, method, params) in submit.items()}  # fmt: skip
    for n in range(SCHEDULED):
        run_background_job("webjobs.Report", "build", [f"2027-{n + 1:02d}"], spool=spool,
                           delay=3600.0 * (n + 1), durable=False)  # fmt: skip
    # Exit status 1: a job failed or was rejected, as two of them must.
    spoold(workdir, "run", "--burst", "--config", str(config), ok=(0, 1))
    found = {}
    for kind, job_id in ids.items():
        state = "done" if kind in ("mail", "report") else "failed"
        path = spool / state / f"{job_id}.json"
        if not path.exists():
            raise BenchError(f"the {kind} job {job_id} has no record in {state}/")
        found[kind] = json.loads(path.read_bytes())
    scheduled = len(os.listdir(spool / "scheduled"))
    if scheduled != SCHEDULED:
        raise BenchError(f"{scheduled} jobs in scheduled/, {SCHEDULED} expected")
    return found


def write_record(folder: str, document: dict[str, Any], mtime: float) -> None:
    fd = os.open(f"{folder}/{document['id']}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, encode(document))
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def done_record(real: dict[str, dict[str, Any]], i: int, at: float) -> dict[str, Any]:
    """The i-th done record, finished at ``at``: a copy of a real one's shape."""
    report = i % REPORT_EVERY == 0
    doc = dict(real["report" if report else "mail"])
    enqueued = at - 0.5 - (i % 7) * 0.1
    started = enqueued + 0.2
    if report:
        doc.update(method="build", params=[f"2026-{i % 12 + 1:02d}"], result=None)
    else:
        to, subject = f"user{i}@example.com", f"Invoice {i}"
        method = "digest" if i % 3 == 0 else "send"
        result = {"sent": to, "subject": subject, **({"digest": True} if i % 3 == 0 else {})}
        doc.update(method=method, params=[to, subject], result=result)
    entry = dict(doc["history"][0], started_at=started, finished_at=at)
    doc.update(id=new_job_id(enqueued), enqueued_at=enqueued, history=[entry], finished_at=at)
    return doc


def failed_record(real: dict[str, dict[str, Any]], i: int, at: float) -> dict[str, Any]:
    """The i-th failed/ record: a failure with its error and traceback, or a rejection."""
    enqueued = at - 0.5
    if i % REJECTED_EVERY == 0:
        doc = dict(real["rejected"])
        job_id = new_job_id(enqueued)
        params = [f"user{i}@example.com"]
        raw = job_payload("webjobs.Mail", "spam", params, now=enqueued).decode()
        doc.update(id=job_id, params=params, enqueued_at=enqueued, raw=raw,
                   file=f"{job_id}.json", received_at=at, finished_at=at)  # fmt: skip
        return doc
    doc = dict(real["failed"])
    month = f"2026-{i % 12 + 1:02d}"
    old = doc["params"][0]
    first = doc["history"][0]
    entry = dict(first, started_at=enqueued + 0.2, finished_at=at,
                 error=first["error"].replace(old, month),
                 traceback=first["traceback"].replace(old, month))  # fmt: skip
    doc.update(id=new_job_id(enqueued), params=[month], enqueued_at=enqueued, history=[entry],
               reason=doc["reason"].replace(old, month), finished_at=at)  # fmt: skip
    return doc


def fill(spool: Path, real: dict[str, dict[str, Any]], records: int, failed: int) -> Filled:
    """done/ and failed/ up to ``records`` and ``failed`` records, the real ones included."""
    started = time.perf_counter()
    now = time.time()
    for state, total, make in (("done", records, done_record),
                               ("failed", failed, failed_record)):  # fmt: skip
        folder = str(spool / state)
        have = len(os.listdir(folder))
        count = max(0, total - have)
        first = now - SPAN
        step = (SPAN - 60.0) / max(count, 1)  # the newest a minute before the real ones
        for i in range(count):
            at = first + i * step
            write_record(folder, make(real, i, at), at)
    seconds = time.perf_counter() - started
    done_ids = sorted(name[:-5] for name in os.listdir(spool / "done"))
    failed_ids = sorted(name[:-5] for name in os.listdir(spool / "failed"))
    return Filled(done_ids, failed_ids, len(os.listdir(spool / "scheduled")), seconds)


# -- the web process --


class Web:
    """``python -m spoold web --listen 127.0.0.1:0``; its URL from its first line."""

    def __init__(self, workdir: Path, config: Path) -> None:
        self.errors = workdir / "web.err"
        command = [sys.executable, "-m", "spoold", "web", "--config", str(config),
                   "--listen", "127.0.0.1:0"]  # fmt: skip
        with open(self.errors, "wb") as err:
            self.proc = subprocess.Popen(command, cwd=workdir, env=daemon_env(),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err)  # fmt: skip
        self.host, self.port = self._address()

    def _address(self) -> tuple[str, int]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise BenchError(f"spoold web did not say where it serves: {self.last_words()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.2))
            if ready:
                line += os.read(self.proc.stdout.fileno(), 4096)
        found = re.match(r"serving http://([0-9.]+):(\d+)/", line.decode())
        if found is None:
            raise BenchError(f"spoold web said {line!r}, not 'serving http://HOST:PORT/'")
        return found[1], int(found[2])

    def last_words(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.errors.read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1]
        return f"(no output; exit status {self.proc.poll()})"

    def get(self, path: str) -> tuple[float, bytes]:
        """Milliseconds from connect to the body's last byte, and the body (200 or BenchError)."""
        started = time.perf_counter()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise BenchError(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed, body

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def serving(workdir: Path, config: Path) -> Iterator[Web]:
    web = None
    try:
        web = Web(workdir, config)
        yield web
    finally:
        if web is not None:
            web.stop()


# -- the pages --


def pages(filled: Filled) -> dict[str, str]:
    done, failed = filled.done_ids, filled.failed_ids
    return {
        "overview": "/",
        "done": "/jobs/done",
        "done_deep": f"/jobs/done?before={done[len(done) // 2]}",
        "failed": "/jobs/failed",
        "done_class_1_in_10": "/jobs/done?class=webjobs.Report",
        "done_class_none": f"/jobs/done?class={NO_CLASS}",
        "job": f"/job/{failed[len(failed) // 2]}",
        "metrics": "/metrics",
    }


FILTERED = ("failed", "done_class_1_in_10", "done_class_none")  # failed: status = failed
SUMMARY = re.compile(r"(\d+) match(?:es)? among the ([\d,]+) newest")


def check(name: str, body: bytes, filled: Filled) -> dict[str, Any]:
    """What the page says that the figures depend on; BenchError if it is not the page meant."""
    text = body.decode("utf-8", "replace")
    done = filled.done_ids
    expected = {
        "overview": f'id="count-done">{len(done):,}<',
        "done": done[-1],
        "done_deep": done[len(done) // 2 - 1],
        "job": filled.failed_ids[len(filled.failed_ids) // 2],
        "metrics": "spoold_",
    }.get(name)
    if expected is not None and expected not in text:
        raise BenchError(f"{name}: the page does not show {expected!r}")
    if name not in FILTERED:
        return {}
    found = SUMMARY.search(text)
    if found is None:
        raise BenchError(f"{name}: no 'N matches among the M newest' on the page")
    return {"matches": int(found[1]), "scanned": int(found[2].replace(",", "")),
            "capped": 'id="capped"' in text}  # fmt: skip


def measure(web: Web, paths: dict[str, str], filled: Filled, repeat: int) -> dict[str, Any]:
    """One warm-up request per page, then ``repeat`` rounds of every page once."""
    about: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        _ms, body = web.get(path)
        about[name] = {"path": path, "bytes": len(body), **check(name, body, filled)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(repeat):
        if round_ % 5 == 0:
            progress(f"round {round_ + 1}/{repeat}")
        for name, path in paths.items():
            ms, _body = web.get(path)
            times[name].append(ms)
    result = {}
    for name, values in times.items():
        figures = {"p50_ms": round(percentile(values, 50), 1),
                   "p95_ms": round(percentile(values, 95), 1),
                   "max_ms": round(max(values), 1)}  # fmt: skip
        under = figures["p50_ms"] < TARGET_MS and figures["p95_ms"] < TARGET_MS
        result[name] = {**about[name], **figures, "under_200ms": under,
                        "targeted": name in TARGETED}  # fmt: skip
    return result


# -- the run --


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.web",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['records']:,} records, {QUICK['repeat']} rounds",
    )
    parser.add_argument(
        "--records", type=int, default=None, help=f"records in done/ (default {FULL['records']:,})"
    )
    parser.add_argument("--failed", type=int, default=FAILED, help="records in failed/")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help=f"timed rounds of every page (default {FULL['repeat']})",
    )
    parser.add_argument(
        "--scan-limit",
        type=int,
        default=None,
        help=f"[web] scan_limit (default {DEFAULT_WEB.scan_limit:,}, the config's;"
        " half the records, at least 100, when that would search them all)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where the temp spool goes")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp folder (its spool and config), e.g. to profile",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.records = sizes["records"] if args.records is None else args.records
    args.repeat = sizes["repeat"] if args.repeat is None else args.repeat
    if args.records < 4 or args.failed < 4 or args.repeat < 1:
        parser.error("--records and --failed must be at least 4, --repeat at least 1")
    if args.scan_limit is None:
        limit = DEFAULT_WEB.scan_limit
        args.scan_limit = limit if args.records > limit else max(100, args.records // 2)
    if args.scan_limit < 100:
        parser.error("--scan-limit must be at least 100 (spoold's own minimum)")
    return args


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds: the web process is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="spoold-bench-web-", dir=args.tmp))
    try:
        progress(f"{args.records:,} done, {args.failed:,} failed records, in {workdir}")
        config = write_config(workdir, args.scan_limit)
        real_started = time.perf_counter()
        real = real_records(workdir, config)
        real_seconds = time.perf_counter() - real_started
        filled = fill(workdir / "spool", real, args.records, args.failed)
        progress(f"filled in {filled.seconds:.1f} s; starting spoold web")
        paths = pages(filled)
        with serving(workdir, config) as web:
            cold_ms, body = web.get("/")
            check("overview", body, filled)
            progress(f"cold overview {cold_ms:.0f} ms; {args.repeat} rounds of {len(paths)} pages")
            figures = measure(web, paths, filled, args.repeat)
            rss = proc_status(web.proc.pid).get("VmRSS")
        machine = machine_info(workdir.parent)
    finally:
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    document = {
        "benchmark": "web",
        "what": "spoold web on a spool with N records in done/: ms from connect to the body's"
        " last byte, one request per connection, after one warm-up request per page",
        "target": f"overview and list pages (p50 and p95) under {TARGET_MS:g} ms with 100,000"
        " records in done/",
        "target_met": all(figures[name]["under_200ms"] for name in TARGETED),
        "commit": git_commit(),
        "machine": machine,
        "records": {
            "done": len(filled.done_ids),
            "failed": len(filled.failed_ids),
            "scheduled": filled.scheduled,
        },
        "fill_seconds": round(filled.seconds, 2),
        "fill_records_per_s": round(
            (len(filled.done_ids) + len(filled.failed_ids)) / max(filled.seconds, 1e-9)
        ),
        "real_jobs_seconds": round(real_seconds, 2),
        "scan_limit": args.scan_limit,
        "repeat": args.repeat,
        "cold_overview_ms": round(cold_ms, 1),
        "pages": figures,
        "web_rss_kb": rss,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(document, indent=2), flush=True)
    slow = [name for name, page in figures.items() if not page["under_200ms"]]
    verdict = "met" if document["target_met"] else "NOT met"
    progress(f"done in {document['seconds']} s; target {verdict}; over {TARGET_MS:g} ms"
             f" (p50 or p95): {', '.join(slow) or 'none'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
