"""sd_notify over $NOTIFY_SOCKET: READY, WATCHDOG, RELOADING, STOPPING (no extra dependency).

The protocol is a newline-separated list of KEY=VALUE sent as one datagram to
the unix socket systemd names in $NOTIFY_SOCKET ("@" means the abstract
namespace). Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("edgecnn.daemon.systemd")


def notify(*states: str) -> bool:
    """Send states like "READY=1"; returns False when not under systemd or on error."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall("\n".join(states).encode())
        return True
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", addr, e)
        return False


def watchdog_interval() -> float | None:
    """Half of WatchdogSec (from $WATCHDOG_USEC) when the watchdog is for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2e6)
    except ValueError:
        return None


def reloading() -> bool:
    """RELOADING=1 needs MONOTONIC_USEC for Type=notify-reload; harmless for Type=notify."""
    return notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )
