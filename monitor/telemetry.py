"""The monitor's own Prometheus metrics: what an operator graphs to know the monitor itself is well.

Module-level collectors in one registry, so every part of the shell counts into the same place and
`/metrics` exposes them without wiring.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS_PROCESSED = Counter(
    "cluster_monitor_runs_processed", "Clustering runs fully processed", ["level"], registry=REGISTRY)
RUN_FAILURES = Counter(
    "cluster_monitor_run_failures", "Runs whose processing failed (retried next cycle)", ["reason"],
    registry=REGISTRY)
EMBEDDINGS_MISSING = Counter(
    "cluster_monitor_embeddings_missing",
    "Runs matched without PostHog's summary embeddings (lexical signals only), by reason: unavailable "
    "(the query failed: an older PostHog without the table, forbidden, an error), empty (no rows: past "
    "retention), partial (some clusters without a vector)", ["reason"], registry=REGISTRY)
ALERTS_FIRED = Counter(
    "cluster_monitor_alerts_fired", "Alerts raised by rules", ["kind", "severity"], registry=REGISTRY)
ALERTS_SILENCED = Counter(
    "cluster_monitor_alerts_silenced", "Alerts muted by a configured silence", ["kind"], registry=REGISTRY)
PUSHES = Counter("cluster_monitor_pushes", "Accepted pushes from a PostHog webhook", registry=REGISTRY)
NOTIFICATIONS = Counter(
    "cluster_monitor_notifications", "Notification delivery attempts by channel and outcome",
    ["channel", "outcome"], registry=REGISTRY)
API_CALLS = Counter(
    "cluster_monitor_posthog_api_calls", "PostHog API calls by HTTP status", ["status"], registry=REGISTRY)
API_SECONDS = Histogram(
    "cluster_monitor_posthog_api_seconds", "PostHog API call duration", registry=REGISTRY)
RATE_LIMIT_WAITS = Counter(
    "cluster_monitor_rate_limit_waits", "Times a call waited for the per-key request budget",
    registry=REGISTRY)
CYCLE_SECONDS = Histogram(
    "cluster_monitor_cycle_seconds", "Duration of one monitoring cycle", registry=REGISTRY)
CYCLES = Counter("cluster_monitor_cycles", "Monitoring cycles by outcome", ["outcome"], registry=REGISTRY)
LAST_SUCCESS = Gauge(
    "cluster_monitor_last_success_timestamp", "Unix time of the last successful cycle", registry=REGISTRY)
OUTBOX_PENDING = Gauge(
    "cluster_monitor_outbox_pending", "Notifications waiting to be delivered", registry=REGISTRY)
IS_LEADER = Gauge(
    "cluster_monitor_is_leader",
    "1 while this replica is the leader that runs cycles and delivers (always 1 on SQLite), 0 on a standby",
    registry=REGISTRY)
LAST_PROGRESS = Gauge(
    "cluster_monitor_last_progress_timestamp",
    "Unix time the current cycle last moved on (a run done, a send, leadership proved); /healthz fails "
    "when it is older than state.leader_lease_seconds during a cycle", registry=REGISTRY)
CYCLE_RUNS_LEFT = Gauge(
    "cluster_monitor_cycle_runs_left",
    "Runs the cycle in flight has still to process (0 between cycles): a long backlog's progress",
    registry=REGISTRY)
