"""The rule language: the `rules:` of the config, evaluated over one run and its lineages' history. Pure.

A rule is a metric, a comparison and bounds. The comparison is what makes a rule livable: a team that
does not know what "normal" cost is for a cluster can ask for "50% over its own weekly median" or "four
robust z-scores off its last two weeks" instead of guessing an absolute number. Everything a comparison
needs comes from the history the store already keeps (each run's cluster snapshots, keyed by lineage),
so a restart changes nothing and `replay` evaluates exactly what the daemon would.

`for: "N of M"` asks the same question of the lineage's last M runs (the current one included) and
fires on a run that breaks the rule when at least N of them did, as PostHog's insight alerts do.

This module says where a rule fires (`verdicts`) and in which words (`describe`); the rule engine
(monitor/rules/engine.py) turns that into alerts exactly as it does for the built-in kinds.
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.config import Rule
from monitor.kinds import CLUSTER_METRICS, METRIC, MIX_SHIFT_METRIC, fmt
from monitor.runs import Cluster
from monitor.store.base import ClusterSnapshot

if TYPE_CHECKING:
    from monitor.rules.engine import RuleContext

# A history steadier than this fraction of its centre counts as this wide: aggregates of thousands of
# items barely move from run to run, and a 3% wobble must not read as "20 standard deviations".
SPREAD_FLOOR = 0.05
# 1.4826 * MAD estimates the standard deviation of normal data: robust z-scores read like z-scores.
_MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Point:
    """One cluster (or one run, for run metrics) in one run, as rules see it."""

    run_id: str
    size: int
    share: float
    metrics: Mapping[str, Any]
    run_cost: float = 0.0

    @property
    def items(self) -> int:
        v = self.metrics.get("items")
        return int(v) if isinstance(v, (int, float)) and v else self.size


def cluster_value(metric: str, p: Point, prev: Point | None) -> float | None:
    if metric == "size":
        return float(p.size)
    if metric == "share":
        return p.share
    change_of = METRIC[metric].change_of if metric in METRIC else None
    if change_of is not None:
        now = cluster_value(change_of, p, None)
        before = cluster_value(change_of, prev, None) if prev is not None else None
        return (now - before) * 100 if now is not None and before is not None else None
    if metric == "cost_share":
        cost = _num(p.metrics.get("total_cost"))
        return cost / p.run_cost if cost is not None and p.run_cost > 0 else None
    return _num(p.metrics.get(metric))


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    x = float(v)
    return None if math.isnan(x) else x


@dataclass(frozen=True)
class Verdict:
    holds: bool
    observed: float | None  # the compared quantity (value, relative change, z)
    value: float | None  # the metric itself
    reference: float | None  # previous value or baseline (median / mean)


def judge(rule: Rule, values: Sequence[float | None], items: Sequence[int], i: int) -> Verdict:
    """Does `values[i]` break the rule, given the values before it? `items` gates small clusters."""
    v = values[i]
    if v is None or (rule.metric in CLUSTER_METRICS and items[i] < rule.min_items):
        return Verdict(False, None, v, None)
    ref: float | None = None
    observed: float | None
    if rule.compare == "value":
        observed = v
    elif rule.compare == "previous":
        ref = values[i - 1] if i > 0 else None
        observed = (v - ref) / abs(ref) if ref else None
    else:
        hist = [h for h in values[max(0, i - rule.window):i] if h is not None]
        if len(hist) < rule.min_history:
            return Verdict(False, None, v, None)
        if rule.compare == "baseline":
            ref = statistics.median(hist)
            observed = (v - ref) / abs(ref) if ref else None
        elif rule.compare == "zscore":
            ref = statistics.fmean(hist)
            observed = _z(v - ref, max(statistics.pstdev(hist), SPREAD_FLOOR * abs(ref)))
        else:
            ref = statistics.median(hist)
            spread = _MAD_SCALE * statistics.median(abs(h - ref) for h in hist)
            observed = _z(v - ref, max(spread, SPREAD_FLOOR * abs(ref)))
    holds = observed is not None and (
        (rule.above is not None and observed > rule.above) or (rule.below is not None and observed < rule.below))
    return Verdict(holds, observed, v, ref)


def _z(delta: float, spread: float) -> float:
    """A history stuck at zero makes any move infinitely unusual; no move is 0."""
    if spread > 0:
        return delta / spread
    return 0.0 if delta == 0 else math.copysign(math.inf, delta)


def breaks(rule: Rule, values: Sequence[float | None], items: Sequence[int]) -> Verdict | None:
    """The verdict on the last value, when the rule fires there (N of the last M runs broke it)."""
    last = len(values) - 1
    if last < 0:
        return None
    now = judge(rule, values, items, last)
    if not now.holds:
        return None
    if rule.for_.runs > 1:
        first = max(0, last - rule.for_.of + 1)
        count = sum(judge(rule, values, items, i).holds for i in range(first, last + 1))
        if count < rule.for_.runs:
            return None
    return now


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def in_scope(rule: Rule, job_name: str, job_id: str, level: str, title: str | None, lineage: str | None) -> bool:
    s = rule.scope
    if s.jobs and not any(_glob(p, job_name) or _glob(p, job_id) for p in s.jobs):
        return False
    if s.levels and level not in s.levels:
        return False
    if s.title and not _glob(s.title, title or ""):
        return False
    return not (s.lineage and s.lineage != lineage)


def run_metrics(ctx: RuleContext, mix_shift: float | None) -> dict[str, float]:
    """The run-level metrics of the current run (kept by the store, so later runs have a history)."""
    run = ctx.run
    total = run.clustered_size or 0
    noise = sum(c.size for c in run.clusters if c.is_noise)
    out = {
        "run_total_cost": sum(m.total_cost for m in ctx.metrics.values()),
        "run_items": float(total),
        "noise_share": noise / total if total else 0.0,
    }
    if ctx.diff is not None:
        out["new_clusters"] = float(len(ctx.diff.new))
        out["disappeared_clusters"] = float(len(ctx.diff.disappeared))
    if mix_shift is not None:
        out[MIX_SHIFT_METRIC] = mix_shift
    return out


def verdicts(rule: Rule, ctx: RuleContext, series: Mapping[str, Sequence[Point]],
             run_history: Sequence[Mapping[str, float]],
             current_run: Mapping[str, float]) -> Iterator[tuple[Cluster | None, Verdict]]:
    """Where `rule` fires in this run: (the cluster, or None for a run rule, and the verdict).

    `series`: the earlier points of each lineage (`lineage_series`), `run_history`: the run metrics of
    the job's earlier runs (oldest first), `current_run`: this run's.
    """
    if rule.is_run_rule:
        values = [h.get(rule.metric) for h in run_history] + [current_run.get(rule.metric)]
        v = breaks(rule, values, [0] * len(values))
        if v is not None:
            yield None, v
        return
    for c in ctx.run.clusters:
        if c.is_noise:
            continue
        lineage = ctx.lineages.get(c.cluster_id)
        if not in_scope(rule, ctx.run.job_name, ctx.run.job_id, ctx.run.level, c.title, lineage):
            continue
        points = [*series.get(lineage or "", []), _current_point(ctx, c.cluster_id, c.size)]
        values = [cluster_value(rule.metric, p, points[k - 1] if k else None) for k, p in enumerate(points)]
        v = breaks(rule, values, [p.items for p in points])
        if v is not None:
            yield c, v


def _current_point(ctx: RuleContext, cluster_id: int, size: int) -> Point:
    total = ctx.run.clustered_size or 1
    m = ctx.metrics.get(cluster_id)
    return Point(run_id=ctx.run.run_id, size=size, share=size / total, metrics=m.as_dict() if m else {},
                 run_cost=sum(x.total_cost for x in ctx.metrics.values()))


def lineage_series(ctx: RuleContext, history: Sequence[ClusterSnapshot]) -> dict[str, list[Point]]:
    """Each lineage's points in the job's earlier runs, oldest first."""
    run_cost: dict[str, float] = {}
    for s in history:
        run_cost[s.run_id] = run_cost.get(s.run_id, 0.0) + (_num(s.metrics.get("total_cost")) or 0.0)
    out: dict[str, list[Point]] = {}
    for s in history:
        if s.run_id == ctx.run.run_id:
            continue
        out.setdefault(s.lineage_id, []).append(
            Point(run_id=s.run_id, size=s.size, share=s.share, metrics=s.metrics, run_cost=run_cost[s.run_id]))
    return out


def _bounds(rule: Rule, f: Any) -> str:
    parts = []
    if rule.above is not None:
        parts.append(f"above {f(rule.above)}")
    if rule.below is not None:
        parts.append(f"below {f(rule.below)}")
    return " or ".join(parts)


def _z_text(z: float | None) -> str:
    if z is None:
        return "n/a"
    return "∞" if math.isinf(z) else f"{z:+.1f}"


def describe(rule: Rule, v: Verdict) -> str:
    name = rule.metric.replace("_", " ")
    value = fmt(rule.metric, v.value)
    if rule.compare == "value":
        text = f"{name} is {value} (rule: {_bounds(rule, lambda x: fmt(rule.metric, x))})"
    elif rule.compare == "previous":
        text = (f"{name} is {value}, was {fmt(rule.metric, v.reference)} in the previous run "
                f"({(v.observed or 0):+.0%}; rule: {_bounds(rule, lambda x: f'{x:+.0%}')})")
    elif rule.compare == "baseline":
        text = (f"{name} is {value}, {(v.observed or 0):+.0%} against its median of the last {rule.window} runs "
                f"({fmt(rule.metric, v.reference)}; rule: {_bounds(rule, lambda x: f'{x:+.0%}')})")
    else:
        what = "z-score" if rule.compare == "zscore" else "robust z-score"
        center = "mean" if rule.compare == "zscore" else "median"
        text = (f"{name} is {value}, {what} {_z_text(v.observed)} against the last {rule.window} runs "
                f"({center} {fmt(rule.metric, v.reference)}; rule: {_bounds(rule, lambda x: f'{x:+.1f}')})")
    if rule.for_.runs > 1:
        text += f", in {rule.for_.runs} of the last {rule.for_.of} runs"
    return f"{rule.name}: {text[0].upper()}{text[1:]}"


__all__ = ["breaks", "describe", "judge", "lineage_series", "run_metrics", "verdicts"]
