"""Matching in PostHog's embedding space (issue 15): the signal, its absence, and the text matrices."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.matching import embeddings as emb
from monitor.matching import match_runs
from monitor.matching.signals import containment, idf, profile, shared_meaning, text_matrices, text_scores
from tests.support.matching.build import build_runs, load_cases
from tests.support.matching.embed import case_vectors, item_embeddings


def test_text_matrices_equal_the_pairwise_signals() -> None:
    case = next(c for c in load_cases() if c.name.startswith("big_25"))
    prev, new = build_runs(case)
    pp = [profile(c) for c in prev.clusters if not c.is_noise]
    npf = [profile(c) for c in new.clusters if not c.is_noise]
    w = idf(pp + npf)
    tm = text_matrices(pp, npf, w)
    for i, a in enumerate(pp):
        for j, b in enumerate(npf):
            t, d = text_scores(a, b, w)
            assert tm.title[i, j] == pytest.approx(t, abs=1e-9)
            assert (np.isnan(tm.desc[i, j]) and d is None) or tm.desc[i, j] == pytest.approx(d, abs=1e-9)
            assert tm.containment[i, j] == pytest.approx(containment(a, b, w), abs=1e-9)
            assert tm.shared_meaning[i, j] == pytest.approx(shared_meaning(a, b, w), abs=1e-9)


def test_a_heavy_rewording_with_no_shared_item_is_linked_by_its_embedding_alone() -> None:
    case = next(c for c in load_cases() if c.name == "heavy_paraphrase_travel_text_only")
    prev, new = build_runs(case)
    pv, nv = case_vectors(case, prev, new)
    with_vectors = match_runs(prev, new, prev_vectors=pv, new_vectors=nv, explain=True)
    assert {(m.prev, m.new) for m in with_vectors.matches} == set(case.truth.links)
    assert not with_vectors.new and not with_vectors.disappeared
    assert all("embedding" in m.signals for m in with_vectors.matches)


def test_missing_or_partial_vectors_leave_the_lexical_matcher_in_charge() -> None:
    case = next(c for c in load_cases() if c.name == "namesake_python_shared")
    prev, new = build_runs(case)
    lexical = match_runs(prev, new)
    assert match_runs(prev, new, prev_vectors={}, new_vectors=None) == lexical
    pv, nv = case_vectors(case, prev, new)
    # Vectors of another dimension (another embedding model) are no evidence either.
    other = {k: np.ones(8) / np.sqrt(8) for k in nv}
    assert match_runs(prev, new, prev_vectors=pv, new_vectors=other) == lexical
    # Partial coverage: the clusters with vectors use them, the others are matched as before.
    some = dict(list(nv.items())[:1])
    partial = match_runs(prev, new, prev_vectors=pv, new_vectors=some, explain=True)
    assert sum("embedding" in m.signals for m in partial.matches) <= 1


def test_cluster_means_round_trip_through_the_store_encoding_and_query_rows() -> None:
    case = next(c for c in load_cases() if c.name.startswith("split_billing"))
    prev, new = build_runs(case)
    items = item_embeddings(case, prev, new)
    vecs = emb.vectors_from_items(prev, items)
    back = emb.decode(emb.encode(vecs))
    assert set(back) == set(vecs)
    assert all(float(back[k] @ vecs[k]) > 0.9999 for k in vecs)
    rows = [[k, 10, [round(float(x), 5) for x in v]] for k, v in vecs.items()] + [[-1, 50, [1.0, 0.0]], [7, 1, [1.0]]]
    assert set(emb.vectors_from_rows(rows)) == set(vecs)


def test_a_generation_level_split_whose_whole_shares_two_items_is_a_split_not_two_new_clusters() -> None:
    """Issue 15's demo gap: generation-level runs share fewer items (1,500 of ~2.5x more items than traces),
    the split's whole shared 2 items with its parts, under MONIC's minimum, and the text fallback missed the
    part whose title shares no word with the whole. The items that did move are evidence on their own."""
    import json
    from datetime import UTC, datetime

    from monitor.local.posthog.generator import generate
    from monitor.runs import Run, parse_clusters

    ds = generate("drift", embeddings=False)
    now = datetime.now(UTC)
    runs: dict[str, Run] = {}
    for e in ds.events:
        if e[1] == "$ai_generation_clusters":
            p = json.loads(e[3])
            rid = p["$ai_clustering_run_id"]
            runs[rid] = Run(run_id=rid, level="generation", job_id="", job_name="", window_start=now,
                            window_end=now, total_items=p["$ai_total_items_analyzed"],
                            clusters=parse_clusters(rid, p["$ai_clusters"]), params={}, timestamp=now)
    splits = [t for t in ds.truth["transitions"] if t["level"] == "generation" and t["splits"]]
    assert splits
    for t in splits:
        d = match_runs(runs[t["prev_run_id"]], runs[t["new_run_id"]])
        assert [(s.prev, s.new) for s in d.splits] == [(x["prev"], x["new"]) for x in t["splits"]]
        assert d.new == t["new"] and d.disappeared == t["disappeared"]
