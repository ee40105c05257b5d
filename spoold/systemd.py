"""sd_notify without libsystemd: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.

The protocol is small enough that linking libsystemd for it would add a
dependency and nothing else (sd_notify(3) ships a similar reference
implementation). Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send ``lines`` (such as ``READY=1``); False when there is nobody to tell."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    elif not address.startswith("/"):
        return False  # vsock and other transports: not supported
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8"))
        except OSError:
            return False
    return True
