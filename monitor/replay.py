"""`cluster-monitor replay`: run the rules over PostHog's stored runs and print what would have been sent.

A dry run of the whole pipeline (the same queries, matching, metrics, rules, lifecycle and silences) with
a throw-away state store and no notifiers: the way to try a threshold change against weeks of history
before it pages anyone. The real state file is never opened, so replay is safe beside a running daemon.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from monitor.alerts import Notification
from monitor.config import Config
from monitor.notify.render import Templates, render_email
from monitor.pipeline import CycleResult
from monitor.posthog.client import PostHogError


def replay(cfg: Config, *, days: int | None = None, clock: Callable[[], datetime] | None = None,
           since: datetime | None = None, until: datetime | None = None) -> CycleResult:
    """`since`/`until` bound when the runs landed; the first run of each job in the window has no
    previous run to compare with, so it raises no change alerts (as on a first start)."""
    from monitor.app.wiring import build_monitor

    with tempfile.TemporaryDirectory(prefix="cluster-monitor-replay-") as tmp:
        posthog = cfg.posthog.model_copy(update={"lookback_days": days}) if days else cfg.posthog
        dry = cfg.model_copy(update={
            "posthog": posthog, "slack": None, "email": None, "routes": [],
            # Replay shows each run's alerts as they would have been told live, not as a catch-up.
            "alerting": cfg.alerting.model_copy(update={"catch_up_after_hours": 0.0}),
            "state": cfg.state.model_copy(update={"path": Path(tmp) / "replay.sqlite", "url": None}),
        })
        monitor = build_monitor(dry, clock=clock or (lambda: datetime.now(UTC)))
        monitor.replay_window = (since, until)
        assert monitor.deliverer is None or not monitor.deliverer.channels
        try:
            return monitor.cycle()
        finally:
            monitor.client.close()
            monitor.store.close()


def project_zone(cfg: Config) -> ZoneInfo:
    """The project's timezone as PostHog has it: what `--since`/`--until`/`--at` without an offset mean
    (PostHog shows the project's runs and events in it). PostHogError when PostHog cannot say."""
    from monitor.app.wiring import build_client

    with build_client(cfg) as client:
        name = client.project_timezone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PostHogError(f"project {cfg.posthog.project_id}: unknown timezone {name!r}") from exc


def print_notices(notices: list[Notification], out: TextIO, *, as_json: bool = False,
                  templates: Templates | None = None) -> None:
    for n in notices:
        if as_json:
            out.write(msgspec.json.encode(n).decode() + "\n")
            continue
        parts = render_email(n, templates=templates)
        out.write(f"=== {parts.subject}\n{parts.text.rstrip()}\n\n")
