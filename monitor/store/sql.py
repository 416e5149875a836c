"""The state store in SQL, once for both databases: every query the monitor makes, written in the SQL
SQLite and PostgreSQL share (upserts, window functions, RETURNING), with `?` placeholders.

What differs per database is small and lives in its module: the connection and its transactions, how a
time is stored (ISO text in SQLite, TIMESTAMPTZ in PostgreSQL), the placeholder style, the column types
(monitor.store.schema) and one byte-search function. A processed run, its lineages, run metrics, alert
states and outbox rows are one transaction; notifications leave only from the outbox after it commits.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec

from monitor.store.base import (
    Acknowledgement,
    AlertState,
    ClusterSnapshot,
    OutboxEntry,
    ProcessedRun,
    PruneResult,
    RunFailure,
    StoreError,
)
from monitor.store.schema import MIGRATIONS, TYPES, VERSION_TABLE, Migration, check_order

RUN_METRICS_PREFIX = "run_metrics:"
# Rows per transaction when pruning: a cycle's store calls wait for one batch at most, never for a prune.
PRUNE_BATCH = 50
CURSOR_KEY = "discovery_cursor"
_FINGERPRINT = re.compile(rb'"fingerprint":"([^"]*)"')


def iso(dt: datetime) -> str:
    """A time as the text the store keeps in its key-values (and, in SQLite, in its columns)."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def stored_payload(blob: bytes) -> bytes:
    """Run payloads are stored as given. Rows written before that hold them zlib-compressed (SQLite until
    the digest format, PostgreSQL until the stores became one): a zlib stream's header is 0x78 then a byte
    that makes the pair a multiple of 31; a JSON payload starts with '{'. Compression stopped paying once
    the payload became the run's digest: item ids are random and shrink by ~40%, for more CPU at 200k
    items (compress now, decompress at the next run) than the diff; PostgreSQL compresses large values
    itself (TOAST)."""
    if len(blob) >= 2 and blob[0] == 0x78 and (blob[0] * 256 + blob[1]) % 31 == 0:
        return zlib.decompress(blob)
    return bytes(blob)


class SQLStore:
    """Everything but the connection. Subclasses set `dialect` and `contains_bytes` and implement the
    methods below that raise NotImplementedError."""

    dialect: ClassVar[str]
    # A condition true when the outbox row's payload contains the bytes bound to its placeholder.
    contains_bytes: ClassVar[str]

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- what each database does its own way -----------------------------------------------------------
    def close(self) -> None:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Any]:
        """One transaction, under the store's lock, yielding a DB-API cursor."""
        raise NotImplementedError

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement outside a transaction, under the store's lock."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        """The statement in the driver's placeholder style."""
        return sql

    def _to_db(self, dt: datetime) -> Any:
        raise NotImplementedError

    def _from_db(self, value: Any) -> datetime:
        raise NotImplementedError

    def _lock_schema(self, cur: Any) -> None:
        """Keep replicas that start together from migrating at once (a no-op where the transaction does)."""

    # --- helpers -----------------------------------------------------------------------------------------
    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._rows(self._sql(sql), args)

    def _exec(self, cur: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        return cur.execute(self._sql(sql), args)

    def _exec_many(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur.executemany(self._sql(sql), rows)

    def _opt_from_db(self, value: Any) -> datetime | None:
        return self._from_db(value) if value is not None and value != "" else None

    def _opt_to_db(self, dt: datetime | None) -> Any:
        return self._to_db(dt) if dt is not None else None

    # --- schema ------------------------------------------------------------------------------------------
    def _migrate(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        """Bring the state up to the newest migration, all in one transaction, or refuse a newer state."""
        check_order(migrations)
        with self._tx() as cur:
            self._lock_schema(cur)
            self._exec(cur, VERSION_TABLE.format(**TYPES[self.dialect]))
            row = self._exec(cur, "SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > len(migrations):
                raise StoreError(
                    f"the state was written by a newer cluster-monitor (schema version {current}; this one "
                    f"knows up to {len(migrations)}): upgrade cluster-monitor, or point state at a copy made "
                    "before the upgrade")
            for m in migrations[current:]:
                for stmt in m.statements(self.dialect):
                    self._exec(cur, stmt)
                self._exec(cur, "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                           (m.version, m.description, self._to_db(datetime.now(UTC))))

    def schema_version(self) -> int:
        row = self._all("SELECT MAX(version) FROM schema_version")
        return int(row[0][0]) if row and row[0][0] is not None else 0

    # --- runs ----------------------------------------------------------------------------------------------
    def is_processed(self, run_id: str) -> bool:
        return bool(self._all("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def processed_ids(self, run_ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        ids = list(run_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(r[0] for r in self._all(f"SELECT run_id FROM runs WHERE run_id IN ({marks})", chunk))
        return out

    def previous_run(self, job_key: str, before: datetime) -> tuple[str, bytes] | None:
        rows = self._all(
            "SELECT run_id, payload FROM runs WHERE job_key = ? AND window_end < ? "
            "ORDER BY window_end DESC LIMIT 1",
            (job_key, self._to_db(before)),
        )
        if not rows:
            return None
        return rows[0][0], stored_payload(rows[0][1])

    def lineages(self, run_id: str) -> dict[int, str]:
        return {int(c): str(lid) for c, lid in
                self._all("SELECT cluster_id, lineage_id FROM clusters WHERE run_id = ?", (run_id,))}

    _SNAP_COLS = "run_id, job_key, level, window_end, cluster_id, lineage_id, title, size, share, metrics"

    def cluster_vectors(self, run_id: str) -> dict[int, bytes]:
        """The run's cluster means as stored (empty when PostHog had none for it)."""
        return {int(r[0]): bytes(r[1]) for r in self._all(
            "SELECT cluster_id, vector FROM cluster_vectors WHERE run_id = ?", (run_id,))}

    def _snapshots(self, rows: list[tuple[Any, ...]]) -> list[ClusterSnapshot]:
        return [
            ClusterSnapshot(run_id=r[0], job_key=r[1], level=r[2], window_end=self._from_db(r[3]),
                            cluster_id=r[4], lineage_id=r[5], title=r[6], size=r[7], share=r[8],
                            metrics=msgspec.json.decode(r[9]))
            for r in rows
        ]

    def run_snapshots(self, run_id: str) -> list[ClusterSnapshot]:
        return self._snapshots(self._all(
            f"SELECT {self._SNAP_COLS} FROM clusters WHERE run_id = ? ORDER BY cluster_id", (run_id,)))

    def history(self, lineage_id: str, limit: int = 50) -> list[ClusterSnapshot]:
        rows = self._all(
            f"SELECT {self._SNAP_COLS} FROM clusters WHERE lineage_id = ? ORDER BY window_end DESC LIMIT ?",
            (lineage_id, limit),
        )
        return list(reversed(self._snapshots(rows)))

    def find_lineages(self, title_contains: str, limit: int = 20) -> list[str]:
        """Lineages whose most recent title contains the text (case-insensitive), newest first."""
        rows = self._all(
            "SELECT lineage_id, title FROM ("
            "  SELECT lineage_id, title, window_end,"
            "    ROW_NUMBER() OVER (PARTITION BY lineage_id ORDER BY window_end DESC) AS n"
            "  FROM clusters WHERE cluster_id != -1"
            ") latest WHERE n = 1 ORDER BY window_end DESC, lineage_id")
        needle = title_contains.lower()
        return [r[0] for r in rows if needle in str(r[1]).lower()][:limit]

    def lineage_history(self, job_key: str, before: datetime, runs: int) -> list[ClusterSnapshot]:
        """Snapshots of the last `runs` processed runs of a job before a time: baselines read these."""
        rows = self._all(
            f"SELECT {self._SNAP_COLS} FROM clusters WHERE run_id IN ("
            "  SELECT run_id FROM runs WHERE job_key = ? AND window_end < ? ORDER BY window_end DESC LIMIT ?"
            ") ORDER BY window_end, cluster_id",
            (job_key, self._to_db(before), runs),
        )
        return self._snapshots(rows)

    _STATE_COLS = ("fingerprint, status, kind, first_fired_at, last_fired_at, last_notified_at, last_run_id, "
                   "job_key, lineage_id, summary, streak")

    def _states(self, rows: list[tuple[Any, ...]]) -> dict[str, AlertState]:
        return {
            r[0]: AlertState(fingerprint=r[0], status=r[1], kind=r[2], first_fired_at=self._from_db(r[3]),
                             last_fired_at=self._from_db(r[4]), last_notified_at=self._opt_from_db(r[5]),
                             last_run_id=r[6], job_key=r[7], lineage_id=r[8], summary=r[9], streak=r[10])
            for r in rows
        }

    def alert_states(self, job_key: str) -> dict[str, AlertState]:
        return self._states(self._all(f"SELECT {self._STATE_COLS} FROM alert_state WHERE job_key = ?", (job_key,)))

    def firing_alerts(self) -> list[AlertState]:
        return list(self._states(self._all(
            f"SELECT {self._STATE_COLS} FROM alert_state WHERE status = 'firing' ORDER BY first_fired_at")).values())

    def commit_run(self, run: ProcessedRun) -> None:
        with self._tx() as cur:
            self._exec(
                cur,
                "INSERT INTO runs (run_id, job_key, level, window_end, emitted_at, event_uuid, payload, "
                "processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, run.job_key, run.level, self._to_db(run.window_end), self._to_db(run.emitted_at),
                 run.event_uuid, run.payload, self._to_db(run.processed_at)),
            )
            self._exec_many(
                cur,
                f"INSERT INTO clusters ({self._SNAP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, cluster_id) DO UPDATE SET job_key = excluded.job_key, "
                "level = excluded.level, window_end = excluded.window_end, lineage_id = excluded.lineage_id, "
                "title = excluded.title, size = excluded.size, share = excluded.share, metrics = excluded.metrics",
                [(s.run_id, s.job_key, s.level, self._to_db(s.window_end), s.cluster_id, s.lineage_id, s.title,
                  s.size, s.share, msgspec.json.encode(s.metrics).decode()) for s in run.snapshots],
            )
            if run.cluster_vectors:
                self._exec_many(
                    cur, "INSERT INTO cluster_vectors (run_id, cluster_id, vector) VALUES (?, ?, ?) "
                    "ON CONFLICT (run_id, cluster_id) DO UPDATE SET vector = excluded.vector",
                    [(run.run_id, cid, blob) for cid, blob in sorted(run.cluster_vectors.items())])
            # Only the next run of the job reads them: earlier runs' vectors go (50 clusters of 3,072
            # floats are 0.6 MB a run; a year of them per job would dwarf the rest of the state).
            self._exec(cur, "DELETE FROM cluster_vectors WHERE run_id IN (SELECT run_id FROM runs WHERE job_key = ? "
                            "AND window_end < ?)", (run.job_key, self._to_db(run.window_end)))
            if run.run_metrics is not None:
                # The history of run-level rules, read back with kv_get(f"run_metrics:{run_id}").
                self._kv_write(cur, RUN_METRICS_PREFIX + run.run_id, msgspec.json.encode(run.run_metrics).decode())
            self._write_alerts(cur, run.alert_states, run.outbox, run.processed_at)
            # Processed at last: its earlier failures (a retried quarantined run, say) are over.
            self._exec(cur, "DELETE FROM run_failures WHERE run_id = ?", (run.run_id,))

    def commit_alerts(self, states: Sequence[AlertState], outbox: Sequence[tuple[str, str, bytes]],
                      now: datetime) -> None:
        """Alert states and their notifications that belong to no run (stale sources), at once."""
        with self._tx() as cur:
            self._write_alerts(cur, states, outbox, now)

    def _write_alerts(self, cur: Any, states: Sequence[AlertState], outbox: Sequence[tuple[str, str, bytes]],
                      now: datetime) -> None:
        self._exec_many(
            cur,
            "INSERT INTO alert_state (fingerprint, status, kind, first_fired_at, last_fired_at, "
            "last_notified_at, last_run_id, job_key, lineage_id, summary, streak) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, kind = excluded.kind, "
            "first_fired_at = excluded.first_fired_at, last_fired_at = excluded.last_fired_at, "
            "last_notified_at = excluded.last_notified_at, last_run_id = excluded.last_run_id, "
            "job_key = excluded.job_key, lineage_id = excluded.lineage_id, summary = excluded.summary, "
            "streak = excluded.streak",
            [(a.fingerprint, a.status, a.kind, self._to_db(a.first_fired_at), self._to_db(a.last_fired_at),
              self._opt_to_db(a.last_notified_at), a.last_run_id, a.job_key, a.lineage_id, a.summary, a.streak)
             for a in states],
        )
        self._exec_many(
            cur,
            "INSERT INTO outbox (key, channel, payload, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, channel) DO NOTHING",
            [(key, channel, payload, self._to_db(now), self._to_db(now)) for key, channel, payload in outbox],
        )

    # --- runs that failed (poison runs) ------------------------------------------------------------------
    _FAIL_COLS = ("run_id, job_key, job_name, level, emitted_at, field, error, attempts, first_failed_at, "
                  "last_failed_at, next_attempt_at, quarantined_at")

    def record_run_failure(self, failure: RunFailure, states: Sequence[AlertState] = (),
                           outbox: Sequence[tuple[str, str, bytes]] = (), *, now: datetime) -> None:
        f = failure
        with self._tx() as cur:
            self._exec(
                cur,
                f"INSERT INTO run_failures ({self._FAIL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET job_key = excluded.job_key, job_name = excluded.job_name, "
                "level = excluded.level, emitted_at = excluded.emitted_at, field = excluded.field, "
                "error = excluded.error, attempts = excluded.attempts, first_failed_at = excluded.first_failed_at, "
                "last_failed_at = excluded.last_failed_at, next_attempt_at = excluded.next_attempt_at, "
                "quarantined_at = excluded.quarantined_at",
                (f.run_id, f.job_key, f.job_name, f.level, self._to_db(f.emitted_at), f.field, f.error[:2000],
                 f.attempts, self._to_db(f.first_failed_at), self._to_db(f.last_failed_at),
                 self._to_db(f.next_attempt_at), self._opt_to_db(f.quarantined_at)))
            self._write_alerts(cur, states, outbox, now)

    def run_failures(self, *, quarantined: bool | None = None) -> list[RunFailure]:
        where = {None: "", True: " WHERE quarantined_at IS NOT NULL", False: " WHERE quarantined_at IS NULL"}
        return [RunFailure(run_id=r[0], job_key=r[1], job_name=r[2], level=r[3], emitted_at=self._from_db(r[4]),
                           field=r[5], error=r[6], attempts=int(r[7]), first_failed_at=self._from_db(r[8]),
                           last_failed_at=self._from_db(r[9]), next_attempt_at=self._from_db(r[10]),
                           quarantined_at=self._opt_from_db(r[11]))
                for r in self._all(f"SELECT {self._FAIL_COLS} FROM run_failures{where[quarantined]} "
                                   "ORDER BY emitted_at, run_id")]

    def retry_run(self, run_id: str) -> RunFailure | None:
        gone = [f for f in self.run_failures() if f.run_id == run_id]
        if not gone:
            return None
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM run_failures WHERE run_id = ?", (run_id,))
            # Discovery looks from a little behind its cursor on: move it back so the run is found again.
            cursor = self._exec(cur, "SELECT value FROM kv WHERE key = ?", (CURSOR_KEY,)).fetchone()
            if cursor and datetime.fromisoformat(str(cursor[0])) > gone[0].emitted_at:
                self._kv_write(cur, CURSOR_KEY, iso(gone[0].emitted_at - timedelta(seconds=1)))
        return gone[0]

    def last_runs(self) -> dict[str, tuple[str, str, datetime]]:
        rows = self._all(
            "SELECT job_key, level, run_id, emitted_at FROM ("
            "  SELECT job_key, level, run_id, emitted_at,"
            "    ROW_NUMBER() OVER (PARTITION BY job_key ORDER BY emitted_at DESC) AS n FROM runs"
            ") newest WHERE n = 1")
        return {r[0]: (r[1], r[2], self._from_db(r[3])) for r in rows}

    # --- cursor and small values ------------------------------------------------------------------------
    def cursor(self) -> datetime | None:
        v = self.kv_get(CURSOR_KEY)
        return datetime.fromisoformat(v) if v else None

    def set_cursor(self, ts: datetime) -> None:
        self.kv_set(CURSOR_KEY, iso(ts))

    def kv_get(self, key: str) -> str | None:
        rows = self._all("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def kv_set(self, key: str, value: str) -> None:
        with self._tx() as cur:
            self._kv_write(cur, key, value)

    def first_use(self, key: str, now: datetime, forget_before: datetime) -> bool:
        namespace = key.split(":", 1)[0] + ":"
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM kv WHERE substr(key, 1, ?) = ? AND value < ?",
                       (len(namespace), namespace, iso(forget_before)))
            # The key is the table's primary key: of two replicas inserting it at once, one gets no row.
            row = self._exec(cur, "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING "
                                  "RETURNING key", (key, iso(now))).fetchone()
        return row is not None

    def _kv_write(self, cur: Any, key: str, value: str) -> None:
        self._exec(cur, "INSERT INTO kv (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # --- silences added from the CLI ---------------------------------------------------------------------
    def add_silence(self, spec: dict[str, Any], now: datetime) -> int:
        with self._tx() as cur:
            row = self._exec(cur, "INSERT INTO silences (spec, created_at) VALUES (?, ?) RETURNING id",
                             (msgspec.json.encode(spec).decode(), self._to_db(now))).fetchone()
            return int(row[0]) if row else 0

    def silences(self) -> list[tuple[int, dict[str, Any]]]:
        return [(int(r[0]), msgspec.json.decode(r[1])) for r in self._all("SELECT id, spec FROM silences ORDER BY id")]

    def remove_silence(self, silence_id: int) -> bool:
        with self._tx() as cur:
            return bool(self._exec(cur, "DELETE FROM silences WHERE id = ?", (silence_id,)).rowcount > 0)

    # --- acknowledgements (Slack's "Acknowledge" button, `cluster-monitor ack`) --------------------------
    def acknowledge(self, fingerprint: str, by: str, now: datetime, comment: str = "") -> None:
        with self._tx() as cur:
            self._exec(cur, "INSERT INTO acknowledgements (fingerprint, acked_by, comment, created_at) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET acked_by = excluded.acked_by, "
                            "comment = excluded.comment, created_at = excluded.created_at",
                       (fingerprint, by, comment, self._to_db(now)))

    def acknowledgements(self) -> list[Acknowledgement]:
        return [Acknowledgement(fingerprint=r[0], by=r[1], at=self._from_db(r[3]), comment=r[2]) for r in self._all(
            "SELECT fingerprint, acked_by, comment, created_at FROM acknowledgements ORDER BY created_at")]

    # --- outbox ------------------------------------------------------------------------------------------
    _OUT_COLS = ("id, key, channel, payload, status, attempts, next_attempt_at, last_error, created_at, sent_at, "
                 "thread_ts")

    def _entries(self, rows: list[tuple[Any, ...]]) -> list[OutboxEntry]:
        return [
            OutboxEntry(id=r[0], key=r[1], channel=r[2], payload=bytes(r[3]), status=r[4], attempts=r[5],
                        next_attempt_at=self._from_db(r[6]), last_error=r[7], created_at=self._from_db(r[8]),
                        sent_at=self._opt_from_db(r[9]), thread_ts=r[10])
            for r in rows
        ]

    def due_outbox(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        return self._entries(self._all(
            f"SELECT {self._OUT_COLS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY id LIMIT ?", (self._to_db(now), limit)))

    def outbox(self, status: str | None = None) -> list[OutboxEntry]:
        if status is None:
            return self._entries(self._all(f"SELECT {self._OUT_COLS} FROM outbox ORDER BY id"))
        return self._entries(self._all(
            f"SELECT {self._OUT_COLS} FROM outbox WHERE status = ? ORDER BY id", (status,)))

    def outbox_summary(self) -> dict[str, tuple[int, datetime | None]]:
        return {str(r[0]): (int(r[1]), self._opt_from_db(r[2])) for r in self._all(
            "SELECT status, COUNT(*), MIN(created_at) FROM outbox GROUP BY status")}

    def notices_sent(self, fingerprint: str) -> int:
        rows = self._all(f"SELECT COUNT(DISTINCT key) FROM outbox WHERE status = 'sent' AND {self.contains_bytes}",
                         (f'"fingerprint":"{fingerprint}"'.encode(),))
        return int(rows[0][0])

    def mark_sent(self, entry_id: int, now: datetime, thread_ts: str | None = None) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
                            "thread_ts = ?, last_error = NULL WHERE id = ?", (self._to_db(now), thread_ts, entry_id))

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: datetime) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                            "WHERE id = ?", (error[:2000], self._to_db(next_attempt_at), entry_id))

    def mark_failed(self, entry_id: int, error: str) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? "
                            "WHERE id = ?", (error[:2000], entry_id))

    def requeue_failed(self, now: datetime) -> int:
        """Failed notifications back to pending (after the token or channel is fixed); returns how many."""
        with self._tx() as cur:
            return int(self._exec(cur, "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                                       "WHERE status = 'failed'", (self._to_db(now),)).rowcount)

    def thread_for(self, channel: str, fingerprints: Sequence[str]) -> str | None:
        """The message id of the first sent notification on `channel` that carried one of `fingerprints`."""
        for fp in fingerprints:
            rows = self._all(
                "SELECT thread_ts FROM outbox WHERE channel = ? AND status = 'sent' AND thread_ts IS NOT NULL "
                f"AND {self.contains_bytes} ORDER BY id LIMIT 1", (channel, f'"fingerprint":"{fp}"'.encode()))
            if rows:
                return str(rows[0][0])
        return None

    # --- retention ---------------------------------------------------------------------------------------
    def prune(self, before: datetime, keep_runs: int, *, batch: int = PRUNE_BATCH) -> PruneResult:
        """Forget what is older than `before`, in transactions of `batch` rows, so a cycle running beside it
        waits for one batch at most. Never pruned: the newest `keep_runs` runs of each job (with their
        clusters and run metrics: what diffs, rules and stale-bound learning read), alert states still
        firing, notifications not sent yet (pending or failed), and a sent notification that carries the
        fingerprint of a remaining alert state (its resolution replies in that message's thread), and the
        acknowledgements of remaining alert states."""
        if keep_runs < 1:
            raise ValueError("keep_runs must be at least 1: the next run of a job diffs against the last one")
        cutoff = self._to_db(before)
        runs = clusters = outbox = 0
        while True:
            with self._tx() as cur:
                ids = [r[0] for r in self._exec(
                    cur,
                    "SELECT run_id FROM ("
                    "  SELECT run_id, window_end,"
                    "    ROW_NUMBER() OVER (PARTITION BY job_key ORDER BY window_end DESC) AS n FROM runs"
                    ") ranked WHERE n > ? AND window_end < ? ORDER BY window_end LIMIT ?",
                    (keep_runs, cutoff, batch)).fetchall()]
                if not ids:
                    break
                marks = ",".join("?" * len(ids))
                clusters += self._exec(cur, f"DELETE FROM clusters WHERE run_id IN ({marks})", ids).rowcount
                self._exec(cur, f"DELETE FROM cluster_vectors WHERE run_id IN ({marks})", ids)
                self._exec(cur, f"DELETE FROM kv WHERE key IN ({marks})", [RUN_METRICS_PREFIX + i for i in ids])
                runs += self._exec(cur, f"DELETE FROM runs WHERE run_id IN ({marks})", ids).rowcount
        with self._tx() as cur:
            alerts = int(self._exec(cur, "DELETE FROM alert_state WHERE status = 'resolved' AND last_fired_at < ?",
                                    (cutoff,)).rowcount)
            # An acknowledgement covers its alert's episode: gone with the alert's state.
            self._exec(cur, "DELETE FROM acknowledgements "
                            "WHERE fingerprint NOT IN (SELECT fingerprint FROM alert_state)")
        kept = {r[0].encode() for r in self._all("SELECT fingerprint FROM alert_state")}
        after = 0
        while True:
            with self._tx() as cur:
                rows = self._exec(cur, "SELECT id, payload FROM outbox WHERE status = 'sent' AND created_at < ? "
                                       "AND id > ? ORDER BY id LIMIT ?", (cutoff, after, batch)).fetchall()
                if not rows:
                    break
                after = int(rows[-1][0])
                gone = [int(r[0]) for r in rows if kept.isdisjoint(_FINGERPRINT.findall(bytes(r[1])))]
                if gone:
                    marks = ",".join("?" * len(gone))
                    outbox += self._exec(cur, f"DELETE FROM outbox WHERE id IN ({marks})", gone).rowcount
        return PruneResult(runs=runs, clusters=clusters, alert_states=alerts, notifications=outbox)

