"""Per-cluster cost, latency, token, error and evaluation metrics: from the `metrics` PostHog already put
in the run, and from the one-query-per-run answer for what those lack.

Definitions follow PostHog's own (its clustering workflow's aggregates), so the numbers in an alert
match the ones in PostHog's cluster view: averages over items that have the value, error rate as the
share of items with at least one failed generation, embedding or span; at evaluation level the pass
rate and not-applicable rate over evaluations with a verdict (not applicable counts as one), the
dominant evaluation and runtime the most common, the judge's cost averaged over evaluations that cost.
Either source gives the same numbers for what both have, so a run's alerts do not depend on which
one answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from monitor.runs import Run


class ClusterMetrics(msgspec.Struct, frozen=True):
    cluster_id: int
    items: int = 0
    total_cost: float = 0.0
    avg_cost: float | None = None
    avg_latency: float | None = None
    p50_latency: float | None = None
    p95_latency: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    avg_tokens: float | None = None
    error_count: int = 0
    error_rate: float | None = None
    # Evaluation level (None elsewhere).
    pass_rate: float | None = None
    na_rate: float | None = None
    evaluation_name: str | None = None  # the dominant evaluation of the cluster
    evaluation_runtime: str | None = None  # its runtime: llm_judge or hog
    avg_judge_cost: float | None = None
    total_judge_cost: float | None = None  # only the monitor's query knows it

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__struct_fields__}


class MetricsParseError(ValueError):
    pass


# What PostHog's embedded `metrics` lack, so only the monitor's own query gives them: percentiles, the
# token split and the judges' total cost. Names of ClusterMetrics fields (and of the rule metrics).
QUERY_ONLY = frozenset({"p50_latency", "p95_latency", "input_tokens", "output_tokens", "total_judge_cost"})
# Limits of `thresholds:` on one of those (field of config.Thresholds -> the metric it reads).
QUERY_ONLY_LIMITS = {"p95_latency_s": "p95_latency"}


def metrics_from_payload(run: Run) -> dict[int, ClusterMetrics]:
    """The metrics PostHog put in the run, per cluster that has them (best effort: null or absent on
    some runs). An `item_count` is needed: without it rates and averages cannot be weighed."""
    out: dict[int, ClusterMetrics] = {}
    for c in run.clusters:
        pm = c.metrics
        if pm is None or pm.item_count is None:
            continue
        out[c.cluster_id] = ClusterMetrics(
            cluster_id=c.cluster_id, items=pm.item_count, total_cost=pm.total_cost or 0.0, avg_cost=pm.avg_cost,
            avg_latency=pm.avg_latency, avg_tokens=pm.avg_tokens, error_count=pm.error_count or 0,
            error_rate=pm.error_rate, pass_rate=pm.pass_rate, na_rate=pm.na_rate,
            evaluation_name=pm.dominant_evaluation_name or None, evaluation_runtime=pm.dominant_runtime or None,
            avg_judge_cost=pm.avg_judge_cost)
    return out


def with_query_only(embedded: Mapping[int, ClusterMetrics],
                    queried: Mapping[int, ClusterMetrics]) -> dict[int, ClusterMetrics]:
    """PostHog's metrics where the run has them, completed with what only the query gives; the query's
    own metrics for clusters PostHog left without."""
    out = dict(queried)
    for cid, e in embedded.items():
        q = queried.get(cid)
        out[cid] = e if q is None else msgspec.structs.replace(e, **{f: getattr(q, f) for f in QUERY_ONLY})
    return out


def _dominant(values: Any) -> str | None:
    """The most common non-empty value (ties: the first in name order, so every reader agrees)."""
    if not isinstance(values, (list, tuple)):
        return None
    counts = Counter(str(v) for v in values if v)
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _evaluation_columns(r: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation level's columns of a metrics row (none at the other levels)."""
    if "verdicts" not in r:
        return {}
    verdicts = int(r.get("verdicts") or 0)
    with_judge_cost = int(r.get("items_with_judge_cost") or 0)
    judge_cost = _f(r.get("judge_cost")) or 0.0
    return {
        "pass_rate": int(r.get("passes") or 0) / verdicts if verdicts else None,
        "na_rate": int(r.get("not_applicable") or 0) / verdicts if verdicts else None,
        "evaluation_name": _dominant(r.get("evaluation_names")),
        "evaluation_runtime": _dominant(r.get("runtimes")),
        "avg_judge_cost": judge_cost / with_judge_cost if with_judge_cost else None,
        "total_judge_cost": judge_cost,
    }


def clusters_without(run: Run, metrics: Iterable[int]) -> list[int]:
    """Clusters of the run with no metrics in `metrics`."""
    have = set(metrics)
    return [c.cluster_id for c in run.clusters if c.cluster_id not in have]


def _f(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if x != x else x  # NaN from quantile over nothing


def metrics_from_rows(rows: Sequence[Mapping[str, Any]], run_id: str) -> dict[int, ClusterMetrics]:
    out: dict[int, ClusterMetrics] = {}
    for r in rows:
        try:
            cid = int(r["cluster_id"])
            items = int(r["items"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MetricsParseError(f"run {run_id!r}: metrics row without cluster_id/items: {r!r}") from exc
        total_cost = _f(r.get("total_cost")) or 0.0
        with_cost = int(r.get("items_with_cost") or 0)
        tokens_in = int(_f(r.get("input_tokens")) or 0)
        tokens_out = int(_f(r.get("output_tokens")) or 0)
        with_tokens = int(r.get("items_with_tokens") or 0)
        errors = int(r.get("items_with_errors") or 0)
        out[cid] = ClusterMetrics(
            cluster_id=cid,
            items=items,
            total_cost=total_cost,
            avg_cost=total_cost / with_cost if with_cost else None,
            avg_latency=_f(r.get("avg_latency")),
            p50_latency=_f(r.get("p50_latency")),
            p95_latency=_f(r.get("p95_latency")),
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            avg_tokens=(tokens_in + tokens_out) / with_tokens if with_tokens else None,
            error_count=errors,
            error_rate=errors / items if items else None,
            **_evaluation_columns(r),
        )
    return out


def run_totals(metrics: Mapping[int, ClusterMetrics]) -> ClusterMetrics:
    """The whole run as one pseudo-cluster (id -2): run-level rules and shares of cost read it."""
    items = sum(m.items for m in metrics.values())
    cost = sum(m.total_cost for m in metrics.values())
    errors = sum(m.error_count for m in metrics.values())
    return ClusterMetrics(cluster_id=-2, items=items, total_cost=cost,
                          avg_cost=cost / items if items else None, error_count=errors,
                          error_rate=errors / items if items else None,
                          input_tokens=sum(m.input_tokens for m in metrics.values()),
                          output_tokens=sum(m.output_tokens for m in metrics.values()))
