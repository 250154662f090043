"""sd_notify without a library: one datagram to $NOTIFY_SOCKET (``@`` = abstract namespace)."""

from __future__ import annotations

import os
import socket
import time


def notify(message: str) -> bool:
    """Send ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``...; a no-op outside systemd.

    Never blocks (it is called on the event loop): a receiver whose queue is full (a parent or a
    test that does not read) costs this one datagram, not the loop."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.sendto(message.encode(), address)
        return True
    except OSError:  # no receiver, or its queue is full (BlockingIOError)
        return False


def watchdog_interval() -> float | None:
    """Half of $WATCHDOG_USEC (systemd's advice), or None when no watchdog is asked for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, for ``RELOADING=1`` + ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
