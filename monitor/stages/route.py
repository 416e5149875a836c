"""Route: the run's notification (alerts in order, charts, links), and its outbox rows: one per
channel of every route its alerts go to (`routes:`). Held rows (a run caught up long after it landed)
wait for the cycle's catch-up summary."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import msgspec

from monitor.alerts import Alert, Notification
from monitor.config import Route, Rule
from monitor.links import PostHogLinks
from monitor.matching.model import RunDiff
from monitor.metrics import ClusterMetrics
from monitor.notify.catchup import HELD_PREFIX
from monitor.notify.chart import alert_charts
from monitor.rules.routing import DEFAULT_ROUTE, route_alerts
from monitor.runs import Run
from monitor.stages.decide import importance
from monitor.store.base import OutboxEntry

OutboxRow = tuple[str, str, bytes]  # (notification key, channel, encoded notification)


def run_notification(run: Run, prev: Run | None, diff: RunDiff | None, alerts: Sequence[Alert], *,
                     metrics: Mapping[int, ClusterMetrics], prev_metrics: Mapping[int, ClusterMetrics],
                     project_id: int, links: PostHogLinks, host: str, now: datetime) -> Notification:
    """The run's message: its alerts most important first, and charts of the metrics they are about."""
    return Notification(
        key=f"run:{run.run_id}", project_id=project_id, run_id=run.run_id,
        job_name=run.job_name or run.job_id, level=run.level, window_start=run.window_start,
        window_end=run.window_end, alerts=tuple(sorted(alerts, key=importance)),
        run_url=links.run(run.run_id), host=host, created_at=now,
        charts=alert_charts(run, prev, diff, metrics, prev_metrics, alerts))


def is_held(now: datetime, emitted_at: datetime, catch_up: timedelta) -> bool:
    """A run processed more than `catch_up` after it landed is told in the catch-up summary instead."""
    return catch_up > timedelta(0) and now - emitted_at > catch_up


def outbox_rows(n: Notification, routes: Sequence[Route], rules: Sequence[Rule], channels: Collection[str],
                held: bool = False) -> tuple[list[OutboxRow], list[tuple[str, int]]]:
    """(rows, [(route, alerts) that reached no configured channel]); only rows for `channels`."""
    rows: list[OutboxRow] = []
    unrouted: list[tuple[str, int]] = []
    for name, alerts in route_alerts(n.alerts, routes, rules).items():
        suffix = "" if name == DEFAULT_ROUTE else f"@{name}"
        part = n if len(alerts) == len(n.alerts) else msgspec.structs.replace(n, alerts=tuple(alerts))
        part = msgspec.structs.replace(part, key=n.key + suffix)
        payload = msgspec.json.encode(part)
        targets = [ch for ch in (f"slack{suffix}", f"email{suffix}") if ch in channels]
        if not targets and channels:  # none at all: replay, or a config without channels
            unrouted.append((name or "default", len(alerts)))
        rows.extend((part.key, HELD_PREFIX + ch if held else ch, payload) for ch in targets)
    return rows, unrouted


def held_by_channel(pending: Iterable[OutboxEntry]) -> dict[str, list[OutboxEntry]]:
    """The held rows among the pending outbox, by the channel their summary goes to, channels in order."""
    by_channel: dict[str, list[OutboxEntry]] = {}
    for e in pending:
        if e.channel.startswith(HELD_PREFIX):
            by_channel.setdefault(e.channel.removeprefix(HELD_PREFIX), []).append(e)
    return dict(sorted(by_channel.items()))
