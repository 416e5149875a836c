"""Lineages: one id that follows "the same cluster" across runs while its title and cluster_id change.

Rules, cooldowns and history key on the lineage, so a reworded title does not reset an alert. A match
inherits the previous cluster's lineage; of a split's parts the continuation (the one-to-one match)
inherits and the others start new lineages that remember their parent; a merge continues the lineage of
its matched source, or of its largest source when none matched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from monitor.matching.model import RunDiff
from monitor.runs import Run


@dataclass(frozen=True)
class LineageResult:
    lineages: dict[int, str]
    # New lineage id -> the lineage(s) it came from (split parts, merge sources that did not continue).
    parents: dict[str, list[str]] = field(default_factory=dict)


def assign_lineages(diff: RunDiff | None, prev_lineages: Mapping[int, str], new_run: Run,
                    new_id: Callable[[], str], prev_sizes: Mapping[int, int] | None = None) -> LineageResult:
    out: dict[int, str] = {}
    parents: dict[str, list[str]] = {}
    if diff is not None:
        for m in diff.matches:
            if m.prev in prev_lineages:
                out[m.new] = prev_lineages[m.prev]
        for mg in diff.merges:
            if mg.new in out:
                continue
            sources = [p for p in mg.prev if p in prev_lineages]
            if sources:
                biggest = max(sources, key=lambda p: (prev_sizes or {}).get(p, 0))
                out[mg.new] = prev_lineages[biggest]
        for s in diff.splits:
            parent = prev_lineages.get(s.prev)
            for part in s.new:
                if part not in out:
                    out[part] = new_id()
                    if parent:
                        parents[out[part]] = [parent]
    for c in new_run.clusters:
        if c.cluster_id not in out:
            out[c.cluster_id] = new_id()
    return LineageResult(lineages=out, parents=parents)
