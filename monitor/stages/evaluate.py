"""Evaluate: the built-in alert rules and the config's `rules:` over one run, with the job's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from monitor.alerts import Alert
from monitor.config import Rule
from monitor.rules.engine import RuleContext, evaluate
from monitor.rules.language import run_metrics
from monitor.store.base import ClusterSnapshot


@dataclass(frozen=True)
class Evaluation:
    alerts: list[Alert]
    # The run-level metrics of this run: stored, they are the history of later runs' run-level rules.
    run_metrics: dict[str, float]


def history_depth(rules: Sequence[Rule]) -> int:
    """How many earlier runs the deepest rule looks at (its window plus its N-of-M)."""
    return max(r.window + r.for_.of for r in rules)


def decode_run_metrics(raw: str | None) -> dict[str, float]:
    """A stored run's run-level metrics; an unreadable record counts as no metrics, not as a failure."""
    try:
        decoded = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError:
        decoded = {}
    return decoded if isinstance(decoded, dict) else {}


def evaluate_run(ctx: RuleContext, rules: Sequence[Rule], history: Sequence[ClusterSnapshot] = (),
                 run_history: Sequence[dict[str, float]] = ()) -> Evaluation:
    """Every alert the run fires, built-in kinds first. `history`/`run_history`: the job's earlier runs,
    read only when there are `rules`."""
    current = run_metrics(ctx, ctx.mix_shift)
    return Evaluation(alerts=evaluate(ctx, rules, history, run_history, current), run_metrics=current)
