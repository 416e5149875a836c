"""Alerts as plain values, and the notification that carries one run's alerts to people.

Untrusted text (cluster titles, descriptions, trace ids, model names) is kept raw here; escaping for
Slack mrkdwn, HTML and mail headers happens at render time, in one place (monitor/notify/render.py).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

SEVERITIES = ("info", "warning", "critical")


def fingerprint(*parts: object) -> str:
    """Stable identity of an alert: the same condition on the same cluster lineage gives the same value."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Link(msgspec.Struct, frozen=True):
    label: str
    url: str


class TraceRef(msgspec.Struct, frozen=True):
    """A trace worth opening for an alert: why it was picked ("costliest", "failed"), its summary title
    where PostHog wrote one, and its link into PostHog."""

    trace_id: str
    url: str
    why: str = ""
    title: str = ""


class Alert(msgspec.Struct, frozen=True):
    fingerprint: str
    rule: str
    kind: str
    severity: str
    summary: str
    run_id: str
    job_name: str
    level: str
    cluster_id: int | None = None
    cluster_title: str | None = None
    lineage_id: str | None = None
    previous_title: str | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    previous_value: float | None = None
    unit: str = ""
    top_trace_ids: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    status: str = "firing"  # firing | resolved
    # Where a stateful alert is in its life, for the words of reminders ("still firing since 23 Nov, 3rd
    # notice") and resolved notices ("lasted 2 days"): set by the lifecycle, None for one-off events.
    firing_since: datetime | None = None
    notice: int = 1
    resolved_at: datetime | None = None
    # What drove a cost, latency or error alert, in a few sentences from the cluster's own events compared
    # with the previous run (monitor/attribution.py), and the traces to open; empty when not explained.
    explanation: tuple[str, ...] = ()
    traces: tuple[TraceRef, ...] = ()


class ChartBar(msgspec.Struct, frozen=True):
    """One cluster in an email chart: its value in the previous run and now (None: it was not there)."""

    title: str
    before: float | None
    now: float | None
    alert: bool = False


class Chart(msgspec.Struct, frozen=True):
    """What alerts are about, cluster by cluster, previous run beside this run (a metric and its unit)."""

    metric: str
    label: str
    unit: str
    bars: tuple[ChartBar, ...]


class Notification(msgspec.Struct, frozen=True):
    """One message to people: every alert of one run (or one catch-up batch), most important first."""

    key: str
    project_id: int
    run_id: str
    job_name: str
    level: str
    window_start: datetime
    window_end: datetime
    alerts: tuple[Alert, ...]
    run_url: str
    host: str = ""
    created_at: datetime | None = None
    # The metrics the alerts are about, for the email's charts (empty: no chart). Outbox entries written
    # before charts existed carry `shares` instead, which decoding ignores: they are sent without a chart.
    charts: tuple[Chart, ...] = ()
