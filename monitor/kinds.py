"""The registry of alert kinds and of the metrics rules read: the one place that says what each is.

Everything else reads it: the rule engine (monitor/rules/engine.py) asks each kind's `check`, the
lifecycle asks whether a kind is a level or a change, routing its severity, rendering its label,
the pipeline its rank in a message, the config its default inhibitions and which names `silences:`
and `inhibit:` may use. A kind's name is written here and nowhere else in the package (a test scans
monitor/ for it), so two places can no longer disagree about it.

A kind is either a level ("error rate is above 10%": stateful, fires, stays quiet while it holds,
resolves once) or a change ("average cost doubled since the previous run": told once, never
resolved, because the next run comparing against an already-changed run says nothing about whether
the change went away).

How to add a kind (pass rate, judge cost, not-applicable rate...):
- as something rules watch: one `Metric` entry below (name, cluster or run, unit, description), and its
  value in the metrics a run has (`ClusterMetrics` or `language.run_metrics`). People then write a
  `rules:` entry and get `rule:<name>` alerts, with no other code;
- as a built-in kind (on by default, limits under `thresholds:`): one `Kind` entry in `KINDS` below,
  with its `check`, a pure function of the subject its `scope` names (a cluster of the run, the run,
  a new or a disappeared cluster, a split, a merge) returning a `Finding` (the summary people read and
  the numbers) or None; its limit goes in `config.Thresholds`. Its position in `KINDS` is its
  evaluation order within its scope, `order` its rank in a message. Templates show every kind through
  its label and summary; a kind needs template text only to look different from the others.
Names must stay stable: they are part of every alert's fingerprint and of people's configs.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from monitor.rules.engine import ClusterView, GoneClusterView, MergeView, NewClusterView, RuleContext, SplitView

Severity = Literal["critical", "warning", "info"]
# What a kind's check looks at; the engine walks the scopes in this order, every subject of a scope
# through every kind of that scope (in registry order), so alerts come out in a stable order.
Scope = Literal["cluster", "run", "appeared", "gone", "splits", "merges", "source"]
SCOPES: tuple[Scope, ...] = ("cluster", "run", "appeared", "gone", "splits", "merges")
# Units of an alert's numbers, for the fields of a message: usd, ratio, s, h, min or none.
Unit = Literal["usd", "ratio", "s", "h", "min", ""]


@dataclass(frozen=True)
class Finding:
    """What a check found about one subject: the alert, minus what every alert of a run shares."""

    summary: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    previous: float | None = None
    # The title the subject had before, when the alert should say so (a split's source).
    previous_title: str | None = None


@dataclass(frozen=True)
class Kind[V]:
    name: str
    label: str  # what people read ("Cost spike")
    severity: Severity
    stateful: bool  # a level (fires, resolves) rather than a change (told once)
    scope: Scope
    # Rank among alerts of the same severity in one message (lower first); ties by size of the value.
    order: int = 99
    metric: str | None = None  # the metric it reads (None: the diff's structure, or PostHog itself)
    unit: Unit = ""
    # None: raised outside the rule engine (the source checks of monitor/rules/staleness.py).
    check: Callable[[V], Finding | None] | None = None
    # Kinds this one mutes in the same run unless the config's `inhibit:` says otherwise.
    inhibits: tuple[str, ...] = ()
    # Not checked on a subject where one of these kinds fired (a high error rate is not also a rise).
    yields_to: tuple[str, ...] = ()


# --- metrics rules can watch -----------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str
    per: Literal["cluster", "run"]
    description: str
    unit: Unit = ""
    # Python format for the text of alerts when the unit's own ($, %, s) does not fit.
    text: str | None = None
    # A change since the lineage's previous run, in percentage points, of this other metric.
    change_of: str | None = None
    # The heading of its chart in emails (monitor/notify/chart.py); None: not drawn as a chart.
    chart: str | None = None


METRICS: tuple[Metric, ...] = (
    Metric("total_cost", "cluster", "total cost of the cluster's items in the run window, USD", "usd",
           chart="Total cost"),
    Metric("avg_cost", "cluster", "average cost per item, USD", "usd", chart="Average cost per item"),
    Metric("cost_share", "cluster", "the cluster's share of the run's total cost (0..1)", "ratio"),
    Metric("error_rate", "cluster",
           "share of items with at least one failed generation, span or embedding (0..1)", "ratio",
           chart="Error rate"),
    Metric("error_count", "cluster", "items with at least one error"),
    Metric("p50_latency", "cluster", "median latency per item, seconds", "s", chart="Median latency"),
    Metric("p95_latency", "cluster", "95th percentile latency per item, seconds", "s", chart="p95 latency"),
    Metric("avg_latency", "cluster", "average latency per item, seconds", "s", chart="Average latency"),
    Metric("avg_tokens", "cluster", "average input + output tokens per item", chart="Tokens per item"),
    Metric("size", "cluster", "items in the cluster"),
    Metric("share", "cluster", "the cluster's share of the run's clustered items (0..1)", "ratio",
           chart="Share of traffic"),
    Metric("share_change_pp", "cluster", "change of share since the lineage's previous run, percentage points",
           text="{:+.1f} pp", change_of="share"),
    Metric("pass_rate", "cluster", "evaluation level: share of evaluations that passed, of those with a verdict "
           "(not applicable counts as a verdict, as in PostHog) (0..1)", "ratio", chart="Pass rate"),
    Metric("pass_rate_change_pp", "cluster", "evaluation level: change of pass rate since the lineage's previous run, "
           "percentage points", text="{:+.1f} pp", change_of="pass_rate"),
    Metric("na_rate", "cluster", "evaluation level: share of evaluations judged not applicable (0..1)", "ratio",
           chart="Not applicable"),
    Metric("avg_judge_cost", "cluster", "evaluation level: average cost of the LLM judge per evaluation that cost "
           "anything, USD", "usd", chart="Judge cost per evaluation"),
    Metric("total_judge_cost", "cluster", "evaluation level: total cost of the LLM judge over the cluster's "
           "evaluations, USD (needs the monitor's metrics query)", "usd"),
    Metric("run_total_cost", "run", "total cost of every clustered item, USD", "usd"),
    Metric("run_items", "run", "clustered items in the run"),
    Metric("noise_share", "run", "share of items in the noise cluster (-1) (0..1)", "ratio"),
    Metric("new_clusters", "run", "clusters with no match in the previous run"),
    Metric("disappeared_clusters", "run", "clusters of the previous run with no match"),
    Metric("mix_shift", "run", "Jensen-Shannon distance between the previous and the new run's traffic mix (0..1)",
           "ratio", text="{:.2f}"),
)
METRIC = {m.name: m for m in METRICS}
# Metrics whose alerts say what drove them (monitor/attribution.py: models, tokens, errors, from the
# cluster's events), by the aspect the explanation leads with.
Aspect = Literal["cost", "latency", "errors"]
EXPLAINED: dict[str, Aspect] = {
    "total_cost": "cost", "avg_cost": "cost", "cost_share": "cost", "avg_tokens": "cost",
    "error_rate": "errors", "error_count": "errors",
    "p50_latency": "latency", "p95_latency": "latency", "avg_latency": "latency",
}
# name -> description, as `rules:` validation and `check-config` show them.
CLUSTER_METRICS = {m.name: m.description for m in METRICS if m.per == "cluster"}
RUN_METRICS = {m.name: m.description for m in METRICS if m.per == "run"}
# The run metric the built-in mix shift alert reads (monitor/rules/drift.py computes it).
MIX_SHIFT_METRIC = "mix_shift"


def metric_unit(metric: str) -> Unit:
    m = METRIC.get(metric)
    return m.unit if m is not None else ""


def fmt(metric: str, v: float | None) -> str:
    """A metric's value as alert text reads it."""
    if v is None:
        return "n/a"
    m = METRIC.get(metric)
    if m is not None and m.text is not None:
        return m.text.format(v)
    text = in_unit(v, m.unit if m is not None else "")
    if text is not None:
        return text
    return f"{v:,.1f}" if v != int(v) else f"{int(v):,}"


def in_unit(v: float, unit: str) -> str | None:
    """A value in its unit ($, %, s) as every alert shows it; None for a plain number."""
    if unit == "usd":
        return f"${v:,.4f}" if abs(v) < 1 else f"${v:,.2f}"
    if unit == "ratio":
        return f"{v:.1%}"
    if unit == "s":
        return f"{v:.2f} s"
    return None


# --- the checks of built-in kinds (pure; the engine builds their subjects) -------------------------


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


def _cluster_cost(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if m is not None and t.total_cost_usd is not None and m.total_cost > t.total_cost_usd:
        return Finding(f"Total cost ${m.total_cost:,.2f} is above ${t.total_cost_usd:,.2f}", "total_cost",
                       m.total_cost, t.total_cost_usd, pm.total_cost if pm else None)
    return None


def _avg_cost(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (m is not None and v.big_enough and m.avg_cost is not None and t.avg_cost_usd is not None
            and m.avg_cost > t.avg_cost_usd):
        return Finding(f"Average cost ${m.avg_cost:.4f} per item is above ${t.avg_cost_usd:.4f}", "avg_cost",
                       m.avg_cost, t.avg_cost_usd, pm.avg_cost if pm else None)
    return None


def _cost_spike(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and pm is not None and m.avg_cost and pm.avg_cost
            and t.avg_cost_increase is not None and m.avg_cost > pm.avg_cost * (1 + t.avg_cost_increase)):
        return Finding(
            f"Average cost per item ${m.avg_cost:.4f}, was ${pm.avg_cost:.4f} "
            f"({_pct(m.avg_cost, pm.avg_cost)}; threshold +{t.avg_cost_increase * 100:.0f}%)",
            "avg_cost", m.avg_cost, pm.avg_cost * (1 + t.avg_cost_increase), pm.avg_cost)
    return None


def _error_rate(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and m.error_rate is not None and t.error_rate is not None
            and m.error_rate >= t.error_rate):
        return Finding(f"Error rate {m.error_rate:.1%} is at or above {t.error_rate:.1%} "
                       f"({m.error_count} of {m.items} items)", "error_rate", m.error_rate, t.error_rate,
                       pm.error_rate if pm else None)
    return None


def _error_spike(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and pm is not None and m.error_rate is not None
            and pm.error_rate is not None and t.error_rate_increase_pp is not None
            and (m.error_rate - pm.error_rate) * 100 >= t.error_rate_increase_pp
            and rise_z(m.error_rate, m.items, pm.error_rate, pm.items) >= t.min_z):
        return Finding(
            f"Error rate {m.error_rate:.1%}, was {pm.error_rate:.1%} "
            f"(+{(m.error_rate - pm.error_rate) * 100:.1f} pp; threshold +{t.error_rate_increase_pp:g} pp)",
            "error_rate", m.error_rate, pm.error_rate + t.error_rate_increase_pp / 100, pm.error_rate)
    return None


def _p95_latency(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and m.p95_latency is not None and t.p95_latency_s is not None
            and m.p95_latency > t.p95_latency_s):
        return Finding(f"p95 latency {m.p95_latency:.2f} s is above {t.p95_latency_s:.2f} s", "p95_latency",
                       m.p95_latency, t.p95_latency_s, pm.p95_latency if pm else None)
    return None


def _which(v: ClusterView) -> str:
    """Which evaluation a cluster's verdicts are mostly from, as alerts name it."""
    m = v.now
    if m is None or not m.evaluation_name:
        return "Evaluations"
    runtime = {"llm_judge": "LLM judge", "hog": "Hog code"}.get(m.evaluation_runtime or "", m.evaluation_runtime)
    return f"Evaluation '{m.evaluation_name}'" + (f" ({runtime})" if runtime else "")


def _pass_rate(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and m.pass_rate is not None and t.pass_rate_min is not None
            and m.pass_rate < t.pass_rate_min):
        return Finding(f"{_which(v)}: pass rate {m.pass_rate:.1%} is below {t.pass_rate_min:.1%}", "pass_rate",
                       m.pass_rate, t.pass_rate_min, pm.pass_rate if pm else None)
    return None


def _pass_rate_drop(v: ClusterView) -> Finding | None:
    # Judged as a rise of the share of evaluations that did not pass, against sampling noise.
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and pm is not None and m.pass_rate is not None
            and pm.pass_rate is not None and t.pass_rate_drop_pp is not None
            and (pm.pass_rate - m.pass_rate) * 100 >= t.pass_rate_drop_pp
            and rise_z(1 - m.pass_rate, m.items, 1 - pm.pass_rate, pm.items) >= t.min_z):
        return Finding(
            f"{_which(v)}: pass rate {m.pass_rate:.1%}, was {pm.pass_rate:.1%} "
            f"({(m.pass_rate - pm.pass_rate) * 100:+.1f} pp; threshold -{t.pass_rate_drop_pp:g} pp)",
            "pass_rate", m.pass_rate, pm.pass_rate - t.pass_rate_drop_pp / 100, pm.pass_rate)
    return None


def _na_rate(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and m.na_rate is not None and t.na_rate_max is not None
            and m.na_rate >= t.na_rate_max):
        return Finding(f"{_which(v)}: {m.na_rate:.1%} of evaluations not applicable, at or above "
                       f"{t.na_rate_max:.1%}", "na_rate", m.na_rate, t.na_rate_max, pm.na_rate if pm else None)
    return None


def _judge_cost(v: ClusterView) -> Finding | None:
    m, t, pm = v.now, v.limits, v.before
    if (v.big_enough and m is not None and pm is not None and m.avg_judge_cost and pm.avg_judge_cost
            and t.judge_cost_increase is not None
            and m.avg_judge_cost > pm.avg_judge_cost * (1 + t.judge_cost_increase)):
        return Finding(
            f"{_which(v)}: judge cost per evaluation ${m.avg_judge_cost:.4f}, was ${pm.avg_judge_cost:.4f} "
            f"({_pct(m.avg_judge_cost, pm.avg_judge_cost)}; threshold +{t.judge_cost_increase * 100:.0f}%)",
            "avg_judge_cost", m.avg_judge_cost, pm.avg_judge_cost * (1 + t.judge_cost_increase),
            pm.avg_judge_cost)
    return None


def _share_shift(v: ClusterView) -> Finding | None:
    # A split or merge explains its clusters' share changes: they are not told again as shifts.
    match, t = v.match, v.limits
    if (match is not None and t.share_shift_pp is not None and not v.in_transition
            and abs(match.share_delta_pp) >= t.share_shift_pp):
        direction = "grew" if match.share_delta_pp > 0 else "shrank"
        return Finding(f"Share of traffic {direction} to {match.new_share:.1%} from {match.prev_share:.1%} "
                       f"({match.share_delta_pp:+.1f} pp; threshold ±{t.share_shift_pp:g} pp)",
                       "share", match.new_share, t.share_shift_pp / 100, match.prev_share)
    return None


def _mix_shift(ctx: RuleContext) -> Finding | None:
    shift, limit = ctx.mix_shift, ctx.thresholds.mix_shift
    if not (shift is not None and limit is not None and shift >= limit):
        return None
    moved = [m for m in (ctx.diff.matches if ctx.diff else []) if abs(m.share_delta_pp) >= 1]
    moved.sort(key=lambda m: -abs(m.share_delta_pp))
    detail = ", ".join(f"'{m.new_title}' {m.share_delta_pp:+.1f} pp" for m in moved[:3])
    return Finding(f"The traffic mix moved: Jensen-Shannon distance {shift:.2f} from the previous run "
                   f"(threshold {limit:.2f})" + (f"; largest moves: {detail}" if detail else ""),
                   MIX_SHIFT_METRIC, shift, limit)


def _new_cluster(v: NewClusterView) -> Finding | None:
    t, m = v.limits, v.now
    if not (t.new_cluster_min_share is not None and v.share >= t.new_cluster_min_share):
        return None
    cost = f", ${m.total_cost:,.2f} total cost" if m else ""
    return Finding(f"New cluster with {v.cluster.size} items ({v.share:.1%} of traffic{cost})", "share",
                   v.share, t.new_cluster_min_share)


def _disappeared(v: GoneClusterView) -> Finding | None:
    t = v.limits
    if not (t.disappeared_min_share is not None and v.share >= t.disappeared_min_share):
        return None
    return Finding(f"Cluster disappeared (had {v.cluster.size} items, {v.share:.1%} of traffic)", "share",
                   0.0, t.disappeared_min_share, v.share)


def _split(v: SplitView) -> Finding:
    names = ", ".join(f"'{p.title}'" for p in v.parts)
    return Finding(f"Split: '{v.source.title}' became {names} (confidence {v.split.confidence:.0%})",
                   previous_title=v.source.title)


def _merge(v: MergeView) -> Finding:
    names = ", ".join(f"'{p.title}'" for p in v.sources)
    return Finding(f"Merge: {names} became one cluster (confidence {v.merge.confidence:.0%})")


# --- the registry --------------------------------------------------------------------------------
# Kind(name, label, severity, stateful, scope, order, metric, unit, check, inhibits=, yields_to=)

COST_SPIKE = Kind("cost_spike", "Cost spike", "critical", False, "cluster", 0, "avg_cost", "usd", _cost_spike)
KINDS: tuple[Kind[Any], ...] = (
    Kind("cluster_cost", "Cluster cost", "warning", True, "cluster", 4, "total_cost", "usd", _cluster_cost),
    Kind("cluster_avg_cost", "Average cost", "warning", True, "cluster", 5, "avg_cost", "usd", _avg_cost),
    COST_SPIKE,
    Kind("error_rate", "Error rate", "critical", True, "cluster", 1, "error_rate", "ratio", _error_rate),
    Kind("error_spike", "Error spike", "warning", False, "cluster", 2, "error_rate", "ratio", _error_spike,
         yields_to=("error_rate",)),
    Kind("p95_latency", "p95 latency", "warning", True, "cluster", 6, "p95_latency", "s", _p95_latency),
    Kind("pass_rate", "Pass rate", "critical", True, "cluster", 1, "pass_rate", "ratio", _pass_rate),
    Kind("pass_rate_drop", "Pass rate drop", "warning", False, "cluster", 2, "pass_rate", "ratio", _pass_rate_drop,
         yields_to=("pass_rate",)),
    Kind("na_rate", "Not applicable", "info", True, "cluster", 6, "na_rate", "ratio", _na_rate),
    Kind("judge_cost_spike", "Judge cost spike", "warning", False, "cluster", 5, "avg_judge_cost", "usd", _judge_cost),
    Kind("share_shift", "Traffic shift", "info", False, "cluster", 10, "share", "ratio", _share_shift),
    # Its fields show the distance as a number (0.15), where a rule on the same metric shows a percentage.
    Kind("mix_shift", "Traffic mix shift", "warning", False, "run", 2, MIX_SHIFT_METRIC, "", _mix_shift,
         inhibits=("share_shift",)),
    Kind("new_cluster", "New cluster", "warning", False, "appeared", 3, "share", "ratio", _new_cluster),
    Kind("disappeared", "Cluster disappeared", "warning", False, "gone", 7, "share", "ratio", _disappeared),
    Kind("split", "Cluster split", "info", False, "splits", 8, check=_split),
    Kind("merge", "Clusters merged", "info", False, "merges", 9, check=_merge),
    Kind("stale_source", "No new runs", "warning", True, "source", metric="hours_since_last_run", unit="h"),
    Kind("source_errors", "PostHog unreachable", "critical", True, "source", metric="minutes_failing", unit="min"),
    # A run that failed schedule.run_attempts times, set aside so its job goes on (monitor/stages/failures.py):
    # told once per run, never resolved (`cluster-monitor runs retry` gives it another go).
    Kind("run_quarantined", "Run quarantined", "warning", False, "source", metric="attempts"),
)
KIND: dict[str, Kind[Any]] = {k.name: k for k in KINDS}
STALE_SOURCE = KIND["stale_source"]
SOURCE_ERRORS = KIND["source_errors"]
RUN_QUARANTINED = KIND["run_quarantined"]


def of_scope(scope: Scope) -> list[Kind[Any]]:
    return [k for k in KINDS if k.scope == scope and k.check is not None]


# --- kinds of configured rules -----------------------------------------------------------------------
# Alert kinds of rules carry the rule's name ("rule:cost-vs-week"), so the alert state alone says which
# rule a resolved notice belongs to. `rule:` is a level; `rule_change:` a change since the previous run.
RULE_KIND = "rule"
RULE_CHANGE_KIND = "rule_change"


def rule_kind(name: str, stateful: bool) -> str:
    return f"{RULE_KIND if stateful else RULE_CHANGE_KIND}:{name}"


def rule_name(kind: str) -> str:
    """The rule behind an alert kind: the configured name for rules, the kind itself for built-ins."""
    prefix, _, name = kind.partition(":")
    return name if prefix in (RULE_KIND, RULE_CHANGE_KIND) and name else kind


def is_stateful(kind: str) -> bool:
    """Built-in levels, and rules that compare a level (`rule:<name>`; changes are `rule_change:<name>`)."""
    k = KIND.get(kind)
    return k.stateful if k is not None else kind.startswith(f"{RULE_KIND}:")


def label(kind: str) -> str:
    """What people read for an alert kind; rules show their configured name (letters, digits, `_.- `)."""
    if rule_name(kind) != kind:
        return f"Rule {rule_name(kind)}"
    k = KIND.get(kind)
    return k.label if k is not None else kind.replace("_", " ").capitalize()


def scope_of(kind: str) -> Scope | None:
    """What a built-in kind is about (None for rules and unknown kinds)."""
    k = KIND.get(kind)
    return k.scope if k is not None else None


def order(kind: str) -> int:
    k = KIND.get(kind)
    return k.order if k is not None else 99


def default_inhibitions() -> list[tuple[list[str], list[str]]]:
    """(when, suppress) pairs the config's `inhibit:` defaults to."""
    return [([k.name], list(k.inhibits)) for k in KINDS if k.inhibits]


def unknown_kind(name: str, rule_names: Iterable[str], *, glob: bool = False) -> str | None:
    """Why `name` names no alert (a message for people), or None when it names a kind or a rule.
    `glob`: `name` is a case-insensitive pattern, as a route's `match.kinds` (monitor/rules/routing.py),
    and is known when it matches some kind or rule."""
    rules = list(rule_names)
    known = [k.name for k in KINDS] + rules
    if name in known or rule_name(name) in rules:
        return None
    if glob:
        alert_kinds = [*known, *(rule_kind(r, stateful) for r in rules for stateful in (True, False))]
        if any(fnmatch.fnmatchcase(k.lower(), name.lower()) for k in alert_kinds):
            return None
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    text = f"{name!r} is not an alert kind{hint}. Alert kinds: {', '.join(k.name for k in KINDS)}"
    return text + (f"; or a rule of this config: {', '.join(rules)}" if rules else "; or the name of a rule")
