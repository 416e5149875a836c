"""Diff: match the run's clusters to the previous run's, and carry each cluster's lineage id over."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.matching import match_runs
from monitor.matching.lineage import assign_lineages
from monitor.matching.model import RunDiff
from monitor.matching.semantic import Embedder
from monitor.runs import Run


def diff_run(prev: Run | None, run: Run, prev_lineages: Mapping[int, str], *, threshold: float,
             embedder: Embedder | None = None) -> tuple[RunDiff | None, dict[int, str]]:
    """(the diff, None for a job's first run; cluster id -> lineage id). New lineages are named after the
    run (`<run id>#<n>`), so redoing a run names them the same. `embedder`: the optional semantic signal."""
    diff = match_runs(prev, run, threshold=threshold, embedder=embedder) if prev else None
    counter = iter(range(1_000_000))
    lineages = assign_lineages(
        diff, prev_lineages, run, lambda: f"{run.run_id}#{next(counter)}",
        prev_sizes={c.cluster_id: c.size for c in prev.clusters} if prev else None).lineages
    return diff, dict(lineages)
