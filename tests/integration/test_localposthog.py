"""The local PostHog over HTTP, as the monitor and PostHog's own skill workflow use it.

The four queries of PostHog's exploring-llm-clusters workflow (list recent runs, get one run,
trace-level metrics, generation-level metrics) are checked against what the generator knows.
"""

from __future__ import annotations

import json
from collections import Counter
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
    assert levels == {"trace", "generation", "evaluation"}  # drift has evaluation runs by default


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


# --- the project's timezone and PostHog's releases -------------------------------------------------------

def test_every_monitor_query_uses_only_function_names_old_releases_accept() -> None:
    from monitor.local.posthog.hogql import compile_hogql

    for name, q in queries.ALL_QUERIES.items():
        placeholders: dict[str, object] = {k: "x" for k in (
            "event", "run_id", "emitted_from", "emitted_to", "window_start", "window_end", "since", "after_ts",
            "after_uuid", "product", "document_type", "prev_run_id", "prev_emitted_from", "prev_emitted_to")}
        placeholders["max_rank"] = 200
        placeholders |= {"cluster_ids": [1], "prev_cluster_ids": [2]}  # the alert explanation's clusters
        # The function names of old releases; raw_document_embeddings is newer than some of them (their
        # answer, 400, is tests/integration/test_embeddings.py's), so it is given as a table here.
        compile_hogql(q, placeholders, events_source="SELECT 1", release="old",
                      tables={"raw_document_embeddings": "SELECT 1"})  # raises if not
        # What PostHog's own clustering reads by property access (materialized where the team has it).
        assert "JSONExtractString(properties, '$ai_trace_id')" not in q and "JSONExtractRaw(properties, '$ai_" \
            "total_cost_usd')" not in q, name
        assert "<= parseDateTimeBestEffort" not in q, name  # windows are half-open


@pytest.mark.parametrize(("expr", "old", "current"), [
    ("toFloat('1.5')", True, True),
    ("toInt('3')", True, True),
    ("toFloat64OrNull('1.5')", False, True),  # an alias added in newer releases only
    ("toInt64('3')", False, False),  # internal (_toInt64), never public
    ("toFloat64OrZero('x')", False, False),
    ("parseDateTimeBestEffort('2026-01-01', 'UTC')", False, True),  # the timezone argument is newer
])
def test_function_names_are_postHogs_per_release(drift_posthog: PostHogEnv, expr: str, old: bool,
                                                 current: bool) -> None:
    server = drift_posthog.server
    try:
        for release, ok in (("old", old), ("current", current)):
            server.release = release  # type: ignore[assignment]
            r = _post(drift_posthog, f"SELECT {expr} AS v")
            assert (r.status_code == 200) is ok, (release, r.text)
            if not ok:
                assert r.status_code == 400
    finally:
        server.release = "current"


ZONES = ("UTC", "Asia/Kolkata", "America/Los_Angeles", "Pacific/Chatham")


def test_drift_scenario_gives_the_monitor_the_same_rows_in_every_project_timezone() -> None:
    """Four projects on the same events, in four timezones (Los Angeles across the end of DST on
    2026-11-01): every query of the monitor answers the same rows for the same run, while what the
    project sees of `timestamp` differs. Naive times would not: shown on the metrics query."""
    from datetime import UTC, datetime

    from monitor.local.posthog.generator import generate
    from monitor.local.posthog.server import LocalPostHog
    from monitor.posthog.client import PostHogClient
    from tests.conftest import new_project_id

    team = new_project_id()
    ds = generate("drift", seed=5, days=6, team_id=team, scale=0.05, end=datetime(2026, 11, 4, tzinfo=UTC))
    servers = [LocalPostHog(api_key=API_KEY, timezone=tz) for tz in ZONES]
    servers[0].load(ds)
    for s in servers[1:]:
        s.team(team).jobs = [j.to_api() for j in ds.jobs]
    answers: dict[str, list[Any]] = {}
    local_first: dict[str, Any] = {}
    naive: dict[str, Any] = {}
    for tz, s in zip(ZONES, servers, strict=True):
        s.start()
        c = PostHogClient(s.url, team, API_KEY, timeout=30.0)
        try:
            since = datetime(2026, 10, 1, tzinfo=UTC)
            found = c.query(queries.DISCOVER_RUNS, {"since": since, "after_ts": since, "after_uuid": ""},
                            name="discover_runs").rows()
            got: list[Any] = [sorted(found, key=lambda r: r["run_id"])]
            for run in sorted(ds.runs, key=lambda r: r["run_id"]):
                v: dict[str, Any] = {"event": f"$ai_{run['level']}_clusters", "run_id": run["run_id"],
                                     "emitted_from": run["emitted_at"] - timedelta(seconds=1),
                                     "emitted_to": run["emitted_at"] + timedelta(seconds=1),
                                     "window_start": run["window_start"], "window_end": run["window_end"]}
                got.append(c.query(queries.GET_RUN, v, name="get_run").rows())
                got.append(c.query(queries.CLUSTER_METRICS[run["level"]], v, name="metrics").rows())
            answers[tz] = got
            local_first[tz] = c.query("SELECT toString(min(timestamp)) AS t FROM events", name="t").results
            run = ds.runs[-1]
            naive[tz] = c.query(queries.CLUSTER_METRICS[run["level"]], {
                "event": f"$ai_{run['level']}_clusters", "run_id": run["run_id"],
                "emitted_from": f"{run['emitted_at'] - timedelta(seconds=1):%Y-%m-%d %H:%M:%S}",
                "emitted_to": f"{run['emitted_at'] + timedelta(seconds=1):%Y-%m-%d %H:%M:%S}",
                "window_start": f"{run['window_start']:%Y-%m-%d %H:%M:%S}",
                "window_end": f"{run['window_end']:%Y-%m-%d %H:%M:%S}"}, name="naive").rows()
        finally:
            c.close()
            s.stop()
    assert len(answers["UTC"][0]) == len(ds.runs) and any(answers["UTC"][2::2])
    for tz in ZONES[1:]:
        assert answers[tz] == answers["UTC"], tz
    assert len(set(map(str, local_first.values()))) == len(ZONES), "each project renders its own wall clock"
    assert naive["Asia/Kolkata"] != naive["UTC"], "naive times would have shifted the window"


def test_evaluation_metrics_query_finds_what_posthog_put_in_the_run() -> None:
    """The monitor's evaluation-level metrics query, over the events, against each cluster's `metrics` as
    PostHog's aggregates.py computes them (the generator's truth, present even where the event's are null)."""
    from datetime import UTC, datetime

    from monitor.local.posthog.generator import generate
    from monitor.local.posthog.server import LocalPostHog
    from monitor.posthog.client import PostHogClient
    from tests.conftest import new_project_id

    team = new_project_id()
    ds = generate("drift", seed=3, days=4, team_id=team, scale=0.05, end=datetime(2026, 11, 1, tzinfo=UTC),
                  evaluations=True)
    with LocalPostHog(api_key=API_KEY) as s:
        s.load(ds)
        c = PostHogClient(s.url, team, API_KEY, timeout=30.0)
        checked = 0
        for run in (r for r in ds.truth["runs"] if r["level"] == "evaluation"):
            summary = next(x for x in ds.runs if x["run_id"] == run["run_id"])
            rows = c.query(queries.CLUSTER_METRICS["evaluation"], {
                "event": "$ai_evaluation_clusters", "run_id": run["run_id"],
                "emitted_from": summary["emitted_at"] - timedelta(seconds=1),
                "emitted_to": summary["emitted_at"] + timedelta(seconds=1),
                "window_start": summary["window_start"], "window_end": summary["window_end"]},
                name="cluster_metrics_evaluation").rows()
            assert {str(r["cluster_id"]) for r in rows} == set(run["metrics"])
            for r in rows:
                want = run["metrics"][str(r["cluster_id"])]
                assert r["items"] == want["item_count"]
                assert r["passes"] / r["verdicts"] == pytest.approx(want["pass_rate"])
                assert r["not_applicable"] / r["verdicts"] == pytest.approx(want["na_rate"])
                names = Counter(r["evaluation_names"]).most_common(1)[0][0]
                assert names == want["dominant_evaluation_name"]
                judge = r["judge_cost"] / r["items_with_judge_cost"] if r["items_with_judge_cost"] else None
                assert judge == pytest.approx(want["avg_judge_cost"])
                assert r["total_cost"] / r["items_with_cost"] == pytest.approx(want["avg_cost"])
                assert r["items_with_errors"] == want["error_count"]
                checked += 1
        c.close()
    assert checked >= 10
