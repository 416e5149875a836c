"""Matching two runs: a score for every pair of clusters, an optimal one-to-one assignment over it, then
splits and merges. Pure: two runs in, a RunDiff out.

The weights adapt to the evidence the pair of runs has. When the runs share enough items (small teams,
backfills, overlapping windows), item overlap decides and text confirms; when they share almost none
(busy teams: each run samples 1,500 of many thousands), text decides and traffic share breaks ties.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from monitor.matching.embeddings import ClusterVectors, calibrate, cosine_matrix
from monitor.matching.model import Match, RunDiff
from monitor.matching.signals import (
    idf,
    item_overlap,
    item_score,
    profile,
    share_score,
    text_matrices,
)
from monitor.matching.transitions import find_transitions
from monitor.runs import Run

# Leftover pairs (second pass) need this fraction of the threshold and shares this close (share score),
# and some evidence beyond share: a shared distinctive word, or items in common.
LEFTOVER_FACTOR = 0.4
LEFTOVER_SHARE = 0.6
LEFTOVER_MEANING = 0.1
# ...and must read at least about as close to each other as to any cluster the first pass matched: a
# leftover whose text is much closer to a matched cluster is more likely a merge part or a split piece of
# it than a rewording of another leftover that shares a word with it. "Much closer": below 0.6 of the
# rival. At 0.8 the guard also refused near-namesake rewordings ("Text-to-SQL analytics questions" ->
# "Natural-language analytics to SQL" beside a matched "Writing SQL queries"), which the generator's
# steady traffic shows every few days; 0.6 keeps every bench and held-out score (bench/matching_generator).
LEFTOVER_RIVAL = 0.6
# With PostHog's embeddings, how much of the text evidence they replace: titles are rewritten by an LLM
# every run, the summaries' mean embedding is the traffic itself, so it leads and the words confirm.
EMB_WEIGHT = 0.7
# ...and of the evidence beside shared items, when the runs share some.
EMB_WITH_ITEMS = 0.25


def _blend(title: float, desc: float | None, items: float | None, share: float,
           emb: float | None = None) -> tuple[float, dict[str, float]]:
    signals = {"title": round(title, 4), "share": round(share, 4)}
    text = title if desc is None else 0.65 * title + 0.35 * desc
    if desc is not None:
        signals["description"] = round(desc, 4)
    if emb is not None:
        signals["embedding"] = round(emb, 4)
    if items is None:
        if emb is not None:
            text = (1 - EMB_WEIGHT) * text + EMB_WEIGHT * emb
        score = 0.9 * text + 0.1 * share
    else:
        signals["items"] = round(items, 4)
        score = (0.7 * items + 0.3 * text if emb is None
                 else (0.7 - EMB_WITH_ITEMS / 2) * items + (0.3 - EMB_WITH_ITEMS / 2) * text + EMB_WITH_ITEMS * emb)
    return min(1.0, max(0.0, score)), signals


def match_runs(prev: Run, new: Run, *, threshold: float = 0.5, explain: bool = False,
               prev_vectors: ClusterVectors | None = None,
               new_vectors: ClusterVectors | None = None) -> RunDiff:
    """`prev_vectors` / `new_vectors`: each run's cluster means in PostHog's embedding space
    (monitor.matching.embeddings); pairs where either side has none are matched on the other signals."""
    pc = [c for c in prev.clusters if not c.is_noise]
    nc = [c for c in new.clusters if not c.is_noise]
    pt, nt = prev.clustered_size or 1, new.clustered_size or 1
    pp = [profile(c) for c in pc]
    npf = [profile(c) for c in nc]
    weights = idf(pp + npf)
    ov = item_overlap(prev.clusters, new.clusters)
    tm = text_matrices(pp, npf, weights)
    cos = cosine_matrix(pc, nc, prev_vectors, new_vectors)
    emb_m = None if cos is None else calibrate(cos)
    score = np.zeros((len(pc), len(nc)))
    text = np.zeros((len(pc), len(nc)))
    signals: dict[tuple[int, int], dict[str, float]] = {}
    for i, a in enumerate(pc):
        for j, b in enumerate(nc):
            t = float(tm.title[i, j])
            d = None if np.isnan(tm.desc[i, j]) else float(tm.desc[i, j])
            em = None if emb_m is None or np.isnan(emb_m[i, j]) else float(emb_m[i, j])
            s, sig = _blend(t, d, item_score(ov, a.cluster_id, b.cluster_id), share_score(a.size / pt, b.size / nt),
                            em)
            score[i, j] = s
            words = max(t if d is None else 0.65 * t + 0.35 * d, float(tm.containment[i, j]))
            # Splits and merges read this too: with embeddings a part is near its whole in meaning, whatever
            # the labeller called it, and a namesake that shares words but not traffic is not a part.
            text[i, j] = words if em is None else (1 - EMB_WEIGHT) * words + EMB_WEIGHT * em
            signals[(i, j)] = sig
    matches: list[Match] = []
    if score.size:
        rows, cols = linear_sum_assignment(-score)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            if score[i, j] < threshold:
                continue
            a, b = pc[i], nc[j]
            ps, ns = a.size / pt, b.size / nt
            matches.append(Match(prev=a.cluster_id, new=b.cluster_id, score=round(float(score[i, j]), 4),
                                 prev_size=a.size, new_size=b.size, prev_share=ps, new_share=ns,
                                 share_delta_pp=(ns - ps) * 100, prev_title=a.title, new_title=b.title,
                                 signals=signals[(i, j)] if explain else {}))
    # Second pass over what is left on both sides: a cluster that "disappears" while one of similar share
    # "appears" in the same run is far more often a heavy rewording than two real changes, so leftovers
    # pair up on weaker evidence as long as their traffic shares agree.
    matched_prev = {m.prev for m in matches}
    matched_new = {m.new for m in matches}
    left_p = [i for i, c in enumerate(pc) if c.cluster_id not in matched_prev]
    left_n = [j for j, c in enumerate(nc) if c.cluster_id not in matched_new]
    taken_p = [i for i, c in enumerate(pc) if c.cluster_id in matched_prev]
    taken_n = [j for j, c in enumerate(nc) if c.cluster_id in matched_new]
    if left_p and left_n:
        sub = score[np.ix_(left_p, left_n)]
        rows, cols = linear_sum_assignment(-sub)
        for r, c_ in zip(rows.tolist(), cols.tolist(), strict=True):
            i, j = left_p[r], left_n[c_]
            a, b = pc[i], nc[j]
            ps, ns = a.size / pt, b.size / nt
            items = item_score(ov, a.cluster_id, b.cluster_id)
            em = None if emb_m is None or np.isnan(emb_m[i, j]) else float(emb_m[i, j])
            evidence = items if items is not None else em if em is not None else float(tm.shared_meaning[i, j])
            # A cluster leaving while an unrelated one of similar size arrives is common (a feature ships,
            # another is retired): similar share alone is not evidence of a rewording.
            rival = max([float(text[i, x]) for x in taken_n] + [float(text[x, j]) for x in taken_p] + [0.0])
            if (score[i, j] >= LEFTOVER_FACTOR * threshold and share_score(ps, ns) >= LEFTOVER_SHARE
                    and evidence >= LEFTOVER_MEANING and (items is not None or text[i, j] >= LEFTOVER_RIVAL * rival)):
                matches.append(Match(prev=a.cluster_id, new=b.cluster_id, score=round(float(score[i, j]), 4),
                                     prev_size=a.size, new_size=b.size, prev_share=ps, new_share=ns,
                                     share_delta_pp=(ns - ps) * 100, prev_title=a.title, new_title=b.title,
                                     signals={**signals[(i, j)], "leftover": 1.0} if explain else {}))
                matched_prev.add(a.cluster_id)
                matched_new.add(b.cluster_id)
    splits, merges = find_transitions(pc, nc, pt, nt, ov, text, matches)
    in_split = {n for s in splits for n in s.new}
    merged_prev = {p for mg in merges for p in mg.prev}
    merge_targets = {mg.new for mg in merges}
    split_prev = {s.prev for s in splits}
    return RunDiff(
        prev_run_id=prev.run_id, new_run_id=new.run_id, matches=sorted(matches, key=lambda m: m.new),
        new=[c.cluster_id for c in nc if c.cluster_id not in matched_new and c.cluster_id not in in_split
             and c.cluster_id not in merge_targets],
        disappeared=[c.cluster_id for c in pc if c.cluster_id not in matched_prev and c.cluster_id not in merged_prev
                     and c.cluster_id not in split_prev],
        splits=splits, merges=merges, prev_noise_share=prev.noise_share, new_noise_share=new.noise_share,
        item_overlap=round(ov.shared_fraction, 4),
    )
