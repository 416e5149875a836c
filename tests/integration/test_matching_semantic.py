"""The semantic signal's floor on the matching corpus (slow; the encoder runs in a child process)."""

from __future__ import annotations

import pytest

from monitor.matching import semantic
from tests.support.matching.build import load_cases
from tests.support.matching.score import run


@pytest.mark.slow
@pytest.mark.skipif(semantic.bundled_model_dir() is None, reason="the optional model is not installed (./dev semantic)")
def test_the_semantic_signal_stays_above_its_measured_floor() -> None:
    """~40 s: every cluster text of the 40 cases through the encoder."""
    ours = next(r for r in run(load_cases(), threshold=None, semantic=True) if r.name == "monitor").summary()
    assert ours["link_f1"] >= 0.99
    assert ours["new_f1"] >= 0.95 and ours["disappeared_f1"] >= 0.98
