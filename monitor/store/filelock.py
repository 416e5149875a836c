"""One replica per SQLite state file: the daemon takes an OS lock on a file beside it and keeps it for life.

Two daemons on one SQLite file would both lead and both deliver every notification. SQLite has no
leader election to offer, so a second daemon is refused at start, with a message that says what to do.
The lock is `flock` on `<state file>.lock`: the kernel drops it when the process ends, however it ends
(SIGKILL included), so a crash never leaves a stale lock behind. CLI commands that read or edit the
state (outbox, silence, history) take no lock and work beside the running daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from monitor.store.base import AlwaysLeader, StoreError


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class SingleReplica(AlwaysLeader):
    """Leadership over a SQLite state: this process holds the file's lock, so it is the one replica."""

    def __init__(self, state_path: Path) -> None:
        self.path = lock_path(state_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"state file {state_path} is in use by another cluster-monitor (pid {holder}, lock {self.path}). "
                "A SQLite state serves one replica: stop the other process, give each its own state.path, "
                "or share a PostgreSQL database (state.url) between replicas, which elect one leader."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd
        self.held = True

    def release(self) -> None:
        """Let another process take the file (a reload to another state, or shutdown)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self.held = False
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
