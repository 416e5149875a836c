"""The store contract on SQLite: a run and everything it decided land together, or not at all (the same tests
run on PostgreSQL in tests/integration/test_store_postgres.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import StateConfig
from monitor.store import open_store
from monitor.store.base import AlertState, ClusterSnapshot, ProcessedRun, Store

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)

Opener = Callable[[], Store]


def opening(state: StateConfig) -> Iterator[Opener]:
    """Opens the same store (again) as often as asked; every store it opened is closed after."""
    opened: list[Store] = []

    def open_() -> Store:
        opened.append(open_store(state))
        return opened[-1]

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def opener(tmp_path: Path) -> Iterator[Opener]:
    """SQLite here; tests/integration/test_store_postgres.py runs the same tests on PostgreSQL."""
    yield from opening(StateConfig.model_validate({"path": tmp_path / "s.sqlite"}))


def _run(run_id: str, day: int, *, outbox: int = 1) -> ProcessedRun:
    we = T0 + timedelta(days=day)
    snaps = [ClusterSnapshot(run_id=run_id, job_key="j|trace", level="trace", window_end=we, cluster_id=0,
                             lineage_id="L0", title=f"Refunds day {day}", size=100, share=0.5,
                             metrics={"total_cost": 1.5 * (day + 1), "avg_cost": 0.01, "error_rate": 0.02})]
    states = [AlertState(fingerprint=f"fp{day}", status="firing", kind="error_rate", first_fired_at=we,
                         last_fired_at=we, last_notified_at=we, last_run_id=run_id, job_key="j|trace",
                         lineage_id="L0", summary="x")]
    return ProcessedRun(run_id=run_id, job_key="j|trace", level="trace", window_end=we, emitted_at=we,
                        event_uuid=f"u{day}", payload=b'{"run":"' + run_id.encode() + b'"}', snapshots=snaps,
                        alert_states=states, outbox=[(f"run:{run_id}", "slack", b"{}")] * outbox,
                        processed_at=we)


def test_commit_run_is_atomic(opener: Opener) -> None:
    store = opener()
    store.commit_run(_run("r1", 0))
    with pytest.raises(Exception):  # noqa: B017 - the same run twice violates the primary key
        store.commit_run(_run("r1", 0))
    assert store.processed_ids(["r1", "r2"]) == {"r1"}
    assert len(store.outbox()) == 1, "the failed second commit left nothing behind"
    # The store is still usable after the failed transaction.
    store.commit_run(_run("r2", 1))
    assert store.processed_ids(["r1", "r2"]) == {"r1", "r2"}


def test_previous_run_lineages_and_history_survive_reopen(opener: Opener) -> None:
    store = opener()
    for day in range(3):
        store.commit_run(_run(f"r{day}", day))
    store.close()
    store = opener()
    prev = store.previous_run("j|trace", before=T0 + timedelta(days=2))
    assert prev is not None and prev[0] == "r1" and prev[1] == b'{"run":"r1"}'
    assert store.previous_run("j|trace", before=T0) is None
    assert store.lineages("r2") == {0: "L0"}
    hist = store.history("L0")
    assert [s.run_id for s in hist] == ["r0", "r1", "r2"]
    assert hist[-1].metrics["total_cost"] == pytest.approx(4.5)
    assert hist[-1].window_end == T0 + timedelta(days=2)
    assert store.find_lineages("refunds") == ["L0"]
    assert store.find_lineages("day 2") == ["L0"] and store.find_lineages("day 1") == []
    assert [s.run_id for s in store.lineage_history("j|trace", before=T0 + timedelta(days=2), runs=1)] == ["r1"]
    assert set(store.alert_states("j|trace")) == {"fp0", "fp1", "fp2"}
    assert store.alert_states("j|trace")["fp2"].last_notified_at == T0 + timedelta(days=2)
    assert store.last_runs() == {"j|trace": ("trace", "r2", T0 + timedelta(days=2))}


def test_outbox_lifecycle(opener: Opener) -> None:
    store = opener()
    store.commit_run(_run("r1", 0))
    [entry] = store.due_outbox(T0)
    store.mark_retry(entry.id, "HTTP 500", T0 + timedelta(seconds=30))
    assert store.due_outbox(T0 + timedelta(seconds=10)) == []
    [again] = store.due_outbox(T0 + timedelta(seconds=31))
    assert again.attempts == 1 and again.last_error == "HTTP 500"
    store.mark_sent(again.id, T0 + timedelta(seconds=31), thread_ts="123.456")
    assert store.due_outbox(T0 + timedelta(days=1)) == []
    assert [e.status for e in store.outbox("sent")] == ["sent"]
    assert store.thread_for("slack", ["nope"]) is None


def test_outbox_is_unique_per_key_and_channel_and_failures_requeue(opener: Opener) -> None:
    store = opener()
    store.commit_alerts([], [("k", "slack", b'{"fingerprint":"fpX"}'), ("k", "email", b"{}")], T0)
    store.commit_alerts([], [("k", "slack", b"{}")], T0)
    assert sorted(e.channel for e in store.outbox()) == ["email", "slack"]
    slack = next(e for e in store.outbox() if e.channel == "slack")
    store.mark_sent(slack.id, T0, thread_ts="1.2")
    assert store.thread_for("slack", ["fpX"]) == "1.2"
    email = next(e for e in store.outbox() if e.channel == "email")
    store.mark_failed(email.id, "550 no such user")
    assert store.requeue_failed(T0) == 1
    assert [e.channel for e in store.due_outbox(T0)] == ["email"]


def test_cursor_kv_and_silences(opener: Opener) -> None:
    store = opener()
    assert store.cursor() is None
    store.set_cursor(T0)
    assert store.cursor() == T0
    store.kv_set("a", "1")
    store.kv_set("a", "2")
    assert store.kv_get("a") == "2" and store.kv_get("b") is None
    sid = store.add_silence({"kinds": ["share_shift"]}, T0)
    assert store.silences() == [(sid, {"kinds": ["share_shift"]})]
    assert store.remove_silence(sid) and not store.remove_silence(sid)
