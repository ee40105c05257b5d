"""sd_notify as systemd sees it: the datagrams on a real AF_UNIX socket named by
$NOTIFY_SOCKET (a path, and an abstract @name), in the order a service manager relies on:
READY=1 after the first scan, STATUS= as counts change, WATCHDOG=1 from the main loop,
RELOADING=1 then READY=1 around a reload, STOPPING=1 on shutdown. And SIGUSR1's dump.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import StartDaemon
from harness import Daemon, Spool, job, stays_false, wait_for

from spoold.systemd import Notifier


class Listener:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def lines(self) -> list[str]:
        """Every KEY=VALUE line received so far, in order."""
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        return [line for message in self.messages for line in message.split("\n")]

    def wait_line(self, wanted: str, timeout: float = 10.0) -> None:
        wait_for(lambda: wanted in self.lines(), timeout, lambda: "\n".join(self.lines()))


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    listening = Listener(str(tmp_path / "notify.sock"))
    yield listening
    listening.sock.close()


def start_notifying(start_daemon: StartDaemon, address: str, **env: str) -> Daemon:
    """A daemon that reports to ``address`` instead of the harness's own socket."""
    return start_daemon(ready=False, env={"NOTIFY_SOCKET": address, **env})


def test_the_notify_sequence_of_a_service_life(
    spool: Spool, start_daemon: StartDaemon, listener: Listener, tmp_path: Path
) -> None:
    daemon = start_notifying(start_daemon, listener.address, WATCHDOG_USEC="300000")
    listener.wait_line("READY=1")
    wait_for(lambda: listener.lines().count("WATCHDOG=1") >= 3, 5, lambda: str(listener.lines()))
    spool.drop_job("slow", job("Sleeper", params=[1.5]))
    listener.wait_line("STATUS=1/2 busy, 0 ready, 0 scheduled, 0 failed in the last hour")
    daemon.send(signal.SIGHUP)
    listener.wait_line("RELOADING=1")
    spool.wait_record("slow")
    daemon.send(signal.SIGTERM)
    listener.wait_line("STOPPING=1")
    daemon.wait_exit()
    lines = listener.lines()
    first_ready = lines.index("READY=1")
    reloading = lines.index("RELOADING=1")
    assert first_ready < reloading < len(lines) - 1
    assert "READY=1" in lines[reloading + 1 :], "no READY=1 after the reload"
    assert lines.index("STOPPING=1") > reloading
    assert any(line.startswith("MONOTONIC_USEC=") for line in lines), "RELOADING needs its clock"


def test_an_abstract_notify_socket_works(start_daemon: StartDaemon) -> None:
    listening = Listener(f"@spoold-test-{uuid.uuid4().hex}")
    try:
        start_notifying(start_daemon, listening.address)
        listening.wait_line("READY=1")
    finally:
        listening.sock.close()


def test_no_watchdog_pings_for_another_process(
    start_daemon: StartDaemon, listener: Listener
) -> None:
    """WATCHDOG_PID names someone else (a shell that exec'd us would not): stay quiet."""
    start_notifying(
        start_daemon, listener.address, WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid())
    )
    listener.wait_line("READY=1")
    assert stays_false(lambda: "WATCHDOG=1" in listener.lines(), 0.6)  # three periods


def test_status_updates_are_rate_limited(
    spool: Spool, start_daemon: StartDaemon, listener: Listener
) -> None:
    """Many quick jobs change the counts all the time; STATUS= goes out about once a second."""
    start_notifying(start_daemon, listener.address)
    listener.wait_line("READY=1")
    started = time.monotonic()
    for n in range(200):
        spool.submit("tiny.Quick", params=[n], durable=False)
    wait_for(lambda: len(spool.job_ids("done")) == 200, 60, spool.summary)
    elapsed = time.monotonic() - started
    statuses = [line for line in listener.lines() if line.startswith("STATUS=")]
    assert 2 <= len(statuses) <= elapsed / 1.0 + 3, (len(statuses), elapsed)


def test_the_status_settles_after_a_burst(
    spool: Spool, start_daemon: StartDaemon, listener: Listener
) -> None:
    """The last STATUS= of a burst is the idle daemon's own, within about the rate limit,
    although nothing else wakes the daemon then (no rescan, no snapshot for a minute)."""
    start_daemon(
        ready=False,
        env={"NOTIFY_SOCKET": listener.address},
        spool={"dir": str(spool.root), "rescan_interval": 60.0},
        metrics={"interval": 60.0},
    )
    listener.wait_line("READY=1")
    for n in range(6):
        spool.submit("testjobs.Sleeper", params=[0.3 + n / 20], durable=False)
    wait_for(lambda: len(spool.job_ids("done")) == 6, 30, spool.summary)

    def said() -> list[str]:
        return [line for line in listener.lines() if line.startswith("STATUS=")]

    assert any(not line.startswith("STATUS=0/2 busy") for line in said()), said()
    wait_for(lambda: said()[-1].startswith("STATUS=0/2 busy, 0 ready, 0 scheduled"), 3, said)


class TestTheNotifiersStatus:
    """``Notifier`` alone, on the clock a test chooses, to a real socket: STATUS= at most
    once a second, its text made only when it could go out, and the loop woken to look
    again when a turn came in between."""

    @pytest.fixture
    def notifier(self, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> Notifier:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        return Notifier(now=100.0)

    def test_a_change_in_the_same_second_goes_out_when_the_loop_looks_again(
        self, notifier: Notifier, listener: Listener
    ) -> None:
        made: list[str] = []

        def status(text: str) -> Callable[[], str]:
            return lambda: made.append(text) or text

        notifier.tick(100.0, status("one busy"))
        assert listener.lines() == ["STATUS=one busy"]
        notifier.tick(100.4, status("two busy"))
        assert made == ["one busy"], "the text was made inside the rate limit"
        assert notifier.next_wakeup() == 101.0
        notifier.tick(101.0, status("two busy"))
        assert listener.lines() == ["STATUS=one busy", "STATUS=two busy"]

    def test_no_wake_up_once_the_status_is_as_sent(
        self, notifier: Notifier, listener: Listener
    ) -> None:
        notifier.tick(100.0, lambda: "idle")
        assert notifier.next_wakeup() is None
        notifier.tick(100.5, lambda: "idle")
        assert notifier.next_wakeup() == 101.0  # a turn came: it may have changed
        notifier.tick(101.0, lambda: "idle")
        assert notifier.next_wakeup() is None
        assert listener.lines() == ["STATUS=idle"]


def test_sigusr1_lists_the_running_jobs_in_the_log(spool: Spool, start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    spool.drop_job("napping", job("Sleeper", params=[3]))
    daemon.wait_log("job napping started")
    daemon.send(signal.SIGUSR1)
    line = daemon.wait_log("running: job napping")
    assert "testjobs.Sleeper.run attempt 1 (pid " in line
    assert "status: 1/2 busy" in daemon.log_text()


def test_a_notify_socket_nobody_reads_does_not_stall_the_daemon(
    spool: Spool, start_daemon: StartDaemon, listener: Listener
) -> None:
    """The kernel queues only a few unread datagrams; after that a blocking send would
    freeze the main loop. Pings every 50 ms into a socket never read: jobs still flow."""
    start_notifying(start_daemon, listener.address, WATCHDOG_USEC="100000")
    time.sleep(1.5)  # let thirty pings pile up unread: far past the queue's few places
    ids = [spool.submit("tiny.Quick", params=[n], durable=False) for n in range(100)]
    wait_for(lambda: len(spool.job_ids("done")) == len(ids), 30, spool.summary)
