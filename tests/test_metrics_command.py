"""``spoold metrics``, end to end: the real daemon runs real jobs, a real ``spoold metrics``
subprocess serves them, and the tests scrape it over HTTP (urllib) or over a unix socket.

The values are checked against the jobs the test ran: received, attempts by
outcome, jobs finished by status, retries, jobs per state, histogram counts;
a rejected file naming ``evil.Class`` appears nowhere. Also: the bearer token
off loopback (refused without a token file; 401 without or with a wrong
token), the unix socket (a stale one replaced, mode 0660, removed at stop),
a backend that cannot be read (503, then served again), and two daemons on
one Redis, summed, one ``spoold_up`` each. Nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Spool, job, wait_for
from served import Served, UnixHTTPConnection, servers
from test_prometheus import Key, parse, series, value

from spoold.backends import open_catalog
from spoold.client import run_background_job
from spoold.config import load_config
from spoold.job import REJECTION_KINDS

FAST = {"interval": 0.2}  # a snapshot five times a second
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


@dataclass
class Metrics(Served):
    """One ``python -m spoold metrics`` subprocess (tests/served.py)."""

    command: str = "metrics"


@pytest.fixture
def start_metrics(tmp_path: Path, leak_check: str) -> Iterator[Callable[..., Metrics]]:
    """``start_metrics(config, *args, ready=True)``: ``spoold metrics`` on that config, with
    ``--listen 127.0.0.1:0`` unless args say otherwise; stopped at teardown."""
    with servers(Metrics, tmp_path, leak_check) as new:

        def start(config: Path, *args: str, ready: bool = True) -> Metrics:
            metrics = new(config).start(*args)
            return metrics.wait_serving() if ready else metrics

        yield start


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes


def get(url: str, **headers: str) -> Answer:
    request = urllib.request.Request(url, headers=headers)
    try:
        with NO_PROXY.open(request, timeout=15) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def scrape(url: str) -> dict[Key, float]:
    answer = get(url)
    assert answer.status == 200, answer
    return parse(answer.body.decode())


def scraped_until(url: str, done: Callable[[dict[Key, float]], bool]) -> dict[Key, float]:
    """Scrape until ``done`` holds (the counters lag the jobs by a snapshot interval)."""
    latest: list[dict[Key, float]] = [{}]

    def check() -> dict[Key, float] | None:
        latest[0] = scrape(url)
        return latest[0] if done(latest[0]) else None

    def counted() -> str:
        found = sorted((name, sorted(labels), n) for (name, labels), n in latest[0].items() if n)
        return f"not yet; what the last scrape counted: {found}"

    return wait_for(check, 15.0, counted)


def of(class_name: str, **labels: str) -> dict[str, str]:
    return {"class": f"testjobs.{class_name}", **labels}


def finished_jobs(samples: dict[Key, float]) -> float:
    return sum(series(samples, "spoold_jobs_finished_total").values())


# -- the file spool --


def test_a_scrape_tells_the_jobs_the_daemon_ran(
    spool: Spool,
    start_daemon: Callable[..., Daemon],
    daemon_config: Callable[..., Path],
    start_metrics: Callable[..., Metrics],
    tmp_path: Path,
) -> None:
    """Two jobs done at once, one done at its third attempt, one failed after a retry, one
    waiting for tomorrow, one rejected file naming evil.Class: each counted where it
    belongs; the rejected file's class nowhere."""
    config = daemon_config(metrics=FAST, worker={"max_retries": 2, "retry_delay": 0.1})
    start_daemon(config=config)
    metrics = start_metrics(config)
    spool.drop_job("noop1", job("Noop"))
    spool.drop_job("noop2", job("Noop"))
    spool.drop_job("flaky", job("Flaky", params=[str(tmp_path / "flaky.count"), 2]))
    spool.drop_job("boom", job("Boom", max_retries=1))
    spool.drop_job("later", job("Sleeper", params=[0], run_at=time.time() + 86400))
    spool.drop_job("evil", {"class": "evil.Class", "method": "run", "params": []})
    for name, state in (
        ("noop1", "done"),
        ("noop2", "done"),
        ("flaky", "done"),
        ("boom", "failed"),
        ("evil", "failed"),
    ):
        spool.wait_record(name, state)

    samples = scraped_until(metrics.url, lambda s: finished_jobs(s) == 4)
    answer = get(metrics.url)
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"evil" not in answer.body

    received = series(samples, "spoold_jobs_received_total")
    assert {dict(labels)["class"]: n for labels, n in received.items() if n} == {
        "testjobs.Noop": 2,
        "testjobs.Flaky": 1,
        "testjobs.Boom": 1,
        "testjobs.Sleeper": 1,
    }
    assert series(samples, "spoold_jobs_rejected_total") == {
        frozenset({("reason", kind)}): 1 if kind == "not_allowed" else 0 for kind in REJECTION_KINDS
    }
    attempts = {
        (dict(labels)["class"], dict(labels)["outcome"]): n
        for labels, n in series(samples, "spoold_attempts_finished_total").items()
        if n
    }
    assert attempts == {
        ("testjobs.Noop", "ok"): 2,
        ("testjobs.Flaky", "error"): 2,
        ("testjobs.Flaky", "ok"): 1,
        ("testjobs.Boom", "error"): 2,
    }
    assert value(samples, "spoold_attempts_started_total", **of("Flaky")) == 3
    assert value(samples, "spoold_jobs_finished_total", **of("Noop", status="done")) == 2
    assert value(samples, "spoold_jobs_finished_total", **of("Flaky", status="done")) == 1
    assert value(samples, "spoold_jobs_finished_total", **of("Boom", status="failed")) == 1
    assert value(samples, "spoold_retries_scheduled_total", **of("Flaky")) == 2
    assert value(samples, "spoold_retries_scheduled_total", **of("Boom")) == 1

    assert value(samples, "spoold_jobs", state="done") == 3
    assert value(samples, "spoold_jobs", state="failed") == 2  # Boom's record and the rejection
    assert value(samples, "spoold_jobs", state="scheduled") == 1
    assert value(samples, "spoold_jobs", state="incoming") == 0
    assert value(samples, "spoold_oldest_waiting_job_age_seconds") == 0, "tomorrow's job is not due"

    assert value(samples, "spoold_attempt_duration_seconds_count", **of("Flaky")) == 3
    assert value(samples, "spoold_attempt_duration_seconds_bucket", **of("Boom", le="+Inf")) == 2
    assert value(samples, "spoold_pickup_latency_seconds_count") == 7  # one per attempt
    successes = series(samples, "spoold_last_success_timestamp_seconds")
    assert {dict(labels)["class"] for labels in successes} == {"testjobs.Noop", "testjobs.Flaky"}
    assert all(time.time() - 60 < when <= time.time() for when in successes.values())

    host = load_config(config).spool.host_id
    assert series(samples, "spoold_up") == {frozenset({("daemon", host)}): 1}
    assert value(samples, "spoold_workers_max", daemon=host) == 2
    assert time.time() - value(samples, "spoold_stats_timestamp_seconds", daemon=host) < 10

    if os.geteuid() == 0:
        assert metrics.stderr().splitlines() == [
            "spoold: warning: metrics runs as root; it is meant to run as a member of the group"
            " that may read the spool"
        ]
    landing = get(metrics.url.removesuffix("metrics"))
    assert landing.status == 200 and b'href="/metrics"' in landing.body
    assert get(metrics.url.removesuffix("metrics") + "nothing").status == 404
    assert metrics.stop() == 0


def test_a_spool_it_cannot_read_is_a_503_and_it_keeps_serving(
    spool: Spool,
    start_daemon: Callable[..., Daemon],
    daemon_config: Callable[..., Path],
    start_metrics: Callable[..., Metrics],
) -> None:
    """The daemon's stats.json replaced by a folder (it cannot be read): 503 with one line
    and one line on stderr; back as a file, 200 again, from the same process."""
    config = daemon_config(metrics=FAST)
    daemon = start_daemon(config=config)
    spool.drop_job("one", job("Noop"))
    spool.wait_record("one", "done")
    assert daemon.stop() == 0  # its last snapshot is written at stop
    metrics = start_metrics(config)
    assert (
        value(scrape(metrics.url), "spoold_jobs_finished_total", **of("Noop", status="done")) == 1
    )

    stats = spool.root / "stats.json"
    saved = stats.read_bytes()
    stats.unlink()
    stats.mkdir()
    answer = get(metrics.url)
    assert answer.status == 503
    assert answer.body.decode().count("\n") == 1 and "stats.json" in answer.body.decode()
    assert get(metrics.url).status == 503

    stats.rmdir()
    stats.write_bytes(saved)
    samples = scrape(metrics.url)
    assert value(samples, "spoold_jobs_finished_total", **of("Noop", status="done")) == 1
    assert metrics.stop() == 0
    lines = metrics.stderr().splitlines()
    assert [line for line in lines if "cannot read the spool" in line] == [lines[-2]], "said once"
    assert lines[-1] == "spoold: metrics: reading the spool again"


# -- the token --


def test_off_loopback_without_a_token_file_it_refuses_to_start(
    daemon_config: Callable[..., Path], start_metrics: Callable[..., Metrics]
) -> None:
    metrics = start_metrics(daemon_config(), "--listen", "0.0.0.0:0", ready=False)
    assert metrics.wait_exit() == 2
    lines = metrics.stderr().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("spoold: [metrics] listen 0.0.0.0:0 is not loopback")
    assert "token_file" in lines[0]
    assert metrics.out.read_text() == ""


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("nonsense", "spoold: --listen 'nonsense': expected host:port"),
        ("unix:relative.sock", "spoold: --listen 'unix:relative.sock': a unix socket's path"),
    ],
)
def test_a_bad_listen_address_is_one_line_and_exit_status_2(
    daemon_config: Callable[..., Path],
    start_metrics: Callable[..., Metrics],
    listen: str,
    message: str,
) -> None:
    metrics = start_metrics(daemon_config(), "--listen", listen, ready=False)
    assert metrics.wait_exit() == 2
    lines = metrics.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_with_a_token_file_only_the_right_bearer_token_gets_the_metrics(
    daemon_config: Callable[..., Path], start_metrics: Callable[..., Metrics], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    config = daemon_config(metrics={"token_file": str(token_file)})
    metrics = start_metrics(config, "--listen", "0.0.0.0:0")
    port = metrics.url.rsplit(":", 1)[1].split("/")[0]
    url = f"http://127.0.0.1:{port}/metrics"

    missing = get(url)
    assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"spoold_jobs" not in missing.body
    assert get(url, Authorization="Bearer wrong-token").status == 401
    assert get(url, Authorization="Basic czNjcmV0LXRva2Vu").status == 401
    assert get(url.removesuffix("metrics"), Authorization="Bearer s3cret").status == 401
    right = get(url, Authorization="Bearer s3cret-token")
    assert right.status == 200 and b"# TYPE spoold_jobs gauge" in right.body
    assert metrics.stop() == 0


def test_a_request_over_the_size_cap_is_refused(
    daemon_config: Callable[..., Path], start_metrics: Callable[..., Metrics]
) -> None:
    metrics = start_metrics(daemon_config())
    assert get(metrics.url, **{"X-Padding": "x" * 10000}).status == 431
    assert get(metrics.url).status == 200, "and it goes on serving"


# -- the unix socket --


def get_unix(path: Path, target: str) -> tuple[int, bytes]:
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_unix_socket_replaces_a_stale_one_serves_and_is_removed_at_stop(
    spool: Spool,
    start_daemon: Callable[..., Daemon],
    daemon_config: Callable[..., Path],
    start_metrics: Callable[..., Metrics],
    tmp_path: Path,
) -> None:
    config = daemon_config(metrics=FAST)
    start_daemon(config=config)
    spool.drop_job("one", job("Noop"))
    spool.wait_record("one", "done")
    path = tmp_path / "metrics.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # left behind, as by a process that died: nobody listens
    metrics = start_metrics(config, "--listen", f"unix:{path}")
    assert metrics.url == "/metrics"
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660

    def done_once() -> bytes | None:
        status, body = get_unix(path, "/metrics")
        assert status == 200
        return (
            body
            if b'spoold_jobs_finished_total{class="testjobs.Noop",status="done"} 1' in body
            else None
        )

    wait_for(done_once, 15.0, "the job is not in the metrics")
    assert get_unix(path, "/")[0] == 200

    second = start_metrics(config, "--listen", f"unix:{path}", ready=False)
    assert second.wait_exit() == 1
    assert f"in use by another process (another spoold metrics?): unix:{path}" in second.stderr()
    assert get_unix(path, "/metrics")[0] == 200, "the first one still serves"

    assert metrics.proc is not None
    metrics.proc.send_signal(signal.SIGINT)  # Ctrl-C: as clean as SIGTERM
    assert metrics.wait_exit() == 0
    assert not path.exists()
    assert "Traceback" not in metrics.stderr()


# -- Redis: several daemons --


def test_on_redis_two_daemons_are_summed_with_one_up_each_and_redis_down_is_a_503(
    start_daemon: Callable[..., Daemon],
    redis_config: Callable[..., Path],
    redis_server: Any,
    start_metrics: Callable[..., Metrics],
    tmp_path: Path,
) -> None:
    """One slot each and two one-second jobs submitted at once: each daemon runs one. The
    counters are the sum of both snapshots; each host has its spoold_up and workers."""
    configs = {
        host: redis_config(
            metrics=FAST,
            worker={"concurrency": 1},
            spool={"dir": str(Spool(tmp_path / host).create().root), "host_id": host},
        )
        for host in ("left", "right")
    }
    daemons = {host: start_daemon(config=path) for host, path in configs.items()}
    catalog = open_catalog(load_config(configs["left"]))
    wait_for(lambda: len(catalog.stats()) == 2, 15.0, lambda: str(catalog.stats()))
    ids = [run_background_job("testjobs.Sleeper", "run", [1.0]) for _ in range(2)]
    metrics = start_metrics(configs["left"])

    samples = scraped_until(metrics.url, lambda s: finished_jobs(s) == 2)
    snapshots = catalog.stats()
    assert sorted(s.host for s in snapshots) == ["left", "right"]
    assert all(s.jobs_finished == {"testjobs.Sleeper": {"done": 1}} for s in snapshots), (
        f"each daemon should have run one of {ids}: {snapshots}"
    )
    assert value(samples, "spoold_jobs_finished_total", **of("Sleeper", status="done")) == 2
    assert value(samples, "spoold_attempts_finished_total", **of("Sleeper", outcome="ok")) == 2
    assert value(samples, "spoold_attempt_duration_seconds_count", **of("Sleeper")) == 2
    assert value(samples, "spoold_attempt_duration_seconds_bucket", **of("Sleeper", le="0.5")) == 0
    assert value(samples, "spoold_pickup_latency_seconds_count") == 2
    assert value(samples, "spoold_jobs_received_total", **of("Sleeper")) == sum(
        s.received.get("testjobs.Sleeper", 0) for s in snapshots
    )
    assert series(samples, "spoold_up") == {
        frozenset({("daemon", "left")}): 1,
        frozenset({("daemon", "right")}): 1,
    }
    assert series(samples, "spoold_workers_max") == {
        frozenset({("daemon", "left")}): 1,
        frozenset({("daemon", "right")}): 1,
    }
    assert value(samples, "spoold_jobs", state="done") == 2
    assert {dict(labels)["backend"] for labels in series(samples, "spoold_build_info")} == {"redis"}
    assert all(d.returncode() is None for d in daemons.values())

    redis_server.stop()
    down = get(metrics.url)
    assert down.status == 503 and down.body.decode().count("\n") == 1, down
    redis_server.start()
    wait_for(lambda: get(metrics.url).status == 200, 15.0, "not served again after Redis came back")
    assert metrics.stop() == 0
