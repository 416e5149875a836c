"""Measure: per-cluster metrics of the run (cost, latency, errors) and each cluster's mean summary
embedding from PostHog, and the previous run's as the store kept them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import msgspec
import structlog

from monitor import telemetry
from monitor.matching import embeddings as emb
from monitor.metrics import ClusterMetrics, metrics_from_rows
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient, PostHogError
from monitor.runs import Run
from monitor.stages.discover import DiscoveredRun
from monitor.store.base import ClusterSnapshot

log = structlog.get_logger()


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


def fetch_cluster_vectors(client: PostHogClient, run: Run, d: DiscoveredRun) -> emb.ClusterVectors:
    """The run's cluster means in PostHog's embedding space: one query, answered inside ClickHouse.
    Never fails the run: without them (an older PostHog that does not know the table, a key not allowed
    to read it, rows past retention) matching goes on with its lexical signals, said once per run in the
    log and counted in /metrics."""
    try:
        res = client.query(queries.CLUSTER_EMBEDDINGS, queries.cluster_embeddings_values(
            level=run.level, event=d.event, emitted_from=d.emitted_at - timedelta(seconds=1),
            emitted_to=d.emitted_at + timedelta(seconds=1), run_id=run.run_id,
            window_start=run.window_start, window_end=run.window_end), name="cluster_embeddings")
        vecs = emb.vectors_from_rows([[r.get("cluster_id"), r.get("items"), r.get("mean")] for r in res.rows()])
    except PostHogError as exc:
        telemetry.EMBEDDINGS_MISSING.labels(reason="unavailable").inc()
        log.warning("cluster_embeddings_unavailable", run_id=run.run_id, status=exc.status, error=str(exc))
        return {}
    covered = emb.coverage(run, vecs)
    if covered < 1.0:
        telemetry.EMBEDDINGS_MISSING.labels(reason="empty" if not vecs else "partial").inc()
        log.info("cluster_embeddings_partial", run_id=run.run_id, clusters=len(vecs), item_coverage=round(covered, 3))
    return vecs


def stored_metrics(snapshots: Iterable[ClusterSnapshot]) -> dict[int, ClusterMetrics]:
    """A processed run's metrics back from its cluster snapshots (clusters without metrics left out)."""
    return {s.cluster_id: msgspec.convert(s.metrics, ClusterMetrics) for s in snapshots if s.metrics}
