"""The evaluation level end to end, and the metrics PostHog already put in the run, over the local PostHog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.alerts import Alert, Notification
from monitor.local.posthog.faults import Fault
from monitor.local.posthog.generator import generate, with_embedded_metrics
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, END, PostHogEnv, make_config, monitor_for, new_project_id


def _alerts(notices: list[Notification]) -> list[Alert]:
    return [a for n in notices for a in n.alerts]


def test_the_drift_scenarios_pass_rate_fall_and_failure_mode_alert_in_the_runs_the_truth_names(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.1)
    m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite"))
    r = m.cycle()
    assert r.ok and len(r.processed) == len(env.dataset.runs)
    alerts = [a for a in _alerts(r.notices) if a.level == "evaluation"]
    drop, failure = env.dataset.truth["evaluation_events"]
    assert drop["kind"] == "pass_rate_drop" and failure["kind"] == "failure_mode"

    # The pass rate of Helpfulness on the support bot falls below the default limit: told in the run where
    # the ground truth says the limit is first crossed, naming the evaluation and linking to PostHog's page.
    fired = [a for a in alerts if a.kind == "pass_rate" and a.cluster_title == "Helpfulness verdicts on support bot"]
    assert fired and fired[0].run_id == drop["pass_rate_alert_run_id"], [a.run_id for a in fired]
    first = fired[0]
    assert first.summary.startswith("Evaluation 'Helpfulness' (LLM judge): pass rate ")
    assert first.value is not None and first.value < 0.5 and first.previous_value is not None
    assert first.previous_value > first.value
    assert any(link.url.endswith(f"/project/{env.project_id}/ai-observability/evaluations")
               for link in first.links)
    # A level: fired once, not again while it holds.
    assert len({a.fingerprint for a in fired}) == 1 and len(fired) == 1

    # The new failure mode: a new cluster, and its pass rate, in the run it appears in.
    title = failure["cluster_title"]
    new = [a for a in alerts if a.kind == "new_cluster" and a.cluster_title == title]
    assert [a.run_id for a in new] == [failure["appears_run_id"]]
    low = [a for a in alerts if a.kind == "pass_rate" and a.cluster_title == title]
    assert low and low[0].run_id == failure["appears_run_id"]
    assert low[0].summary.startswith("Evaluation 'Hallucination check' (LLM judge): pass rate 0.0%")

    # Nothing else at the evaluation level falls below the limits on this scenario.
    others = {a.cluster_title for a in alerts if a.kind in ("pass_rate", "pass_rate_drop", "na_rate")}
    assert others == {"Helpfulness verdicts on support bot", title}, others
    # The Slack message says it too, escaped as every title is.
    assert any("Pass rate" in json.dumps(msg) and "Helpfulness" in json.dumps(msg) for msg in slack.messages)
    m.store.close()


def _comparable(a: Alert, project_id: int) -> tuple[Any, ...]:
    run = a.run_id.split("_", 1)[1]  # the run id without the project's prefix
    links = tuple(link.url.replace(f"/project/{project_id}/", "/project/P/").replace(
        f"{project_id}_", "P_").replace(f"{project_id}%5F", "P%5F") for link in a.links)
    value = None if a.value is None else round(a.value, 9)
    previous = None if a.previous_value is None else round(a.previous_value, 9)
    return (run, a.kind, a.severity, a.cluster_title, a.summary, a.metric, value, previous, links)


def _metrics_calls(server: LocalPostHog) -> int:
    return sum(1 for q in server.requests if str(q.get("name") or "").startswith("cluster-monitor:cluster_metrics"))


def test_alerts_are_the_same_with_posthogs_metrics_and_with_them_stripped(slack: LocalSlack, tmp_path: Path) -> None:
    server = LocalPostHog(api_key=API_KEY)
    with_id, without_id = new_project_id(), new_project_id()
    with_metrics = generate("drift", team_id=with_id, end=END, scale=0.1)
    stripped = with_embedded_metrics(generate("drift", team_id=without_id, end=END, scale=0.1), present=False)
    server.load(with_metrics)
    server.load(stripped)
    server.start()
    try:
        got: dict[int, list[tuple[Any, ...]]] = {}
        calls: dict[int, int] = {}
        for pid, ds in ((with_id, with_metrics), (without_id, stripped)):
            env = PostHogEnv(server=server, dataset=ds, project_id=pid)
            mark = _metrics_calls(server)
            m = monitor_for(make_config(env, slack, None, tmp_path / f"{pid}.sqlite"))
            r = m.cycle()
            assert r.ok and len(r.processed) == len(ds.runs)
            calls[pid] = _metrics_calls(server) - mark
            got[pid] = [_comparable(a, pid) for a in _alerts(r.notices)]
            m.store.close()
        # Same alerts, same words, same numbers, whichever source measured the runs.
        assert got[with_id] == got[without_id]
        kinds = {a[1] for a in got[with_id]}
        assert {"pass_rate", "new_cluster", "cost_spike", "error_rate"} <= kinds, kinds
        # The monitor's own query only for runs whose metrics PostHog left null or absent.
        lacking = sum(1 for run in with_metrics.truth["runs"] if run["metrics_in_event"] != "present")
        assert 0 < lacking < len(with_metrics.runs)
        assert calls[with_id] == lacking and calls[without_id] == len(stripped.runs)
    finally:
        server.stop()


def test_a_rule_on_what_posthogs_metrics_lack_asks_the_query_for_every_run(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.05, days=3)
    rules = [{"name": "slow", "metric": "p95_latency", "above": 1000.0}]
    m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite", rules=rules))
    r = m.cycle()
    assert r.ok and len(r.processed) == len(env.dataset.runs)
    assert _metrics_calls(env.server) == len(env.dataset.runs)
    # And the percentile is there even where PostHog's metrics were used for the rest.
    snaps = [s for run in env.dataset.runs for s in m.store.run_snapshots(run["run_id"]) if not s.cluster_id < 0]
    assert snaps and all(s.metrics.get("p95_latency") is not None for s in snaps if s.metrics.get("items"))
    m.store.close()


def test_a_metrics_query_that_keeps_timing_out_uses_posthogs_metrics_and_says_so(
        slack: LocalSlack, tmp_path: Path) -> None:
    server = LocalPostHog(api_key=API_KEY)
    pid = new_project_id()
    ds = with_embedded_metrics(generate("drift", team_id=pid, end=END, scale=0.1), present=True)
    server.load(ds)
    server.start()
    try:
        server.faults.add(Fault(kind="timeout", name="cluster_metrics", count=None))
        # A rule on a percentile: PostHog's metrics lack it, so every run asks the query, which times out.
        rules = [{"name": "slow", "metric": "p95_latency", "above": 1000.0}]
        env = PostHogEnv(server=server, dataset=ds, project_id=pid)
        m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite", max_retries=1, rules=rules))
        r = m.cycle()
        # No job is blocked: every run is processed on PostHog's metrics, and its alerts say so.
        assert r.ok and len(r.processed) == len(ds.runs)
        assert _metrics_calls(server) == 2 * len(ds.runs)  # each tried twice (max_retries=1), then let go
        alerts = _alerts(r.notices)
        kinds = {a.kind for a in alerts}
        assert {"pass_rate", "cost_spike", "error_rate", "new_cluster"} <= kinds, kinds
        note = "(metrics are PostHog's own: the metrics query timed out (HTTP 504); without p95_latency)"
        assert all(a.summary.endswith(note) for a in alerts)
        assert any(note in json.dumps(msg) for msg in slack.messages)
        m.store.close()
    finally:
        server.stop()
