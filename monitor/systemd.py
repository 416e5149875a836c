"""systemd's notify protocol (sd_notify), without a dependency: READY at start, a watchdog ping while
the daemon is alive, STOPPING at shutdown. Under `Type=notify` with `WatchdogSec=`, a daemon whose cycle
is stuck stops pinging and systemd restarts it, as Kubernetes does when /healthz fails."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger()


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send one notification to $NOTIFY_SOCKET; False (and nothing done) when not run by systemd."""
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # an abstract socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify_failed", message=message, error=str(exc))
        return False
    return True
