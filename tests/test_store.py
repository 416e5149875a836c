"""The SQLite store: a run and everything it decided land together, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.store.base import AlertState, ClusterSnapshot, ProcessedRun
from monitor.store.sqlite import SQLiteStore

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


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


def test_commit_run_is_atomic(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.commit_run(_run("r1", 0))
    with pytest.raises(Exception):  # noqa: B017 - the same run twice violates the primary key
        store.commit_run(_run("r1", 0))
    assert store.processed_ids(["r1", "r2"]) == {"r1"}
    assert len(store.outbox()) == 1, "the failed second commit left nothing behind"
    store.close()


def test_previous_run_lineages_and_history_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SQLiteStore(path)
    for day in range(3):
        store.commit_run(_run(f"r{day}", day))
    store.close()
    store = SQLiteStore(path)
    prev = store.previous_run("j|trace", before=T0 + timedelta(days=2))
    assert prev is not None and prev[0] == "r1" and prev[1] == b'{"run":"r1"}'
    assert store.previous_run("j|trace", before=T0) is None
    assert store.lineages("r2") == {0: "L0"}
    hist = store.history("L0")
    assert [s.run_id for s in hist] == ["r0", "r1", "r2"]
    assert hist[-1].metrics["total_cost"] == pytest.approx(4.5)
    assert store.find_lineages("refunds") == ["L0"]
    assert set(store.alert_states("j|trace")) == {"fp0", "fp1", "fp2"}
    store.close()


def test_outbox_lifecycle(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.commit_run(_run("r1", 0))
    [entry] = store.due_outbox(T0)
    store.mark_retry(entry.id, "HTTP 500", T0 + timedelta(seconds=30))
    assert store.due_outbox(T0 + timedelta(seconds=10)) == []
    [again] = store.due_outbox(T0 + timedelta(seconds=31))
    assert again.attempts == 1 and again.last_error == "HTTP 500"
    store.mark_sent(again.id, T0 + timedelta(seconds=31), thread_ts="123.456")
    assert store.due_outbox(T0 + timedelta(days=1)) == []
    assert [e.status for e in store.outbox("sent")] == ["sent"]
    store.close()


def test_cursor_roundtrip(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    assert store.cursor() is None
    store.set_cursor(T0)
    assert store.cursor() == T0
    store.close()
