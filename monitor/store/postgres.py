"""PostgreSQL under the SQL store (monitor.store.sql): TIMESTAMPTZ times, one session that reconnects.

Every query is the SQL store's; this module gives it a session (monitor.store.pg), `%s` placeholders and
a lock that keeps replicas starting together from migrating the schema at once. Leader election over
the same database lives in monitor.store.leader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import psycopg
import structlog
from psycopg import sql

from monitor.store.pg import connect, redact_url
from monitor.store.schema import MIGRATIONS, Migration
from monitor.store.sql import SQLStore

log = structlog.get_logger()

# Replicas starting together would race on CREATE TABLE IF NOT EXISTS and on migrations: they run under
# this transaction-scoped advisory lock.
_SCHEMA_LOCK = 0x636C6D6F6E736368  # "clmonsch"


@lru_cache(maxsize=256)
def _placeholders(text: str) -> str:
    """`?` to psycopg's `%s`. The store's SQL has no `%` and no `?` inside literals; checked, not assumed."""
    if "%" in text:
        raise ValueError(f"a literal % in store SQL needs escaping for psycopg: {text[:80]}")
    return text.replace("?", "%s")


class PostgresStore(SQLStore):
    dialect = "postgres"
    contains_bytes = "position(?::bytea in payload) > 0"

    def __init__(self, url: str, *, schema: str | None = None,
                 migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        """`schema`: the PostgreSQL schema of the tables (one per extra project); created when missing."""
        super().__init__()
        self._url = url
        self._schema = schema
        self._params: dict[str, Any] = {"options": f"-c search_path={schema}"} if schema else {}
        self._conn = connect(url, purpose="store", **self._params)
        self._migrate(migrations)

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self._url)!r})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The session, opened again if PostgreSQL dropped it (a restart, a failover of the database)."""
        if self._conn.closed or self._conn.broken:
            log.warning("store_reconnect", url=redact_url(self._url))
            self._conn = connect(self._url, purpose="store", **self._params)
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
        with self._lock:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                yield cur

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()  # type: ignore[arg-type]

    def _sql(self, sql: str) -> str:
        return _placeholders(sql)

    def _lock_schema(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        if self._schema:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema)))

    def _to_db(self, dt: datetime) -> datetime:
        return dt.astimezone(UTC)

    def _from_db(self, value: Any) -> datetime:
        return value.astimezone(UTC)  # type: ignore[no-any-return]
