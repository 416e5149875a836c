"""The PostHog client against the local server's fault hook: what it retries, what it does not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from monitor.local.posthog.faults import Fault
from monitor.local.posthog.throttle import KeyThrottle
from monitor.posthog.client import PostHogClient, PostHogError, RequestBudget
from tests.conftest import API_KEY, PostHogEnv, start_posthog


@pytest.fixture(scope="module")
def env() -> Iterator[PostHogEnv]:
    e = start_posthog("steady", scale=0.05, days=2)
    yield e
    e.server.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(env: PostHogEnv, sleeps: list[float]) -> Iterator[PostHogClient]:
    env.server.faults.clear()
    c = PostHogClient(env.url, env.project_id, API_KEY, max_retries=3, sleep=sleeps.append, timeout=2.0)
    yield c
    c.close()
    env.server.faults.clear()


@pytest.mark.parametrize("fault", [
    Fault(kind="status", status=500, count=2),
    Fault(kind="status", status=502, count=1),
    Fault(kind="status", status=503, count=3),
    Fault(kind="drop", count=2),
    Fault(kind="truncate", count=1),
])
def test_transient_faults_are_retried(env: PostHogEnv, client: PostHogClient, sleeps: list[float],
                                      fault: Fault) -> None:
    env.server.faults.add(fault)
    assert client.query("SELECT 1 AS one", name="t").results == [[1]]
    assert len(sleeps) == fault.count


def test_malformed_body_is_reported_as_retryable(env: PostHogEnv, client: PostHogClient) -> None:
    env.server.faults.add(Fault(kind="malformed"))
    with pytest.raises(PostHogError) as exc:
        client.query("SELECT 1", name="t")
    assert exc.value.retryable and "malformed" in str(exc.value)


def test_429_retry_after_is_honoured(env: PostHogEnv, client: PostHogClient, sleeps: list[float]) -> None:
    env.server.faults.add(Fault(kind="status", status=429, retry_after=7, count=1))
    client.query("SELECT 1", name="t")
    assert sleeps == [7.0]


def test_gives_up_after_max_retries(env: PostHogEnv, client: PostHogClient, sleeps: list[float]) -> None:
    env.server.faults.add(Fault(kind="status", status=500, count=None))
    with pytest.raises(PostHogError) as exc:
        client.query("SELECT 1", name="t")
    assert exc.value.retryable and exc.value.status == 500
    assert len(sleeps) == 3


def test_hogql_error_is_not_retried(client: PostHogClient, sleeps: list[float]) -> None:
    with pytest.raises(PostHogError) as exc:
        client.query("SELECT nosuch(1)", name="bad")
    assert exc.value.status == 400 and not exc.value.retryable and sleeps == []


def test_wrong_key_is_not_retried_and_key_is_not_in_the_error(env: PostHogEnv, sleeps: list[float]) -> None:
    c = PostHogClient(env.url, env.project_id, "phx_wrong_secret_key", sleep=sleeps.append)
    with pytest.raises(PostHogError) as exc:
        c.query("SELECT 1", name="t")
    c.close()
    assert exc.value.status == 401 and sleeps == []
    assert "phx_wrong_secret_key" not in str(exc.value)


def test_latency_past_the_timeout_is_retried(env: PostHogEnv, sleeps: list[float]) -> None:
    c = PostHogClient(env.url, env.project_id, API_KEY, timeout=0.3, sleep=sleeps.append)
    env.server.faults.add(Fault(kind="latency", seconds=0.6, count=1))
    assert c.query("SELECT 1", name="t").results == [[1]]
    assert len(sleeps) == 1
    c.close()


def test_clustering_jobs_follow_pagination(env: PostHogEnv, client: PostHogClient) -> None:
    jobs = client.clustering_jobs()
    assert [j["id"] for j in jobs] == [j.id for j in env.dataset.jobs]


# --- PostHog's own throttling and slow-query answers ---------------------------------------------------

def test_throttled_error_without_retry_after_waits_the_time_drf_wrote(env: PostHogEnv, client: PostHogClient,
                                                                     sleeps: list[float]) -> None:
    env.server.faults.add(Fault(kind="throttle", seconds=30, count=1))
    r = httpx.post(f"{env.url}/api/projects/{env.project_id}/query/", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"query": {"kind": "HogQLQuery", "query": "SELECT 1"}})
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert r.json()["type"] == "throttled_error" and "Expected available in 30 seconds" in r.json()["detail"]
    env.server.faults.add(Fault(kind="throttle", seconds=30, count=1))
    assert client.query("SELECT 1 AS one", name="t").results == [[1]]
    assert sleeps == [31.0]


def test_429_naming_no_wait_waits_for_the_next_minute_then_pauses_the_key(env: PostHogEnv) -> None:
    now = [17 * 60.0 + 30.0]  # half past a minute on the fake wall clock
    slept: list[float] = []
    budget = RequestBudget(clock=lambda: now[0], sleep=lambda s: None, wall=lambda: now[0])
    c = PostHogClient(env.url, env.project_id, API_KEY, sleep=slept.append, budget=budget)
    env.server.faults.add(Fault(kind="status", status=429, count=None))
    try:
        with pytest.raises(PostHogError) as exc:
            c.query("SELECT 1", name="t")
        assert slept == [31.0]  # to the next minute (+1 s), then an hourly wait: not slept inside the call
        assert exc.value.status == 429 and exc.value.retryable and exc.value.retry_in == 300.0
        sent = len(env.requests(status=429))
        with pytest.raises(PostHogError, match="no request is sent"):
            c.query("SELECT 1", name="t")
        assert len(env.requests(status=429)) == sent, "a paused key must not spend its budget"
    finally:
        env.server.faults.clear()
    now[0] += 301
    assert c.query("SELECT 1 AS one", name="t").results == [[1]]
    c.close()


def test_minute_and_hour_budgets_of_the_key_are_waited_out_without_burning_them(env: PostHogEnv) -> None:
    """The server enforces DRF's windows (3/min and 5/h here, on a shared fake clock); the client waits
    the minute inside the call, and the hour outside it without sending anything meanwhile."""
    now = [0.0]
    budget = RequestBudget(((1000, 60.0),), clock=lambda: now[0], sleep=lambda s: None, wall=lambda: now[0])

    def sleep(s: float) -> None:
        now[0] += s

    c = PostHogClient(env.url, env.project_id, API_KEY, sleep=sleep, budget=budget)
    env.server.throttle = KeyThrottle(((3, 60.0), (5, 3600.0)), clock=lambda: now[0])
    try:
        for _ in range(3):
            c.query("SELECT 1", name="t")
        c.query("SELECT 1", name="t")  # 429 (minute): waits DRF's ~60 s inside the call, then succeeds
        assert 60.0 <= now[0] <= 62.0
        # DRF counted the refused call against the hour too (every window that allowed it records it),
        # so the hour's 5 are spent.
        refused = len(env.requests(status=429))
        with pytest.raises(PostHogError) as exc:  # the hour is spent: told, not slept through
            c.query("SELECT 1", name="t")
        assert exc.value.status == 429 and exc.value.retry_in is not None and exc.value.retry_in > 3000
        assert len(env.requests(status=429)) == refused + 1
        for _ in range(5):
            with pytest.raises(PostHogError):
                c.query("SELECT 1", name="t")
        assert len(env.requests(status=429)) == refused + 1, "nothing sent while the key is paused"
        now[0] += exc.value.retry_in + 1
        assert c.query("SELECT 1 AS one", name="t").results == [[1]]
    finally:
        env.server.throttle = None
        c.close()


@pytest.mark.parametrize(("kind", "status", "words"), [("timeout", 504, "execution time limit"),
                                                       ("too_long", 512, "too long")])
def test_slow_queries_are_retried_then_said_plainly(env: PostHogEnv, client: PostHogClient, sleeps: list[float],
                                                    kind: str, status: int, words: str) -> None:
    env.server.faults.add(Fault(kind=kind, count=1))  # type: ignore[arg-type]
    assert client.query("SELECT 1 AS one", name="t").results == [[1]]
    assert len(sleeps) == 1
    env.server.faults.add(Fault(kind=kind, count=None))  # type: ignore[arg-type]
    with pytest.raises(PostHogError) as exc:
        client.query("SELECT 1", name="metrics")
    assert exc.value.status == status and exc.value.retryable and words in str(exc.value)
    assert "metrics" in str(exc.value)


def test_async_answer_is_polled_until_complete_and_bounded(env: PostHogEnv, client: PostHogClient) -> None:
    env.server.faults.add(Fault(kind="async", polls=3, count=1))
    assert client.query("SELECT 2 AS two", name="t").results == [[2]]
    assert len([r for r in env.requests() if "/query/" in r["path"] and r["method"] == "GET"]) >= 3
    c = PostHogClient(env.url, env.project_id, API_KEY, sleep=lambda s: None, max_polls=2)
    env.server.faults.add(Fault(kind="async", polls=5, count=1))
    with pytest.raises(PostHogError, match="did not finish after 2 polls"):
        c.query("SELECT 2", name="t")
    c.close()


def test_project_endpoint_says_the_timezone(env: PostHogEnv) -> None:
    r = httpx.get(f"{env.url}/api/projects/{env.project_id}/", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200 and r.json()["id"] == env.project_id and r.json()["timezone"] == "UTC"


def test_datetime_values_are_sent_with_an_explicit_offset(env: PostHogEnv, client: PostHogClient) -> None:
    at = datetime(2026, 3, 8, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    client.query("SELECT {at} AS at", {"at": at}, name="bind_time")
    sent = env.requests(name="cluster-monitor:bind_time")[-1]["values"]["at"]
    assert sent == "2026-03-08T17:00:00.000000+00:00"
