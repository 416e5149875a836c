"""Charts of what the alerts are about: each alert's metric, before and now, from the runs and their metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from monitor.alerts import Alert

NOW = datetime(2026, 11, 1, 4, tzinfo=UTC)


def _run(run_id: str, clusters: list[tuple[int, str, int]]) -> Any:
    from monitor.runs import Cluster, Run

    return Run(run_id=run_id, level="trace", job_id="j", job_name="job", window_start=NOW - timedelta(days=1),
               window_end=NOW, total_items=sum(s for _, _, s in clusters),
               clusters=tuple(Cluster(cluster_id=c, title=t, size=s) for c, t, s in clusters))


def test_each_alert_is_charted_with_its_own_metric_and_a_disappeared_cluster_keeps_its_old_value() -> None:
    from monitor.matching.model import Match, RunDiff
    from monitor.metrics import ClusterMetrics
    from monitor.notify.chart import alert_charts

    prev = _run("p", [(0, "Refunds", 20), (1, "Code review", 60), (2, "Invoices", 20), (-1, "Noise", 5)])
    new = _run("n", [(0, "Refund requests", 50), (1, "Code review", 40), (3, "Travel", 10)])
    diff = RunDiff(prev_run_id="p", new_run_id="n", new=[3], disappeared=[2], matches=[
        Match(prev=0, new=0, score=0.9, prev_size=20, new_size=50, prev_share=0.2, new_share=0.5, share_delta_pp=30),
        Match(prev=1, new=1, score=0.9, prev_size=60, new_size=40, prev_share=0.6, new_share=0.4, share_delta_pp=-20)])
    metrics = {0: ClusterMetrics(0, items=50, avg_cost=0.04), 1: ClusterMetrics(1, items=40, avg_cost=0.01),
               3: ClusterMetrics(3, items=10, avg_cost=0.02)}
    prev_metrics = {0: ClusterMetrics(0, items=20, avg_cost=0.01), 1: ClusterMetrics(1, items=60, avg_cost=0.01),
                    2: ClusterMetrics(2, items=20, avg_cost=0.03)}

    def alert(kind: str, metric: str, cluster_id: int | None, title: str) -> Alert:
        return Alert(fingerprint=kind, rule=kind, kind=kind, severity="warning", summary="s", run_id="n",
                     job_name="job", level="trace", cluster_id=cluster_id, cluster_title=title, metric=metric)

    cost, share = alert_charts(new, prev, diff, metrics, prev_metrics, [
        alert("cost_spike", "avg_cost", 0, "Refund requests"), alert("share_shift", "share", 1, "Code review"),
        alert("disappeared", "share", None, "Invoices")])
    assert (cost.metric, cost.label, cost.unit) == ("avg_cost", "Average cost per item", "usd")
    # Alerted clusters first (the disappeared one too), then the rest by size; noise left out.
    assert [(b.title, b.before, b.now, b.alert) for b in cost.bars] == [
        ("Refund requests", 0.01, 0.04, True), ("Code review", 0.01, 0.01, True), ("Invoices", 0.03, None, True),
        ("Travel", None, 0.02, False)]
    assert (share.metric, share.unit) == ("share", "ratio")
    # Shares of each run's clustered items (the previous run's noise counts in its total, as everywhere).
    assert [(b.title, b.before, b.now) for b in share.bars] == [
        ("Refund requests", 20 / 105, 0.5), ("Code review", 60 / 105, 0.4), ("Invoices", 20 / 105, None),
        ("Travel", None, 0.1)]
    # A split, merge or mix shift is about the shape of traffic: the share chart; a check of no run: none.
    only_share = alert_charts(new, prev, diff, metrics, prev_metrics, [alert("mix_shift", "mix_shift", None, "")])
    assert [c.metric for c in only_share] == ["share"]
    stale = msgspec.structs.replace(alert("stale_source", "hours_since_last_run", None, ""), run_id="")
    assert alert_charts(new, prev, diff, metrics, prev_metrics, [stale]) == ()


def test_every_charted_metric_is_one_a_cluster_has_and_an_alert_can_carry() -> None:
    from monitor.kinds import CLUSTER_METRICS
    from monitor.metrics import ClusterMetrics
    from monitor.notify.chart import METRICS, SHARE

    fields = set(ClusterMetrics.__struct_fields__)
    assert SHARE in METRICS and {"avg_cost", "error_rate", "pass_rate"} <= set(METRICS)
    assert set(METRICS) - {SHARE} <= fields, set(METRICS) - {SHARE} - fields
    assert set(METRICS) <= set(CLUSTER_METRICS)
    assert all(label for label, _ in METRICS.values())
