"""Matching quality on the hand-written set in tests/support/matching, as a floor: a change to the matcher that
loses links or invents new clusters fails here before anyone is paged by it."""

from __future__ import annotations

from tests.support.matching.build import HELDOUT_DIR, build_runs, load_cases
from tests.support.matching.score import run


def test_the_matcher_stays_above_its_measured_floor_and_far_above_the_baselines() -> None:
    # The lexical matcher (no embeddings: older PostHog, expired rows); tests/unit/test_embeddings_matching.py
    # and bench/matching_embeddings.py hold the matcher with them.
    results = {r.name: r.summary() for r in run(load_cases(), threshold=None)}
    ours = results["monitor"]
    assert ours["cases"] >= 40
    assert ours["link_f1"] >= 0.99 and ours["link_precision"] >= 0.99
    assert ours["new_f1"] >= 0.93 and ours["disappeared_f1"] >= 0.95
    assert ours["split_f1"] >= 0.95 and ours["merge_f1"] >= 0.95
    for baseline in ("exact-title", "posthog-substring", "lexical-only"):
        assert results[baseline]["link_f1"] < ours["link_f1"] - 0.2


def test_the_held_out_cases_are_well_formed_and_disjoint_from_the_bench_set() -> None:
    """The held-out set is only worth its name while it is different cases: same format, other names."""
    heldout = load_cases(folder=HELDOUT_DIR)
    assert len(heldout) >= 15
    assert not {c.name for c in heldout} & {c.name for c in load_cases()}
    for case in heldout:
        prev, new = build_runs(case)
        assert len(prev.clusters) == len(case.prev) and len(new.clusters) == len(case.new)


