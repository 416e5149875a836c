"""The traffic and run generator: deterministic, PostHog-shaped, and true to its own ground truth.

Most tests use a small scale (the shapes and the ratios do not depend on volume); one generates the drift
scenario at full scale to hold the volume promises and print the generation time.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.local.posthog.generator import (
    Dataset,
    generate,
    iter_ai_events,
    make_run_event,
    run_event_row,
)
from monitor.local.posthog.scenarios import SCENARIOS, TOPICS
from monitor.runs import NOISE_CLUSTER_ID, run_from_properties

END = datetime(2026, 11, 1, tzinfo=UTC)
SMALL = 0.1
RUN_ID = re.compile(r"^(\d+)_(trace|generation)_(\d{8})_(\d{6})_([0-9a-f-]{36})$")
AI_EVENTS = ("$ai_trace", "$ai_generation", "$ai_span", "$ai_embedding")
NATIVE = {"$ai_total_cost_usd": "float", "$ai_input_tokens": "int", "$ai_latency": "float",
          "$ai_http_status": "int", "$ai_is_error": "bool"}


@pytest.fixture(scope="module")
def drift() -> Dataset:
    """The traffic, trace and generation runs alone (the evaluation level has its own tests below)."""
    return generate("drift", end=END, scale=SMALL, evaluations=False)


_cache: dict[str, Dataset] = {}


def scenario(name: str) -> Dataset:
    if name not in _cache:
        _cache[name] = generate(name, end=END, scale=SMALL)
    return _cache[name]


def runs_of(ds: Dataset, job_name: str) -> list[dict[str, Any]]:
    return [r for r in ds.truth["runs"] if r["job_name"] == job_name]


def cluster_of(run: dict[str, Any], topic: str) -> str | None:
    return next((cid for cid, t in run["clusters"].items() if t == topic), None)


def run_event(ds: Dataset, run_id: str) -> tuple[dict[str, Any], str]:
    uid = next(r["event_uuid"] for r in ds.runs if r["run_id"] == run_id)
    row = next(e for e in ds.events if e[0] == uid)
    return json.loads(row[3]), row[4]


def _num(v: Any) -> float | None:
    """What HogQL's toFloat() makes of a raw property: numbers and numeric strings alike."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _is_error(v: Any) -> bool:
    """`properties.$ai_is_error = 'true'`: the raw text, whether the SDK sent a bool or a string."""
    return v is True or v == "true"


# --------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not() -> None:
    a = generate("drift", end=END, scale=0.05, seed=3)
    b = generate("drift", end=END, scale=0.05, seed=3)
    c = generate("drift", end=END, scale=0.05, seed=4)
    assert a.events == b.events
    assert a.truth == b.truth
    assert [j.to_api() for j in a.jobs] == [j.to_api() for j in b.jobs]
    assert {e[0] for e in a.events}.isdisjoint({e[0] for e in c.events})
    assert [j.id for j in a.jobs] != [j.id for j in c.jobs]


def test_drift_at_full_scale_has_the_promised_volume() -> None:
    started = time.perf_counter()
    ds = generate("drift", end=END)
    elapsed = time.perf_counter() - started
    kinds = Counter(e[1] for e in ds.events)
    ai = sum(kinds[k] for k in AI_EVENTS)
    print(f"\ndrift at scale 1.0: {elapsed:.2f} s, {ai:,} AI events {dict(kinds)}, {len(ds.runs)} runs")
    assert ai >= 200_000
    per_job = Counter((r["job_id"], r["level"]) for r in ds.runs)
    for level in ("trace", "generation"):
        assert sum(1 for (_, lv), n in per_job.items() if lv == level and n == 14) >= 2
    assert {r["items"] for r in ds.runs} == {1500}
    for s in ds.runs[:: len(ds.runs) // 8]:
        props, _ = run_event(ds, s["run_id"])
        assert props["$ai_total_items_analyzed"] == 1500
        assert sum(c["size"] for c in props["$ai_clusters"]) == 1500


def test_numbers_and_booleans_arrive_both_native_and_as_strings(drift: Dataset) -> None:
    forms: Counter[tuple[str, str]] = Counter()
    for e in iter_ai_events(drift):
        props = json.loads(e[3])
        for key in NATIVE:
            if key in props:
                forms[(key, type(props[key]).__name__)] += 1
    for key, native in NATIVE.items():
        strings, natives = forms[(key, "str")], forms[(key, native)]
        assert strings and natives, key
        assert 0.12 < strings / (strings + natives) < 0.28, (key, strings, natives)


def test_ai_events_are_linked_into_traces(drift: Dataset) -> None:
    by_trace: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
    for e in list(iter_ai_events(drift))[:20_000]:
        props = json.loads(e[3])
        by_trace.setdefault(props["$ai_trace_id"], []).append((e[1], props, e[4]))
    complete = [evs for evs in by_trace.values() if any(k == "$ai_trace" for k, _, _ in evs)]
    assert len(complete) > 1000
    for evs in complete:
        kinds = Counter(k for k, _, _ in evs)
        assert kinds["$ai_trace"] == 1 and 1 <= kinds["$ai_generation"] <= 4 and kinds["$ai_span"] <= 3
        assert kinds["$ai_embedding"] <= 1
        trace_ts = next(ts for k, _, ts in evs if k == "$ai_trace")
        assert trace_ts == min(ts for _, _, ts in evs)
        assert len({p["$ai_session_id"] for _, p, _ in evs}) == 1
        assert len({p["app"] for _, p, _ in evs}) == 1
        for kind, p, _ in evs:
            if kind != "$ai_trace":
                assert p["$ai_span_id"] and p["$ai_parent_id"] == p["$ai_trace_id"]
            if kind == "$ai_generation":
                assert {"$ai_model", "$ai_provider", "$ai_input_cost_usd", "$ai_output_cost_usd"} <= p.keys()
                assert _is_error(p.get("$ai_is_error")) == ("$ai_error" in p)
                if not _is_error(p.get("$ai_is_error")):
                    total = _num(p["$ai_input_cost_usd"]) or 0.0
                    total += _num(p["$ai_output_cost_usd"]) or 0.0
                    assert _num(p["$ai_total_cost_usd"]) == pytest.approx(total, rel=1e-6, abs=1e-9)


def test_every_run_event_parses_with_the_monitor_and_is_shaped_like_posthogs(drift: Dataset) -> None:
    jobs = {j.id: j for j in drift.jobs}
    modes: Counter[str] = Counter()
    for summary in drift.runs:
        row = next(e for e in drift.events if e[0] == summary["event_uuid"])
        level = summary["level"]
        assert row[1] == f"$ai_{level}_clusters" and row[2] == f"clustering_{level}_{drift.team_id}"
        props = json.loads(row[3])
        run = run_from_properties(props, row[4])
        assert run.run_id == summary["run_id"] and run.level == level and run.job_id == summary["job_id"]
        assert run.job_name == jobs[run.job_id].name
        m = RUN_ID.match(run.run_id)
        assert m and m.group(5) == run.job_id and m.group(3) == f"{run.window_end:%Y%m%d}"
        assert run.window_end - run.window_start == timedelta(days=7)
        assert props["$ai_window_end"].endswith("+00:00") and "." in props["$ai_window_end"]
        assert run.timestamp is not None
        assert timedelta(0) < run.timestamp - run.window_end < timedelta(minutes=15)
        assert props["$ai_clustering_params"]["max_samples"] == 1500
        ids = [c.cluster_id for c in run.clusters]
        regular = [c for c in run.clusters if not c.is_noise]
        assert ids[: len(regular)] == list(range(len(regular)))
        assert [c.size for c in regular] == sorted((c.size for c in regular), reverse=True)
        if NOISE_CLUSTER_ID in ids:
            assert ids[-1] == NOISE_CLUSTER_ID and run.clusters[-1].title == "Outliers"
        assert run.total_items == run.clustered_size
        for c, wire in zip(run.clusters, props["$ai_clusters"], strict=True):
            assert sorted(i.rank for i in c.traces.values()) == list(range(c.size))
            # The wire items, as PostHog writes them (the monitor keeps only what it reads).
            for key, item in wire["traces"].items():
                if level == "trace":
                    assert item["trace_id"] == key and item["generation_id"] is None
                else:
                    assert item["generation_id"] == key and item["trace_id"] and item["trace_id"] != key
                assert c.traces[key].trace_id == item["trace_id"]
                assert run.window_start <= datetime.fromisoformat(item["timestamp"]) < run.window_end
        raw = props["$ai_clusters"][0]
        modes["absent" if "metrics" not in raw else "null" if raw["metrics"] is None else "present"] += 1
        assert len(raw["centroid"]) == 10 and props["$ai_clusters"][-1]["centroid"] in ([], raw["centroid"])
    assert modes["present"] > modes["null"] > 0


def _recompute(ds: Dataset, run: dict[str, Any], cluster_id: str) -> dict[str, Any]:
    """A cluster's metrics from the raw events, following PostHog's queries and aggregation."""
    props, _ = run_event(ds, run["run_id"])
    cluster = next(c for c in props["$ai_clusters"] if str(c["cluster_id"]) == cluster_id)
    keys = set(cluster["traces"])
    start = datetime.fromisoformat(run["window_start"]).strftime("%Y-%m-%d %H:%M:%S.%f")
    end = datetime.fromisoformat(run["window_end"]).strftime("%Y-%m-%d %H:%M:%S.%f")
    per: dict[str, dict[str, float]] = {}
    for uid, kind, _, raw, ts, _ in iter_ai_events(ds):
        if not start <= ts < end:
            continue
        if run["level"] == "generation":
            if kind != "$ai_generation" or uid not in keys:
                continue
            key = uid
        else:
            if kind not in ("$ai_generation", "$ai_embedding", "$ai_span"):
                continue
            p = json.loads(raw)
            if p["$ai_trace_id"] not in keys:
                continue
            key = p["$ai_trace_id"]
        p = json.loads(raw)
        acc = per.setdefault(key, {"cost": 0.0, "latency": 0.0, "tokens": 0.0, "errors": 0.0})
        if kind in ("$ai_generation", "$ai_embedding"):
            acc["cost"] += _num(p.get("$ai_total_cost_usd")) or 0.0
            acc["tokens"] += _num(p.get("$ai_input_tokens")) or 0.0
            acc["tokens"] += _num(p.get("$ai_output_tokens")) or 0.0
        if kind == "$ai_generation":
            acc["latency"] += _num(p.get("$ai_latency")) or 0.0
        acc["errors"] += _is_error(p.get("$ai_is_error"))
    assert set(per) == keys
    items = list(per.values())

    def avg(name: str) -> float | None:
        vals = [i[name] for i in items if i[name] > 0]
        return sum(vals) / len(vals) if vals else None

    errors = sum(1 for i in items if i["errors"] > 0)
    return {"avg_cost": avg("cost"), "avg_latency": avg("latency"), "avg_tokens": avg("tokens"),
            "error_count": errors, "error_rate": errors / len(items), "item_count": len(items)}


@pytest.mark.parametrize("level", ["trace", "generation"])
def test_cluster_metrics_are_what_the_events_say(drift: Dataset, level: str) -> None:
    run = next(r for r in drift.truth["runs"]
               if r["level"] == level and r["metrics_in_event"] == "present" and r["day"] >= 6)
    props, _ = run_event(drift, run["run_id"])
    # The billing cluster has errors after the day-5 surge; take it and the noise cluster.
    chosen = [cluster_of(run, "billing") or "0", "-1" if "-1" in run["sizes"] else "1"]
    for cid in chosen:
        got = _recompute(drift, run, cid)
        written = next(c["metrics"] for c in props["$ai_clusters"] if str(c["cluster_id"]) == cid)
        for key, value in got.items():
            assert written[key] == pytest.approx(value, rel=1e-9), (cid, key)
            assert run["metrics"][cid][key] == pytest.approx(value, rel=1e-9), (cid, key)
    assert any(run["metrics"][c]["error_count"] > 0 for c in chosen)


def test_jobs_and_filters(drift: Dataset) -> None:
    apis = [j.to_api() for j in drift.jobs]
    for a in apis:
        assert set(a) == {"id", "name", "analysis_level", "event_filters", "enabled", "created_at",
                          "updated_at"}
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a["id"])
        assert a["created_at"].endswith("Z")
    levels = Counter(a["analysis_level"] for a in apis if a["enabled"])
    assert levels["trace"] >= 2 and levels["generation"] >= 2
    support = next(j for j in drift.jobs if j.name == "Support bot traces")
    for r in runs_of(drift, support.name):
        assert {TOPICS[t].app for t in r["clusters"].values()} == {"support_bot"}
    disabled = [j for j in drift.jobs if not j.enabled]
    assert disabled and not any(r["job_id"] == j.id for j in disabled for r in drift.runs)


def test_truth_agrees_with_the_run_events(drift: Dataset) -> None:
    for r in drift.truth["runs"][::7]:
        props, _ = run_event(drift, r["run_id"])
        sizes = {str(c["cluster_id"]): c["size"] for c in props["$ai_clusters"]}
        assert sizes == r["sizes"]
        assert set(r["clusters"]) == {k for k in sizes if k != "-1"}
        assert {str(c["cluster_id"]): c["title"] for c in props["$ai_clusters"]} == r["titles"]
    by_job = Counter(r["job_id"] for r in drift.truth["runs"])
    assert len(drift.truth["transitions"]) == sum(n - 1 for n in by_job.values())
    json.dumps(drift.truth)


def test_near_namesake_topics_never_share_a_title() -> None:
    seen: dict[str, str] = {}
    for t in TOPICS.values():
        for title in (*t.light, *t.heavy):
            assert seen.setdefault(title.lower(), t.id) == t.id, title
    assert "Python code generation" in TOPICS["py_codegen"].light
    assert "Python code review" in TOPICS["py_review"].light


def test_the_cost_spike_shows_in_the_first_run_after_it() -> None:
    ds = scenario("cost_spike")
    event = ds.truth["events"][0]
    assert event["kind"] == "cost_spike" and event["day"] == 7
    for job in ("Default - traces", "Support bot traces", "Default - generations"):
        runs = runs_of(ds, job)
        cost = [r["metrics"][cluster_of(r, "shipping") or ""]["avg_cost"] for r in runs]
        before = max(cost[:7])
        assert cost[7] > 1.8 * cost[6], job
        assert min(cost[10:]) > 5 * before, job
    assert all(event["alert_run_ids"])
    # Same seed, same traffic until the change: only what happens after it differs.
    cut = event["effective_at"][:19].replace("T", " ")
    steady = scenario("steady")
    before = [e for e in ds.events if e[4] < cut and e[1] in AI_EVENTS]
    assert before == [e for e in steady.events if e[4] < cut and e[1] in AI_EVENTS]
    assert [e for e in ds.events if e[4] >= cut and e[1] in AI_EVENTS] != \
        [e for e in steady.events if e[4] >= cut and e[1] in AI_EVENTS]


def test_the_error_surge_raises_the_error_rate_of_its_cluster() -> None:
    ds = scenario("error_surge")
    runs = runs_of(ds, "Support bot traces")
    rate = [r["metrics"][cluster_of(r, "billing") or ""]["error_rate"] for r in runs]
    assert max(rate[:7]) < 0.06
    assert rate[9] > 0.10 and rate[13] > 0.2
    event = ds.truth["events"][0]
    assert event["expect_alert"] == "error_rate" and all(event["alert_run_ids"])


def test_a_new_cluster_appears_with_a_clear_share_in_the_first_run() -> None:
    ds = scenario("new_cluster")
    for job in ("Default - traces", "Support bot traces", "Default - generations"):
        runs = runs_of(ds, job)
        assert not any(cluster_of(r, "warranty_claims") for r in runs[:7])
        first = runs[7]
        cid = cluster_of(first, "warranty_claims")
        assert cid is not None
        assert first["sizes"][cid] / first["items"] >= 0.03, job
        tr = next(t for t in ds.truth["transitions"] if t["new_run_id"] == first["run_id"])
        assert int(cid) in tr["new"]
    assert ds.truth["events"][0]["first_run_ids"] == ds.truth["events"][0]["alert_run_ids"]


def test_a_topic_that_stops_fades_then_disappears() -> None:
    ds = scenario("disappear")
    runs = runs_of(ds, "Default - traces")
    share = [r["sizes"][c] / r["items"] if (c := cluster_of(r, "product_compare")) else 0.0 for r in runs]
    assert min(share[:5]) > 0.03 and share[-1] == 0.0
    gone = next(i for i, s in enumerate(share) if s == 0.0)
    tr = next(t for t in ds.truth["transitions"] if t["new_run_id"] == runs[gone]["run_id"])
    assert int(cluster_of(runs[gone - 1], "product_compare") or -9) in tr["disappeared"]


@pytest.mark.parametrize(("name", "kind"), [("split", "splits"), ("merge", "merges")])
def test_split_and_merge_are_one_run_to_two_clusters_and_back(name: str, kind: str) -> None:
    ds = scenario(name)
    change = ds.truth["events"][0]
    one, two = ((change["topic"],), tuple(change["topics"]))
    if name == "merge":
        one, two = two, one
    for job in ("Default - traces", "Default - generations"):
        runs = runs_of(ds, job)
        for r in runs:
            topics = set(r["clusters"].values())
            before = r["day"] < change["day"]
            assert set(one if before else two) <= topics, (job, r["day"])
            assert not set(two if before else one) & topics, (job, r["day"])
        tr = next(t for t in ds.truth["transitions"] if t["new_run_id"] == runs[change["day"]]["run_id"])
        assert len(tr[kind]) == 1
        entry = tr[kind][0]
        assert len(entry["new"] if name == "split" else entry["prev"]) == 2


def test_reword_changes_only_the_titles() -> None:
    steady, reword = scenario("steady"), scenario("reword")
    assert steady.events[:5000] == reword.events[:5000]

    def heavy_share(ds: Dataset) -> float:
        marks = [m for r in ds.truth["runs"] for m in r["rewording"].values()]
        return marks.count("heavy") / len(marks)

    assert heavy_share(steady) < 0.25 < 0.7 < heavy_share(reword)
    titles = {t for r in reword.truth["runs"] for c, t in r["titles"].items()
              if r["clusters"].get(c) == "password_login"}
    assert len(titles) >= 4 and not reword.truth["events"] and reword.truth["quiet"]


def test_steady_has_no_structural_change() -> None:
    ds = scenario("steady")
    assert not ds.truth["events"]
    for t in ds.truth["transitions"]:
        assert not (t["new"] or t["disappeared"] or t["splits"] or t["merges"]), t
    assert not [c for c in ds.truth["crossings"] if c["kind"] in ("cost_spike", "error_rate")]


def test_drift_spreads_its_changes_and_shows_them_at_once(drift: Dataset) -> None:
    events = {e["kind"]: e for e in drift.truth["events"]}
    assert set(events) == {"cost_spike", "error_surge", "new_cluster", "split"}
    assert len({e["day"] for e in events.values()}) == 4
    for kind in ("cost_spike", "new_cluster", "split"):
        assert events[kind]["alert_run_ids"] == events[kind]["first_run_ids"], kind
    assert all(events["error_surge"]["alert_run_ids"])
    first_days = {r["run_id"]: r["day"] for r in drift.truth["runs"]}
    for e in events.values():
        assert {first_days[rid] for rid in e["first_run_ids"]} == {e["day"]}


def test_small_scale_still_makes_every_run() -> None:
    ds = generate("steady", end=END, scale=0.05, days=5)
    assert len(ds.runs) == 4 * 5
    assert ds.truth["min_items"] == 50
    assert min(r["items"] for r in ds.runs) >= 50


def test_hand_made_runs_parse_like_generated_ones(tmp_path: Path) -> None:
    end = datetime(2026, 10, 8, 3, 12, 45, 518232, tzinfo=UTC)
    props = make_run_event(
        team_id=2, level="generation", job_id="019cb7f3-a126-7809-bffc-7f13bffe1325", job_name="Gens",
        window_end=end,
        clusters=[
            {"cluster_id": -1, "items": [("g9", "t9")]},
            {"cluster_id": 0, "title": "Refund requests", "items": [("g1", "t1"), ("g2", "t1")],
             "metrics": {"avg_cost": 0.01, "item_count": 2}},
            {"cluster_id": 1, "items": ["g3"], "metrics": None},
        ],
    )
    row = run_event_row(props, team_id=2, emitted_at=end + timedelta(minutes=5))
    run = run_from_properties(json.loads(row[3]), row[4])
    assert run.run_id == "2_generation_20261008_031245_019cb7f3-a126-7809-bffc-7f13bffe1325"
    assert [c.cluster_id for c in run.clusters] == [0, 1, -1]
    assert run.clusters[0].metrics is not None and run.clusters[0].metrics.avg_cost == 0.01
    assert run.clusters[1].metrics is None and "metrics" not in props["$ai_clusters"][2]
    assert run.clusters[0].traces["g2"].trace_id == "t1" and run.total_items == 4
    assert row[1] == "$ai_generation_clusters" and row[2] == "clustering_generation_2"
    ds = scenario("steady")
    out = tmp_path / "truth.json"
    ds.write_truth(out)
    assert json.loads(out.read_text())["scenario"] == "steady"


def test_every_named_scenario_exists_and_unknown_ones_are_refused() -> None:
    assert set(SCENARIOS) == {"steady", "cost_spike", "error_surge", "new_cluster", "disappear", "split",
                              "merge", "reword", "drift"}
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("nope")


# --- evaluation level and old run events -------------------------------------------------------------------

@pytest.fixture(scope="module")
def drift_evals() -> Dataset:
    return generate("drift", end=END, scale=SMALL)


def test_evaluations_are_on_by_default_in_drift_only_and_leave_the_rest_unchanged(
        drift: Dataset, drift_evals: Dataset) -> None:
    assert not any(e[1] == "$ai_evaluation" for e in drift.events) and not drift.truth["evaluation_events"]
    steady = generate("steady", end=END, scale=SMALL, days=2)
    assert not any(e[1] == "$ai_evaluation" for e in steady.events)
    assert any(e[1] == "$ai_evaluation" for e in generate("steady", end=END, scale=SMALL, days=2,
                                                          evaluations=True).events)
    assert [j.to_api() for j in drift.jobs] == [j.to_api() for j in drift_evals.jobs[:-1]]
    assert drift_evals.jobs[-1].analysis_level == "evaluation"
    assert [r for r in drift_evals.runs if r["level"] != "evaluation"] == drift.runs


def test_evaluation_events_have_posthogs_fields_in_both_sdk_forms(drift_evals: Dataset) -> None:
    gens = {e[0]: json.loads(e[3]) for e in drift_evals.events if e[1] == "$ai_generation"}
    evals = [json.loads(e[3]) for e in drift_evals.events if e[1] == "$ai_evaluation"]
    assert len(evals) > 1000
    for p in evals:
        assert p["$ai_target_event_id"] in gens
        assert p["$ai_trace_id"] == gens[p["$ai_target_event_id"]]["$ai_trace_id"]
        assert p["$ai_evaluation_runtime"] in ("llm_judge", "hog") and p["$ai_evaluation_name"]
        assert ("$ai_total_cost_usd" in p) == (p["$ai_evaluation_runtime"] == "llm_judge")
    assert {type(p["$ai_evaluation_result"]) for p in evals} == {bool, str}
    assert any(p["$ai_evaluation_applicable"] in (False, "false") for p in evals)
    assert {p["$ai_evaluation_name"] for p in evals} == {"Helpfulness", "Hallucination check", "Valid JSON output"}


def test_evaluation_runs_and_the_drift_scenarios_evaluation_changes(drift_evals: Dataset) -> None:
    runs = [r for r in drift_evals.truth["runs"] if r["level"] == "evaluation"]
    assert len(runs) == 14
    row = next(e for e in drift_evals.events if e[0] == runs[-1]["event_uuid"])
    props = json.loads(row[3])
    assert row[1] == "$ai_evaluation_clusters" and row[2] == f"clustering_evaluation_{drift_evals.team_id}"
    run = run_from_properties(props, row[4])
    assert run.level == "evaluation" and run.clusters[-1].cluster_id == NOISE_CLUSTER_ID
    present = [c for c in props["$ai_clusters"] if c.get("metrics")]
    for c in present:
        m = c["metrics"]
        assert 0 <= m["pass_rate"] <= 1 and m["dominant_runtime"] in ("llm_judge", "hog")
        assert (m["avg_judge_cost"] is None) == (m["dominant_runtime"] == "hog")  # judges cost, hog code does not
    drop, failure = drift_evals.truth["evaluation_events"]
    rates = [v for v in drop["pass_rate_by_run"].values() if v is not None]
    assert rates[0] - rates[-1] >= 0.25, rates  # one cluster's pass rate falls
    first_day = {r["run_id"]: r["day"] for r in runs}
    appears = failure["appears_run_id"]
    assert appears and first_day[appears] >= failure["day"]  # a new failure-mode cluster, only after the change
    assert all(v is None for rid, v in failure["pass_rate_by_run"].items() if first_day[rid] < failure["day"])
    assert failure["pass_rate_by_run"][appears] == 0.0
    # Where the monitor's default pass-rate limit is first crossed after the change: what it should alert on.
    alert = drop["pass_rate_alert_run_id"]
    assert alert and first_day[alert] >= drop["day"] and drop["pass_rate_by_run"][alert] < 0.5
    before = [v for rid, v in drop["pass_rate_by_run"].items() if first_day[rid] < first_day[alert]]
    assert before and all(v is None or v >= 0.5 for v in before)
    assert failure["pass_rate_alert_run_id"] == appears


def test_old_run_events_parse(drift: Dataset) -> None:
    from monitor.local.posthog.generator import legacy_run_properties

    r = drift.runs[-1]
    props = json.loads(next(e for e in drift.events if e[0] == r["event_uuid"])[3])
    old = legacy_run_properties(props)
    assert "$ai_clustering_level" not in old and "$ai_total_items_analyzed" not in old
    assert old["$ai_total_traces_analyzed"] == props["$ai_total_items_analyzed"]
    assert all(c["metrics"] is None for c in old["$ai_clusters"])
    noise = old["$ai_clusters"][-1]
    assert noise["cluster_id"] == -1
    by_rank = sorted(noise["traces"].values(), key=lambda v: v["rank"])
    assert by_rank[0]["distance_to_centroid"] <= by_rank[-1]["distance_to_centroid"]
    run = run_from_properties(old)
    assert run.level == r["level"] and run.job_id == "" and run.total_items == props["$ai_total_items_analyzed"]
