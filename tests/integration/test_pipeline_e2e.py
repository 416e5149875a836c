"""The whole pipeline against real local servers: PostHog-compatible HTTP on ClickHouse, slack-sdk to the
local Slack endpoint, SMTP to a local aiosmtpd server. Nothing is patched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from tests.conftest import PostHogEnv, make_config, monitor_for


def _alert_kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("text", "")) for m in messages]


def test_drift_scenario_alerts_arrive_on_slack_and_email(
        drift_posthog: PostHogEnv, slack: LocalSlack, smtp: LocalSMTP, tmp_path: Path) -> None:
    cfg = make_config(drift_posthog, slack, smtp, tmp_path / "state.sqlite")
    m = monitor_for(cfg)
    # The server is shared with tests that send bad queries on purpose: look only at this test's requests.
    seen = len(drift_posthog.requests(method="POST"))
    result = m.cycle()
    assert result.ok, result.failed
    runs = drift_posthog.dataset.runs
    assert len(result.processed) == len(runs)
    # Every query the monitor sent was accepted by PostHog's parser and ClickHouse.
    mine = drift_posthog.requests(method="POST")[seen:]
    assert len(mine) >= 2 * len(runs) and {r["status"] for r in mine} == {200}
    text = "\n".join(json.dumps(msg) for msg in slack.messages)
    assert "cost" in text.lower() and "error rate" in text.lower() and "new cluster" in text.lower()
    assert len(smtp.messages) == len(slack.messages) == result.notifications
    # A second cycle finds nothing new and sends nothing.
    again = m.cycle()
    assert again.ok and again.processed == [] and again.notifications == 0
    assert len(slack.messages) == result.notifications
    m.store.close()


def test_restart_in_the_middle_of_a_backlog_skips_nothing_and_repeats_nothing(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    # Control: one uninterrupted pass over the same scenario in its own project.
    control_env = posthog_factory("drift", scale=0.1, days=8)
    control_slack = LocalSlack.start()
    try:
        control = monitor_for(make_config(control_env, control_slack, None, tmp_path / "control.sqlite"))
        assert control.cycle().ok
        expected = sorted(json.dumps(msg["blocks"], sort_keys=True) for msg in control_slack.messages)
        control.store.close()
    finally:
        control_slack.stop()

    env = posthog_factory("drift", scale=0.1, days=8)
    state = tmp_path / "state.sqlite"
    # PostHog starts failing every run fetch after the 9th: the first monitor dies mid-backlog.
    env.server.faults.add(_fault(name="get_run", skip=9))
    first = monitor_for(make_config(env, slack, None, state, max_retries=0))
    r1 = first.cycle()
    assert 0 < len(r1.processed) < len(env.dataset.runs)
    assert r1.failed and not r1.ok
    first.client.close()
    first.store.close()

    env.server.faults.clear()
    second = monitor_for(make_config(env, slack, None, state))
    r2 = second.cycle()
    assert r2.ok
    assert sorted(r1.processed + r2.processed) == sorted(r["run_id"] for r in env.dataset.runs)
    got = sorted(json.dumps(msg["blocks"], sort_keys=True) for msg in slack.messages)
    assert len(got) == len(set(got)), "a notification was sent twice"
    assert len(got) == len(expected)
    second.store.close()


def _fault(**kw: Any) -> Any:
    from monitor.local.posthog.faults import Fault

    return Fault(kind="status", status=500, count=None, **kw)
