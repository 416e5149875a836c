"""Metrics from PostHog's embedded `metrics` and from the query's rows, and the evaluation kinds' checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from monitor import kinds
from monitor.config import Rule, Thresholds, ThresholdsConfig
from monitor.metrics import ClusterMetrics, metrics_from_payload, metrics_from_rows, with_query_only
from monitor.rules.engine import ClusterView
from monitor.runs import run_from_properties
from monitor.stages.measure import query_metrics_needed

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _run(clusters: list[dict[str, Any]]) -> Any:
    return run_from_properties({
        "$ai_clustering_run_id": "1_evaluation_20261101_031200_j", "$ai_clustering_level": "evaluation",
        "$ai_window_start": "2026-10-25T03:12:00+00:00", "$ai_window_end": "2026-11-01T03:12:00+00:00",
        "$ai_clusters": clusters})


def test_posthogs_metrics_are_read_where_present_and_skipped_where_null_or_absent() -> None:
    run = _run([
        {"cluster_id": 0, "size": 40, "metrics": {
            "avg_cost": 0.002, "avg_latency": 1.5, "avg_tokens": 900, "total_cost": 0.08, "error_rate": 0.05,
            "error_count": 2, "item_count": 40, "pass_rate": 0.4, "na_rate": 0.1,
            "dominant_evaluation_name": "Helpfulness", "dominant_runtime": "llm_judge", "avg_judge_cost": 0.001}},
        {"cluster_id": 1, "size": 30, "metrics": None},
        {"cluster_id": -1, "size": 3},
    ])
    got = metrics_from_payload(run)
    assert list(got) == [0]
    m = got[0]
    assert (m.items, m.total_cost, m.error_count, m.pass_rate, m.na_rate) == (40, 0.08, 2, 0.4, 0.1)
    assert (m.evaluation_name, m.evaluation_runtime, m.avg_judge_cost) == ("Helpfulness", "llm_judge", 0.001)
    # What PostHog does not compute stays unknown, for the query to fill.
    assert m.p95_latency is None and m.total_judge_cost is None


def test_the_query_fills_only_what_posthogs_metrics_lack() -> None:
    embedded = {0: ClusterMetrics(cluster_id=0, items=40, avg_cost=0.002, pass_rate=0.4)}
    queried = {0: ClusterMetrics(cluster_id=0, items=41, avg_cost=0.003, pass_rate=0.5, p95_latency=3.0,
                                 input_tokens=10, output_tokens=5, total_judge_cost=0.04),
               1: ClusterMetrics(cluster_id=1, items=7, avg_cost=0.01)}
    got = with_query_only(embedded, queried)
    assert (got[0].items, got[0].avg_cost, got[0].pass_rate) == (40, 0.002, 0.4)
    g = got[0]
    assert (g.p95_latency, g.input_tokens, g.output_tokens, g.total_judge_cost) == (3.0, 10, 5, 0.04)
    assert got[1] == queried[1]


def test_the_evaluation_columns_of_a_metrics_row() -> None:
    row = {"cluster_id": 0, "items": 10, "total_cost": 0.1, "items_with_cost": 10, "passes": 4, "not_applicable": 1,
           "verdicts": 10, "judge_cost": 0.02, "items_with_judge_cost": 8,
           "evaluation_names": ["B", "A", "A", "B", ""], "runtimes": ["llm_judge", "hog", "llm_judge"]}
    m = metrics_from_rows([row], "r")[0]
    assert (m.pass_rate, m.na_rate, m.avg_judge_cost, m.total_judge_cost) == (0.4, 0.1, 0.0025, 0.02)
    assert (m.evaluation_name, m.evaluation_runtime) == ("A", "llm_judge")  # ties by name: every reader agrees
    assert metrics_from_rows([{"cluster_id": 1, "items": 3}], "r")[1].pass_rate is None  # other levels


def test_the_query_is_needed_only_for_what_the_config_reads_and_posthog_lacks() -> None:
    th = ThresholdsConfig()
    assert query_metrics_needed(th, []) == frozenset()
    assert query_metrics_needed(th, [Rule(name="r", metric="pass_rate", below=0.5)]) == frozenset()
    assert query_metrics_needed(th, [Rule(name="r", metric="total_judge_cost", above=1)]) == {"total_judge_cost"}
    assert query_metrics_needed(th, [Rule(name="r", metric="p95_latency", above=1, enabled=False)]) == frozenset()
    over = ThresholdsConfig.model_validate({"overrides": [{"title": "*x*", "thresholds": {"p95_latency_s": 3}}]})
    assert query_metrics_needed(over, []) == {"p95_latency"}


def _view(now: ClusterMetrics | None, before: ClusterMetrics | None, **limits: Any) -> ClusterView:
    t = Thresholds.model_validate({**ThresholdsConfig().defaults.model_dump(), **limits})
    return ClusterView(ctx=None, cluster=None, lineage=None, limits=t, now=now, before=before,  # type: ignore[arg-type]
                       match=None, renamed=None, in_transition=False)


def _check(kind: str, v: ClusterView) -> kinds.Finding | None:
    check = kinds.KIND[kind].check
    assert check is not None
    return check(v)


def _m(items: int = 200, **kw: Any) -> ClusterMetrics:
    return ClusterMetrics(cluster_id=0, items=items, evaluation_name="Helpfulness", evaluation_runtime="hog", **kw)


def test_the_evaluation_kinds_name_the_evaluation_and_hold_their_limits() -> None:
    f = _check("pass_rate", _view(_m(pass_rate=0.41), _m(pass_rate=0.6)))
    assert f is not None and f.summary == "Evaluation 'Helpfulness' (Hog code): pass rate 41.0% is below 50.0%"
    assert (f.value, f.threshold, f.previous) == (0.41, 0.5, 0.6)
    assert _check("pass_rate", _view(_m(pass_rate=0.5), None)) is None
    assert _check("pass_rate", _view(_m(items=10, pass_rate=0.1), None)) is None  # too few items
    # A drop in points, beyond sampling noise.
    f = _check("pass_rate_drop", _view(_m(pass_rate=0.6), _m(pass_rate=0.85)))
    assert f is not None and "-25.0 pp; threshold -10 pp" in f.summary
    assert _check("pass_rate_drop", _view(_m(pass_rate=0.78), _m(pass_rate=0.85))) is None
    assert _check("pass_rate_drop", _view(_m(items=25, pass_rate=0.7), _m(items=25, pass_rate=0.81))) is None
    f = _check("na_rate", _view(_m(na_rate=0.6), None))
    assert f is not None and "60.0% of evaluations not applicable" in f.summary
    f = _check("judge_cost_spike", _view(_m(avg_judge_cost=0.005), _m(avg_judge_cost=0.002)))
    assert f is not None and "+150%" in f.summary
    assert _check("judge_cost_spike", _view(_m(avg_judge_cost=0.003), _m(avg_judge_cost=0.002))) is None
    # Unset limits check nothing.
    assert _check("pass_rate", _view(_m(pass_rate=0.1), None, pass_rate_min=None)) is None
