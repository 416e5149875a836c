"""Property-based tests (hypothesis) of the functional core: the run parser, the config loader, the diff
and the rules take anything well-typed without crashing, and the diff keeps its bookkeeping straight."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import ConfigError, ThresholdsConfig, parse_config
from monitor.links import PostHogLinks
from monitor.matching import match_runs
from monitor.matching.lineage import assign_lineages
from monitor.metrics import ClusterMetrics
from monitor.rules.engine import RuleContext, evaluate
from monitor.runs import Cluster, Item, Run, RunParseError, load_run_file, run_from_properties

END = datetime(2026, 11, 1, tzinfo=UTC)
WORDS = ["python", "code", "review", "generation", "login", "refund", "sql", "query", "summary", "travel",
         "booking", "error", "invoice", "support", "agent", "tool", "search", "translation", "<!channel>", "&"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_the_run_parser_turns_any_bytes_into_a_run_or_a_named_error(data: bytes) -> None:
    try:
        load_run_file(data)
    except RunParseError as exc:
        assert exc.field and exc.run_id


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([
    "$ai_clustering_run_id", "$ai_clustering_level", "$ai_window_start", "$ai_window_end", "$ai_clusters",
    "$ai_total_items_analyzed", "$ai_clustering_params", "$ai_clustering_job_id"]), json_values))
def test_the_run_parser_takes_any_json_shape_without_crashing(props: dict[str, Any]) -> None:
    try:
        run_from_properties(props)
    except RunParseError as exc:
        assert exc.field
    try:
        load_run_file(json.dumps(props).encode())
    except RunParseError as exc:
        assert exc.field


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_the_config_loader_rejects_garbage_with_a_config_error(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml", env={})
    except ConfigError as exc:
        assert "fuzz.yaml" in str(exc)


@st.composite
def runs(draw: st.DrawFn, day: int, pool: list[str]) -> Run:
    n = draw(st.integers(min_value=0, max_value=12))
    clusters = []
    used: set[str] = set()
    for cid in list(range(n)) + ([-1] if draw(st.booleans()) else []):
        title = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=4)))
        keys = [k for k in draw(st.lists(st.sampled_from(pool), max_size=30)) if k not in used]
        used.update(keys)
        size = draw(st.integers(min_value=len(keys), max_value=len(keys) + 200))
        clusters.append(Cluster(cluster_id=cid, size=size, title=title, description=draw(st.sampled_from(["", title])),
                                traces={k: Item(rank=i, trace_id=k) for i, k in enumerate(keys)}))
    return Run(run_id=f"1_trace_{day}", level="trace", job_id="j", job_name="J", window_start=END,
               window_end=END + timedelta(days=day), total_items=sum(c.size for c in clusters),
               clusters=tuple(clusters))


POOL = [f"t{i}" for i in range(80)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs(0, POOL), runs(1, POOL), st.floats(min_value=0.05, max_value=0.95))
def test_every_cluster_is_accounted_for_exactly_once(prev: Run, new: Run, threshold: float) -> None:
    d = match_runs(prev, new, threshold=threshold, explain=True)
    new_ids = {c.cluster_id for c in new.clusters if not c.is_noise}
    prev_ids = {c.cluster_id for c in prev.clusters if not c.is_noise}
    matched_new = [m.new for m in d.matches]
    matched_prev = [m.prev for m in d.matches]
    # One-to-one survival; noise never matched.
    assert len(matched_new) == len(set(matched_new)) and len(matched_prev) == len(set(matched_prev))
    assert set(matched_new) <= new_ids and set(matched_prev) <= prev_ids
    split_parts = [p for s in d.splits for p in s.new]
    merge_parts = [p for mg in d.merges for p in mg.prev]
    # A cluster is part of at most one split (merge), and a split has at least two parts.
    assert len(split_parts) == len(set(split_parts)) and len(merge_parts) == len(set(merge_parts))
    assert all(len(s.new) >= 2 for s in d.splits) and all(len(mg.prev) >= 2 for mg in d.merges)
    # Every new cluster is matched, new, or a split part / merge result; "new" is exclusive.
    explained = set(matched_new) | set(split_parts) | {mg.new for mg in d.merges}
    assert set(d.new) | explained == new_ids
    assert not set(d.new) & explained
    gone_explained = set(matched_prev) | set(merge_parts) | {s.prev for s in d.splits}
    assert set(d.disappeared) | gone_explained == prev_ids
    assert not set(d.disappeared) & gone_explained
    for m in d.matches:
        assert 0.0 <= m.score <= 1.0 and all(0.0 <= v <= 1.0 for v in m.signals.values())
    assert all(0.0 <= t.confidence <= 1.0 for t in d.splits)
    assert all(0.0 <= t.confidence <= 1.0 for t in d.merges)
    # Lineages: every regular cluster of the new run gets one, survivors keep their predecessor's.
    prev_lineages = {cid: f"L{cid}" for cid in prev_ids}
    counter = iter(range(10_000))
    lin = assign_lineages(d, prev_lineages, new, lambda: f"N{next(counter)}").lineages
    assert new_ids <= set(lin)
    for m in d.matches:
        assert lin[m.new] == prev_lineages[m.prev]


metric = st.floats(min_value=0, max_value=1e6, allow_nan=False) | st.none()


@st.composite
def metrics_for(draw: st.DrawFn, run: Run) -> dict[int, ClusterMetrics]:
    out = {}
    for c in run.clusters:
        if draw(st.booleans()):
            items = draw(st.integers(min_value=0, max_value=500))
            errors = draw(st.integers(min_value=0, max_value=items))
            out[c.cluster_id] = ClusterMetrics(
                cluster_id=c.cluster_id, items=items, total_cost=draw(st.floats(min_value=0, max_value=1e6)),
                avg_cost=draw(metric), avg_latency=draw(metric), p95_latency=draw(metric),
                avg_tokens=draw(metric), error_count=errors, error_rate=errors / items if items else None)
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_rules_never_crash_and_fingerprints_are_unique(data: st.DataObject) -> None:
    prev = data.draw(runs(0, POOL))
    new = data.draw(runs(1, POOL))
    d = match_runs(prev, new)
    lineages = {c.cluster_id: f"L{c.cluster_id}" for c in new.clusters if not c.is_noise}
    ctx = RuleContext(project_id=1, run=new, prev_run=prev, diff=d, metrics=data.draw(metrics_for(new)),
                      prev_metrics=data.draw(metrics_for(prev)), lineages=lineages, prev_lineages={},
                      thresholds=ThresholdsConfig(), links=PostHogLinks("https://us.posthog.com", 1))
    alerts = evaluate(ctx)
    fps = [a.fingerprint for a in alerts]
    assert len(fps) == len(set(fps))
    for a in alerts:
        assert a.run_id == new.run_id and a.severity in ("critical", "warning", "info")
