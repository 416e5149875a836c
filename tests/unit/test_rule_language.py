"""The `rules:` language: validation with lines, each comparison, N-of-M, inhibition, and rules end to end."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest

from monitor.alerts import Alert
from monitor.config import ConfigError, Inhibit, Rule, parse_config
from monitor.rules.drift import js_distance
from monitor.rules.inhibit import split_inhibited
from monitor.rules.language import breaks, describe, judge

BASE = "posthog: {project_id: 1, api_key: k}\n"


def _rule(**kw: Any) -> Rule:
    return Rule.model_validate({"name": "r", "metric": "avg_cost", **kw})


def test_rule_errors_name_the_file_line_and_field() -> None:
    text = BASE + (
        "rules:\n"
        "  - name: ok\n"
        "    metric: total_cost\n"
        "    above: 5\n"
        "  - name: typo\n"
        "    metric: total_costs\n"
        "    above: 5\n"
        "  - name: nobound\n"
        "    metric: error_rate\n"
        "  - name: nm\n"
        "    metric: size\n"
        "    below: 3\n"
        "    for: 3 of 2\n"
        "  - name: runscope\n"
        "    metric: mix_shift\n"
        "    above: 0.2\n"
        "    scope: {title: '*x*'}\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "rules.yaml", env={})
    problems = "\n".join(exc.value.problems)
    assert "rules.yaml:7: rules.1.metric" in problems and "unknown metric 'total_costs'" in problems
    assert "rules.yaml:9: rules.2" in problems and "give `above`, `below` or both" in problems
    assert "rules.yaml:14: rules.3.for" in problems and "cannot be more than of" in problems
    assert "rules.yaml:15: rules.4" in problems and "run metric" in problems
    assert len(exc.value.problems) == 4


def test_rule_names_must_be_unique_and_for_accepts_three_spellings() -> None:
    with pytest.raises(ConfigError, match="two rules are named 'a'"):
        parse_config(BASE + "rules: [{name: a, metric: size, above: 1}, {name: a, metric: size, above: 2}]",
                     "x.yaml", env={})
    assert _rule(above=1, **{"for": 3}).for_.runs == 3
    assert (_rule(above=1, **{"for": "2 of 5"}).for_.runs, _rule(above=1, **{"for": "2 of 5"}).for_.of) == (2, 5)
    assert _rule(above=1, **{"for": {"runs": 1, "of": 4}}).for_.of == 4


def test_each_comparison_judges_the_last_value_against_the_ones_before() -> None:
    items = [100] * 6
    series: list[float | None] = [1.0, 1.1, 0.9, 1.0, 1.05, 2.0]
    assert judge(_rule(above=1.5), series, items, 5).holds
    assert not judge(_rule(above=2.5), series, items, 5).holds
    prev = judge(_rule(compare="previous", above=0.5), series, items, 5)
    assert prev.holds and prev.reference == 1.05 and prev.observed == pytest.approx(0.95 / 1.05)
    base = judge(_rule(compare="baseline", above=0.5, window=5), series, items, 5)
    assert base.holds and base.reference == 1.0 and base.observed == pytest.approx(1.0)
    z = judge(_rule(compare="zscore", above=3), series, items, 5)
    assert z.holds and z.observed is not None and z.observed > 10
    mad = judge(_rule(compare="mad", above=4), series, items, 5)
    assert mad.holds and mad.reference == 1.0
    # A fall, with `below`.
    assert judge(_rule(compare="baseline", below=-0.5), [10.0, 10.0, 10.0, 4.0], [100] * 4, 3).holds
    # Not enough history: quiet, whatever the value.
    assert not judge(_rule(compare="baseline", above=0.1, min_history=3), [1.0, 9.0], [100] * 2, 1).holds
    # A history stuck at zero makes any move infinitely unusual, and no move nothing.
    assert math.isinf(judge(_rule(compare="zscore", above=3), [0.0, 0.0, 0.0, 1.0], [100] * 4, 3).observed or 0)
    assert not judge(_rule(compare="mad", above=3), [2.0, 2.0, 2.0, 2.0], [100] * 4, 3).holds
    # A very steady history is read as at least 5% wide: a 4% wobble is not an outlier, a 40% jump is.
    flat: list[float | None] = [100.0, 100.1, 99.9, 100.0]
    assert not judge(_rule(compare="mad", above=3), [*flat, 104.0], [100] * 5, 4).holds
    assert judge(_rule(compare="mad", above=3), [*flat, 140.0], [100] * 5, 4).observed == pytest.approx(8.0)
    # Small clusters never break a rule.
    assert not judge(_rule(above=1.5, min_items=50), series, [10] * 6, 5).holds


def test_n_of_m_fires_only_when_enough_recent_runs_broke_the_rule() -> None:
    r = _rule(above=1.0, **{"for": "2 of 3"})
    items = [100] * 4
    assert breaks(r, [0.5, 0.5, 0.5, 2.0], items) is None  # 1 of 3
    assert breaks(r, [0.5, 2.0, 0.5, 2.0], items) is not None  # 2 of 3
    assert breaks(r, [2.0, 0.5, 0.5, 2.0], items) is None  # the older breach is out of the window
    assert breaks(r, [0.5, 2.0, 2.0, 0.5], items) is None  # the current run must break it
    text = describe(r, judge(r, [0.5, 2.0, 0.5, 2.0], items, 3))
    assert text.startswith("r: Avg cost is $2.00") and "in 2 of the last 3 runs" in text


def test_js_distance_is_zero_for_the_same_mix_and_one_for_disjoint_ones() -> None:
    assert js_distance([(0.5, 0.5), (0.5, 0.5)]) == 0
    assert js_distance([(1.0, 0.0), (0.0, 1.0)]) == pytest.approx(1.0)
    mid = js_distance([(0.6, 0.4), (0.4, 0.6)])
    assert 0 < mid < 0.2


def _alert(kind: str, rule: str | None = None, status: str = "firing") -> Alert:
    return Alert(fingerprint=kind, rule=rule or kind, kind=kind, severity="info", summary="", run_id="r",
                 job_name="j", level="trace", status=status)


def test_a_mix_shift_inhibits_the_runs_share_shifts_even_when_it_is_not_repeated() -> None:
    inhibit = [Inhibit(when=["mix_shift"], suppress=["share_shift"])]
    shifts = [_alert("share_shift"), _alert("share_shift"), _alert("cost_spike")]
    keep, muted = split_inhibited(shifts, [*shifts, _alert("mix_shift")], inhibit)
    assert [a.kind for a in keep] == ["cost_spike"] and [why for _, why in muted] == ["mix_shift", "mix_shift"]
    # No source firing: nothing is muted; a resolved source inhibits nothing.
    assert split_inhibited(shifts, shifts, inhibit)[0] == shifts
    assert split_inhibited(shifts, [_alert("mix_shift", status="resolved")], inhibit)[0] == shifts
    # Rules are named by their rule name too.
    keep, _ = split_inhibited([_alert("rule", "cheap")], [_alert("rule", "cheap"), _alert("rule", "big")],
                              [Inhibit(when=["big"], suppress=["cheap"])])
    assert keep == []


def _routed_config(**kw: Any) -> Any:
    doc = {"posthog": {"project_id": 1, "api_key": "k"}, "slack": {"webhook_url": "http://x/services/default"},
           "email": {"host": "h", "from": "m@x.test", "to": ["team@x.test"]}, **kw}
    return parse_config(json.dumps(doc), "routes.yaml", env={})


def test_routes_take_alerts_in_order_continue_and_leave_the_rest_to_the_default() -> None:
    from monitor.rules.routing import DEFAULT_ROUTE, route_alerts

    cfg = _routed_config(
        rules=[{"name": "support-cost", "metric": "total_cost", "above": 1, "severity": "critical",
                "labels": {"team": "support"}}],
        routes=[{"name": "oncall", "match": {"severities": ["critical"]}, "email": {"to": ["oncall@x.test"]},
                 "continue": True},
                {"name": "support", "match": {"labels": {"team": "supp*"}}, "slack": {"webhook_url": "http://x/s"}},
                {"name": "shape", "match": {"kinds": ["split", "merge", "new_*"]}, "email": {"to": ["ds@x.test"]}}])
    spike = msgspec.structs.replace(_alert("cost_spike"), severity="critical")
    support = msgspec.structs.replace(_alert("rule:support-cost", "support-cost"), severity="critical",
                                      labels={"team": "support", "rule": "support-cost"})
    split, new, shift = _alert("split"), _alert("new_cluster"), _alert("share_shift")
    out = route_alerts([spike, support, split, new, shift], cfg.routes, cfg.rules)
    assert out["oncall"] == [spike, support]
    assert out["support"] == [support]
    assert out["shape"] == [split, new]
    assert out[DEFAULT_ROUTE] == [spike, shift]
    # A resolved notice goes where its alert fired: severity and labels come back from the kind or the rule.
    resolved = msgspec.structs.replace(_alert("rule:support-cost", "support-cost"), status="resolved",
                                       severity="info")
    resolved_err = msgspec.structs.replace(_alert("error_rate"), status="resolved", severity="info")
    out = route_alerts([resolved, resolved_err], cfg.routes, cfg.rules)
    assert out["oncall"] == [resolved, resolved_err] and out["support"] == [resolved]


def test_route_errors_are_clear() -> None:
    with pytest.raises(ConfigError,
                       match=r"routes\.0\.slack\.channel: route .a. posts to a channel, which needs slack\.bot_token"):
        _routed_config(routes=[{"name": "a", "slack": {"channel": "#x"}}])
    with pytest.raises(ConfigError, match="a route needs slack or email"):
        _routed_config(routes=[{"name": "a"}])
    with pytest.raises(ConfigError, match="two routes are named 'a'"):
        _routed_config(routes=[{"name": "a", "email": {"to": ["x@y"]}}, {"name": "a", "email": {"to": ["x@y"]}}])


def test_the_stale_bound_is_learned_from_each_jobs_own_cadence() -> None:
    from datetime import UTC, datetime, timedelta

    from monitor.rules.staleness import learned_stale_after

    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    configured = timedelta(hours=36)
    hourly = [t0 + timedelta(hours=i) for i in range(8)]
    weekly = [t0 + timedelta(days=7 * i) for i in range(5)]
    assert learned_stale_after(hourly, configured) == timedelta(hours=2.5)
    assert learned_stale_after(weekly, configured) == timedelta(hours=1.5 * 168 + 1)
    # Too little history, or one late run among daily ones: the bound stays sane.
    assert learned_stale_after(hourly[:3], configured) == configured
    daily = [t0 + timedelta(days=i) for i in range(6)] + [t0 + timedelta(days=8)]
    assert learned_stale_after(daily, configured) == timedelta(hours=37)
