"""Starting the local PostHog with a generated scenario: for the CLI, the demo, tests and benchmarks."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from monitor.local.posthog.generator import generate
from monitor.local.posthog.hogql_functions import Release
from monitor.local.posthog.server import LocalPostHog
from monitor.local.posthog.throttle import LEGACY_QUERY_LIMITS, QUERY_LIMITS, KeyThrottle

log = structlog.get_logger()


def start_local_posthog(
    *,
    scenario: str = "drift",
    seed: int = 7,
    days: int = 14,
    project_id: int = 1,
    api_key: str = "phx_local_key",
    host: str = "127.0.0.1",
    port: int = 0,
    query_log: str | Path | None = None,
    scale: float = 1.0,
    end: datetime | None = None,
    clock_at: datetime | None = None,
    timezone: str = "UTC",
    release: Release = "current",
    rate_limits: Literal["off", "default", "legacy"] = "off",
    evaluations: bool | None = None,
    item_overlap: float | None = None,
) -> tuple[LocalPostHog, Any]:
    """Generate the scenario, load it and start serving; returns the server and the dataset."""
    ds = generate(scenario, seed=seed, days=days, team_id=project_id, end=end, scale=scale, evaluations=evaluations,
                  item_overlap=item_overlap)
    throttle = None if rate_limits == "off" else KeyThrottle(
        LEGACY_QUERY_LIMITS if rate_limits == "legacy" else QUERY_LIMITS)
    server = LocalPostHog(api_key=api_key, host=host, port=port, query_log=query_log, timezone=timezone,
                          release=release, throttle=throttle)
    if clock_at is not None:
        server.clock.set(clock_at)
    server.load(ds)
    server.start()
    return server, ds


def serve_forever(*, host: str, port: int, scenario: str, seed: int, days: int, api_key: str,
                  query_log: Path | None, project_id: int, scale: float, timezone: str = "UTC",
                  release: Release = "current", rate_limits: Literal["off", "default", "legacy"] = "off",
                  evaluations: bool | None = None, item_overlap: float | None = None) -> None:
    started = time.monotonic()
    server, ds = start_local_posthog(scenario=scenario, seed=seed, days=days, project_id=project_id,
                                     api_key=api_key, host=host, port=port, query_log=query_log, scale=scale,
                                     timezone=timezone, release=release, rate_limits=rate_limits,
                                     evaluations=evaluations, item_overlap=item_overlap)
    elapsed = time.monotonic() - started
    levels = sorted({r["level"] for r in ds.runs})
    print(f"local PostHog serving at {server.url} (project {project_id}, key {api_key}) "
          f"after {elapsed:.1f} s: {len(ds.events):,} events, {len(ds.runs)} runs of {len(ds.jobs)} jobs "
          f"({', '.join(levels)}), scenario {scenario!r}, seed {seed}, timezone {timezone}, up to "
          f"{datetime.now(UTC):%Y-%m-%d}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
