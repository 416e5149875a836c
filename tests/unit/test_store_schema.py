"""The schema version and its migrations, on SQLite (no server: the PostgreSQL twins are in test_store.py).

The state file under tests/data was written by main before the schema was versioned (tests/data/
state_v1.md); what every store read returned over it then is in state_v1_expected.json.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.store.base import StoreError
from monitor.store.schema import MIGRATIONS, TYPES, Migration
from monitor.store.sqlite import SQLiteStore
from tests.support.store_reads import DATA, V1, every_read, expected_v1, what_to_ask


def _old_copy(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite"
    shutil.copyfile(V1, path)
    return path


def _objects(path: Path) -> dict[str, str]:
    """Tables and indexes of a SQLite file, as their CREATE statements. Read-only and immutable, so reading
    the committed fixture leaves no -wal/-shm files beside it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return {str(n): re.sub(r"\s+", " ", str(s)) for n, s in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'schema_version'")}
    finally:
        conn.close()


def _added_later() -> set[str]:
    """Tables the migrations after the baseline create (an old state gains them, and nothing else changes)."""
    return {n for m in MIGRATIONS[1:] for n in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", m.sql)}


def _without_later(objects: dict[str, str]) -> dict[str, str]:
    return {n: sql for n, sql in objects.items() if n not in _added_later()}


def test_a_state_file_from_before_versioning_upgrades_in_place_and_reads_back_the_same(tmp_path: Path) -> None:
    path = _old_copy(tmp_path)
    before = _objects(path)
    store = SQLiteStore(path)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert every_read(store, what_to_ask(str(V1))) == expected_v1()
    finally:
        store.close()
    after = _objects(path)
    assert _without_later(after) == before, "stamping the old tables changed none of them"
    assert set(after) - set(before) == _added_later()
    # Opened again: nothing to do, the same answers.
    again = SQLiteStore(path)
    try:
        assert every_read(again, what_to_ask(str(V1))) == expected_v1()
    finally:
        again.close()


def test_a_new_state_has_exactly_the_tables_states_had_before_versioning(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "new.sqlite").close()
    fresh = _objects(tmp_path / "new.sqlite")
    assert _without_later(fresh) == _objects(V1) and set(fresh) - set(_objects(V1)) == _added_later()
    # PostgreSQL: the baseline, with its types, is the old PostgreSQL SCHEMA text word for word.
    old_pg = (DATA / "state_v1_postgres.sql").read_text()
    assert [" ".join(s.split()) for s in MIGRATIONS[0].statements("postgres")] == \
        [" ".join(s.split()) for s in old_pg.split(";") if s.strip()]
    assert set(TYPES) == {"sqlite", "postgres"}


def test_migrations_run_once_in_order_and_all_or_nothing(tmp_path: Path) -> None:
    path = _old_copy(tmp_path)
    n = len(MIGRATIONS)
    v2 = (*MIGRATIONS, Migration(n + 1, "a note on key-values", "ALTER TABLE kv ADD COLUMN note TEXT"))
    SQLiteStore(path, migrations=v2).close()
    # Applied once: a second run of the ALTER would fail on the duplicate column.
    store = SQLiteStore(path, migrations=v2)
    assert store.schema_version() == n + 1
    assert store.kv_get("discovery_cursor") == expected_v1()["kv"]["discovery_cursor"]
    store.close()

    broken = (*v2, Migration(n + 2, "half a change",
                             "CREATE TABLE extra (x INTEGER); ALTER TABLE nope ADD COLUMN y TEXT"))
    with pytest.raises(sqlite3.OperationalError, match="nope"):
        SQLiteStore(path, migrations=broken)
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        conn.close()
    assert "extra" not in tables and versions == list(range(1, n + 2)), "the failed migration left nothing behind"

    with pytest.raises(ValueError, match="numbered"):
        SQLiteStore(path, migrations=(*v2, Migration(n + 3, "a gap", "SELECT 1")))


def test_a_state_written_by_a_newer_version_is_refused_not_guessed_at(tmp_path: Path) -> None:
    path = _old_copy(tmp_path)
    n = len(MIGRATIONS)
    SQLiteStore(path, migrations=(*MIGRATIONS, Migration(n + 1, "newer", "CREATE TABLE newer (x INTEGER)"))).close()
    with pytest.raises(StoreError,
                       match=rf"newer cluster-monitor \(schema version {n + 1}; this one knows up to {n}\)"):
        SQLiteStore(path)


def test_run_metrics_are_part_of_the_run_transaction(tmp_path: Path) -> None:
    """Before, `run_metrics:{id}` was written ahead of the run's commit: a failed commit left them behind."""
    from monitor.store.base import ProcessedRun

    store = SQLiteStore(tmp_path / "s.sqlite")
    t = datetime(2026, 11, 1, tzinfo=UTC)

    def run(metrics: dict[str, float]) -> ProcessedRun:
        return ProcessedRun(run_id="r1", job_key="j", level="trace", window_end=t, emitted_at=t, event_uuid="u",
                            payload=b"{}", snapshots=[], alert_states=[], outbox=[], processed_at=t,
                            run_metrics=metrics)

    store.commit_run(run({"items": 10.0}))
    assert json.loads(store.kv_get("run_metrics:r1") or "") == {"items": 10.0}
    assert store.cluster_vectors("r1") == {}
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_run(run({"items": 99.0}))
    assert json.loads(store.kv_get("run_metrics:r1") or "") == {"items": 10.0}
    store.close()


def test_cluster_vectors_are_kept_with_their_run_and_pruned_with_it(tmp_path: Path) -> None:
    """Migration 3 (issue 15): the next run of a job reads the previous run's cluster means from here; only
    the newest run's are kept (earlier ones are never read again), and pruning a run takes its vectors."""
    from datetime import timedelta

    from monitor.store.base import ProcessedRun

    store = SQLiteStore(tmp_path / "s.sqlite")
    t = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(3):
        store.commit_run(ProcessedRun(
            run_id=f"r{i}", job_key="j", level="trace", window_end=t + timedelta(days=i), emitted_at=t,
            event_uuid="u", payload=b"{}", snapshots=[], alert_states=[], outbox=[], processed_at=t,
            cluster_vectors={0: b"\x00\x00\x80?" * 4, 3: bytes(8)}))
    assert store.cluster_vectors("r2") == {0: b"\x00\x00\x80?" * 4, 3: bytes(8)}
    assert store.cluster_vectors("r0") == store.cluster_vectors("r1") == {}
    store.prune(before=t + timedelta(days=5), keep_runs=1)
    assert store.cluster_vectors("r2")
    store.close()
