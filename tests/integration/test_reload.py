"""Editing the YAML while the daemon runs: a valid edit takes effect at the next cycle, an invalid one is
reported and the last good config stays in force."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthz(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
    except httpx.TransportError:
        return 0


def test_a_reload_applies_schedule_and_server_and_says_what_needs_a_restart(tmp_path: Path) -> None:
    """Nothing here polls PostHog: the daemon is started without a first cycle and the schedule is hours
    long, so only the reload itself runs (the lease thread's between-cycles reload is what this calls)."""
    path = tmp_path / "config.yaml"
    first_port, second_port = _free_port(), _free_port()
    doc: dict[str, Any] = {
        "posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": "phx_unused"},
        "schedule": {"interval_seconds": 7200, "misfire_grace_seconds": 60},
        "server": {"port": first_port},
        "state": {"path": str(tmp_path / "s.sqlite")},
    }
    _write(path, doc, 1_000)
    d = Daemon(path)
    d.start(run_first=False)
    try:
        assert _healthz(first_port) in (200, 503)
        job = d._scheduler.get_job("cycle")
        assert job is not None and job.trigger.interval.total_seconds() == 7200

        moved = {**doc, "schedule": {"interval_seconds": 60, "misfire_grace_seconds": 5},
                 "server": {"port": second_port, "ready_after_failure_seconds": 42},
                 "state": {"path": str(tmp_path / "elsewhere.sqlite")}}
        _write(path, moved, 2_000)
        with capture_logs() as logs:
            d._reload_between_cycles()
        events = {e["event"]: e for e in logs}
        # The schedule: the job runs on the new interval from now, with the new grace.
        job = d._scheduler.get_job("cycle")
        assert job is not None and isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval.total_seconds() == 60 and job.misfire_grace_time == 5
        assert job.next_run_time - datetime.now(UTC) <= timedelta(seconds=60)
        # The server: the new port answers, the old one is closed.
        assert _healthz(second_port) in (200, 503) and _healthz(first_port) == 0
        assert d.health.ready_after_failure == 42
        # The state: named as needing a restart, the old file kept.
        assert events["config_reload_needs_restart"]["section"] == "state"
        assert "elsewhere.sqlite" in events["config_reload_needs_restart"]["reason"]
        assert d.cfg.state.path == tmp_path / "s.sqlite"
        assert events["config_reloaded"]["sections"] == ["schedule", "server"]

        # A crontab line replaces the interval.
        _write(path, {**moved, "schedule": {"cron": "*/5 * * * *"}}, 3_000)
        d._reload_between_cycles()
        job = d._scheduler.get_job("cycle")
        assert job is not None and isinstance(job.trigger, CronTrigger)
        assert job.next_run_time - datetime.now(UTC) <= timedelta(minutes=5)

        # A port already taken: the error is logged and the port in use stays open.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            _write(path, {**moved, "schedule": {"cron": "*/5 * * * *"},
                          "server": {"port": busy, "ready_after_failure_seconds": 42}}, 4_000)
            with capture_logs() as logs:
                d._reload_between_cycles()
        assert [e["port"] for e in logs if e["event"] == "config_reload_failed"] == [busy]
        assert _healthz(second_port) in (200, 503) and d.cfg.server.port == second_port
    finally:
        d.stop_event.set()
        d._scheduler.shutdown(wait=False)
        if d._health_server is not None:
            d._health_server.shutdown()
            d._health_server.server_close()
        d.close()
