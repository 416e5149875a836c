"""Splits and merges, in the spirit of MONIC (Spiliopoulou et al., 2006): after survival (the one-to-one
matches), a previous cluster whose members now sit in two or more new clusters has split, and two or
more previous clusters whose members now sit in one new cluster have merged (MONIC's absorption).

With shared items this is MONIC's overlap test: a part must take at least 15% of the old cluster's
shared items (MONIC suggests 20%; 15% keeps a small part of a three-way split) and draw at least half
of its own shared items from it. Without shared items it falls
back on the text (each part reads like the whole) and on conservation of traffic share (the parts add
up to the whole, within half of it). Each transition carries a confidence in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from monitor.matching.model import Match, Merge, Split
from monitor.matching.signals import MIN_SHARED_ITEMS, Overlap
from monitor.runs import Cluster

PART_OF_WHOLE = 0.15  # a part takes at least this much of the whole's shared items
FROM_WHOLE = 0.5  # and at least this much of the part's shared items come from the whole
TEXT_PART = 0.35  # text similarity a part needs to the whole when items cannot tell
CONSERVATION = 0.5  # |whole share - sum of part shares| / whole share, at most


def _conservation(whole: float, parts: Sequence[float]) -> float:
    if whole <= 0:
        return 0.0
    return max(0.0, 1.0 - abs(whole - sum(parts)) / whole)


def _explains(change: float, others: Sequence[float]) -> bool:
    """Whether a matched cluster's change of share accounts for the clusters said to have left it (split)
    or joined it (merge): traffic is conserved, so a cluster that lost 1% of the run did not give birth
    to a part holding 6%. Half of it is enough: shares move for other reasons too."""
    return bool(others) and change > 0 and change >= CONSERVATION * sum(others)


def _took_items(ov: Overlap, p: int, n: int, *, whole_is_prev: bool) -> bool:
    """Too few shared items to judge by MONIC's proportions, but the ones there are went from the whole to
    this part (or from this source to the whole), and make most of the part's shared items. Re-sampled
    items of a vanished cluster land in noise, a new cluster's items are new: an item that moved from one
    cluster to the other is evidence even one at a time. Generation-level runs need it most: a run samples
    1,500 generations among ~2.5 times as many items as traces, so consecutive runs share fewer of them
    (3% where traces share 5%), and a split's whole shares two or three items with its parts."""
    k = ov.counts.get((p, n), 0)
    part_shared = ov.new_shared.get(n, 0) if whole_is_prev else ov.prev_shared.get(p, 0)
    return k > 0 and k / part_shared >= FROM_WHOLE


def find_transitions(
    prev: Sequence[Cluster], new: Sequence[Cluster], prev_total: int, new_total: int, ov: Overlap,
    text: npt.NDArray[np.float64], matches: Sequence[Match],
) -> tuple[list[Split], list[Merge]]:
    match_of_prev = {m.prev: m.new for m in matches}
    match_of_new = {m.new: m.prev for m in matches}
    pidx = {c.cluster_id: i for i, c in enumerate(prev)}
    nidx = {c.cluster_id: j for j, c in enumerate(new)}
    pshare = {c.cluster_id: c.size / prev_total for c in prev}
    nshare = {c.cluster_id: c.size / new_total for c in new}
    splits: list[Split] = []
    merges: list[Merge] = []
    used_new: set[int] = set()
    used_prev: set[int] = set()

    for a in prev:
        pa = a.cluster_id
        shared = ov.prev_shared.get(pa, 0)
        parts: list[int] = []
        confidence = 0.0
        if shared >= MIN_SHARED_ITEMS:
            for b in new:
                k = ov.counts.get((pa, b.cluster_id), 0)
                ns = ov.new_shared.get(b.cluster_id, 0)
                if k / shared >= PART_OF_WHOLE and ns and k / ns >= FROM_WHOLE:
                    parts.append(b.cluster_id)
            confidence = sum(ov.counts.get((pa, p), 0) for p in parts) / shared
        else:
            cont = match_of_prev.get(pa)
            candidates = [b.cluster_id for b in new if b.cluster_id not in match_of_new
                          and (text[pidx[pa], nidx[b.cluster_id]] >= TEXT_PART
                               or _took_items(ov, pa, b.cluster_id, whole_is_prev=True))]
            parts = ([cont] if cont is not None else []) + candidates
            if cont is not None and not _explains(pshare[pa] - nshare[cont], [nshare[p] for p in candidates]):
                parts = []  # the continuation did not shrink by what the other parts hold: nothing left it
            if len(parts) >= 2:
                cons = _conservation(pshare[pa], [nshare[p] for p in parts])
                if cons < 1 - CONSERVATION:
                    parts = []
                else:
                    t = float(np.mean([text[pidx[pa], nidx[p]] for p in parts]))
                    confidence = min(1.0, t * cons * 1.5)
        parts = [p for p in parts if p not in used_new]
        if len(parts) >= 2:
            splits.append(Split(prev=pa, new=sorted(parts), confidence=round(confidence, 3)))
            # Every part is taken, the continuation too: no cluster is a piece of two splits.
            used_new.update(parts)
            used_prev.add(pa)

    for b in new:
        nb = b.cluster_id
        if nb in used_new:
            continue
        shared = ov.new_shared.get(nb, 0)
        sources: list[int] = []
        confidence = 0.0
        if shared >= MIN_SHARED_ITEMS:
            for a in prev:
                k = ov.counts.get((a.cluster_id, nb), 0)
                ps = ov.prev_shared.get(a.cluster_id, 0)
                if k / shared >= PART_OF_WHOLE and ps and k / ps >= FROM_WHOLE:
                    sources.append(a.cluster_id)
            confidence = sum(ov.counts.get((s, nb), 0) for s in sources) / shared
        else:
            cont = match_of_new.get(nb)
            candidates = [a.cluster_id for a in prev if a.cluster_id not in match_of_prev
                          and (text[pidx[a.cluster_id], nidx[nb]] >= TEXT_PART
                               or _took_items(ov, a.cluster_id, nb, whole_is_prev=False))]
            sources = ([cont] if cont is not None else []) + candidates
            if cont is not None and not _explains(nshare[nb] - pshare[cont], [pshare[s] for s in candidates]):
                sources = []  # the continuation did not grow by what the other sources held: nothing joined it
            if len(sources) >= 2:
                cons = _conservation(nshare[nb], [pshare[s] for s in sources])
                if cons < 1 - CONSERVATION:
                    sources = []
                else:
                    t = float(np.mean([text[pidx[s], nidx[nb]] for s in sources]))
                    confidence = min(1.0, t * cons * 1.5)
        sources = [s for s in sources if s not in used_prev]
        if len(sources) >= 2:
            merges.append(Merge(prev=sorted(sources), new=nb, confidence=round(confidence, 3)))
            used_prev.update(sources)  # no cluster feeds two merges
    return splits, merges
