"""Leader election among replicas sharing one PostgreSQL database.

`PostgresLeadership` holds a session-level advisory lock on a connection of its own, so the lock lives
exactly as long as the leader's session. A leader killed with SIGKILL loses its connection, PostgreSQL
drops the lock with the session, and the standby's next try takes it.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import suppress
from typing import Any

import psycopg
import structlog

from monitor.store.base import StoreError
from monitor.store.pg import connect, redact_url, scrub

log = structlog.get_logger()


def lock_key(project_id: int) -> int:
    """The advisory lock key of one PostHog project: replicas watching the same project (and only those)
    compete for it. A signed 64-bit number, as pg_try_advisory_lock(bigint) takes."""
    digest = hashlib.blake2b(f"cluster-monitor:project:{project_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLeadership:
    """A session-level advisory lock on a dedicated connection: whoever holds it is the leader.

    The lock's own session is the fence: `verify` asks PostgreSQL, on that session, whether it still holds
    the lock, so a leader whose connection dropped (network, database restart, terminated backend) learns
    it before it acts again and steps down. TCP keepalives and a user timeout bound how long a dead
    network can keep that question hanging.
    """

    def __init__(self, url: str, key: int) -> None:
        self._url = url
        self.key = key
        self._classid = (key >> 32) & 0xFFFFFFFF
        self._objid = key & 0xFFFFFFFF
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._url, purpose="leader-lock", keepalives=1, keepalives_idle=5,
                                 keepalives_interval=2, keepalives_count=3, tcp_user_timeout=10_000)
        return self._conn

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _still_held(self) -> bool:
        assert self._conn is not None
        row = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1)",
            (self._classid, self._objid)).fetchone()
        return bool(row and row[0])

    def acquire(self) -> bool:
        """Take the lock if it is free; True while this replica is the leader. Raises StoreError when
        PostgreSQL cannot be reached (then this replica is not the leader either)."""
        with self._lock:
            if self._held and self._verify_locked():
                return True
            try:
                row = self._connection().execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error as exc:
                self._drop()
                raise StoreError(f"leader lock on {redact_url(self._url)}: {scrub(str(exc), self._url)}") from exc
            self._held = bool(row and row[0])
            if self._held:
                log.info("leader_acquired", lock_key=self.key)
            return self._held

    def verify(self) -> bool:
        """Fencing: True only while the lock's session is alive and still holds the lock."""
        with self._lock:
            return self._held and self._verify_locked()

    def _verify_locked(self) -> bool:
        try:
            if self._conn is not None and not self._conn.closed and self._still_held():
                return True
            error = "the lock is no longer held"
        except psycopg.Error as exc:
            error = scrub(str(exc), self._url)
        log.warning("leader_lost", lock_key=self.key, error=error)
        self._drop()
        return False

    def release(self) -> None:
        """Step down: closing the session releases the lock, so a standby takes over at its next try."""
        with self._lock:
            self._drop()
