"""Shared fixtures: real local servers on free loopback ports, each test's data kept apart by project id.

chdb is one ClickHouse per process, so every local PostHog in the test session shares one engine;
each fixture loads its scenario under its own project id (PostHog's team isolation does the rest).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.app import wiring
from monitor.app.wiring import build_monitor
from monitor.config import Config, parse_config
from monitor.local.posthog.generator import Dataset, generate
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from monitor.pipeline import Monitor
from monitor.posthog.client import RequestBudget
from tests.support.postgres import SKIP_ENV, PostgresServer, PostgresUnavailable

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
                  query_log: Path | None = None, clock_at: datetime | None = None,
                  item_overlap: float | None = None, embeddings_table: bool | None = None,
                  evaluations: bool | None = None) -> PostHogEnv:
    """`evaluations`: whether the scenario's evaluation-level runs are written (None: the scenario's own)."""
    pid = new_project_id()
    ds = generate(scenario, seed=seed, days=days, team_id=pid, end=END, scale=scale, item_overlap=item_overlap,
                  evaluations=evaluations)
    server = LocalPostHog(api_key=API_KEY, query_log=query_log, embeddings_table=embeddings_table)
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


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    s = LocalSlack.start()
    yield s
    s.stop()


@pytest.fixture
def smtp() -> Iterator[LocalSMTP]:
    s = LocalSMTP.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL for the session. Missing or broken, it fails the tests that need it:
    only CLUSTER_MONITOR_NO_POSTGRES=1 skips them, on purpose."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: PostgreSQL tests skipped on purpose")
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(f"no PostgreSQL server for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database for this test."""
    return postgres_server.new_database()


def make_config(env: PostHogEnv, slack_server: LocalSlack | None, smtp_server: LocalSMTP | None, state: Path | str,
                **extra: Any) -> Config:
    """`state`: a SQLite file, or a postgresql:// URL."""
    doc: dict[str, Any] = {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": API_KEY, "lookback_days": 60,
                    "max_retries": extra.pop("max_retries", 2)},
        "schedule": {"interval_seconds": 1},
        "state": {"url": state} if str(state).startswith("postgresql://") else {"path": str(state)},
        "delivery": {"max_backoff_seconds": 1},
        # Every level the local PostHog writes (the drift scenario has evaluation runs too).
        "watch": {"levels": ["trace", "generation", "evaluation"]},
    }
    if slack_server is not None:
        doc["slack"] = {"webhook_url": slack_server.webhook_url}
    if smtp_server is not None:
        doc["email"] = {"host": "127.0.0.1", "port": smtp_server.port, "security": "none", "from": "m@x.test",
                        "to": ["team@x.test"]}
    # Tests replay weeks of runs at once: each run is told on its own unless a test asks for catch-up.
    doc["alerting"] = {"catch_up_after_hours": 0, **extra.pop("alerting", {})}
    doc.update(extra)
    return parse_config(json.dumps(doc), "test-config", env={})


def config_doc(cfg: Config) -> dict[str, Any]:
    """The config as a YAML/JSON document a CLI process can load: secrets written out, not masked
    (pydantic's dump prints SecretStr as '**********', which the config check refuses)."""
    from pydantic import SecretStr

    def reveal(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return v.get_secret_value()
        if isinstance(v, dict):
            return {k: reveal(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [reveal(x) for x in v]
        return v

    doc = reveal(cfg.model_dump(mode="python", by_alias=True, exclude_none=True))
    out: dict[str, Any] = json.loads(json.dumps(doc, default=str))
    return out


def virtual_budget() -> RequestBudget:
    """PostHog's per-key request budget on a clock of its own that its waits move on: the limits are
    counted and enforced as in production, but waiting one out costs a test no wall-clock time."""
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    return RequestBudget(clock=lambda: t[0], sleep=sleep, wall=lambda: t[0])


@pytest.fixture(autouse=True)
def _fresh_key_budgets() -> Iterator[None]:
    """Each test is a deployment of its own. The process-wide budget per API key (monitor.app.wiring) would
    otherwise carry every earlier test's queries: the session's one test key spends PostHog's 2,400 an hour
    within minutes, and every later test waited out the hour for real (the CI run that timed out)."""
    wiring._BUDGETS.clear()
    yield
    wiring._BUDGETS.clear()


def monitor_for(cfg: Config, *, clock: Callable[[], datetime] | None = None) -> Monitor:
    """A monitor whose clock stands just after the generated data (runs are ~1 day old: not stale)."""
    # No pacing between messages in tests: the local endpoint has no rate limit to respect.
    m = build_monitor(cfg, sleep=lambda s: None, clock=clock or (lambda: END + timedelta(hours=1)),
                      budget=virtual_budget())
    assert m.deliverer is not None
    m.deliverer.min_interval = 0.0
    return m


@pytest.fixture(scope="module")
def world_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPostHog, Path, list[str]]]:
    """The local PostHog and the control pass of the reliability harness (tests/support/reliability.py),
    shared by a module's fault cells and kill tests."""
    from tests.support.reliability import KEY, control_headers

    server = LocalPostHog(api_key=KEY)
    server.start()
    tmp = tmp_path_factory.mktemp("reliability")
    yield server, tmp, control_headers(server, tmp)
    server.stop()


def write_daemon_config(path: Path, env: PostHogEnv, slack: LocalSlack, state: Path, *, max_retries: int = 1,
                        **extra: Any) -> Path:
    """A daemon's config file on the local servers, polling every second (its API key: TEST_POSTHOG_KEY)."""
    doc: dict[str, Any] = {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": "${TEST_POSTHOG_KEY}",
                    "lookback_days": 60, "max_retries": max_retries},
        "schedule": {"interval_seconds": 1},
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"path": str(state)},
        "delivery": {"max_backoff_seconds": 1},
        "watch": {"levels": ["trace", "generation", "evaluation"]},
        **extra,
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


# A test that hangs fails the run within minutes, with every thread's stack, instead of running CI into its
# hard limit with nothing said (a test waiting out PostHog's hourly budget did exactly that). The stacks go
# to a file, as the test's own stderr is captured and lost when the process exits; ./dev prints it.
TEST_TIME_LIMIT_S = 600
HANG_LOG = Path(__file__).resolve().parent.parent / f".test-hang{os.environ.get('PYTEST_XDIST_WORKER', '')}.log"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `./dev test`'s two processes (pytest-xdist, --dist loadgroup) the end-to-end tier runs on one of
    them, in order: its daemons, leases and kills are timed, and two such tests at once on two cores would
    measure each other. Integration and unit tests spread over both."""
    for item in items:
        if "/tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    import faulthandler

    with HANG_LOG.open("w") as out:
        out.write(f"{item.nodeid} ran past {TEST_TIME_LIMIT_S} s; its threads:\n")
        out.flush()
        faulthandler.dump_traceback_later(TEST_TIME_LIMIT_S, exit=True, file=out)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
    HANG_LOG.unlink(missing_ok=True)
