"""Shared fixtures: real local servers on free loopback ports, each test's data kept apart by project id.

chdb is one ClickHouse per process, so every local PostHog in the test session shares one engine;
each fixture loads its scenario under its own project id (PostHog's team isolation does the rest).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.localposthog.generator import Dataset, generate
from monitor.localposthog.server import LocalPostHog

API_KEY = "phx_test_key_0123456789"
# Generated data ends here: tests never depend on today's date.
END = datetime(2026, 11, 1, tzinfo=UTC)
_project_ids = itertools.count(100)


@dataclass
class PostHogEnv:
    server: LocalPostHog
    dataset: Dataset
    project_id: int

    @property
    def url(self) -> str:
        return self.server.url

    def requests(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.server.requests if all(r.get(k) == v for k, v in match.items())]


def new_project_id() -> int:
    return next(_project_ids)


def start_posthog(scenario: str = "drift", *, scale: float = 0.1, days: int = 14, seed: int = 7,
                  query_log: Path | None = None, clock_at: datetime | None = None) -> PostHogEnv:
    pid = new_project_id()
    ds = generate(scenario, seed=seed, days=days, team_id=pid, end=END, scale=scale)
    server = LocalPostHog(api_key=API_KEY, query_log=query_log)
    if clock_at is not None:
        server.clock.set(clock_at)
    server.load(ds)
    server.start()
    return PostHogEnv(server=server, dataset=ds, project_id=pid)


@pytest.fixture(scope="session")
def drift_posthog() -> Iterator[PostHogEnv]:
    """The drift scenario at a small scale, shared read-only by tests that only query."""
    env = start_posthog("drift", scale=0.1)
    yield env
    env.server.stop()


@pytest.fixture
def posthog_factory() -> Iterator[Any]:
    started: list[PostHogEnv] = []

    def make(scenario: str = "drift", **kw: Any) -> PostHogEnv:
        env = start_posthog(scenario, **kw)
        started.append(env)
        return env

    yield make
    for env in started:
        env.server.stop()
