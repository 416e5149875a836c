"""Measure: per-cluster metrics of the run (cost, latency, errors) from PostHog, and the previous run's
as the store kept them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import msgspec

from monitor.metrics import ClusterMetrics, metrics_from_rows
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient
from monitor.runs import Run
from monitor.stages.discover import DiscoveredRun
from monitor.store.base import ClusterSnapshot


def fetch_metrics(client: PostHogClient, run: Run, d: DiscoveredRun) -> dict[int, ClusterMetrics]:
    q = queries.CLUSTER_METRICS.get(run.level, queries.CLUSTER_METRICS["generation"])
    res = client.query(q, {
        "event": d.event,
        "emitted_from": d.emitted_at - timedelta(seconds=1),
        "emitted_to": d.emitted_at + timedelta(seconds=1),
        "run_id": run.run_id,
        "window_start": run.window_start,
        "window_end": run.window_end,
    }, name=f"cluster_metrics_{run.level}")
    return metrics_from_rows(res.rows(), run.run_id)


def stored_metrics(snapshots: Iterable[ClusterSnapshot]) -> dict[int, ClusterMetrics]:
    """A processed run's metrics back from its cluster snapshots (clusters without metrics left out)."""
    return {s.cluster_id: msgspec.convert(s.metrics, ClusterMetrics) for s in snapshots if s.metrics}
