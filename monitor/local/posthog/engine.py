"""The local PostHog's data: an `events` table on a real ClickHouse engine (chdb, in-process).

Queries reach it only after monitor.local.posthog.hogql has parsed them with PostHog's own parser and
printed ClickHouse SQL from the AST, so a query PostHog would reject is rejected here too. Visibility
follows a virtual clock: an event exists for the API only once the clock has passed its timestamp,
which is how the demo, the tests and the latency benchmark make runs "land" on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from monitor.local.posthog.hogql import CompiledQuery, HogQLError, compile_hogql, quote_string
from monitor.local.posthog.hogql_functions import Release

EventRow = tuple[str, str, str, str, str, int]


@dataclass(frozen=True)
class QueryAnswer:
    columns: list[str]
    types: list[list[str]]
    results: list[list[Any]]
    has_more: bool
    limit: int
    sql: str


class VirtualClock:
    """Time as the local PostHog sees it; None means 'no limit' (every event is visible)."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now
        self._lock = threading.Lock()

    def now(self) -> datetime | None:
        with self._lock:
            return self._now

    def set(self, now: datetime | None) -> None:
        with self._lock:
            self._now = now


class _Compact(msgspec.Struct):
    meta: list[dict[str, str]]
    data: list[list[Any]]


class Engine:
    """One chdb session holding PostHog's `events` table; queries are serialised (chdb is one engine).

    chdb runs one ClickHouse per process: every Session sees the same databases. So there is one Engine
    per process (`Engine.shared()`), and separate servers or tests keep apart by team id, as PostHog does.
    """

    _shared: Engine | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> Engine:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self) -> None:
        from chdb import session

        self._session = session.Session()
        self._lock = threading.Lock()
        self._q("SET output_format_json_quote_64bit_integers = 0")
        self._q("CREATE DATABASE IF NOT EXISTS ph")
        self._q(
            "CREATE TABLE IF NOT EXISTS ph.events (uuid UUID, event String, distinct_id String, "
            "properties String, timestamp DateTime64(6, 'UTC'), team_id Int64) "
            "ENGINE = MergeTree ORDER BY (team_id, event, timestamp)"
        )
        # PostHog's document embeddings (HogQL `raw_document_embeddings`: RawDocumentEmbeddingsTable in
        # posthog/hogql/database/schema/document_embeddings.py, fields DOCUMENT_EMBEDDINGS_FIELDS there,
        # printed as the union view posthog_document_embeddings_union_view over per-model tables).
        self._q(
            "CREATE TABLE IF NOT EXISTS ph.document_embeddings (team_id Int64, product String, "
            "document_type String, model_name String, rendering String, document_id String, "
            "timestamp DateTime64(6, 'UTC'), inserted_at DateTime64(6, 'UTC'), content String, metadata String, "
            "embedding Array(Float64)) ENGINE = MergeTree ORDER BY (team_id, product, document_type, timestamp)"
        )

    def _q(self, sql: str, fmt: str = "CSV") -> bytes:
        with self._lock:
            res = self._session.query(sql, fmt)
        data: bytes = res.bytes() if res is not None else b""
        return data

    def insert(self, rows: Sequence[EventRow]) -> None:
        """Bulk insert through Arrow: 200k events load in well under a second."""
        if not rows:
            return
        import pyarrow as pa

        cols = list(zip(*rows, strict=True))
        string = pa.string()
        tbl = pa.table({  # noqa: F841 - read by name by chdb's Python() table function
            "uuid": pa.array(cols[0], string), "event": pa.array(cols[1], string),
            "distinct_id": pa.array(cols[2], string), "properties": pa.array(cols[3], string),
            "timestamp": pa.array(cols[4], string), "team_id": pa.array(cols[5], pa.int64()),
        })
        with self._lock:
            # chdb's Python() table function finds `tbl` by name in this frame. Timestamps arrive in one
            # fixed format, so the strict parser is used (three times faster than BestEffort).
            self._session.query(
                "INSERT INTO ph.events SELECT toUUID(uuid), event, distinct_id, properties, "
                "toDateTime64(timestamp, 6, 'UTC'), team_id FROM Python(tbl)"
            )

    def insert_embeddings(self, team_id: int, table: Any) -> None:
        """A generator.EmbeddingTable's rows for one project, through Arrow as events are."""
        if not len(table):
            return
        import pyarrow as pa

        n = len(table)
        string = pa.string()
        flat = pa.array(table.vectors.astype("float64").ravel(), pa.float64())
        offsets = pa.array([i * table.vectors.shape[1] for i in range(n + 1)], pa.int32())
        tbl = pa.table({  # noqa: F841 - read by name by chdb's Python() table function
            "product": pa.array([table.product] * n, string), "document_type": pa.array(table.document_type, string),
            "model_name": pa.array([table.model_name] * n, string), "rendering": pa.array(table.rendering, string),
            "document_id": pa.array(table.document_id, string), "timestamp": pa.array(table.timestamp, string),
            "inserted_at": pa.array(table.inserted_at, string), "content": pa.array(table.content, string),
            "metadata": pa.array(table.metadata, string), "embedding": pa.ListArray.from_arrays(offsets, flat),
        })
        with self._lock:
            self._session.query(
                f"INSERT INTO ph.document_embeddings SELECT {int(team_id)}, product, document_type, model_name, "
                "rendering, document_id, toDateTime64(timestamp, 6, 'UTC'), toDateTime64(inserted_at, 6, 'UTC'), "
                "content, metadata, embedding FROM Python(tbl)"
            )

    def embeddings_source(self, team_id: int, now: datetime | None, timezone: str = "UTC") -> str:
        """The SELECT that stands in for `raw_document_embeddings`: one team, rows the clock has reached
        (by `inserted_at`), datetimes in the project's timezone as for events."""
        cond = f"team_id = {int(team_id)}"
        if now is not None:
            stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            cond += f" AND d.inserted_at <= toDateTime64('{stamp}', 6, 'UTC')"
        tz = quote_string(timezone)
        return ("SELECT d.product AS product, d.document_type AS document_type, d.model_name AS model_name, "
                "d.rendering AS rendering, d.document_id AS document_id, "
                f"toTimeZone(d.timestamp, {tz}) AS timestamp, toTimeZone(d.inserted_at, {tz}) AS inserted_at, "
                "d.content AS content, d.metadata AS metadata, d.embedding AS embedding "
                f"FROM ph.document_embeddings AS d WHERE {cond}")

    def count(self, team_id: int | None = None) -> int:
        where = "" if team_id is None else f" WHERE team_id = {int(team_id)}"
        return int(self._q(f"SELECT count() FROM ph.events{where}").strip() or 0)

    def source(self, team_id: int, now: datetime | None, timezone: str = "UTC") -> str:
        """The SELECT that stands in for `events`: one team, only what the clock has reached, and
        `timestamp` in the project's timezone, as PostHog's printer wraps `events.timestamp` in
        `toTimeZone(..., <team timezone>)` (posthog/hogql/printer.py): selecting it or `toString` of it
        gives project wall-clock time without an offset, and datetime text compared with it is read there."""
        cond = f"team_id = {int(team_id)}"
        if now is not None:
            stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            cond += f" AND e.timestamp <= toDateTime64('{stamp}', 6, 'UTC')"
        tz = quote_string(timezone)
        return (f"SELECT e.uuid AS uuid, e.event AS event, e.distinct_id AS distinct_id, e.properties AS properties, "
                f"toTimeZone(e.timestamp, {tz}) AS timestamp, e.team_id AS team_id FROM ph.events AS e WHERE {cond}")

    def run_hogql(self, query: str, values: dict[str, Any] | None, *, team_id: int,
                  now: datetime | None, timezone: str = "UTC", release: Release = "current",
                  embeddings: bool = True) -> QueryAnswer:
        """`embeddings`: whether this PostHog knows `raw_document_embeddings` (older releases do not)."""
        tables = {"raw_document_embeddings": self.embeddings_source(team_id, now, timezone)} if embeddings else {}
        compiled: CompiledQuery = compile_hogql(query, values, events_source=self.source(team_id, now, timezone),
                                                timezone=timezone, release=release, tables=tables)
        with self._lock:
            try:
                res = self._session.query(compiled.sql, "JSONCompact")
            except Exception as exc:  # chdb raises its own ChdbError for any ClickHouse error
                raise HogQLError(_clean_error(str(exc))) from exc
        raw = res.bytes()
        if not raw:
            raise HogQLError("the query returned no result set")
        doc = msgspec.json.decode(raw, type=_Compact)
        rows = doc.data
        has_more = len(rows) > compiled.limit
        return QueryAnswer(
            columns=[m["name"] for m in doc.meta],
            types=[[m["name"], m["type"]] for m in doc.meta],
            results=rows[: compiled.limit],
            has_more=has_more,
            limit=compiled.limit,
            sql=compiled.sql,
        )


def _clean_error(message: str) -> str:
    """ClickHouse errors carry the printed SQL and internal names; keep the reason, as PostHog does."""
    first = message.strip().splitlines()[0] if message.strip() else "query failed"
    first = first.split(" In scope ")[0]
    return first[:500]
