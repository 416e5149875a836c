"""The monitor's own Prometheus metrics: what an operator graphs to know the monitor itself is well.

Module-level collectors in one registry, so every part of the shell counts into the same place and
`/metrics` exposes them without wiring. Names follow Prometheus' conventions: counters end in `_total`,
times are `*_timestamp_seconds` (Unix seconds), durations `*_seconds`. deploy/k8s/prometheusrule.yaml
alerts on these names and tests/unit/test_deploy.py checks that every name it uses is defined here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)


def version() -> str:
    """The installed package's version (what `--version` prints and build_info carries)."""
    try:
        return _dist_version("cluster-monitor")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


BUILD_INFO = Gauge(
    "cluster_monitor_build_info", "Always 1; the running version in its label", ["version"], registry=REGISTRY)
BUILD_INFO.labels(version=version()).set(1)

RUNS_PROCESSED = Counter(
    "cluster_monitor_runs_processed_total", "Clustering runs fully processed", ["level"], registry=REGISTRY)
RUN_FAILURES = Counter(
    "cluster_monitor_run_failures_total", "Runs whose processing failed (retried next cycle)", ["reason"],
    registry=REGISTRY)
RUNS_QUARANTINED = Counter(
    "cluster_monitor_runs_quarantined_total", "Runs set aside after failing schedule.run_attempts times",
    registry=REGISTRY)
CYCLES_ABANDONED = Counter(
    "cluster_monitor_cycles_abandoned_total", "Cycles abandoned by the watchdog (no progress for "
    "schedule.cycle_timeout_seconds)", registry=REGISTRY)
DELIVERIES_ABANDONED = Counter(
    "cluster_monitor_deliveries_abandoned_total", "Sends abandoned after delivery.timeout_seconds (retried later)",
    ["channel"], registry=REGISTRY)
EMBEDDINGS_MISSING = Counter(
    "cluster_monitor_embeddings_missing",
    "Runs matched without PostHog's summary embeddings (lexical signals only), by reason: unavailable "
    "(the query failed: an older PostHog without the table, forbidden, an error), empty (no rows: past "
    "retention), partial (some clusters without a vector)", ["reason"], registry=REGISTRY)
ALERTS_FIRED = Counter(
    "cluster_monitor_alerts_fired_total", "Alerts raised by rules", ["kind", "severity"], registry=REGISTRY)
ALERTS_SILENCED = Counter(
    "cluster_monitor_alerts_silenced_total", "Alerts muted by a configured silence", ["kind"], registry=REGISTRY)
PUSHES = Counter("cluster_monitor_pushes_total", "Accepted pushes from a PostHog webhook", registry=REGISTRY)
NOTIFICATIONS = Counter(
    "cluster_monitor_notifications_total", "Notification delivery attempts by channel and outcome "
    "(sent, retry, failed)", ["channel", "outcome"], registry=REGISTRY)
API_CALLS = Counter(
    "cluster_monitor_posthog_api_calls_total", "PostHog API calls by HTTP status", ["status"], registry=REGISTRY)
API_SECONDS = Histogram(
    "cluster_monitor_posthog_api_seconds", "PostHog API call duration", registry=REGISTRY)
RATE_LIMIT_WAITS = Counter(
    "cluster_monitor_rate_limit_waits_total", "Times a call waited for the per-key request budget",
    registry=REGISTRY)
CYCLE_SECONDS = Histogram(
    "cluster_monitor_cycle_seconds", "Duration of one monitoring cycle", registry=REGISTRY)
CYCLES = Counter("cluster_monitor_cycles_total", "Monitoring cycles by outcome", ["outcome"], registry=REGISTRY)
LAST_SUCCESS = Gauge(
    "cluster_monitor_last_success_timestamp_seconds", "Unix time of the last successful cycle",
    registry=REGISTRY)
OUTBOX_PENDING = Gauge(
    "cluster_monitor_outbox_pending", "Notifications waiting to be delivered", registry=REGISTRY)
IS_LEADER = Gauge(
    "cluster_monitor_is_leader",
    "1 while this replica is the leader that runs cycles and delivers (always 1 on SQLite), 0 on a standby",
    registry=REGISTRY)
LAST_PROGRESS = Gauge(
    "cluster_monitor_last_progress_timestamp_seconds",
    "Unix time the current cycle last moved on (a run done, a send, leadership proved); /healthz fails "
    "when it is older than state.leader_lease_seconds during a cycle", registry=REGISTRY)
CYCLE_RUNS_LEFT = Gauge(
    "cluster_monitor_cycle_runs_left",
    "Runs the cycle in flight has still to process (0 between cycles): a long backlog's progress",
    registry=REGISTRY)

# Read from the state store at the end of each cycle (monitor.status.publish), so they hold after a
# restart and agree with `cluster-monitor status`.
OUTBOX_FAILED = Gauge(
    "cluster_monitor_outbox_failed", "Notifications that failed for good, waiting for `outbox --retry-failed`",
    registry=REGISTRY)
OUTBOX_OLDEST_PENDING = Gauge(
    "cluster_monitor_outbox_oldest_pending_timestamp_seconds",
    "Unix time the oldest pending notification was queued (0 when none is pending)", registry=REGISTRY)
JOB_LAST_RUN = Gauge(
    "cluster_monitor_job_last_run_timestamp_seconds",
    "Unix time the newest processed run of a clustering job landed in PostHog", ["job", "level"],
    registry=REGISTRY)
ALERTS_FIRING = Gauge(
    "cluster_monitor_alerts_firing", "Alerts firing now (levels that hold: cost, error rate, latency, "
    "stale jobs, PostHog errors, level rules)", ["kind", "severity"], registry=REGISTRY)
