"""Enqueue: everything a processed run leaves behind, as one value the store commits in one transaction
(the run's digest for the next diff, its cluster snapshots and run-level metrics, alert states and outbox
rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from monitor.metrics import ClusterMetrics
from monitor.runs import Run, encode_digest
from monitor.stages.discover import DiscoveredRun
from monitor.stages.route import OutboxRow
from monitor.store.base import AlertState, ClusterSnapshot, ProcessedRun


def snapshots(run: Run, job_key: str, lineages: Mapping[int, str],
              metrics: Mapping[int, ClusterMetrics]) -> list[ClusterSnapshot]:
    """One snapshot per cluster: the history later runs' rules and the previous-run metrics read."""
    total = run.clustered_size or 1
    return [
        ClusterSnapshot(run_id=run.run_id, job_key=job_key, level=run.level, window_end=run.window_end,
                        cluster_id=c.cluster_id, lineage_id=lineages.get(c.cluster_id, f"noise:{job_key}"),
                        title=c.title, size=c.size, share=c.size / total,
                        metrics=metrics[c.cluster_id].as_dict() if c.cluster_id in metrics else {})
        for c in run.clusters
    ]


def processed_run(run: Run, d: DiscoveredRun, *, lineages: Mapping[int, str], metrics: Mapping[int, ClusterMetrics],
                  alert_states: list[AlertState], outbox: Sequence[OutboxRow], run_metrics: Mapping[str, float],
                  now: datetime, cluster_vectors: Mapping[int, bytes] | None = None) -> ProcessedRun:
    """`run_metrics`: the run's run-level metrics, the history later runs' run-level rules read;
    `cluster_vectors`: its cluster means (encoded), which the job's next run is matched against."""
    return ProcessedRun(
        run_id=run.run_id, job_key=d.job_key, level=run.level, window_end=run.window_end,
        emitted_at=d.emitted_at, event_uuid=d.event_uuid, payload=encode_digest(run),
        snapshots=snapshots(run, d.job_key, lineages, metrics),
        alert_states=alert_states, outbox=list(outbox), processed_at=now, run_metrics=run_metrics,
        cluster_vectors=cluster_vectors)
