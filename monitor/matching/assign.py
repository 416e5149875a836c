"""Matching two runs: a score for every pair of clusters, an optimal one-to-one assignment over it, then
splits and merges. Pure: two runs in, a RunDiff out.

The weights adapt to the evidence the pair of runs has. When the runs share enough items (small teams,
backfills, overlapping windows), item overlap decides and text confirms; when they share almost none
(busy teams: each run samples 1,500 of many thousands), text decides and traffic share breaks ties.
"""

from __future__ import annotations

import numpy as np
import structlog
from scipy.optimize import linear_sum_assignment

from monitor.matching import semantic as sem
from monitor.matching.model import Match, RunDiff
from monitor.matching.signals import (
    containment,
    idf,
    item_overlap,
    item_score,
    profile,
    share_score,
    shared_meaning,
    text_scores,
)
from monitor.matching.transitions import find_transitions
from monitor.runs import Run

log = structlog.get_logger()

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
# Sentence-embedding cosine of two cluster texts, mapped onto [0, 1]: unrelated texts of one product sit
# around 0.2 and rarely pass 0.5, rewordings of one cluster sit at 0.55-0.9 (all-MiniLM-L6-v2).
SEM_FLOOR = 0.35
SEM_CEIL = 0.75


def semantic_scores(prev_texts: list[str], new_texts: list[str], embedder: sem.Embedder | None,
                    required: bool = False) -> np.ndarray | None:
    """Calibrated sentence-embedding similarity of every pair, or None without an embedder. A failing
    embedder is logged and left out, unless `required` (the caller asked for the signal): then it raises."""
    if embedder is None or not prev_texts or not new_texts:
        return None
    try:
        vecs = embedder(prev_texts + new_texts)
    except sem.ModelError as e:
        if required:
            raise
        # By default the signal is a bonus: a damaged install says so and the diff goes on without it.
        log.warning("semantic_model_unusable", error=str(e))
        return None
    cos = vecs[: len(prev_texts)] @ vecs[len(prev_texts):].T
    out: np.ndarray = np.clip((cos - SEM_FLOOR) / (SEM_CEIL - SEM_FLOOR), 0.0, 1.0)
    return out


def _blend(title: float, desc: float | None, items: float | None, share: float,
           semantic: float | None = None) -> tuple[float, dict[str, float]]:
    signals = {"title": round(title, 4), "share": round(share, 4)}
    text = title if desc is None else 0.65 * title + 0.35 * desc
    if desc is not None:
        signals["description"] = round(desc, 4)
    if semantic is not None:
        signals["semantic"] = round(semantic, 4)
        text = max(text, semantic)
    if items is None:
        score = 0.9 * text + 0.1 * share
    else:
        signals["items"] = round(items, 4)
        score = 0.7 * items + 0.3 * text
    return min(1.0, max(0.0, score)), signals


def match_runs(prev: Run, new: Run, *, threshold: float = 0.5, explain: bool = False,
               embedder: sem.Embedder | None = None, require_semantic: bool = False) -> RunDiff:
    """`embedder`: the optional semantic signal, passed in by the wiring (None: text, items and shares
    only); `require_semantic`: an embedder that fails raises instead of being left out."""
    pc = [c for c in prev.clusters if not c.is_noise]
    nc = [c for c in new.clusters if not c.is_noise]
    pt, nt = prev.clustered_size or 1, new.clustered_size or 1
    pp = [profile(c) for c in pc]
    npf = [profile(c) for c in nc]
    weights = idf(pp + npf)
    ov = item_overlap(prev.clusters, new.clusters)
    sem_m = semantic_scores([sem.cluster_text(c.title, c.description) for c in pc],
                            [sem.cluster_text(c.title, c.description) for c in nc], embedder,
                            require_semantic)
    score = np.zeros((len(pc), len(nc)))
    text = np.zeros((len(pc), len(nc)))
    signals: dict[tuple[int, int], dict[str, float]] = {}
    for i, a in enumerate(pc):
        for j, b in enumerate(nc):
            t, d = text_scores(pp[i], npf[j], weights)
            sm = None if sem_m is None else float(sem_m[i, j])
            s, sig = _blend(t, d, item_score(ov, a.cluster_id, b.cluster_id), share_score(a.size / pt, b.size / nt), sm)
            score[i, j] = s
            text[i, j] = max(t if d is None else 0.65 * t + 0.35 * d, containment(pp[i], npf[j], weights), sm or 0.0)
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
            evidence = items if items is not None else max(shared_meaning(pp[i], npf[j], weights),
                                                               0.0 if sem_m is None else float(sem_m[i, j]))
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
