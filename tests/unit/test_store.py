"""The store contract on SQLite: a run and everything it decided land together, or not at all (the same tests
run on PostgreSQL in tests/integration/test_store_postgres.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def test_a_one_time_token_is_used_once_across_openers_until_it_is_forgotten(opener: Opener) -> None:
    a, b = opener(), opener()  # two replicas on one store
    keep = timedelta(minutes=10)
    assert a.first_use("slack_request:v0=aa:0", T0, T0 - keep)
    assert not b.first_use("slack_request:v0=aa:0", T0 + timedelta(minutes=1), T0 - keep)
    assert b.first_use("slack_request:v0=bb:0", T0 + timedelta(minutes=1), T0 - keep)
    a.kv_set("cursor_like", "x")
    # Past the window the namespace's old tokens are forgotten; other keys are not touched.
    later = T0 + timedelta(minutes=11)
    assert a.first_use("slack_request:v0=aa:0", later, later - keep)
    assert not a.first_use("slack_request:v0=bb:0", later, later - keep)
    assert a.kv_get("cursor_like") == "x"


def test_run_metrics_commit_with_their_run_or_not_at_all(opener: Opener) -> None:
    from dataclasses import replace

    store = opener()
    store.commit_run(replace(_run("r1", 0), run_metrics={"items": 10.0}))
    with pytest.raises(Exception):  # noqa: B017 - the same run twice violates the primary key
        store.commit_run(replace(_run("r1", 0), run_metrics={"items": 99.0}))
    assert store.kv_get("run_metrics:r1") == '{"items":10.0}'


def _aged(run_id: str, day: int, job: str, *, fp: str | None = None, status: str = "firing") -> ProcessedRun:
    """A run of `job` on day `day` after T0, with run metrics, and an alert state when `fp` is given."""
    from dataclasses import replace

    base = _run(run_id, day, outbox=0)
    snaps = [replace(s, job_key=job, lineage_id=f"L-{job}") for s in base.snapshots]
    states = [replace(s, fingerprint=fp, job_key=job, status=status) for s in base.alert_states] if fp else []
    return replace(base, job_key=job, snapshots=snaps, alert_states=states, run_metrics={"items": float(day)})


def test_retention_forgets_old_state_but_never_what_the_rules_and_threads_need(opener: Opener) -> None:
    store = opener()
    for day in range(30):  # a daily job
        store.commit_run(_aged(f"d{day}", day, "daily"))
    for day in range(3):  # a job that stopped long ago: its last runs stay, whatever their age
        store.commit_run(_aged(f"s{day}", day, "stopped"))
    old, now = T0 + timedelta(days=1), T0 + timedelta(days=30)
    store.commit_alerts([
        replace_state("resolved-old", old, "resolved"), replace_state("firing-old", old, "firing"),
        replace_state("resolved-new", now, "resolved")], [], old)
    store.commit_alerts([], [("sent-plain", "slack", b'{"alerts":[{"fingerprint":"resolved-old"}]}'),
                             ("sent-thread", "slack", b'{"alerts":[{"fingerprint":"firing-old"}]}'),
                             ("pending", "slack", b"{}"), ("failed", "email", b"{}")], old)
    by_key = {e.key: e for e in store.outbox()}
    store.mark_sent(by_key["sent-plain"].id, old, thread_ts="1.1")
    store.mark_sent(by_key["sent-thread"].id, old, thread_ts="2.2")
    store.mark_failed(by_key["failed"].id, "550")

    result = store.prune(before=T0 + timedelta(days=20), keep_runs=5)

    assert result.runs == 20 and result.clusters == 20 and result.alert_states == 1 and result.notifications == 1
    assert store.processed_ids([f"d{d}" for d in range(30)]) == {f"d{d}" for d in range(20, 30)}
    assert store.processed_ids(["s0", "s1", "s2"]) == {"s0", "s1", "s2"}
    assert store.kv_get("run_metrics:d19") is None and store.kv_get("run_metrics:d20") == '{"items":20.0}'
    assert store.history("L-daily")[0].run_id == "d20"
    assert store.previous_run("daily", before=now + timedelta(days=1)) is not None
    assert set(store.alert_states("j|trace")) == {"firing-old", "resolved-new"}
    assert sorted(e.key for e in store.outbox()) == ["failed", "pending", "sent-thread"]
    assert store.thread_for("slack", ["firing-old"]) == "2.2"
    # Nothing is pruned twice, and the newest runs of a job stay even when all are older than the cutoff.
    assert store.prune(before=T0 + timedelta(days=20), keep_runs=5).runs == 0
    assert store.prune(before=T0 + timedelta(days=400), keep_runs=5).runs == 5
    assert len(store.processed_ids([f"d{d}" for d in range(30)])) == 5
    with pytest.raises(ValueError, match="at least 1"):
        store.prune(before=now, keep_runs=0)


def replace_state(fp: str, at: datetime, status: str) -> AlertState:
    return AlertState(fingerprint=fp, status=status, kind="error_rate", first_fired_at=at, last_fired_at=at,
                      last_notified_at=at, last_run_id="r", job_key="j|trace", lineage_id="L0", summary="x")


def test_a_prune_lets_a_cycle_commit_between_its_batches(opener: Opener) -> None:
    """Pruning runs beside the cycle (the daemon's worker pool): it holds the store for one small
    transaction at a time, so a run committed by another thread mid-prune goes through at once."""
    import threading
    from contextlib import contextmanager

    store = opener()
    for day in range(12):
        store.commit_run(_aged(f"d{day}", day, "daily"))
    real_tx = store._tx  # type: ignore[attr-defined]
    entered = 0
    committed: list[bool] = []

    @contextmanager
    def observed_tx() -> Iterator[Any]:
        nonlocal entered
        entered += 1
        if entered == 2:  # the prune's second batch is about to start: a cycle commits from its thread
            def commit() -> None:
                store.commit_run(_aged("new", 40, "other"))
                committed.append(True)

            cycle = threading.Thread(target=commit)
            cycle.start()
            cycle.join(timeout=60)
        with real_tx() as cur:
            yield cur

    store._tx = observed_tx  # type: ignore[attr-defined]
    result = store.prune(before=T0 + timedelta(days=30), keep_runs=1, batch=4)
    assert committed == [True] and store.is_processed("new")
    assert result.runs == 11
