"""SIGKILL `cluster-monitor run` processes at random moments and between a send and its "sent" mark: nothing lost, at
most one repeat per kill between the two (`./dev bench reliability` runs 100 kills; `-m slow` adds a 30-kill test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.local.posthog.server import LocalPostHog
from tests.support.reliability import kill_test


def _check_kills(k: dict[str, int], kills: int) -> None:
    assert k["kills"] == kills
    assert k["failpoint_kills"] >= 1, "no kill landed at the failpoint between send and record"
    # Each failpoint kill left a message received but not marked sent (random kills may add more).
    assert k["between_kills"] >= k["failpoint_kills"]
    assert k["runs_lost"] == 0 and k["alerts_lost"] == 0
    # A kill between "sent" and "recorded" may repeat that one message: at most one per such kill.
    assert k["duplicates"] <= k["between_kills"]


def test_sigkill_at_random_moments_and_between_send_and_record(
        world_server: tuple[LocalPostHog, Path, list[str]]) -> None:
    server, tmp, expected = world_server
    k = kill_test(server, tmp, expected, kills=6, seed=3, failpoint_every=2, log=lambda s: None)
    _check_kills(k, 6)


@pytest.mark.slow
def test_sigkill_thirty_times(world_server: tuple[LocalPostHog, Path, list[str]]) -> None:
    server, tmp, expected = world_server
    k = kill_test(server, tmp, expected, kills=30, seed=5, failpoint_every=5, log=lambda s: None)
    _check_kills(k, 30)
