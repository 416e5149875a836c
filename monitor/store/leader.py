"""Leader election among replicas sharing one PostgreSQL database, with a lease and fencing tokens.

`PostgresLeadership` holds a session-level advisory lock on a connection of its own, so the lock lives
exactly as long as the leader's session. A leader killed with SIGKILL loses its connection, PostgreSQL
drops the lock with the session, and the standby's next try takes it.

A session can outlive its process's usefulness (a hung or paused leader keeps its TCP session, and its
lock, forever), so each leadership also has a row in `cluster_monitor_leader`: an epoch (the fencing
token, one more at every acquisition), the backend pid holding the lock and a heartbeat stamped with
PostgreSQL's own clock. The leader renews the heartbeat whenever it proves it still leads (between runs,
before each send, and while idle); a standby that finds it older than the lease ends the holder's session
(`pg_terminate_backend`) and takes the lock. Every send is claimed first in `cluster_monitor_sends`, in
one statement that succeeds only on the live lock session of the current epoch: the record of which
leadership sent which outbox entry. Its rows go with the outbox entries they claimed: retention prunes
sent notifications from the store, then `prune_sends` forgets their claims (monitor/store/retention.py).
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import suppress
from typing import Any

import psycopg
import structlog
from psycopg import sql

from monitor.store.base import StoreError
from monitor.store.pg import connect, redact_url, scrub

log = structlog.get_logger()

DEFAULT_LEASE_SECONDS = 300.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_monitor_leader (
    lock_key BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder TEXT NOT NULL,
    backend_pid INTEGER NOT NULL,
    lease_seconds DOUBLE PRECISION NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_monitor_sends (
    lock_key BIGINT NOT NULL,
    outbox_id BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    first_epoch BIGINT NOT NULL,
    claims INTEGER NOT NULL DEFAULT 1,
    claimed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (lock_key, outbox_id)
);
"""
_SCHEMA_LOCK = 0x636C6D6F6E6C6472  # "clmonldr": replicas starting together create the tables one at a time

# The row of this leadership, renewed: only on the lock's own session, only for the current epoch.
_BEAT = ("UPDATE cluster_monitor_leader SET heartbeat_at = now() "
         "WHERE lock_key = %(key)s AND epoch = %(epoch)s AND backend_pid = pg_backend_pid() "
         "AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
         "AND classid = %(classid)s AND objid = %(objid)s AND objsubid = 1) RETURNING epoch")


def lock_key(project_id: int) -> int:
    """The advisory lock key of one PostHog project: replicas watching the same project (and only those)
    compete for it. A signed 64-bit number, as pg_try_advisory_lock(bigint) takes."""
    digest = hashlib.blake2b(f"cluster-monitor:project:{project_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLeadership:
    """A session-level advisory lock on a dedicated connection: whoever holds it is the leader.

    The lock's own session is the fence: `verify` and `claim` ask PostgreSQL, on that session, whether it
    still holds the lock under this replica's epoch, so a leader whose connection dropped (network,
    database restart, terminated backend) learns it before it acts again and steps down. TCP keepalives
    and a user timeout bound how long a dead network can keep that question hanging.
    """

    def __init__(self, url: str, key: int, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 store_schema: str | None = None) -> None:
        """`store_schema`: the schema of the project's store (state.pg_schema), whose outbox the claims
        point into; the leader's own tables stay in the connection's default schema."""
        self._url = url
        self._outbox = sql.Identifier(store_schema, "outbox") if store_schema else sql.Identifier("outbox")
        self.key = key
        self.lease_seconds = lease_seconds
        self._classid = (key >> 32) & 0xFFFFFFFF
        self._objid = key & 0xFFFFFFFF
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._held = False
        self.epoch: int | None = None

    @property
    def held(self) -> bool:
        return self._held

    def _args(self, **extra: Any) -> dict[str, Any]:
        return {"key": self.key, "epoch": self.epoch, "classid": self._classid, "objid": self._objid, **extra}

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = connect(self._url, purpose="leader-lock", keepalives=1, keepalives_idle=5,
                           keepalives_interval=2, keepalives_count=3, tcp_user_timeout=10_000)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(SCHEMA)
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        self._held = False
        self.epoch = None
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _error(self, exc: psycopg.Error) -> StoreError:
        return StoreError(f"leader lock on {redact_url(self._url)}: {scrub(str(exc), self._url)}")

    def acquire(self) -> bool:
        """Take the lock if it is free, or if its holder's lease ran out (its session is ended first); True
        while this replica is the leader. Raises StoreError when PostgreSQL cannot be reached (then this
        replica is not the leader either). A replica that lost its session proves leadership again here,
        on a new session and under a new epoch, before it does anything else."""
        with self._lock:
            if self._held and self._verify_locked("acquire"):
                return True
            try:
                conn = self._connection()
                self._depose_expired(conn)
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                if row and row[0]:
                    got = conn.execute(
                        "INSERT INTO cluster_monitor_leader AS l (lock_key, epoch, holder, backend_pid, lease_seconds, "
                        "acquired_at, heartbeat_at) VALUES (%(key)s, 1, current_setting('application_name'), "
                        "pg_backend_pid(), %(lease)s, now(), now()) ON CONFLICT (lock_key) DO UPDATE SET "
                        "epoch = l.epoch + 1, holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid, "
                        "lease_seconds = EXCLUDED.lease_seconds, acquired_at = now(), heartbeat_at = now() "
                        "RETURNING epoch", self._args(lease=self.lease_seconds)).fetchone()
                    assert got is not None
                    self.epoch = int(got[0])
                    self._held = True
            except psycopg.Error as exc:
                self._drop()
                raise self._error(exc) from exc
            if self._held:
                log.info("leader_acquired", lock_key=self.key, epoch=self.epoch, lease_s=self.lease_seconds)
            return self._held

    def _depose_expired(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """End the session of a holder whose heartbeat (PostgreSQL's clock) is older than its lease. The
        row is locked while it is checked and the session ended, so a heartbeat cannot slip in between."""
        with conn.transaction():
            row = conn.execute(
                "SELECT l.backend_pid, l.epoch, l.holder, extract(epoch FROM now() - l.heartbeat_at) "
                "FROM cluster_monitor_leader l WHERE l.lock_key = %(key)s "
                "AND now() - l.heartbeat_at > make_interval(secs => l.lease_seconds) "
                "AND l.backend_pid <> pg_backend_pid() "
                "AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = l.backend_pid "
                "AND classid = %(classid)s AND objid = %(objid)s AND objsubid = 1) FOR UPDATE OF l",
                self._args()).fetchone()
            if row is None:
                return
            # Waits (up to 5 s) for the backend to exit, so the lock is free for the try that follows.
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (row[0],))
        log.warning("leader_deposed", lock_key=self.key, epoch=row[1], holder=row[2],
                    silent_s=round(float(row[3]), 1), lease_s=self.lease_seconds)

    def verify(self) -> bool:
        """Fencing and heartbeat: True only while the lock's session is alive, still holds the lock and
        its epoch is the current one; each True renews the lease."""
        with self._lock:
            return self._held and self._verify_locked("verify")

    def claim(self, outbox_id: int) -> bool:
        """The fence immediately before a send: in one statement on the lock's session, renew the lease
        and record that this epoch sends outbox entry `outbox_id`. False (and this replica steps down)
        unless the session is alive and leads under its epoch."""
        with self._lock:
            if not self._held:
                return False
            try:
                assert self._conn is not None
                row = self._conn.execute(
                    f"WITH beat AS ({_BEAT}) INSERT INTO cluster_monitor_sends AS s (lock_key, outbox_id, epoch, "
                    "first_epoch, claimed_at) SELECT %(key)s, %(outbox_id)s, epoch, epoch, now() FROM beat "
                    "ON CONFLICT (lock_key, outbox_id) DO UPDATE SET epoch = EXCLUDED.epoch, claims = s.claims + 1, "
                    "claimed_at = EXCLUDED.claimed_at RETURNING first_epoch, claims",
                    self._args(outbox_id=outbox_id)).fetchone()
                if row is not None:
                    if row[0] != self.epoch:  # an earlier leadership claimed it and never marked it sent
                        log.warning("notification_reclaimed", outbox_id=outbox_id, epoch=self.epoch,
                                    first_epoch=row[0], claims=row[1])
                    return True
                error = "the lock is no longer held under this epoch"
            except psycopg.Error as exc:
                error = scrub(str(exc), self._url)
            log.warning("leader_lost", lock_key=self.key, epoch=self.epoch, error=error, at="claim")
            self._drop()
            return False

    def prune_sends(self) -> int:
        """Forget this project's claims whose outbox entry is gone: retention deleted the sent notification,
        and without this the table keeps one row per notification forever. A claim of an entry still in the
        outbox (pending, failed, or sent and kept for its thread) stays, so a reclaim is still told."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                return 0
            try:
                with self._conn.transaction():
                    cur = self._conn.execute(sql.SQL(
                        "DELETE FROM cluster_monitor_sends s WHERE s.lock_key = %s "
                        "AND NOT EXISTS (SELECT 1 FROM {} o WHERE o.id = s.outbox_id)").format(self._outbox),
                        (self.key,))
                    return cur.rowcount
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    def _verify_locked(self, at: str) -> bool:
        try:
            if self._conn is not None and not self._conn.closed and \
                    self._conn.execute(_BEAT, self._args()).fetchone() is not None:
                return True
            error = "the lock is no longer held under this epoch"
        except psycopg.Error as exc:
            error = scrub(str(exc), self._url)
        log.warning("leader_lost", lock_key=self.key, epoch=self.epoch, error=error, at=at)
        self._drop()
        return False

    def release(self) -> None:
        """Step down: closing the session releases the lock, so a standby takes over at its next try."""
        with self._lock:
            self._drop()
