"""Measure: per-cluster metrics of the run (cost, latency, errors, evaluation verdicts) and each cluster's
mean summary embedding from PostHog, and the previous run's as the store kept them.

PostHog puts most metrics in the run already (each cluster's `metrics`, best effort): those are used
when every cluster has them and no limit or rule of the config reads what they lack (percentiles,
the token split, the judges' total cost). Otherwise the monitor's own metrics query fills the gaps.
When that query keeps timing out (HTTP 504/512), a run PostHog measured is processed on PostHog's
metrics alone, and its alerts say so, rather than blocking the job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import msgspec
import structlog

from monitor import telemetry
from monitor.config import Rule, ThresholdsConfig
from monitor.matching import embeddings as emb
from monitor.metrics import (
    QUERY_ONLY,
    QUERY_ONLY_LIMITS,
    ClusterMetrics,
    clusters_without,
    metrics_from_payload,
    metrics_from_rows,
    with_query_only,
)
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


log = structlog.get_logger()

# PostHog stopped the query at its time limit (504) or refused it as too long (512).
SLOW_QUERY = (504, 512)


@dataclass(frozen=True)
class Measured:
    metrics: dict[int, ClusterMetrics]
    # Whether the monitor's own metrics query was sent (False: PostHog's embedded metrics sufficed).
    queried: bool
    # Said in the run's alerts when their numbers are PostHog's alone because the query failed.
    note: str | None = None


def query_metrics_needed(thresholds: ThresholdsConfig, rules: Sequence[Rule]) -> frozenset[str]:
    """The metrics the config reads that only the monitor's query gives (none: PostHog's may suffice)."""
    wanted = {r.metric for r in rules if r.enabled}
    for t in (thresholds.defaults, *(o.thresholds for o in thresholds.overrides)):
        wanted.update(metric for limit, metric in QUERY_ONLY_LIMITS.items() if getattr(t, limit) is not None)
    return frozenset(wanted & QUERY_ONLY)


def measure_run(client: PostHogClient, run: Run, d: DiscoveredRun, needed: frozenset[str]) -> Measured:
    """The run's metrics: PostHog's own where they suffice, the monitor's query for what they lack."""
    embedded = metrics_from_payload(run)
    missing = clusters_without(run, embedded)
    if not missing and not needed:
        return Measured(embedded, queried=False)
    try:
        queried = fetch_metrics(client, run, d)
    except PostHogError as exc:
        if exc.status not in SLOW_QUERY or missing:
            raise
        lacking = ", ".join(sorted(needed)) or "nothing the config reads"
        log.warning("metrics_query_timed_out_using_posthogs", run_id=run.run_id, status=exc.status,
                    lacking=lacking, error=str(exc))
        return Measured(embedded, queried=True, note=(
            f"metrics are PostHog's own: the metrics query timed out (HTTP {exc.status}); "
            f"without {lacking}"))
    return Measured(with_query_only(embedded, queried), queried=True)
