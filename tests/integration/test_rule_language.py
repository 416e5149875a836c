"""The rule language, routes and catch-up end to end: the monitor on the local PostHog, Slack and SMTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from monitor.local.slack import LocalSlack
from tests.conftest import PostHogEnv, make_config, monitor_for


def _texts(slack: LocalSlack) -> str:
    return "\n".join(json.dumps(m) for m in slack.messages)


def test_rules_fire_end_to_end_on_the_cost_spike_and_stay_quiet_on_steady(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    rules = [
        # Average cost per item 80% over the lineage's weekly median, for 1 run: the cost spike.
        {"name": "cost-vs-week", "metric": "avg_cost", "compare": "baseline", "above": 0.8, "window": 7,
         "severity": "critical", "labels": {"team": "ai-platform"}},
        # The whole run's cost, robust z-score against its history.
        {"name": "run-cost", "metric": "run_total_cost", "compare": "mad", "above": 6, "window": 7},
    ]
    thresholds = {"defaults": {"avg_cost_increase": None, "error_rate": None, "error_rate_increase_pp": None,
                               "share_shift_pp": None, "new_cluster_min_share": None,
                               "disappeared_min_share": None}, "mix_shift": None}
    env: PostHogEnv = posthog_factory("cost_spike", scale=0.1)
    m = monitor_for(make_config(env, slack, None, tmp_path / "c.sqlite", rules=rules, thresholds=thresholds))
    r = m.cycle()
    assert r.ok
    fired = [a for n in r.notices for a in n.alerts if a.kind.startswith("rule:") and a.status == "firing"]
    assert fired, _texts(slack)
    assert {a.rule for a in fired} <= {"cost-vs-week", "run-cost"}
    spiked = {e["topic"] for e in env.dataset.truth["events"] if e["kind"] == "cost_spike"}
    assert spiked
    hits = [a for a in fired if a.rule == "cost-vs-week"]
    assert hits and all(a.severity == "critical" and a.labels["team"] == "ai-platform" for a in hits)
    assert "against its median of the last 7 runs" in _texts(slack) and "Rule cost-vs-week" in _texts(slack)
    # The spiked topic's lineage breaks the rule; its resolved notice names the rule.
    resolved = [a for n in r.notices for a in n.alerts if a.status == "resolved" and a.kind.startswith("rule:")]
    assert all(a.rule in ("cost-vs-week", "run-cost") for a in resolved)
    # Each lineage is told once while the level holds: no repeat on the next cycle or after a restart.
    sent = len(slack.messages)
    m.store.close()
    m = monitor_for(make_config(env, slack, None, tmp_path / "c.sqlite", rules=rules, thresholds=thresholds))
    assert m.cycle().notifications == 0 and len(slack.messages) == sent
    m.store.close()

    slack.messages.clear()
    steady: PostHogEnv = posthog_factory("steady", scale=0.1)
    m = monitor_for(make_config(steady, slack, None, tmp_path / "s.sqlite", rules=rules, thresholds=thresholds))
    assert m.cycle().ok and slack.messages == [], _texts(slack)
    m.store.close()


def test_routed_alerts_reach_their_route_end_to_end(
        posthog_factory: Any, slack: LocalSlack, smtp: Any, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    routes = [{"name": "oncall", "match": {"severities": ["critical"]},
               "slack": {"webhook_url": f"{slack.url}/services/T0LOCAL/B0ONCALL/oncalltoken"},
               "email": {"to": ["oncall@x.test"]}}]
    m = monitor_for(make_config(env, slack, smtp, tmp_path / "r.sqlite", routes=routes))
    r = m.cycle()
    assert r.ok
    oncall = [x for x in slack.messages if "B0ONCALL" in x["path"]]
    default = [x for x in slack.messages if "B0LOCAL" in x["path"]]
    assert oncall and default
    oncall_text = json.dumps(oncall)
    assert "Cost spike" in oncall_text and "New cluster" not in oncall_text
    assert "Cost spike" not in json.dumps(default) and "New cluster" in json.dumps(default)
    rcpts = [tuple(x) for x in smtp.recipients]
    assert ("oncall@x.test",) in rcpts and ("team@x.test",) in rcpts
    assert len(smtp.messages) == len(slack.messages)
    m.store.close()


def test_a_backlog_after_downtime_is_told_in_one_catch_up_message_that_loses_no_alert(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    from datetime import timedelta

    from monitor.store.sqlite import SQLiteStore
    from tests.conftest import END

    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    now = END + timedelta(hours=1)
    recent = {r["run_id"] for r in env.dataset.runs if now - r["emitted_at"] <= timedelta(hours=24)}
    assert recent and len(recent) < len(env.dataset.runs)

    # The control: every run told on its own.
    control = monitor_for(make_config(env, slack, None, tmp_path / "control.sqlite"), clock=lambda: now)
    told = [(a.run_id, a.kind, a.cluster_title) for n in control.cycle().notices for a in n.alerts
            if a.status == "firing"]
    control.store.close()
    slack.messages.clear()

    cfg = make_config(env, slack, None, tmp_path / "c.sqlite", alerting={"catch_up_after_hours": 24})
    m = monitor_for(cfg, clock=lambda: now)

    # A crash right after the summary is committed, before its held entries are marked: the summary is
    # queued again on restart, and the outbox's unique key keeps it to one.
    class CrashAfterSummary(SQLiteStore):
        def mark_sent(self, entry_id: int, now: Any, thread_ts: str | None = None) -> None:
            raise KeyboardInterrupt("crash")

    real = m.store
    m.store = CrashAfterSummary(tmp_path / "c.sqlite")
    assert m.deliverer is not None
    m.deliverer.store = m.store
    with pytest.raises(KeyboardInterrupt):
        m.cycle()
    m.store.close()
    m.store = real
    m.deliverer.store = real
    r = m.cycle()
    assert r.ok
    catch_ups = [x for x in slack.messages if "catch-up of" in json.dumps(x)]
    singles = [x for x in slack.messages if "catch-up of" not in json.dumps(x)]
    assert len(catch_ups) == 1, [x["text"][:80] for x in slack.messages]
    assert all(any(rid in json.dumps(x) for rid in recent) for x in singles)
    # Every alert of the old runs is in the summary, with the run it came from.
    entry = next(e for e in m.store.outbox() if e.key.startswith("catchup:"))
    folded = msgspec.json.decode(entry.payload)["alerts"]
    old = sorted((rid, k, t) for rid, k, t in told if rid not in recent)
    assert sorted((a["run_id"], a["kind"], a.get("cluster_title")) for a in folded) == old
    assert all(a["summary"].startswith("[") for a in folded)
    # Nothing more on the next poll.
    sent = len(slack.messages)
    m.cycle()
    assert len(slack.messages) == sent
    m.store.close()
