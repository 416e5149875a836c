"""Alert lifecycle: fire once, stay quiet while firing, repeat after the interval, resolve once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.alerts import Alert
from monitor.rules.lifecycle import apply_lifecycle
from monitor.store.base import AlertState

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _alert(kind: str = "error_rate", fp: str = "fp1", run: str = "r1") -> Alert:
    return Alert(fingerprint=fp, rule=kind, kind=kind, severity="critical", summary="Error rate 30%",
                 run_id=run, job_name="job", level="trace", cluster_title="Refunds", lineage_id="L1")


def _states(result_states: list[AlertState]) -> dict[str, AlertState]:
    return {s.fingerprint: s for s in result_states}


def test_level_alert_fires_once_then_repeats_after_interval_then_resolves() -> None:
    repeat = timedelta(hours=72)
    r1 = apply_lifecycle([_alert(run="r1")], {}, run_id="r1", job_key="j", now=T0, repeat_interval=repeat)
    assert [a.status for a in r1.notify] == ["firing"]
    states = _states(r1.states)
    r2 = apply_lifecycle([_alert(run="r2")], states, run_id="r2", job_key="j", now=T0 + DAY, repeat_interval=repeat)
    assert r2.notify == []
    states |= _states(r2.states)
    assert states["fp1"].streak == 2
    r3 = apply_lifecycle([_alert(run="r3")], states, run_id="r3", job_key="j", now=T0 + 3 * DAY,
                         repeat_interval=repeat)
    assert len(r3.notify) == 1
    states |= _states(r3.states)
    r4 = apply_lifecycle([], states, run_id="r4", job_key="j", now=T0 + 4 * DAY, repeat_interval=repeat,
                         present_lineages={"L1": "Refund requests"})
    assert [(a.status, a.cluster_title) for a in r4.notify] == [("resolved", "Refund requests")]
    states |= _states(r4.states)
    r5 = apply_lifecycle([], states, run_id="r5", job_key="j", now=T0 + 5 * DAY, repeat_interval=repeat)
    assert r5.notify == []


def test_change_alert_is_told_once_even_when_the_run_is_decided_again() -> None:
    a = _alert(kind="cost_spike", fp="spike@r1")
    r1 = apply_lifecycle([a], {}, run_id="r1", job_key="j", now=T0, repeat_interval=DAY)
    assert len(r1.notify) == 1
    again = apply_lifecycle([a], _states(r1.states), run_id="r1b", job_key="j", now=T0, repeat_interval=DAY)
    assert again.notify == []


def test_change_alerts_never_resolve() -> None:
    r1 = apply_lifecycle([_alert(kind="new_cluster", fp="n1")], {}, run_id="r1", job_key="j", now=T0,
                         repeat_interval=DAY)
    r2 = apply_lifecycle([], _states(r1.states), run_id="r2", job_key="j", now=T0 + DAY, repeat_interval=DAY)
    assert r2.notify == []


def test_duplicate_fingerprints_in_one_run_are_told_once() -> None:
    r = apply_lifecycle([_alert(), _alert()], {}, run_id="r1", job_key="j", now=T0, repeat_interval=DAY)
    assert len(r.notify) == 1 and len(r.states) == 1
