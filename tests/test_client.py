"""The PostHog client against the local server's fault hook: what it retries, what it does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.local.posthog.faults import Fault
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


def test_request_budget_waits_instead_of_exceeding_the_limit() -> None:
    now = [0.0]
    waited: list[float] = []

    def sleep(s: float) -> None:
        waited.append(s)
        now[0] += s

    budget = RequestBudget(((3, 60.0), (5, 3600.0)), clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        assert budget.acquire() == 0.0
    assert budget.acquire() == pytest.approx(60.0)
    now[0] += 1
    budget.acquire()
    assert budget.acquire() == pytest.approx(3600.0 - 61.0)
