"""Per-cluster cost, latency, token and error metrics, built from the one-query-per-run answer.

Definitions follow PostHog's own (its clustering workflow's aggregates), so the numbers in an alert
match the ones in PostHog's cluster view: averages over items that have the value, error rate as the
share of items with at least one failed generation, embedding or span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec


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

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__struct_fields__}


class MetricsParseError(ValueError):
    pass


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
