"""Threshold rules: a run, its diff and its metrics in, alerts out. Pure: no I/O, no clock.

Two kinds of condition, treated differently by the alert lifecycle:
- levels ("error rate is above 10%", "cost is above $100"): stateful, they fire, stay quiet while they
  hold, and resolve once when they stop holding;
- changes ("average cost doubled since the previous run", "a new cluster appeared"): events, notified
  once and never "resolved", because the next run comparing against an already-changed run says
  nothing about whether the change went away.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from monitor.alerts import Alert, Link, fingerprint
from monitor.config import Override, Thresholds, ThresholdsConfig
from monitor.links import PostHogLinks
from monitor.matching.model import RunDiff
from monitor.metrics import ClusterMetrics
from monitor.rules.drift import mix_shift
from monitor.runs import Cluster, Run

# Kinds whose alerts are states (resolve when the condition clears) rather than one-off events.
STATEFUL_KINDS = frozenset({"cluster_cost", "cluster_avg_cost", "error_rate", "p95_latency", "stale_source",
                            "source_errors"})


def is_stateful(kind: str) -> bool:
    """Built-in levels, and rules that compare a level (`rule:<name>`; changes are `rule_change:<name>`)."""
    return kind in STATEFUL_KINDS or kind.startswith("rule:")


def rule_name(kind: str) -> str:
    """The rule behind an alert kind: the configured name for rules, the kind itself for built-ins."""
    prefix, _, name = kind.partition(":")
    return name if prefix in ("rule", "rule_change") and name else kind


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may look at for one run."""

    project_id: int
    run: Run
    prev_run: Run | None
    diff: RunDiff | None
    metrics: Mapping[int, ClusterMetrics]
    prev_metrics: Mapping[int, ClusterMetrics]
    lineages: Mapping[int, str]
    prev_lineages: Mapping[int, str]
    thresholds: ThresholdsConfig
    links: PostHogLinks

    @property
    def job_key(self) -> str:
        return "|".join(self.run.job_key)

    @cached_property
    def mix_shift(self) -> float | None:
        """The run's traffic-mix shift, computed once for the built-in alert and the rules' run metrics."""
        return mix_shift(self.prev_run, self.run, self.diff)


def thresholds_for(cfg: ThresholdsConfig, title: str, lineage_id: str | None) -> Thresholds:
    """Defaults, with every matching override laid over them in file order (later wins)."""
    merged = cfg.defaults.model_dump()
    for o in cfg.overrides:
        if _applies(o, title, lineage_id):
            merged.update(o.thresholds.model_dump(exclude_unset=True))
    return Thresholds.model_validate(merged)


def _applies(o: Override, title: str, lineage_id: str | None) -> bool:
    if o.lineage and lineage_id and o.lineage == lineage_id:
        return True
    return bool(o.title and fnmatch.fnmatchcase(title.lower(), o.title.lower()))


def rise_z(new_rate: float, new_n: int, old_rate: float, old_n: int) -> float:
    """z-score of a rate's rise between two samples (pooled two-proportion test); 0 when undefined."""
    if new_n <= 0 or old_n <= 0:
        return 0.0
    pooled = (new_rate * new_n + old_rate * old_n) / (new_n + old_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / new_n + 1 / old_n))
    return (new_rate - old_rate) / se if se > 0 else 0.0


def _pct(new: float, old: float) -> str:
    if old <= 0:
        return "new"
    return f"{(new - old) / old * 100:+.0f}%"


def evaluate(ctx: RuleContext) -> list[Alert]:
    alerts: list[Alert] = []
    run = ctx.run
    total_items = run.clustered_size or 1
    prev_titles = {c.cluster_id: c.title for c in ctx.prev_run.clusters} if ctx.prev_run else {}

    def make(kind: str, severity: str, c: Cluster, summary: str, *, metric: str | None = None,
             value: float | None = None, threshold: float | None = None, previous: float | None = None,
             unit: str = "", previous_title: str | None = None, fp_extra: str = "") -> Alert:
        lineage = ctx.lineages.get(c.cluster_id)
        links = [Link("Open run", ctx.links.run(run.run_id)),
                 Link("Open cluster", ctx.links.cluster(run.run_id, c.cluster_id))]
        top = tuple(c.top_trace_ids(3))
        if top:
            links.append(Link("Top trace", ctx.links.trace(top[0])))
        return Alert(
            fingerprint=fingerprint(ctx.project_id, ctx.job_key, kind, lineage or f"{c.cluster_id}:{c.title}",
                                    fp_extra),
            rule=kind, kind=kind, severity=severity, summary=summary, run_id=run.run_id,
            job_name=run.job_name or run.job_id, level=run.level, cluster_id=c.cluster_id,
            cluster_title=c.title, lineage_id=lineage, previous_title=previous_title, metric=metric,
            value=value, threshold=threshold, previous_value=previous, unit=unit, top_trace_ids=top,
            links=tuple(links), labels={"job": run.job_name, "level": run.level},
        )

    # A split or merge explains its clusters' share changes: they are not told again as shifts.
    transition_clusters = set()
    if ctx.diff is not None:
        transition_clusters = {n for sp in ctx.diff.splits for n in sp.new} | {mg.new for mg in ctx.diff.merges}
    for c in run.clusters:
        if c.is_noise:
            continue
        lineage = ctx.lineages.get(c.cluster_id)
        t = thresholds_for(ctx.thresholds, c.title, lineage)
        m = ctx.metrics.get(c.cluster_id)
        match = ctx.diff.match_for_new(c.cluster_id) if ctx.diff else None
        pm = ctx.prev_metrics.get(match.prev) if match else None
        prev_title = prev_titles.get(match.prev) if match else None
        renamed = prev_title if prev_title and prev_title != c.title else None
        big_enough = m is not None and m.items >= t.min_items

        if m is not None and t.total_cost_usd is not None and m.total_cost > t.total_cost_usd:
            alerts.append(make(
                "cluster_cost", "warning", c,
                f"Total cost ${m.total_cost:,.2f} is above ${t.total_cost_usd:,.2f}",
                metric="total_cost", value=m.total_cost, threshold=t.total_cost_usd,
                previous=pm.total_cost if pm else None, unit="usd", previous_title=renamed))
        if (m is not None and big_enough and m.avg_cost is not None and t.avg_cost_usd is not None
                and m.avg_cost > t.avg_cost_usd):
            alerts.append(make(
                "cluster_avg_cost", "warning", c,
                f"Average cost ${m.avg_cost:.4f} per item is above ${t.avg_cost_usd:.4f}",
                metric="avg_cost", value=m.avg_cost, threshold=t.avg_cost_usd,
                previous=pm.avg_cost if pm else None, unit="usd", previous_title=renamed))
        if (big_enough and m is not None and pm is not None and m.avg_cost and pm.avg_cost
                and t.avg_cost_increase is not None and m.avg_cost > pm.avg_cost * (1 + t.avg_cost_increase)):
            alerts.append(make(
                "cost_spike", "critical", c,
                f"Average cost per item ${m.avg_cost:.4f}, was ${pm.avg_cost:.4f} "
                f"({_pct(m.avg_cost, pm.avg_cost)}; threshold +{t.avg_cost_increase * 100:.0f}%)",
                metric="avg_cost", value=m.avg_cost, threshold=pm.avg_cost * (1 + t.avg_cost_increase),
                previous=pm.avg_cost, unit="usd", previous_title=renamed, fp_extra=run.run_id))
        if (big_enough and m is not None and m.error_rate is not None and t.error_rate is not None
                and m.error_rate >= t.error_rate):
            alerts.append(make(
                "error_rate", "critical", c,
                f"Error rate {m.error_rate:.1%} is at or above {t.error_rate:.1%} "
                f"({m.error_count} of {m.items} items)",
                metric="error_rate", value=m.error_rate, threshold=t.error_rate,
                previous=pm.error_rate if pm else None, unit="ratio", previous_title=renamed))
        elif (big_enough and m is not None and pm is not None and m.error_rate is not None
              and pm.error_rate is not None and t.error_rate_increase_pp is not None
              and (m.error_rate - pm.error_rate) * 100 >= t.error_rate_increase_pp
              and rise_z(m.error_rate, m.items, pm.error_rate, pm.items) >= t.min_z):
            alerts.append(make(
                "error_spike", "warning", c,
                f"Error rate {m.error_rate:.1%}, was {pm.error_rate:.1%} "
                f"(+{(m.error_rate - pm.error_rate) * 100:.1f} pp; threshold +{t.error_rate_increase_pp:g} pp)",
                metric="error_rate", value=m.error_rate, threshold=pm.error_rate + t.error_rate_increase_pp / 100,
                previous=pm.error_rate, unit="ratio", previous_title=renamed, fp_extra=run.run_id))
        if (big_enough and m is not None and m.p95_latency is not None and t.p95_latency_s is not None
                and m.p95_latency > t.p95_latency_s):
            alerts.append(make(
                "p95_latency", "warning", c,
                f"p95 latency {m.p95_latency:.2f} s is above {t.p95_latency_s:.2f} s",
                metric="p95_latency", value=m.p95_latency, threshold=t.p95_latency_s,
                previous=pm.p95_latency if pm else None, unit="s", previous_title=renamed))
        if (match is not None and t.share_shift_pp is not None and c.cluster_id not in transition_clusters
                and abs(match.share_delta_pp) >= t.share_shift_pp):
            direction = "grew" if match.share_delta_pp > 0 else "shrank"
            alerts.append(make(
                "share_shift", "info", c,
                f"Share of traffic {direction} to {match.new_share:.1%} from {match.prev_share:.1%} "
                f"({match.share_delta_pp:+.1f} pp; threshold ±{t.share_shift_pp:g} pp)",
                metric="share", value=match.new_share, threshold=t.share_shift_pp / 100,
                previous=match.prev_share, unit="ratio", previous_title=renamed, fp_extra=run.run_id))

    shift = ctx.mix_shift
    if shift is not None and ctx.thresholds.mix_shift is not None and shift >= ctx.thresholds.mix_shift:
        moved = [m for m in (ctx.diff.matches if ctx.diff else []) if abs(m.share_delta_pp) >= 1]
        moved.sort(key=lambda m: -abs(m.share_delta_pp))
        detail = ", ".join(f"'{m.new_title}' {m.share_delta_pp:+.1f} pp" for m in moved[:3])
        alerts.append(Alert(
            fingerprint=fingerprint(ctx.project_id, ctx.job_key, "mix_shift", run.run_id),
            rule="mix_shift", kind="mix_shift", severity="warning",
            summary=(f"The traffic mix moved: Jensen-Shannon distance {shift:.2f} from the previous run "
                     f"(threshold {ctx.thresholds.mix_shift:.2f})" + (f"; largest moves: {detail}" if detail else "")),
            run_id=run.run_id, job_name=run.job_name or run.job_id, level=run.level, metric="mix_shift",
            value=shift, threshold=ctx.thresholds.mix_shift, unit="",
            links=(Link("Open run", ctx.links.run(run.run_id)),),
            labels={"job": run.job_name, "level": run.level}))

    if ctx.diff is not None:
        in_transition = {n for s in ctx.diff.splits for n in s.new} | {mg.new for mg in ctx.diff.merges}
        for cid in ctx.diff.new:
            nc = run.cluster(cid)
            if nc is None or nc.is_noise or cid in in_transition:
                continue
            t = thresholds_for(ctx.thresholds, nc.title, ctx.lineages.get(cid))
            share = nc.size / total_items
            if t.new_cluster_min_share is not None and share >= t.new_cluster_min_share:
                m = ctx.metrics.get(cid)
                cost = f", ${m.total_cost:,.2f} total cost" if m else ""
                alerts.append(make(
                    "new_cluster", "warning", nc,
                    f"New cluster with {nc.size} items ({share:.1%} of traffic{cost})",
                    metric="share", value=share, threshold=t.new_cluster_min_share, unit="ratio",
                    fp_extra=run.run_id))
        if ctx.prev_run is not None:
            prev_total = ctx.prev_run.clustered_size or 1
            for cid in ctx.diff.disappeared:
                pc = ctx.prev_run.cluster(cid)
                if pc is None or pc.is_noise:
                    continue
                lineage = ctx.prev_lineages.get(cid)
                t = thresholds_for(ctx.thresholds, pc.title, lineage)
                share = pc.size / prev_total
                if t.disappeared_min_share is not None and share >= t.disappeared_min_share:
                    links = (Link("Open run", ctx.links.run(run.run_id)),
                             Link("Previous run", ctx.links.cluster(ctx.prev_run.run_id, cid)))
                    alerts.append(Alert(
                        fingerprint=fingerprint(ctx.project_id, ctx.job_key, "disappeared",
                                                lineage or f"{pc.cluster_id}:{pc.title}", run.run_id),
                        rule="disappeared", kind="disappeared", severity="warning",
                        summary=f"Cluster disappeared (had {pc.size} items, {share:.1%} of traffic)",
                        run_id=run.run_id, job_name=run.job_name or run.job_id, level=run.level,
                        cluster_id=None, cluster_title=pc.title, lineage_id=lineage, metric="share",
                        value=0.0, threshold=t.disappeared_min_share, previous_value=share, unit="ratio",
                        links=links, labels={"job": run.job_name, "level": run.level},
                    ))
        for s in ctx.diff.splits:
            pc = ctx.prev_run.cluster(s.prev) if ctx.prev_run else None
            parts = [run.cluster(n) for n in s.new]
            first = next((p for p in parts if p is not None), None)
            if pc is None or first is None:
                continue
            names = ", ".join(f"'{p.title}'" for p in parts if p is not None)
            alerts.append(make("split", "info", first,
                               f"Split: '{pc.title}' became {names} (confidence {s.confidence:.0%})",
                               previous_title=pc.title, fp_extra=run.run_id))
        for mg in ctx.diff.merges:
            nc = run.cluster(mg.new)
            if nc is None or ctx.prev_run is None:
                continue
            names = ", ".join(f"'{p.title}'" for p in (ctx.prev_run.cluster(i) for i in mg.prev) if p is not None)
            alerts.append(make("merge", "info", nc,
                               f"Merge: {names} became one cluster (confidence {mg.confidence:.0%})",
                               fp_extra=run.run_id))
    return alerts
