"""Run-level drift: one number for "the traffic mix moved", so a team reads it once instead of ten share
alerts. Pure.

The distributions compared are the two runs' shares over *lineage groups*: a cluster and its match form
one bin, a split's parts stay in their source's bin and a merge's sources in their result's, so a cluster
that only changed its name or its granularity does not count as movement. New and disappeared clusters
share one "unmatched" bin. Noise is left out (it has its own metric, `noise_share`).

The distance is Jensen-Shannon in base 2, as Evidently uses for categorical drift: 0 for the same mix,
1 for disjoint ones, symmetric and bounded, unlike PSI, which explodes on bins that are empty on one side.
"""

from __future__ import annotations

import math

from monitor.matching.model import RunDiff
from monitor.runs import Run


def mix_bins(prev: Run, run: Run, diff: RunDiff) -> list[tuple[float, float]]:
    """(previous share, new share) per group of clusters linked by a match, a split or a merge."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: tuple[str, int], b: tuple[str, int]) -> None:
        parent[find(a)] = find(b)

    for m in diff.matches:
        union(("p", m.prev), ("n", m.new))
    for s in diff.splits:
        for n in s.new:
            union(("p", s.prev), ("n", n))
    for mg in diff.merges:
        for p in mg.prev:
            union(("p", p), ("n", mg.new))
    prev_total = sum(c.size for c in prev.clusters if not c.is_noise)
    new_total = sum(c.size for c in run.clusters if not c.is_noise)
    if prev_total <= 0 or new_total <= 0:
        return []
    bins: dict[tuple[str, int], list[float]] = {}
    for c in prev.clusters:
        if not c.is_noise:
            bins.setdefault(find(("p", c.cluster_id)), [0.0, 0.0])[0] += c.size / prev_total
    for c in run.clusters:
        if not c.is_noise:
            bins.setdefault(find(("n", c.cluster_id)), [0.0, 0.0])[1] += c.size / new_total
    # Clusters with no counterpart (new, disappeared) share one bin: traffic arriving or leaving moves the
    # mix, but a "disappeared" and a "new" cluster of the same size, which is what a rewording the matcher
    # missed looks like, cancel out instead of reading as a large shift.
    linked = [(p, q) for p, q in bins.values() if p > 0 and q > 0]
    unmatched = (sum(p for p, q in bins.values() if q == 0), sum(q for p, q in bins.values() if p == 0))
    return [*linked, unmatched] if unmatched != (0.0, 0.0) else linked


def js_distance(bins: list[tuple[float, float]]) -> float:
    """Jensen-Shannon distance, base 2 (in [0, 1])."""
    div = 0.0
    for p, q in bins:
        m = (p + q) / 2
        if p > 0:
            div += 0.5 * p * math.log2(p / m)
        if q > 0:
            div += 0.5 * q * math.log2(q / m)
    return math.sqrt(max(0.0, min(1.0, div)))


def mix_shift(prev: Run | None, run: Run, diff: RunDiff | None) -> float | None:
    """The run's traffic mix shift against the previous run of its job; None for a first run."""
    if prev is None or diff is None:
        return None
    bins = mix_bins(prev, run, diff)
    return js_distance(bins) if bins else None
