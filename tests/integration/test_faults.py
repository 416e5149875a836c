"""The fault matrix: every cell of tests/support/reliability.py against the local servers (the SIGKILL test is
tests/e2e/test_kill.py; `./dev bench reliability` runs both in full).

CI runs every cell but the slow ones (the two 50,000-item runs); `-m slow` adds those."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.local.posthog.server import LocalPostHog
from tests.support.reliability import CELLS, Cell, run_cell


@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CELLS],
                         ids=[c.name for c in CELLS])
def test_fault_matrix_cell(cell: Cell, world_server: tuple[LocalPostHog, Path, list[str]]) -> None:
    server, tmp, expected = world_server
    assert expected, "the control pass should notify"
    r = run_cell(cell, server, tmp, expected)
    assert r.passed, r.problems
    assert r.runs_lost == 0 and r.alerts_lost == 0 and r.duplicates == 0
