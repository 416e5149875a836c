"""Diff: match the run's clusters to the previous run's, and carry each cluster's lineage id over."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.matching import match_runs
from monitor.matching.embeddings import ClusterVectors
from monitor.matching.lineage import assign_lineages
from monitor.matching.model import RunDiff
from monitor.runs import Run


def diff_run(prev: Run | None, run: Run, prev_lineages: Mapping[int, str], *, threshold: float,
             prev_vectors: ClusterVectors | None = None,
             vectors: ClusterVectors | None = None) -> tuple[RunDiff | None, dict[int, str]]:
    """(the diff, None for a job's first run; cluster id -> lineage id). New lineages are named after the
    run (`<run id>#<n>`), so redoing a run names them the same. `prev_vectors` / `vectors`: each run's
    cluster means in PostHog's embedding space (none: the lexical signals alone)."""
    diff = match_runs(prev, run, threshold=threshold, prev_vectors=prev_vectors, new_vectors=vectors) if prev else None
    counter = iter(range(1_000_000))
    lineages = assign_lineages(
        diff, prev_lineages, run, lambda: f"{run.run_id}#{next(counter)}",
        prev_sizes={c.cluster_id: c.size for c in prev.clusters} if prev else None).lineages
    return diff, dict(lineages)
