"""Summary embeddings for the hand-written run pairs, drawn from their ground truth.

The cases have titles and items but no summaries, so there is nothing to embed. Their items get vectors
the way the local PostHog's generator draws them (monitor/local/posthog/embeddings.py), from the truth:
every cluster of a case shares the case's product component; a previous cluster is a pattern direction,
which its link keeps; split parts lie near their whole (an item of the whole that the new run puts in a
part was already near that part); a merged cluster is the mean of its sources (their items keep their
vectors); new and disappeared clusters are directions of their own. An item sampled by both runs has one
vector. Scores measured with these vectors say how the matcher uses the signal when PostHog's space has
this geometry, not that it has.
"""

from __future__ import annotations

import numpy as np

from monitor.local.posthog import embeddings as geo
from monitor.matching import embeddings as emb
from monitor.runs import Run
from tests.support.matching.build import Case


def item_embeddings(case: Case, prev: Run, new: Run) -> dict[str, list[float]]:
    """{item key: vector} for every item of both runs (what `raw_document_embeddings` would return)."""
    t = case.truth
    pdir = {c.id: geo.pattern_direction(case.name, f"prev:{c.id}") for c in case.prev}
    ndir: dict[int, geo.Vec] = {}
    for p, n in t.links:
        ndir[n] = pdir[p]
    for s in t.splits:
        for n in s.new:
            ndir[n] = geo.part_direction(pdir[s.prev], f"{case.name}:{n}")
    for m in t.merges:
        ndir[m.new] = geo.merged_direction([pdir[p] for p in m.prev])
    for spec in case.new:
        ndir.setdefault(spec.id, geo.pattern_direction(case.name, f"new:{spec.id}"))
    noise = geo.pattern_direction(case.name, "noise")
    where_new = {k: c.cluster_id for c in new.clusters for k in c.traces}
    part_of = {n: s.prev for s in t.splits for n in s.new}
    keys: list[str] = []
    dirs: list[geo.Vec] = []
    for pc in prev.clusters:
        for k in pc.traces:
            went = where_new.get(k)
            if pc.is_noise:
                d = noise
            elif went is not None and part_of.get(went) == pc.cluster_id:
                d = ndir[went]  # it went to a split part: it was that part's kind of traffic already
            else:
                d = pdir[pc.cluster_id]
            keys.append(k)
            dirs.append(d)
    seen = set(keys)
    for nc in new.clusters:
        for k in nc.traces:
            if k not in seen:
                keys.append(k)
                dirs.append(noise if nc.is_noise else ndir[nc.cluster_id])
    rng = np.random.default_rng(list(case.name.encode()))
    vecs = geo.item_vectors(np.stack(dirs), rng)
    return {k: v for k, v in zip(keys, vecs.tolist(), strict=True)}


def case_vectors(case: Case, prev: Run, new: Run) -> tuple[emb.ClusterVectors, emb.ClusterVectors]:
    """Each run's cluster means over its best-ranked items, as the monitor's query computes them."""
    items = item_embeddings(case, prev, new)
    return emb.vectors_from_items(prev, items, per_cluster=200), emb.vectors_from_items(new, items, per_cluster=200)
