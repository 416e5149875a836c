"""Alert rules over the local PostHog's scenarios, across several cycles and restarts, end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.local.posthog.generator import run_event_row
from monitor.local.slack import LocalSlack
from tests.conftest import END, PostHogEnv, make_config, monitor_for


def _texts(slack: LocalSlack) -> list[str]:
    return [json.dumps(m) for m in slack.messages]


def test_nothing_fires_on_the_steady_scenario(posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.1)
    m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite"))
    r = m.cycle()
    assert r.ok and len(r.processed) == len(env.dataset.runs) >= 20
    assert slack.messages == [], _texts(slack)
    m.store.close()


def _next_run_of(env: PostHogEnv, job_id: str, level: str, emitted_at: datetime) -> None:
    """The job's latest run again, one day later: what a healthy scheduled job would emit next."""
    last = max((r for r in env.dataset.runs if r["job_id"] == job_id and r["level"] == level),
               key=lambda r: r["emitted_at"])
    row = next(e for e in env.dataset.events if e[0] == last["event_uuid"])
    props = json.loads(row[3])
    window_end = datetime.fromisoformat(props["$ai_window_end"]) + timedelta(days=1)
    props["$ai_window_start"] = (window_end - timedelta(days=7)).isoformat()
    props["$ai_window_end"] = window_end.isoformat()
    props["$ai_clustering_run_id"] = f"{env.project_id}_{level}_{window_end:%Y%m%d_%H%M%S}_{job_id}"
    env.server.engine.insert([run_event_row(props, team_id=env.project_id, emitted_at=emitted_at)])


def test_a_job_whose_runs_stop_raises_one_stale_alert_and_resolves_when_runs_return(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=3)
    now = [END + timedelta(hours=1)]
    state = tmp_path / "s.sqlite"
    cfg = make_config(env, slack, None, state, alerting={"stale_after_hours": 36, "repeat_interval_hours": 72})
    m = monitor_for(cfg, clock=lambda: now[0])
    assert m.cycle().ok
    before = len(slack.messages)
    assert not any("No new runs" in t for t in _texts(slack))

    # Two days without a run: every watched job and level goes stale, each told once.
    now[0] = END + timedelta(hours=50)
    r = m.cycle()
    assert r.ok
    keys = {(r["job_id"], r["level"]) for r in env.dataset.runs}
    stale = [t for t in _texts(slack)[before:] if "No new runs" in t]
    assert len(stale) == len(keys) >= 2
    # Further polls, and a restart, repeat nothing before the repeat interval.
    now[0] += timedelta(minutes=5)
    assert m.cycle().notifications == 0
    m.store.close()
    m = monitor_for(cfg, clock=lambda: now[0])
    assert m.cycle().notifications == 0
    assert len(slack.messages) == before + len(keys)

    # One job comes back: its alert resolves, once; the others stay firing, quietly.
    job_id, level = sorted(keys)[0]
    _next_run_of(env, job_id, level, now[0] - timedelta(minutes=1))
    now[0] += timedelta(minutes=5)
    r = m.cycle()
    assert r.ok and len(r.processed) == 1
    resolved = [t for t in _texts(slack) if "Resolved" in t and "No new runs" in t]
    assert len(resolved) == 1
    now[0] += timedelta(minutes=5)
    m.cycle()
    assert len([t for t in _texts(slack) if "Resolved" in t and "No new runs" in t]) == 1

    # Past the repeat interval, the jobs still quiet are told again.
    now[0] += timedelta(hours=73)
    m.cycle()
    stale_now = [t for t in _texts(slack) if "No new runs" in t and "Resolved" not in t]
    # The job that came back is quiet again by now too, so it fires anew along with the repeats.
    assert len(stale_now) == 2 * len(keys)
    m.store.close()


def test_a_silence_mutes_matching_alerts_only_until_it_ends(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    silences = [{"kinds": ["new_cluster"], "until": "2026-11-01T01:30:00Z", "comment": "launch week"},
                {"title": "*nothing matches this*"}]
    m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite", silences=silences))
    assert m.cycle().ok
    text = "\n".join(_texts(slack))
    assert "New cluster" not in text and "Cost spike" in text
    m.store.close()
    # The same history after the silence ended: the new cluster is told.
    slack.messages.clear()
    later = monitor_for(make_config(env, slack, None, tmp_path / "t.sqlite", silences=silences),
                        clock=lambda: END + timedelta(hours=2))
    assert later.cycle().ok
    assert "New cluster" in "\n".join(_texts(slack))
    later.store.close()


def test_posthog_failing_longer_than_the_bound_is_alerted_once_and_resolved(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    from monitor.local.posthog.faults import Fault

    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    now = [END + timedelta(hours=1)]
    cfg = make_config(env, slack, None, tmp_path / "s.sqlite", max_retries=0,
                      alerting={"posthog_errors_after_minutes": 30})
    m = monitor_for(cfg, clock=lambda: now[0])
    assert m.cycle().ok
    env.server.faults.add(Fault(kind="status", status=503, count=None))
    for _ in range(3):  # 0, 20 and 40 minutes into the outage: only the last is past the bound
        assert not m.cycle().ok
        now[0] += timedelta(minutes=20)
    down = [t for t in _texts(slack) if "PostHog unreachable" in t]
    assert len(down) == 1 and "503" in down[0]
    m.cycle()
    assert len([t for t in _texts(slack) if "PostHog unreachable" in t]) == 1  # not repeated
    env.server.faults.clear()
    assert m.cycle().ok
    resolved = [t for t in _texts(slack) if "PostHog unreachable" in t and "Resolved" in t]
    assert len(resolved) == 1
    m.store.close()


SCENARIO_CHANGES = ["cost_spike", "error_surge", "new_cluster", "disappear", "split", "merge"]


@pytest.mark.parametrize("scenario", SCENARIO_CHANGES)
def test_each_scenarios_intended_alerts_fire_once(
        scenario: str, posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    """The generator's ground truth says which run first crosses the default thresholds for each change,
    and every run pair where a threshold is crossed at all. The monitor must tell the change in that run
    (or the next one: a rise of an error rate must also clear the z-test against sampling noise, which
    the truth's crossings do not apply), tell it only where the truth has a crossing, and tell a level
    once while it holds."""
    env: PostHogEnv = posthog_factory(scenario, scale=0.1, days=10)
    m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite",
                                alerting={"repeat_interval_hours": 10_000}))
    r = m.cycle()
    assert r.ok and len(r.processed) == len(env.dataset.runs)
    fired = [a for n in r.notices for a in n.alerts if a.status == "firing"]
    truth = env.dataset.truth
    truth_runs = {t["run_id"]: t for t in truth["runs"]}
    job_runs: dict[tuple[str, str], list[str]] = {}
    for t in sorted(truth["runs"], key=lambda t: t["emitted_at"]):
        job_runs.setdefault((t["job_id"], t["level"]), []).append(t["run_id"])

    def job_of(run_id: str) -> tuple[str, str]:
        return truth_runs[run_id]["job_id"], truth_runs[run_id]["level"]

    def topic_of(run_id: str, cluster_id: int | None) -> str | None:
        return truth_runs[run_id]["clusters"].get(str(cluster_id)) if cluster_id is not None else None

    assert truth["events"]
    for ev in truth["events"]:
        kinds = set(ev["expect_alerts"])
        topics = {ev["topic"], *ev.get("topics", [])}
        crossed = {c["run_id"] for c in truth["crossings"] if c["kind"] in kinds and c["topic"] in topics}
        expected_runs = [rid for rid in ev["alert_run_ids"] if rid]
        assert expected_runs, ev
        for rid in expected_runs:
            job = job_of(rid)
            runs = job_runs[job]
            window = set(runs[runs.index(rid): runs.index(rid) + 2])
            about = [a for a in fired if a.kind in kinds and job_of(a.run_id) == job
                     and (a.cluster_id is None or topic_of(a.run_id, a.cluster_id) in topics)]
            told = {a.run_id for a in about}
            assert told & window, f"{scenario}: no {kinds} alert in {rid} or the next run of {job}; " \
                                  f"told in {sorted(told)}"
            assert told <= crossed | window, f"{scenario}: {kinds} told where no threshold was crossed: " \
                                              f"{sorted(told - crossed - window)}"
            # A level (error rate) is told when it starts, not again while it holds.
            for kind in kinds & {"error_rate", "cluster_cost", "p95_latency"}:
                assert len([a for a in about if a.kind == kind]) <= 1, f"{scenario}: {kind} repeated"
    m.store.close()
