"""The fault matrix and a short SIGKILL crash test (bench/reliability.py runs the long one: 100 kills).

CI runs every cell but the slow ones (the two 50,000-item runs) and the 6-kill test; `-m slow` adds
those and a 30-kill test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.reliability import CELLS, KEY, Cell, control_headers, kill_test, run_cell
from monitor.local.posthog.server import LocalPostHog
from tests.support.crashing_daemon import kill_after_sends


@pytest.fixture(scope="module")
def world_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPostHog, Path, list[str]]]:
    server = LocalPostHog(api_key=KEY)
    server.start()
    tmp = tmp_path_factory.mktemp("reliability")
    yield server, tmp, control_headers(server, tmp)
    server.stop()


@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CELLS],
                         ids=[c.name for c in CELLS])
def test_fault_matrix_cell(cell: Cell, world_server: tuple[LocalPostHog, Path, list[str]]) -> None:
    server, tmp, expected = world_server
    assert expected, "the control pass should notify"
    r = run_cell(cell, server, tmp, expected)
    assert r.passed, r.problems
    assert r.runs_lost == 0 and r.alerts_lost == 0 and r.duplicates == 0


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


def test_crash_hook_kills_at_the_nth_send_and_refuses_zero() -> None:
    kills: list[int] = []
    hook = kill_after_sends(2, kill=lambda: kills.append(1))
    hook()
    assert kills == []
    hook()
    assert kills == [1]
    with pytest.raises(ValueError, match="kill-after-sends"):
        kill_after_sends(0)
