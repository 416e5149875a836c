"""The SQLite state store: one file, WAL journal, every run committed in one transaction."""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from monitor.store.base import Acknowledgement, AlertState, ClusterSnapshot, OutboxEntry, ProcessedRun

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job_key TEXT NOT NULL,
    level TEXT NOT NULL,
    window_end TEXT NOT NULL,
    emitted_at TEXT NOT NULL,
    event_uuid TEXT NOT NULL,
    payload BLOB NOT NULL,
    processed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job_key, window_end);
CREATE TABLE IF NOT EXISTS clusters (
    run_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    level TEXT NOT NULL,
    window_end TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    lineage_id TEXT NOT NULL,
    title TEXT NOT NULL,
    size INTEGER NOT NULL,
    share REAL NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, cluster_id)
);
CREATE INDEX IF NOT EXISTS clusters_lineage ON clusters (lineage_id, window_end);
CREATE INDEX IF NOT EXISTS clusters_job ON clusters (job_key, window_end);
CREATE TABLE IF NOT EXISTS alert_state (
    fingerprint TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_fired_at TEXT NOT NULL,
    last_fired_at TEXT NOT NULL,
    last_notified_at TEXT,
    last_run_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    lineage_id TEXT,
    summary TEXT NOT NULL,
    streak INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alert_state_job ON alert_state (job_key);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    thread_ts TEXT,
    UNIQUE (key, channel)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acknowledgements (
    fingerprint TEXT PRIMARY KEY,
    acked_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _req_dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _payload(blob: bytes) -> bytes:
    """Run payloads are stored as given. Rows written before that hold them zlib-compressed: a zlib
    stream's header is 0x78 then a byte that makes the pair a multiple of 31; a JSON payload starts with
    '{'. Compression stopped paying once the payload became the run's digest: item ids are random and
    shrink by ~40%, for more CPU at 200k items (compress now, decompress at the next run) than the diff."""
    if len(blob) >= 2 and blob[0] == 0x78 and (blob[0] * 256 + blob[1]) % 31 == 0:
        return zlib.decompress(blob)
    return bytes(blob)


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, args).fetchall())

    # --- runs ----------------------------------------------------------------------------------------
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
            (job_key, _ts(before)),
        )
        if not rows:
            return None
        return rows[0][0], _payload(rows[0][1])

    def lineages(self, run_id: str) -> dict[int, str]:
        return {int(c): str(lid) for c, lid in
                self._all("SELECT cluster_id, lineage_id FROM clusters WHERE run_id = ?", (run_id,))}

    def _snapshots(self, rows: list[tuple[Any, ...]]) -> list[ClusterSnapshot]:
        return [
            ClusterSnapshot(run_id=r[0], job_key=r[1], level=r[2], window_end=_req_dt(r[3]), cluster_id=r[4],
                            lineage_id=r[5], title=r[6], size=r[7], share=r[8],
                            metrics=msgspec.json.decode(r[9]))
            for r in rows
        ]

    _SNAP_COLS = "run_id, job_key, level, window_end, cluster_id, lineage_id, title, size, share, metrics"

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
            "SELECT lineage_id, title, MAX(window_end) AS last FROM clusters WHERE cluster_id != -1 "
            "GROUP BY lineage_id ORDER BY last DESC")
        needle = title_contains.lower()
        return [r[0] for r in rows if needle in str(r[1]).lower()][:limit]

    def lineage_history(self, job_key: str, before: datetime, runs: int) -> list[ClusterSnapshot]:
        """Snapshots of the last `runs` processed runs of a job before a time: baselines read these."""
        rows = self._all(
            f"SELECT {self._SNAP_COLS} FROM clusters WHERE run_id IN ("
            "  SELECT run_id FROM runs WHERE job_key = ? AND window_end < ? ORDER BY window_end DESC LIMIT ?"
            ") ORDER BY window_end",
            (job_key, _ts(before), runs),
        )
        return self._snapshots(rows)

    _STATE_COLS = ("fingerprint, status, kind, first_fired_at, last_fired_at, last_notified_at, last_run_id, "
                   "job_key, lineage_id, summary, streak")

    def _states(self, rows: list[tuple[Any, ...]]) -> dict[str, AlertState]:
        return {
            r[0]: AlertState(fingerprint=r[0], status=r[1], kind=r[2], first_fired_at=_req_dt(r[3]),
                             last_fired_at=_req_dt(r[4]), last_notified_at=_dt(r[5]), last_run_id=r[6],
                             job_key=r[7], lineage_id=r[8], summary=r[9], streak=r[10])
            for r in rows
        }

    def alert_states(self, job_key: str) -> dict[str, AlertState]:
        return self._states(self._all(f"SELECT {self._STATE_COLS} FROM alert_state WHERE job_key = ?", (job_key,)))

    def firing_alerts(self) -> list[AlertState]:
        return list(self._states(self._all(
            f"SELECT {self._STATE_COLS} FROM alert_state WHERE status = 'firing' ORDER BY first_fired_at")).values())

    def commit_run(self, run: ProcessedRun) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (run_id, job_key, level, window_end, emitted_at, event_uuid, payload, "
                "processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, run.job_key, run.level, _ts(run.window_end), _ts(run.emitted_at), run.event_uuid,
                 run.payload, _ts(run.processed_at)),
            )
            c.executemany(
                f"INSERT OR REPLACE INTO clusters ({self._SNAP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.run_id, s.job_key, s.level, _ts(s.window_end), s.cluster_id, s.lineage_id, s.title, s.size,
                  s.share, msgspec.json.encode(s.metrics).decode()) for s in run.snapshots],
            )
            self._write_alerts(c, run.alert_states, run.outbox, run.processed_at)

    def commit_alerts(self, states: Sequence[AlertState], outbox: Sequence[tuple[str, str, bytes]],
                      now: datetime) -> None:
        """Alert states and their notifications that belong to no run (stale sources), at once."""
        with self._tx() as c:
            self._write_alerts(c, states, outbox, now)

    @staticmethod
    def _write_alerts(c: sqlite3.Connection, states: Sequence[AlertState], outbox: Sequence[tuple[str, str, bytes]],
                      now: datetime) -> None:
        c.executemany(
            "INSERT OR REPLACE INTO alert_state (fingerprint, status, kind, first_fired_at, last_fired_at, "
            "last_notified_at, last_run_id, job_key, lineage_id, summary, streak) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(a.fingerprint, a.status, a.kind, _ts(a.first_fired_at), _ts(a.last_fired_at),
              _ts(a.last_notified_at) if a.last_notified_at else None, a.last_run_id, a.job_key,
              a.lineage_id, a.summary, a.streak) for a in states],
        )
        c.executemany(
            "INSERT OR IGNORE INTO outbox (key, channel, payload, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(key, channel, payload, _ts(now), _ts(now)) for key, channel, payload in outbox],
        )

    def last_runs(self) -> dict[str, tuple[str, str, datetime]]:
        rows = self._all(
            "SELECT job_key, level, run_id, max(emitted_at) FROM runs GROUP BY job_key")
        return {r[0]: (r[1], r[2], _req_dt(r[3])) for r in rows}

    # --- cursor and small values ----------------------------------------------------------------------
    def cursor(self) -> datetime | None:
        v = self.kv_get("discovery_cursor")
        return _dt(v)

    def set_cursor(self, ts: datetime) -> None:
        self.kv_set("discovery_cursor", _ts(ts))

    def kv_get(self, key: str) -> str | None:
        rows = self._all("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def kv_set(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    # --- silences added from the CLI -------------------------------------------------------------------
    def add_silence(self, spec: dict[str, Any], now: datetime) -> int:
        with self._tx() as c:
            cur = c.execute("INSERT INTO silences (spec, created_at) VALUES (?, ?)",
                            (msgspec.json.encode(spec).decode(), _ts(now)))
            return int(cur.lastrowid or 0)

    def silences(self) -> list[tuple[int, dict[str, Any]]]:
        return [(int(r[0]), msgspec.json.decode(r[1])) for r in self._all("SELECT id, spec FROM silences ORDER BY id")]

    def remove_silence(self, silence_id: int) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM silences WHERE id = ?", (silence_id,)).rowcount > 0

    # --- acknowledgements (Slack's "Acknowledge" button, `cluster-monitor ack`) ----------------------
    def acknowledge(self, fingerprint: str, by: str, now: datetime, comment: str = "") -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO acknowledgements (fingerprint, acked_by, comment, created_at) "
                      "VALUES (?, ?, ?, ?)", (fingerprint, by, comment, _ts(now)))

    def acknowledgements(self) -> list[Acknowledgement]:
        return [Acknowledgement(fingerprint=r[0], by=r[1], at=_req_dt(r[3]), comment=r[2]) for r in self._all(
            "SELECT fingerprint, acked_by, comment, created_at FROM acknowledgements ORDER BY created_at")]

    # --- outbox --------------------------------------------------------------------------------------
    _OUT_COLS = ("id, key, channel, payload, status, attempts, next_attempt_at, last_error, created_at, sent_at, "
                 "thread_ts")

    def _entries(self, rows: list[tuple[Any, ...]]) -> list[OutboxEntry]:
        return [
            OutboxEntry(id=r[0], key=r[1], channel=r[2], payload=bytes(r[3]), status=r[4], attempts=r[5],
                        next_attempt_at=_req_dt(r[6]), last_error=r[7], created_at=_req_dt(r[8]),
                        sent_at=_dt(r[9]), thread_ts=r[10])
            for r in rows
        ]

    def due_outbox(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        return self._entries(self._all(
            f"SELECT {self._OUT_COLS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY id LIMIT ?", (_ts(now), limit)))

    def outbox(self, status: str | None = None) -> list[OutboxEntry]:
        if status is None:
            return self._entries(self._all(f"SELECT {self._OUT_COLS} FROM outbox ORDER BY id"))
        return self._entries(self._all(
            f"SELECT {self._OUT_COLS} FROM outbox WHERE status = ? ORDER BY id", (status,)))

    def outbox_summary(self) -> dict[str, tuple[int, datetime | None]]:
        return {str(r[0]): (int(r[1]), _dt(r[2])) for r in self._all(
            "SELECT status, COUNT(*), MIN(created_at) FROM outbox GROUP BY status")}

    def notices_sent(self, fingerprint: str) -> int:
        rows = self._all("SELECT COUNT(DISTINCT key) FROM outbox WHERE status = 'sent' AND instr(payload, ?) > 0",
                         (f'"fingerprint":"{fingerprint}"'.encode(),))
        return int(rows[0][0])

    def mark_sent(self, entry_id: int, now: datetime, thread_ts: str | None = None) -> None:
        with self._tx() as c:
            c.execute("UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, thread_ts = ?, "
                      "last_error = NULL WHERE id = ?", (_ts(now), thread_ts, entry_id))

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: datetime) -> None:
        with self._tx() as c:
            c.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                      "WHERE id = ?", (error[:2000], _ts(next_attempt_at), entry_id))

    def thread_for(self, channel: str, fingerprints: Sequence[str]) -> str | None:
        """The message id of the first sent notification on `channel` that carried one of `fingerprints`."""
        for fp in fingerprints:
            rows = self._all(
                "SELECT thread_ts FROM outbox WHERE channel = ? AND status = 'sent' AND thread_ts IS NOT NULL "
                "AND instr(payload, ?) > 0 ORDER BY id LIMIT 1", (channel, f'"fingerprint":"{fp}"'.encode()))
            if rows:
                return str(rows[0][0])
        return None

    def requeue_failed(self, now: datetime) -> int:
        """Failed notifications back to pending (after the token or channel is fixed); returns how many."""
        with self._tx() as c:
            cur = c.execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                            "WHERE status = 'failed'", (_ts(now),))
            return cur.rowcount

    def mark_failed(self, entry_id: int, error: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
                      (error[:2000], entry_id))
