"""What the email's charts show: the metric each alert is about, cluster by cluster, previous run beside this
run. Pure: a run, its diff and its metrics in, plain `Chart` values out (drawn as HTML bars by the email
template, so titles stay text that the reader's own fonts render, in any script).

A cost alert charts cost, an error alert the error rate, a share shift (and a new, split, merged or
disappeared cluster) the share of traffic. The clusters with alerts come first, then the largest; a
cluster that disappeared keeps its old value beside nothing now, a new one has nothing before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from monitor.alerts import Alert, Chart, ChartBar
from monitor.kinds import METRICS as KIND_METRICS
from monitor.kinds import scope_of
from monitor.matching.model import RunDiff
from monitor.metrics import ClusterMetrics
from monitor.runs import Cluster, Run

SHARE = "share"
# Per-cluster metrics a chart can show, with its heading and unit: those the registry gives a chart heading.
METRICS: dict[str, tuple[str, str]] = {m.name: (m.chart, m.unit) for m in KIND_METRICS if m.chart is not None}
MAX_CHARTS = 3
MAX_BARS = 10


def chart_metric(a: Alert) -> str | None:
    """The metric an alert is drawn with: its own when it is per cluster, the share of traffic for changes
    of shape (new, disappeared, split, merge, mix shift), none for checks that belong to no run."""
    if a.metric in METRICS:
        return a.metric
    if a.run_id == "" or scope_of(a.kind) == "source":
        return None
    return SHARE


def alert_charts(run: Run, prev: Run | None, diff: RunDiff | None, metrics: Mapping[int, ClusterMetrics],
                 prev_metrics: Mapping[int, ClusterMetrics], alerts: Iterable[Alert],
                 limit: int = MAX_BARS) -> tuple[Chart, ...]:
    """One chart per metric the alerts are about (most important alert first, at most MAX_CHARTS)."""
    alerts = list(alerts)
    wanted = list(dict.fromkeys(m for m in (chart_metric(a) for a in alerts) if m is not None))[:MAX_CHARTS]
    if not wanted:
        return ()
    alerted = {a.cluster_id for a in alerts if a.cluster_id is not None and a.status != "resolved"}
    gone_titles = {a.cluster_title for a in alerts if scope_of(a.kind) == "gone" and a.cluster_title}
    matched = {m.new: m.prev for m in diff.matches} if diff else {}
    total = run.clustered_size or 1
    prev_total = (prev.clustered_size or 1) if prev else 1
    prev_by_id = {c.cluster_id: c for c in prev.clusters} if prev is not None else {}
    gone = [c for c in (prev_by_id.get(i) for i in (diff.disappeared if diff else ())) if c and not c.is_noise]

    def value(metric: str, c: Cluster, of: Mapping[int, ClusterMetrics], whole: int) -> float | None:
        if metric == SHARE:
            return c.size / whole
        m = of.get(c.cluster_id)
        v = getattr(m, metric, None) if m is not None else None
        return float(v) if isinstance(v, int | float) else None

    charts = []
    for metric in wanted:
        rows: list[tuple[bool, float, ChartBar]] = []
        for c in run.clusters:
            if c.is_noise:
                continue
            p = prev_by_id.get(matched[c.cluster_id]) if c.cluster_id in matched else None
            before = value(metric, p, prev_metrics, prev_total) if p is not None else None
            now = value(metric, c, metrics, total)
            bar = ChartBar(title=c.title, before=before, now=now, alert=c.cluster_id in alerted)
            rows.append((bar.alert, c.size / total, bar))
        for c in gone:
            bar = ChartBar(title=c.title, before=value(metric, c, prev_metrics, prev_total), now=None,
                           alert=c.title in gone_titles)
            rows.append((bar.alert, c.size / prev_total, bar))
        rows.sort(key=lambda r: (not r[0], -r[1]))
        bars = tuple(b for _, _, b in rows[:limit] if b.before is not None or b.now is not None)
        if bars:
            label, unit = METRICS[metric]
            charts.append(Chart(metric=metric, label=label, unit=unit, bars=bars))
    return tuple(charts)
