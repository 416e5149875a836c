"""Editing the YAML while the daemon runs: a valid edit takes effect at the next cycle, an invalid one is
reported and the last good config stays in force."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from monitor.daemon import Daemon
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, PostHogEnv


def _write(path: Path, doc: dict[str, Any], mtime: float) -> None:
    path.write_text(json.dumps(doc))  # JSON is YAML
    os.utime(path, (mtime, mtime))  # an edit the daemon can see, whatever the file system's clock grain


def test_a_valid_edit_applies_at_the_next_cycle_and_an_invalid_one_keeps_the_last_good_config(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path, monkeypatch: Any) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.05, days=3)
    monkeypatch.setenv("TEST_POSTHOG_KEY", API_KEY)
    path = tmp_path / "config.yaml"
    doc: dict[str, Any] = {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": "${TEST_POSTHOG_KEY}",
                    "lookback_days": 60, "max_retries": 0},
        "watch": {"levels": ["trace"]},
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"path": str(tmp_path / "s.sqlite")},
    }
    _write(path, doc, 1_000)
    trace_runs = {r["run_id"] for r in env.dataset.runs if r["level"] == "trace"}
    generation_runs = {r["run_id"] for r in env.dataset.runs if r["level"] == "generation"}
    assert trace_runs and generation_runs

    d = Daemon(path)
    first = d.run_cycle()
    assert first is not None and set(first.processed) == trace_runs

    # A typo: reported with its line, the daemon keeps polling with the config it had.
    _write(path, {**doc, "watch": {"levels": ["trace", "generation"], "jobz": []}}, 2_000)
    with capture_logs() as logs:
        second = d.run_cycle()
    assert second is not None and second.ok and second.processed == []
    rejected = [e for e in logs if e["event"] == "config_reload_rejected"]
    assert len(rejected) == 1 and any("watch.jobz: unknown key" in p for p in rejected[0]["problems"])
    assert d.cfg.watch.levels == ["trace"]

    # The fix lands: the next cycle watches generations too and processes their runs.
    _write(path, {**doc, "watch": {"levels": ["trace", "generation"]}}, 3_000)
    with capture_logs() as logs:
        third = d.run_cycle()
    assert any(e["event"] == "config_reloaded" for e in logs)
    assert third is not None and set(third.processed) == generation_runs
    d.monitor.store.close()
