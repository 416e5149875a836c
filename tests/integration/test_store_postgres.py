"""The store contract of tests/unit/test_store.py again, on PostgreSQL (a throw-away server on a free port), and each
extra project's state of its own on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import StateConfig
from monitor.store import open_store
from monitor.store.schema import MIGRATIONS

# The unit tier's store tests, collected here again where `opener` (below) opens PostgreSQL.
from tests.unit.test_poison_runs import (  # noqa: F401
    test_the_store_keeps_a_quarantine_with_its_alert_and_forgets_it_on_retry_or_success,
)
from tests.unit.test_store import (  # noqa: F401
    T0,
    Opener,
    _run,
    opening,
    test_a_one_time_token_is_used_once_across_openers_until_it_is_forgotten,
    test_a_prune_lets_a_cycle_commit_between_its_batches,
    test_commit_run_is_atomic,
    test_cursor_kv_and_silences,
    test_outbox_is_unique_per_key_and_channel_and_failures_requeue,
    test_outbox_lifecycle,
    test_previous_run_lineages_and_history_survive_reopen,
    test_retention_forgets_old_state_but_never_what_the_rules_and_threads_need,
    test_run_metrics_commit_with_their_run_or_not_at_all,
)


@pytest.fixture
def opener(postgres_url: str) -> Iterator[Opener]:
    yield from opening(StateConfig.model_validate({"url": postgres_url}))


def test_each_extra_project_has_a_state_of_its_own(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """`projects:` keeps cursors, runs and alert states apart: a file beside the main one on SQLite, a
    schema of its own on PostgreSQL, created on first use."""
    for base in (StateConfig.model_validate({"path": tmp_path / "s.sqlite"}),
                 StateConfig.model_validate({"url": request.getfixturevalue("postgres_url")})):
        main, extra = open_store(base), open_store(base.for_project(202))
        try:
            main.set_cursor(T0)
            main.commit_run(_run("r1", 1))
            assert extra.cursor() is None and not extra.is_processed("r1")
            extra.set_cursor(T0 + timedelta(days=3))
            assert main.cursor() == T0 and extra.cursor() == T0 + timedelta(days=3)
        finally:
            main.close()
            extra.close()
        again = open_store(base.for_project(202))
        assert again.cursor() == T0 + timedelta(days=3)
        again.close()
    assert (tmp_path / "s-202.sqlite").exists()


def test_a_postgres_database_from_before_versioning_upgrades_in_place(postgres_url: str) -> None:
    """The old PostgreSQL schema (tests/data/state_v1_postgres.sql), holding the rows of the old SQLite
    state file as the old PostgresStore wrote them (run payloads zlib-compressed), opened by this store."""
    import sqlite3
    import zlib

    import psycopg

    from tests.support.store_reads import DATA, V1, every_read, expected_v1, what_to_ask

    times = {"window_end", "emitted_at", "processed_at", "first_fired_at", "last_fired_at", "last_notified_at",
             "next_attempt_at", "created_at", "sent_at"}
    lite = sqlite3.connect(f"file:{V1}?mode=ro&immutable=1", uri=True)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute((DATA / "state_v1_postgres.sql").read_text().encode())
        for table in ("runs", "clusters", "alert_state", "outbox", "kv", "silences"):
            cur = lite.execute(f"SELECT * FROM {table}")
            cols = [c[0] for c in cur.description]
            for row in cur.fetchall():
                values: list[Any] = [datetime.fromisoformat(v) if c in times and v else v
                                     for c, v in zip(cols, row, strict=True)]
                if table == "runs":
                    values[cols.index("payload")] = zlib.compress(row[cols.index("payload")], 1)
                db.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                           values)
        for table in ("outbox", "silences"):  # as if the ids had come from the identity sequence
            db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    lite.close()

    store = open_store(StateConfig.model_validate({"url": postgres_url}))
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert every_read(store, what_to_ask(str(V1))) == expected_v1()
        assert store.add_silence({"kinds": ["mix_shift"]}, T0) == 2, "ids go on from the old ones"
    finally:
        store.close()


def test_retention_prunes_the_send_claims_with_the_sent_notifications(postgres_url: str) -> None:
    """`cluster_monitor_sends` has a row per notification sent: it goes with the pruned outbox row. Claims of
    entries still in the outbox stay (a reclaim is still told), and another project's claims (its outbox in
    a schema of its own, the same ids) are not touched."""
    import json

    import psycopg

    from monitor.config import parse_config
    from monitor.store import open_leadership
    from monitor.store.retention import prune_state

    doc = {"posthog": {"project_id": 1, "api_key": "k"}, "state": {"url": postgres_url, "retention_days": 30}}
    cfg = parse_config(json.dumps(doc), "c.yaml", env={})
    extra = cfg.model_copy(update={"state": cfg.state.for_project(2),
                                   "posthog": cfg.posthog.model_copy(update={"project_id": 2})})
    opened = [(c, open_store(c.state), open_leadership(c.state, c.posthog.project_id)) for c in (cfg, extra)]
    old, now = T0, T0 + timedelta(days=60)
    try:
        for _, store, leader in opened:
            assert leader.acquire()
            store.commit_alerts([], [("sent-old", "slack", b"{}"), ("sent-new", "slack", b"{}"),
                                     ("pending", "slack", b"{}")], old)
            by_key = {e.key: e.id for e in store.outbox()}
            assert all(leader.claim(i) for i in by_key.values())
            store.mark_sent(by_key["sent-old"], old)
        main_store, main_leader = opened[0][1], opened[0][2]
        with main_store._tx() as cur:  # type: ignore[attr-defined]
            cur.execute("UPDATE outbox SET created_at = %s WHERE key = 'sent-new'", (now,))
        main_store.mark_sent(next(e.id for e in main_store.outbox() if e.key == "sent-new"), now)

        result = prune_state(main_store, cfg, now, main_leader)

        assert result is not None and result.notifications == 1 and result.send_claims == 1
        ids = {e.key: e.id for e in main_store.outbox()}
        with psycopg.connect(postgres_url, autocommit=True) as db:
            claims = db.execute("SELECT lock_key, outbox_id FROM cluster_monitor_sends ORDER BY 1, 2").fetchall()
        keys = {c.posthog.project_id: leader.key for c, _, leader in opened}  # type: ignore[attr-defined]
        assert sorted(o for k, o in claims if k == keys[1]) == sorted([ids["sent-new"], ids["pending"]])
        assert len([o for k, o in claims if k == keys[2]]) == 3, "the other project's claims stay"
        assert prune_state(main_store, cfg, now, main_leader) == result.__class__(), "nothing twice"
    finally:
        for _, store, leader in opened:
            store.close()
            leader.release()
