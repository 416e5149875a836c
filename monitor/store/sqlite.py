"""SQLite under the SQL store (monitor.store.sql): one file, WAL journal, times as ISO-8601 text in UTC.

A SQLite state serves one replica: the daemon holds the file's lock (monitor.store.filelock) for its
life; CLI commands (outbox, silence, history) open the file beside it, as SQLite's WAL allows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.store.schema import MIGRATIONS, Migration
from monitor.store.sql import SQLStore, iso


class SQLiteStore(SQLStore):
    dialect = "sqlite"
    contains_bytes = "instr(payload, ?) > 0"

    def __init__(self, path: str | Path, *, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        super().__init__()
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        self._migrate(migrations)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        # IMMEDIATE: the write lock is taken at BEGIN, so two writers wait for each other (busy timeout)
        # instead of one failing at its first write.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn.cursor()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, args).fetchall())

    def _to_db(self, dt: datetime) -> str:
        return iso(dt)

    def _from_db(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)
