"""The per-key request budget: a caller waits for its share instead of exceeding PostHog's rate limit (no server)."""

from __future__ import annotations

import pytest

from monitor.posthog.client import RequestBudget


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
