"""The fault matrix and a short SIGKILL crash test (bench/reliability.py runs the long one: 100 kills)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.reliability import CELLS, KEY, Cell, control_headers, kill_test, run_cell
from monitor.localposthog.server import LocalPostHog


@pytest.fixture(scope="module")
def world_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPostHog, Path, list[str]]]:
    server = LocalPostHog(api_key=KEY)
    server.start()
    tmp = tmp_path_factory.mktemp("reliability")
    yield server, tmp, control_headers(server, tmp)
    server.stop()


@pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
def test_fault_matrix_cell(cell: Cell, world_server: tuple[LocalPostHog, Path, list[str]]) -> None:
    server, tmp, expected = world_server
    assert expected, "the control pass should notify"
    r = run_cell(cell, server, tmp, expected)
    assert r.passed, r.problems
    assert r.runs_lost == 0 and r.alerts_lost == 0 and r.duplicates == 0


def test_sigkill_at_random_moments_loses_nothing(world_server: tuple[LocalPostHog, Path, list[str]]) -> None:
    server, tmp, expected = world_server
    k = kill_test(server, tmp, expected, kills=6, seed=3, log=lambda s: None)
    assert k["kills"] == 6
    assert k["runs_lost"] == 0 and k["alerts_lost"] == 0
    # A kill between "sent" and "recorded" may repeat that one message: at most one per kill.
    assert k["duplicates"] <= k["kills"]
