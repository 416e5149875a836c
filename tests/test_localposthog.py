"""The local PostHog over HTTP, as the monitor and PostHog's own skill workflow use it.

The four queries of PostHog's exploring-llm-clusters workflow (list recent runs, get one run,
trace-level metrics, generation-level metrics) are checked against what the generator knows.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest

from monitor.metrics import metrics_from_rows
from monitor.posthog import queries
from tests.conftest import API_KEY, PostHogEnv


def _post(env: PostHogEnv, query: str, values: dict[str, Any] | None = None, *, key: str | None = API_KEY,
          project: int | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{env.url}/api/projects/{project or env.project_id}/query/", headers=headers,
                      json={"query": {"kind": "HogQLQuery", "query": query, "values": values or {}}})


def _values(run: dict[str, Any]) -> dict[str, str]:
    """The placeholders of the monitor's per-run queries, from the generator's run summary."""
    emitted = run["emitted_at"]
    return {
        "event": f"$ai_{run['level']}_clusters", "run_id": run["run_id"],
        "emitted_from": f"{emitted - timedelta(seconds=1):%Y-%m-%d %H:%M:%S}",
        "emitted_to": f"{emitted + timedelta(seconds=1):%Y-%m-%d %H:%M:%S}",
        "window_start": f"{run['window_start']:%Y-%m-%d %H:%M:%S}",
        "window_end": f"{run['window_end']:%Y-%m-%d %H:%M:%S}",
    }


def test_list_recent_runs(drift_posthog: PostHogEnv) -> None:
    r = _post(drift_posthog, queries.DISCOVER_RUNS,
              {"since": "2026-01-01 00:00:00", "after_ts": "2026-01-01 00:00:00", "after_uuid": ""})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["columns"][:3] == ["run_id", "level", "job_id"]
    got = {row[0] for row in doc["results"]}
    assert got == {run["run_id"] for run in drift_posthog.dataset.runs}
    assert doc["hasMore"] is False
    levels = {row[1] for row in doc["results"]}
    assert levels == {"trace", "generation"}


def test_get_one_run_returns_the_payload(drift_posthog: PostHogEnv) -> None:
    run = drift_posthog.dataset.runs[5]
    r = _post(drift_posthog, queries.GET_RUN, _values(run))
    assert r.status_code == 200, r.text
    [row] = r.json()["results"]
    assert row[0] == run["run_id"]
    assert row[8] == "Array"  # clusters_type
    clusters = [msgspec.json.decode(c) for c in row[7]]  # one JSON text per cluster
    assert sum(len(c["traces"]) for c in clusters) == run["items"]
    truth = drift_posthog.dataset.truth["runs"]
    truth_run = next(t for t in truth if t["run_id"] == run["run_id"])
    assert {int(c["cluster_id"]) for c in clusters} - {-1} == {int(k) for k in truth_run["clusters"]}


@pytest.mark.parametrize("level", ["trace", "generation"])
def test_cluster_metrics_match_the_generators_truth(drift_posthog: PostHogEnv, level: str) -> None:
    run = next(r for r in drift_posthog.dataset.runs if r["level"] == level)
    r = _post(drift_posthog, queries.CLUSTER_METRICS[level], _values(run))
    assert r.status_code == 200, r.text
    doc = r.json()
    got = metrics_from_rows([dict(zip(doc["columns"], row, strict=True)) for row in doc["results"]], run["run_id"])
    truth_run = next(t for t in drift_posthog.dataset.truth["runs"] if t["run_id"] == run["run_id"])
    true_metrics = truth_run["metrics"]
    assert set(got) == {int(k) for k in true_metrics}
    for cid, want in true_metrics.items():
        m = got[int(cid)]
        assert m.items == want["item_count"]
        assert m.total_cost == pytest.approx(want["total_cost"] or 0.0, rel=1e-9)
        assert m.avg_cost == pytest.approx(want["avg_cost"], rel=1e-9)
        assert m.avg_latency == pytest.approx(want["avg_latency"], rel=1e-9)
        assert m.error_count == want["error_count"]
        assert m.error_rate == pytest.approx(want["error_rate"], rel=1e-9)


def test_invalid_hogql_is_400_with_postHog_shape(drift_posthog: PostHogEnv) -> None:
    r = _post(drift_posthog, "SELEC event FROM events")
    assert r.status_code == 400
    assert r.json()["type"] == "validation_error"
    r = _post(drift_posthog, "SELECT nosuchfunction(event) FROM events")
    assert r.status_code == 400 and "nosuchfunction" in r.json()["detail"]
    r = _post(drift_posthog, "SELECT * FROM persons")
    assert r.status_code == 400 and "Unknown table" in r.json()["detail"]
    r = _post(drift_posthog, "SELECT {missing}")
    assert r.status_code == 400


def test_wrong_or_missing_key_is_401(drift_posthog: PostHogEnv) -> None:
    r = _post(drift_posthog, "SELECT 1", key="phx_wrong")
    assert r.status_code == 401 and r.json()["code"] == "authentication_failed"
    r = _post(drift_posthog, "SELECT 1", key=None)
    assert r.status_code == 401 and r.json()["code"] == "not_authenticated"


def test_values_full_of_quotes_and_sql_are_inert(drift_posthog: PostHogEnv) -> None:
    hostile = "x' OR 1=1; DROP TABLE ph.events; -- {run_id} \\' \" `"
    r = _post(drift_posthog, "SELECT {v} AS v, count() AS n FROM events WHERE event = {v}", {"v": hostile})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [[hostile, 0]]
    r = _post(drift_posthog, "SELECT count() FROM events WHERE event IN {evs}", {"evs": ["$ai_trace", hostile]})
    assert r.status_code == 200 and r.json()["results"][0][0] > 0


def test_row_rules_default_limit_cap_and_has_more(drift_posthog: PostHogEnv) -> None:
    doc = _post(drift_posthog, "SELECT uuid FROM events").json()
    assert len(doc["results"]) == 100 and doc["hasMore"] is True and doc["limit"] == 100
    doc = _post(drift_posthog, "SELECT uuid, arrayJoin(range(3)) AS copy FROM events LIMIT 100000").json()
    assert len(doc["results"]) == 50_000 and doc["hasMore"] is True
    doc = _post(drift_posthog, "SELECT 1 AS one LIMIT 5").json()
    assert doc["results"] == [[1]] and doc["hasMore"] is False


def test_projects_are_isolated(drift_posthog: PostHogEnv) -> None:
    r = _post(drift_posthog, "SELECT count() FROM events", project=99999)
    assert r.status_code == 404


def test_clustering_jobs_paginate_like_posthog(drift_posthog: PostHogEnv) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    base = f"{drift_posthog.url}/api/environments/{drift_posthog.project_id}/llm_analytics/clustering_jobs/"
    first = httpx.get(base, params={"limit": 2}, headers=headers).json()
    assert first["count"] == len(drift_posthog.dataset.jobs) and len(first["results"]) == 2
    assert first["next"] and first["previous"] is None
    second = httpx.get(first["next"], headers=headers).json()
    assert {j["id"] for j in first["results"]}.isdisjoint({j["id"] for j in second["results"]})
    job = first["results"][0]
    one = httpx.get(f"{base}{job['id']}/", headers=headers)
    assert one.status_code == 200 and one.json() == job
    assert {"id", "name", "analysis_level", "event_filters", "enabled", "created_at", "updated_at"} <= set(job)


def test_query_log_records_each_request(posthog_factory: Any, tmp_path: Any) -> None:
    log = tmp_path / "queries.jsonl"
    env = posthog_factory("steady", scale=0.05, days=2, query_log=log)
    _post(env, "SELECT {v} AS v", {"v": "hello"})
    [line] = [json.loads(x) for x in log.read_text().splitlines()]
    assert line["method"] == "POST" and line["status"] == 200 and line["values"] == {"v": "hello"}
    assert line["bytes"] > 0 and line["ms"] >= 0 and "SELECT" in line["query"]


def test_faults_are_injected_per_request(posthog_factory: Any) -> None:
    from monitor.local.posthog.faults import Fault

    env = posthog_factory("steady", scale=0.05, days=2)
    env.server.faults.add(Fault(kind="status", status=429, retry_after=2, count=1))
    r = _post(env, "SELECT 1")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert _post(env, "SELECT 1").status_code == 200
    env.server.faults.add(Fault(kind="malformed"))
    with pytest.raises(json.JSONDecodeError):
        _post(env, "SELECT 1").json()
    env.server.faults.add(Fault(kind="drop"))
    with pytest.raises(httpx.TransportError):
        _post(env, "SELECT 1")
    env.server.faults.add(Fault(kind="truncate"))
    with pytest.raises(httpx.TransportError):
        _post(env, "SELECT 1")
