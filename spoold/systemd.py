"""sd_notify without libsystemd: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

The protocol is small enough that linking libsystemd for it would add a
dependency and nothing else (sd_notify(3) ships a similar reference
implementation). Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable


def notify(*lines: str, wait: float = 1.0) -> bool:
    """Send ``lines`` (such as ``READY=1``); False when there is nobody to tell.

    A notify socket that is not read fills up (the kernel queues only a few
    datagrams), and a send to it would then block the main loop: this waits
    at most ``wait`` seconds and then drops the message. Periodic messages
    pass ``wait=0``; the next one comes soon anyway.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    elif not address.startswith("/"):
        return False  # vsock and other transports: not supported
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except OSError:  # out of descriptors: a status must never stop the daemon
        return False
    with sock:
        sock.settimeout(wait)
        try:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8"))
        except OSError:
            return False
    return True


STATUS_EVERY = 1.0  # at most one STATUS= update a second


class Notifier:
    """What the main loop tells systemd as it turns: watchdog pings and status changes.

    ``WATCHDOG=1`` goes out at half of ``$WATCHDOG_USEC``, and only from the
    main loop, so a wedged loop really trips the watchdog. ``STATUS=`` goes
    out when the text changes, at most once a second: the text is made (a
    few microseconds of counting) only when it could go out, and a turn in
    between, which may have changed it, has the loop look again when it can.
    """

    def __init__(self, now: float) -> None:
        self.watchdog_every = _watchdog_interval()
        self.next_watchdog = now
        self.sent_status = ""
        self.next_status = now
        self.look_again = False  # a turn came before next_status: the status may differ

    def tick(self, now: float, status_of: Callable[[], str]) -> None:
        if self.watchdog_every is not None and now >= self.next_watchdog:
            notify("WATCHDOG=1", wait=0.0)
            self.next_watchdog = now + self.watchdog_every
        if now < self.next_status:
            self.look_again = True
            return
        self.look_again = False
        status = status_of()
        if status != self.sent_status:
            notify(f"STATUS={status}", wait=0.0)
            self.sent_status = status
        self.next_status = now + STATUS_EVERY  # looked: the next look in a second at most

    def next_wakeup(self) -> float | None:
        times = []
        if self.watchdog_every is not None:
            times.append(self.next_watchdog)
        if self.look_again:
            times.append(self.next_status)
        return min(times) if times else None


def _watchdog_interval() -> float | None:
    """Half the watchdog period systemd set for this process, or None."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watchdog_pid = os.environ.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(os.getpid()):
        return None
    return usec / 2_000_000 if usec > 0 else None
