"""A realistic sample notification for `cluster-monitor test-notify`: every part of an alert, made up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.alerts import Alert, Chart, ChartBar, Link, Notification
from monitor.config import Config
from monitor.kinds import COST_SPIKE
from monitor.links import PostHogLinks
from monitor.notify.chart import METRICS


def sample_notification(cfg: Config, now: datetime | None = None) -> Notification:
    now = now or datetime.now(UTC)
    links = PostHogLinks(cfg.posthog.links_host, cfg.posthog.project_id, cfg.posthog.ui_path)
    run_id = f"{cfg.posthog.project_id}_trace_{now:%Y%m%d_%H%M%S}_test-notify"
    alert = Alert(
        fingerprint="test-notify", rule=COST_SPIKE.name, kind=COST_SPIKE.name, severity="info",
        summary="Test notification from cluster-monitor: if you can read this, delivery works.",
        run_id=run_id, job_name="Default - traces", level="trace", cluster_id=0,
        cluster_title="Sample cluster", metric="avg_cost", value=0.042, threshold=0.02, previous_value=0.01,
        unit="usd", links=(Link("Open run", links.run(run_id)), Link("Open cluster", links.cluster(run_id, 0))),
    )
    label, unit = METRICS["avg_cost"]
    chart = Chart(metric="avg_cost", label=label, unit=unit, bars=(
        ChartBar("Sample cluster", 0.01, 0.042, alert=True), ChartBar("Another cluster", 0.004, 0.0045),
        ChartBar("A cluster that disappeared", 0.02, None), ChartBar("A new cluster", None, 0.008)))
    return Notification(
        key=f"test-notify:{now.isoformat()}", project_id=cfg.posthog.project_id, run_id=run_id,
        job_name="Default - traces", level="trace", window_start=now - timedelta(days=7), window_end=now,
        alerts=(alert,), run_url=links.run(run_id), host=cfg.posthog.links_host, created_at=now, charts=(chart,))
