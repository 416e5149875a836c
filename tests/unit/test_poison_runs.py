"""Poison runs, pure and in the store: which crafted payloads are malformed (quarantined) and which merely odd
(processed), the backoff and quarantine of a failing run, and the store keeping a failure with its alert at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from monitor.alerts import fingerprint
from monitor.config import StateConfig
from monitor.links import PostHogLinks
from monitor.local.posthog.generator import make_run_event
from monitor.posthog.client import PostHogError
from monitor.runs import RunParseError, run_from_properties
from monitor.stages import failures
from monitor.stages.discover import DiscoveredRun
from monitor.store.base import AlertState, ProcessedRun
from tests.support.hostile_runs import CASES, HUGE, Case
from tests.unit.test_store import Opener, opening

T0 = datetime(2026, 11, 1, 3, tzinfo=UTC)
LINKS = PostHogLinks("https://us.posthog.com", 2, "ai-observability")
D = DiscoveredRun(run_id="2_trace_x", level="trace", job_id="j", job_name="Support", event="$ai_trace_clusters",
                  event_uuid="u", emitted_at=T0, window_end=T0)


def _props(case: Case) -> dict[str, Any]:
    props = make_run_event(team_id=2, level="trace", window_end=T0, job_id="j", job_name="Support",
                           clusters=[{"cluster_id": 0, "items": ["a", "b"], "title": "Refunds"},
                                     {"cluster_id": 1, "items": ["c"], "title": "SQL"}])
    case.edit(props)
    return props


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_crafted_payload_is_malformed_or_odd_as_documented(case: Case) -> None:
    props = _props(case)
    if case.name == "huge_size":  # not encodable by msgspec: the event's JSON text as PostHog would hold it
        text = msgspec.json.encode(props["$ai_clusters"]).decode().replace("987654321123", HUGE)
        props["$ai_clusters"] = text
    if case.malformed:
        with pytest.raises(RunParseError) as err:
            run_from_properties(props)
        assert err.value.field == case.field and case.problem in err.value.problem
        assert err.value.run_id == props["$ai_clustering_run_id"]
        return
    run = run_from_properties(props)
    if case.name == "long_title":
        assert len(run.clusters[0].title) > 100_000, "the full value stays in the data (display cuts it)"
    if case.name == "nan_avg_cost":
        m = run.clusters[0].metrics
        assert m is not None and m.avg_cost is None and m.item_count == 3, "NaN is read as missing"


def test_a_failing_run_backs_off_then_is_quarantined_at_the_nth_failure() -> None:
    f = None
    waits = []
    for n in range(1, 4):
        f = failures.next_failure(f, D, field="$ai_clusters", error="bad", now=T0, attempts_allowed=3,
                                  retry_seconds=60)
        assert f.attempts == n and f.first_failed_at == T0
        waits.append(f.next_attempt_at - T0)
        assert (f.quarantined_at is not None) == (n == 3)
        assert failures.waiting(f, T0) == (n < 3) and not failures.waiting(f, T0 + timedelta(minutes=5))
    assert waits == [timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240)]
    long = failures.next_failure(None, D, field="x", error="e", now=T0, attempts_allowed=99, retry_seconds=10**6)
    assert long.next_attempt_at - T0 == failures.MAX_RETRY


def test_only_failures_that_say_something_about_the_run_count() -> None:
    assert failures.is_transient(PostHogError("503", retryable=True))
    assert failures.is_transient(sqlite3.OperationalError("database is locked"))
    assert failures.is_transient(PostHogError("400 bad query", retryable=False))
    assert not failures.is_transient(RunParseError("r", "$ai_clusters", "bad"))
    assert not failures.is_transient(OverflowError("Python int too large"))
    assert failures.failure_field(RunParseError("r", "$ai_window_end", "missing")) == "$ai_window_end"
    assert failures.failure_field(OverflowError()) == failures.NO_FIELD
    assert len(failures.describe(ValueError("x" * 100_000))) <= failures.ERROR_CHARS + 3


def test_the_quarantine_alert_names_the_run_the_job_and_the_field_and_is_a_one_off() -> None:
    f = failures.next_failure(None, D, field="$ai_clusters", error="cluster_id 0 appears twice", now=T0,
                              attempts_allowed=1, retry_seconds=0)
    a = failures.quarantine_alert(f, project_id=2, links=LINKS)
    assert a.kind == failures.KIND and a.run_id == D.run_id and a.job_name == "Support"
    assert "$ai_clusters" in a.summary and "appears twice" in a.summary and D.run_id in a.summary
    assert a.fingerprint == fingerprint(2, D.run_id, failures.KIND)


@pytest.fixture(name="opener")
def _sqlite_opener(tmp_path: Path) -> Iterator[Opener]:
    yield from opening(StateConfig.model_validate({"path": tmp_path / "s.sqlite"}))


def _processed(run_id: str) -> ProcessedRun:
    return ProcessedRun(run_id=run_id, job_key="j|trace", level="trace", window_end=T0, emitted_at=T0,
                        event_uuid="u", payload=b"{}", snapshots=[], alert_states=[], outbox=[], processed_at=T0)


def test_the_store_keeps_a_quarantine_with_its_alert_and_forgets_it_on_retry_or_success(opener: Opener) -> None:
    """SQLite here; tests/integration/test_store_postgres.py runs it on PostgreSQL."""
    store = opener()
    first = failures.next_failure(None, D, field="$ai_clusters", error="bad", now=T0, attempts_allowed=2,
                                  retry_seconds=0)
    store.record_run_failure(first, now=T0)
    assert [f.run_id for f in store.run_failures(quarantined=False)] == [D.run_id]
    assert store.run_failures(quarantined=True) == []
    q = failures.next_failure(first, D, field="$ai_clusters", error="bad", now=T0, attempts_allowed=2,
                              retry_seconds=0)
    state = AlertState(fingerprint="fp", status="firing", kind=failures.KIND, first_fired_at=T0,
                       last_fired_at=T0, last_notified_at=T0, last_run_id=D.run_id, job_key=D.job_key,
                       lineage_id=None, summary="s")
    store.record_run_failure(q, [state], [("quarantine:x", "slack", b"{}")], now=T0)
    assert store.run_failures(quarantined=True) == [q]
    assert [e.key for e in store.outbox()] == ["quarantine:x"] and "fp" in store.alert_states(D.job_key)
    # `runs retry`: forgotten, and the cursor moved back before it so discovery finds it again.
    store.set_cursor(T0 + timedelta(days=3))
    assert store.retry_run(D.run_id) == q and store.run_failures() == []
    cursor = store.cursor()
    assert cursor is not None and cursor < T0
    assert store.retry_run(D.run_id) is None
    # A run processed at last leaves no failure behind.
    store.record_run_failure(first, now=T0)
    store.commit_run(_processed(D.run_id))
    assert store.run_failures() == []
