"""Several PostHog projects in one config: each polled in every cycle with its own key, watch and state,
rules and channels shared, one request budget per API key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.daemon import Daemon
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, PostHogEnv


def test_two_projects_in_one_config_are_each_processed_alerted_and_remembered_apart(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path, monkeypatch: Any) -> None:
    drift: PostHogEnv = posthog_factory("drift", scale=0.05, days=4)
    steady: PostHogEnv = posthog_factory("steady", scale=0.05, days=4)
    monkeypatch.setenv("TEST_POSTHOG_KEY", API_KEY)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({
        "posthog": {"host": drift.url, "project_id": drift.project_id, "api_key": "${TEST_POSTHOG_KEY}",
                    "lookback_days": 60, "max_retries": 0},
        "projects": [{"posthog": {"host": steady.url, "project_id": steady.project_id,
                                  "api_key": "${TEST_POSTHOG_KEY}", "lookback_days": 60, "max_retries": 0},
                      "watch": {"levels": ["trace"]}}],
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"path": str(tmp_path / "state" / "m.sqlite")},
    }))
    d = Daemon(path)
    try:
        assert len(d.projects) == 2
        # One key, one budget: two projects cannot together exceed PostHog's per-key rate limit.
        assert d.projects[0].monitor.client.budget is d.projects[1].monitor.client.budget
        result = d.run_cycle()
        assert result is not None and result.ok
        # The main project watches the default levels (trace and generation), not the drift's evaluation runs.
        drift_runs = {r["run_id"] for r in drift.dataset.runs if r["level"] in ("trace", "generation")}
        steady_traces = {r["run_id"] for r in steady.dataset.runs if r["level"] == "trace"}
        assert set(result.processed) == drift_runs | steady_traces
        # Alerts came from the drifting project only, each with its own project's links.
        assert slack.messages
        text = json.dumps(slack.messages)
        assert f"/project/{drift.project_id}/" in text and f"/project/{steady.project_id}/" not in text
        # Each project remembers its own runs, in its own file.
        assert (tmp_path / "state" / "m.sqlite").exists()
        assert (tmp_path / "state" / f"m-{steady.project_id}.sqlite").exists()
        assert d.projects[1].monitor.store.processed_ids(sorted(steady_traces)) == steady_traces
        assert d.projects[1].monitor.store.processed_ids(sorted(drift_runs)) == set()
        again = d.run_cycle()
        assert again is not None and again.ok and again.processed == [] and again.notifications == 0
    finally:
        d.close()
