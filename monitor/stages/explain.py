"""Explain: what drove the run's cost, latency and error alerts, and the traces to open, from ONE more
query (monitor/posthog/queries.py ALERT_EXPLANATION), asked only when the message has such alerts.

A failed explanation never holds an alert back: the alerts go out as they are and the failure is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import msgspec
import structlog

from monitor import kinds
from monitor.alerts import Alert
from monitor.attribution import ItemRow, explain, item_rows, representative
from monitor.links import PostHogLinks
from monitor.matching.model import RunDiff
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient, PostHogError
from monitor.runs import Run
from monitor.stages.discover import DiscoveredRun

log = structlog.get_logger()
QUERY_NAME = "alert_explanation"


def explained(a: Alert) -> kinds.Aspect | None:
    """The aspect an alert is explained by, or None: firing alerts on a cluster about cost, latency or errors."""
    if a.status != "firing" or a.cluster_id is None or a.metric is None:
        return None
    return kinds.EXPLAINED.get(a.metric)


def explain_alerts(client: PostHogClient, run: Run, prev: Run | None, d: DiscoveredRun, alerts: Sequence[Alert],
                   diff: RunDiff | None, links: PostHogLinks) -> list[Alert]:
    wanted = [a for a in alerts if explained(a) is not None]
    query = queries.ALERT_EXPLANATION.get(run.level)
    if not wanted or query is None:
        return list(alerts)
    cluster_ids = sorted({a.cluster_id for a in wanted if a.cluster_id is not None})
    prev_of: dict[int, int] = {}
    for cid in cluster_ids:
        m = diff.match_for_new(cid) if diff is not None else None
        if m is not None:
            prev_of[cid] = m.prev
    second = timedelta(seconds=1)
    prev_at = prev.timestamp if prev is not None else None
    prev_from, prev_to = ((prev_at - second, prev_at + second) if prev_at is not None
                          else (prev.window_end if prev is not None else d.emitted_at, d.emitted_at))
    start = min(run.window_start, prev.window_start) if prev is not None else run.window_start
    try:
        res = client.query(query, {
            "event": d.event,
            "emitted_from": d.emitted_at - second, "emitted_to": d.emitted_at + second,
            "run_id": run.run_id, "cluster_ids": cluster_ids,
            "prev_emitted_from": prev_from, "prev_emitted_to": prev_to,
            "prev_run_id": prev.run_id if prev is not None and prev_of else "",
            "prev_cluster_ids": sorted(set(prev_of.values())),
            "window_start": start, "window_end": run.window_end,
        }, name=QUERY_NAME)
        rows = item_rows(res.rows())
    except PostHogError as exc:
        log.warning("explain_failed", run_id=run.run_id, error=str(exc), status=exc.status)
        return list(alerts)
    by_cluster: dict[tuple[str, int], list[ItemRow]] = {}
    for r in rows:
        by_cluster.setdefault((r.run_id, r.cluster_id), []).append(r)
    generation = run.level == "generation"

    def link(r: ItemRow) -> str:
        return links.trace(r.trace_id, timestamp=r.first_seen, event=r.item_key if generation else None)

    out = []
    for a in alerts:
        aspect = explained(a)
        if aspect is None or a.cluster_id is None:
            out.append(a)
            continue
        now = by_cluster.get((run.run_id, a.cluster_id), [])
        before = (by_cluster.get((prev.run_id, prev_of[a.cluster_id]), [])
                  if prev is not None and a.cluster_id in prev_of else None)
        cluster = run.cluster(a.cluster_id)
        central = cluster.top_items(10) if cluster is not None else []
        out.append(msgspec.structs.replace(a, explanation=explain(now, before, aspect),
                                           traces=representative(now, aspect, central, link)))
    log.info("alerts_explained", run_id=run.run_id, alerts=len(wanted), items=len(rows))
    return out
