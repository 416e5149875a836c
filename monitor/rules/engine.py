"""The one rule engine: every alert about one run, built-in kinds and configured rules alike. Pure.

Both reduce to the same step: a check looks at one subject (a cluster of the run, a new or a
disappeared cluster, a split, a merge, or the run itself) and finds something or nothing. The checks
of built-in kinds are their entries in monitor/kinds.py (limits from `thresholds:`); a configured
rule's check is its verdict in the rule language (monitor/rules/language.py, history from the store).
This module walks the subjects, asks the checks, and turns every finding into an Alert the same way:
fingerprint, links, labels.

The order alerts come out in is part of the contract (messages sort them stably by importance, and
the first alert of a kind is the one that inhibits): scope by scope in the order of `kinds.SCOPES`,
each subject through the kinds of its scope in registry order, then rule by rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from monitor import kinds
from monitor.alerts import Alert, Link, fingerprint
from monitor.config import Rule, Thresholds, ThresholdsConfig
from monitor.kinds import Finding, Kind
from monitor.links import PostHogLinks
from monitor.matching.model import Match, Merge, RunDiff, Split
from monitor.metrics import ClusterMetrics
from monitor.rules import language
from monitor.rules.drift import mix_shift
from monitor.rules.thresholds import thresholds_for
from monitor.runs import Cluster, Run
from monitor.store.base import ClusterSnapshot


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

    @cached_property
    def in_transition(self) -> frozenset[int]:
        """Clusters of this run that are part of a split or a merge."""
        if self.diff is None:
            return frozenset()
        return frozenset({n for sp in self.diff.splits for n in sp.new} | {mg.new for mg in self.diff.merges})


# --- subjects: what one alert is about, and what the checks of its scope read ----------------------


@dataclass(frozen=True)
class Subject:
    """A cluster of this run, a cluster of the previous run (`gone`), or neither: the run itself."""

    cluster: Cluster | None = None
    gone: Cluster | None = None
    lineage: str | None = None
    # The cluster's title in the previous run, when its match had another one.
    renamed: str | None = None

    @property
    def key(self) -> str | None:
        """The subject's part of a fingerprint: its lineage, so an alert survives a cluster's new id."""
        c = self.cluster or self.gone
        return None if c is None else self.lineage or f"{c.cluster_id}:{c.title}"


@dataclass(frozen=True)
class ClusterView:
    """A cluster of this run with its limits, its metrics and its match in the previous run."""

    ctx: RuleContext
    cluster: Cluster
    lineage: str | None
    limits: Thresholds
    now: ClusterMetrics | None
    before: ClusterMetrics | None
    match: Match | None
    renamed: str | None
    in_transition: bool

    @property
    def big_enough(self) -> bool:
        """Rates and averages of a handful of items are noise."""
        return self.now is not None and self.now.items >= self.limits.min_items

    @property
    def subject(self) -> Subject:
        return Subject(cluster=self.cluster, lineage=self.lineage, renamed=self.renamed)


@dataclass(frozen=True)
class NewClusterView:
    ctx: RuleContext
    cluster: Cluster
    lineage: str | None
    limits: Thresholds
    share: float
    now: ClusterMetrics | None

    @property
    def subject(self) -> Subject:
        return Subject(cluster=self.cluster, lineage=self.lineage)


@dataclass(frozen=True)
class GoneClusterView:
    """A cluster of the previous run with no counterpart in this one."""

    ctx: RuleContext
    cluster: Cluster
    lineage: str | None
    limits: Thresholds
    share: float  # of the previous run

    @property
    def subject(self) -> Subject:
        return Subject(gone=self.cluster, lineage=self.lineage)


@dataclass(frozen=True)
class SplitView:
    ctx: RuleContext
    split: Split
    source: Cluster  # in the previous run
    parts: tuple[Cluster, ...]  # in this run; the alert is about the first

    @property
    def subject(self) -> Subject:
        return Subject(cluster=self.parts[0], lineage=self.ctx.lineages.get(self.parts[0].cluster_id))


@dataclass(frozen=True)
class MergeView:
    ctx: RuleContext
    merge: Merge
    cluster: Cluster  # in this run
    sources: tuple[Cluster, ...]  # in the previous run

    @property
    def subject(self) -> Subject:
        return Subject(cluster=self.cluster, lineage=self.ctx.lineages.get(self.cluster.cluster_id))


View = ClusterView | NewClusterView | GoneClusterView | SplitView | MergeView


def _cluster_views(ctx: RuleContext) -> list[ClusterView]:
    prev_titles = {c.cluster_id: c.title for c in ctx.prev_run.clusters} if ctx.prev_run else {}
    out = []
    for c in ctx.run.clusters:
        if c.is_noise:
            continue
        lineage = ctx.lineages.get(c.cluster_id)
        match = ctx.diff.match_for_new(c.cluster_id) if ctx.diff else None
        prev_title = prev_titles.get(match.prev) if match else None
        out.append(ClusterView(
            ctx=ctx, cluster=c, lineage=lineage, limits=thresholds_for(ctx.thresholds, c.title, lineage),
            now=ctx.metrics.get(c.cluster_id), before=ctx.prev_metrics.get(match.prev) if match else None,
            match=match, renamed=prev_title if prev_title and prev_title != c.title else None,
            in_transition=c.cluster_id in ctx.in_transition))
    return out


def _views(ctx: RuleContext, scope: kinds.Scope) -> list[View]:
    """The subjects of one scope, in the order their alerts come out."""
    run, prev, diff = ctx.run, ctx.prev_run, ctx.diff
    if scope == "cluster":
        return list(_cluster_views(ctx))
    if diff is None:
        return []
    out: list[View] = []
    if scope == "appeared":
        total = run.clustered_size or 1
        for cid in diff.new:
            nc = run.cluster(cid)
            if nc is None or nc.is_noise or cid in ctx.in_transition:
                continue
            lineage = ctx.lineages.get(cid)
            out.append(NewClusterView(ctx, nc, lineage, thresholds_for(ctx.thresholds, nc.title, lineage),
                                      nc.size / total, ctx.metrics.get(cid)))
    elif scope == "gone" and prev is not None:
        prev_total = prev.clustered_size or 1
        for cid in diff.disappeared:
            pc = prev.cluster(cid)
            if pc is None or pc.is_noise:
                continue
            lineage = ctx.prev_lineages.get(cid)
            out.append(GoneClusterView(ctx, pc, lineage, thresholds_for(ctx.thresholds, pc.title, lineage),
                                       pc.size / prev_total))
    elif scope == "splits":
        for s in diff.splits:
            source = prev.cluster(s.prev) if prev else None
            parts = tuple(p for p in (run.cluster(n) for n in s.new) if p is not None)
            if source is not None and parts:
                out.append(SplitView(ctx, s, source, parts))
    elif scope == "merges" and prev is not None:
        for mg in diff.merges:
            nc = run.cluster(mg.new)
            if nc is not None:
                out.append(MergeView(ctx, mg, nc, tuple(p for p in (prev.cluster(i) for i in mg.prev)
                                                         if p is not None)))
    return out


# --- the engine ----------------------------------------------------------------------------------


def evaluate(
    ctx: RuleContext,
    rules: Sequence[Rule] = (),
    history: Sequence[ClusterSnapshot] = (),
    run_history: Sequence[Mapping[str, float]] = (),
    current_run: Mapping[str, float] | None = None,
) -> list[Alert]:
    """Every alert of one run: the built-in kinds, then the configured `rules`.

    `history`: the cluster snapshots of the job's earlier runs (oldest first), `run_history`: their run
    metrics in the same order, `current_run`: this run's (computed when not given).
    """
    alerts: list[Alert] = []
    for scope in kinds.SCOPES:
        checks = kinds.of_scope(scope)
        if not checks:
            continue
        if scope == "run":
            alerts += [_builtin(ctx, k, Subject(), f) for k in checks if (f := _check(k, ctx)) is not None]
            continue
        for view in _views(ctx, scope):
            fired: set[str] = set()
            for k in checks:
                if fired.intersection(k.yields_to):
                    continue
                f = _check(k, view)
                if f is not None:
                    fired.add(k.name)
                    alerts.append(_builtin(ctx, k, view.subject, f))
    if rules:
        current = current_run if current_run is not None else language.run_metrics(ctx, ctx.mix_shift)
        alerts += _rule_alerts(rules, ctx, history, run_history, current)
    return alerts


def _check(k: Kind[object], subject: object) -> Finding | None:
    assert k.check is not None
    return k.check(subject)


def _builtin(ctx: RuleContext, k: Kind[object], subject: Subject, f: Finding) -> Alert:
    identity = (subject.key,) if subject.key is not None else ()
    return _alert(ctx, kind=k.name, rule=k.name, severity=k.severity, stateful=k.stateful, identity=identity,
                  subject=subject, finding=f, unit=k.unit)


def _rule_alerts(rules: Sequence[Rule], ctx: RuleContext, history: Sequence[ClusterSnapshot],
                 run_history: Sequence[Mapping[str, float]], current: Mapping[str, float]) -> list[Alert]:
    run = ctx.run
    active = [r for r in rules
              if r.enabled and language.in_scope(r, run.job_name, run.job_id, run.level, None, None)]
    if not active:
        return []
    series = language.lineage_series(ctx, history)
    out = []
    for rule in active:
        for cluster, verdict in language.verdicts(rule, ctx, series, run_history, current):
            subject = Subject(cluster=cluster, lineage=ctx.lineages.get(cluster.cluster_id) if cluster else None)
            finding = Finding(language.describe(rule, verdict), rule.metric, verdict.value,
                              rule.above if rule.above is not None else rule.below, verdict.reference)
            out.append(_alert(
                ctx, kind=kinds.rule_kind(rule.name, rule.stateful), rule=rule.name, severity=rule.severity,
                stateful=rule.stateful, identity=(rule.name, subject.key or "run"), subject=subject,
                finding=finding, unit=kinds.metric_unit(rule.metric),
                labels={"rule": rule.name, **rule.labels}))
    return out


def _alert(ctx: RuleContext, *, kind: str, rule: str, severity: str, stateful: bool, identity: tuple[str, ...],
           subject: Subject, finding: Finding, unit: str, labels: Mapping[str, str] | None = None) -> Alert:
    """The one way a finding becomes an alert. A level's fingerprint is the same run after run (so it can
    resolve); a change's carries the run (told once, and a retried run finds it already told)."""
    run = ctx.run
    links = [Link("Open run", ctx.links.run(run.run_id))]
    top: tuple[str, ...] = ()
    c = subject.cluster
    if c is not None:
        links.append(Link("Open cluster", ctx.links.cluster(run.run_id, c.cluster_id)))
        top = tuple(c.top_trace_ids(3))
        if top:
            links.append(Link("Top trace", ctx.links.trace(top[0])))
        m = ctx.metrics.get(c.cluster_id)
        if m is not None and m.evaluation_name:
            links.append(Link("Evaluations", ctx.links.evaluations()))
    elif subject.gone is not None and ctx.prev_run is not None:
        links.append(Link("Previous run", ctx.links.cluster(ctx.prev_run.run_id, subject.gone.cluster_id)))
    shown = c or subject.gone
    return Alert(
        fingerprint=fingerprint(ctx.project_id, ctx.job_key, kind, *identity, "" if stateful else run.run_id),
        rule=rule, kind=kind, severity=severity, summary=finding.summary, run_id=run.run_id,
        job_name=run.job_name or run.job_id, level=run.level, cluster_id=c.cluster_id if c is not None else None,
        cluster_title=shown.title if shown is not None else None, lineage_id=subject.lineage,
        previous_title=finding.previous_title if finding.previous_title is not None else subject.renamed,
         metric=finding.metric, value=finding.value,
        threshold=finding.threshold, previous_value=finding.previous, unit=unit, top_trace_ids=top,
        links=tuple(links), labels={"job": run.job_name, "level": run.level, **(labels or {})},
    )
