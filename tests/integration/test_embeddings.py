"""The cluster-embeddings query through the pipeline, against the local PostHog (issue 15): one query per
run, vectors kept in the state, and a run never failed when PostHog cannot answer it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from monitor import telemetry
from monitor.local.posthog.faults import Fault
from monitor.matching import embeddings as emb
from tests.conftest import make_config, monitor_for


def _missing(reason: str) -> float:
    return float(telemetry.REGISTRY.get_sample_value("cluster_monitor_embeddings_missing_total",
                                                     {"reason": reason}) or 0.0)


def test_each_run_costs_one_embeddings_query_and_keeps_its_cluster_means(posthog_factory: Any,
                                                                       tmp_path: Path) -> None:
    env = posthog_factory("split", scale=0.3, days=9, item_overlap=0.0)
    m = monitor_for(make_config(env, None, None, tmp_path / "s.sqlite"))
    result = m.cycle()
    assert result.ok, result.failed
    calls = env.requests(method="POST", name="cluster-monitor:cluster_embeddings")
    assert len(calls) == len(env.dataset.runs) and {c["status"] for c in calls} == {200}
    assert max(int(c.get("bytes") or 0) for c in calls) < 2_000_000
    newest = {r["job_id"]: r["run_id"] for r in sorted(env.dataset.runs, key=lambda r: r["window_end"])}
    for run in env.dataset.runs:
        vecs = emb.decode(m.store.cluster_vectors(run["run_id"]))
        if run["run_id"] not in newest.values():
            assert vecs == {}, "only the newest run's vectors are kept: the next run reads them"
            continue
        truth = next(r for r in env.dataset.truth["runs"] if r["run_id"] == run["run_id"])
        assert set(vecs) == {int(k) for k in truth["clusters"]}, "every regular cluster has its mean"
        assert {v.size for v in vecs.values()} == {64}
    # The split is found although no item is shared (text alone called it two new clusters and a gone one).
    kinds = [a["kind"] for a in _alerts(m)]
    assert "split" in kinds and "disappeared" not in kinds
    m.store.close()


def _alerts(m: Any) -> list[dict[str, Any]]:
    return [{"kind": s.kind, "summary": s.summary} for job in m.store.last_runs()
            for s in m.store.alert_states(job).values()]


def test_a_posthog_without_the_table_or_a_forbidden_one_leaves_matching_lexical(posthog_factory: Any,
                                                                              tmp_path: Path) -> None:
    old = posthog_factory("steady", scale=0.1, days=4, embeddings_table=False)
    m = monitor_for(make_config(old, None, None, tmp_path / "old.sqlite", max_retries=0))
    before = _missing("unavailable")
    with structlog.testing.capture_logs() as logs:
        result = m.cycle()
    assert result.ok, result.failed
    runs = len(old.dataset.runs)
    assert len(result.processed) == runs
    assert {c["status"] for c in old.requests(method="POST", name="cluster-monitor:cluster_embeddings")} == {400}
    assert [e["event"] for e in logs].count("cluster_embeddings_unavailable") == runs, "once per run"
    assert _missing("unavailable") - before == runs
    assert all(m.store.cluster_vectors(r["run_id"]) == {} for r in old.dataset.runs)
    m.store.close()

    forbidden = posthog_factory("steady", scale=0.1, days=3)
    forbidden.server.faults.add(Fault(kind="status", status=403, count=None, name="cluster_embeddings"))
    m2 = monitor_for(make_config(forbidden, None, None, tmp_path / "forbidden.sqlite", max_retries=0))
    result = m2.cycle()
    assert result.ok and len(result.processed) == len(forbidden.dataset.runs)
    m2.store.close()
