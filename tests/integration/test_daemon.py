"""The daemon as operators run it: a process that gets SIGTERM mid-cycle and restarts, and its HTTP
health and metrics endpoints."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitor.daemon import Daemon
from monitor.local.posthog.faults import Fault
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, PostHogEnv, write_daemon_config


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_metrics_parse_and_move_and_readyz_follows_posthog_reachability(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.05, days=3)
    wall = [1_000_000.0]
    config = write_daemon_config(tmp_path / "config.yaml", env, slack, tmp_path / "s.sqlite", max_retries=0,
                           server={"host": "127.0.0.1", "port": 0, "ready_after_failure_seconds": 120})
    os.environ["TEST_POSTHOG_KEY"] = API_KEY
    d = Daemon(config, wall_clock=lambda: wall[0])
    d.start_health_server()
    assert d._health_server is not None
    base = f"http://127.0.0.1:{d._health_server.server_address[1]}"
    try:
        assert httpx.get(base + "/healthz").status_code == 200
        assert httpx.get(base + "/readyz").status_code == 503  # no cycle has succeeded yet
        before = httpx.get(base + "/metrics").text
        result = d.run_cycle()
        assert result is not None and result.ok
        after = httpx.get(base + "/metrics").text
        assert _metric(after, "cluster_monitor_runs_processed_total") - _metric(
            before, "cluster_monitor_runs_processed_total") == len(env.dataset.runs)
        assert _metric(after, "cluster_monitor_cycles_total", outcome="ok") > _metric(
            before, "cluster_monitor_cycles_total", outcome="ok")
        assert httpx.get(base + "/readyz").status_code == 200

        # PostHog goes away: still ready within the bound, unready after it, ready again when it is back.
        env.server.faults.add(Fault(kind="drop", count=None))
        wall[0] += 60
        assert not d.run_cycle().ok  # type: ignore[union-attr]
        assert httpx.get(base + "/readyz").status_code == 200
        wall[0] += 90
        assert not d.run_cycle().ok  # type: ignore[union-attr]
        assert httpx.get(base + "/readyz").status_code == 503
        failed = httpx.get(base + "/metrics").text
        assert _metric(failed, "cluster_monitor_cycles_total", outcome="failed") >= 2
        env.server.faults.clear()
        wall[0] += 10
        assert d.run_cycle().ok  # type: ignore[union-attr]
        assert httpx.get(base + "/readyz").status_code == 200
    finally:
        d._health_server.shutdown()
        d.monitor.client.close()
        d.monitor.store.close()


def test_a_push_from_a_posthog_webhook_processes_the_new_run_at_once(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    import threading

    from tests.support.landing import NextRun

    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    # Polling once an hour: only the push can explain a message within seconds.
    config = write_daemon_config(tmp_path / "config.yaml", env, slack, tmp_path / "s.sqlite",
                           schedule={"interval_seconds": 3600},
                           server={"host": "127.0.0.1", "port": 0, "push_token": "s3cret-push"})
    os.environ["TEST_POSTHOG_KEY"] = API_KEY
    cycles: list[Any] = []
    first = threading.Event()

    def on_cycle(result: Any) -> None:
        cycles.append(result)
        first.set()

    d = Daemon(config, on_cycle=on_cycle)
    thread = threading.Thread(target=d.serve, daemon=True)
    thread.start()
    try:
        assert first.wait(60) and cycles[0].ok
        assert d._health_server is not None
        hook = f"http://127.0.0.1:{d._health_server.server_address[1]}/hooks/posthog"
        env.server.engine.insert([NextRun(env.dataset, env.project_id).next_row()])
        body = {"event": {"event": "$ai_trace_clusters", "properties": {"$ai_clustering_run_id": "x"}}}
        assert httpx.post(hook, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(hook, json={"event": {"event": "$pageview"}},
                          headers={"Authorization": "Bearer s3cret-push"}).status_code == 202
        assert len(cycles) == 1  # an unrelated event starts nothing
        assert httpx.post(hook, json=body, headers={"Authorization": "Bearer s3cret-push"}).status_code == 202
        assert slack.wait_for(1, timeout=20)
        assert "New cluster" in json.dumps(slack.messages[0])
    finally:
        d.stop_event.set()
        thread.join(30)


def test_adaptive_polling_idles_away_from_the_landing_time_learned_from_processed_runs(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    import threading
    from datetime import timedelta

    from tests.conftest import END

    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=4)  # runs land at ~03:18 UTC each day
    config = write_daemon_config(tmp_path / "config.yaml", env, slack, tmp_path / "s.sqlite",
                           schedule={"interval_seconds": 1, "idle_interval_seconds": 3600,
                                     "landing_window_minutes": 30})
    os.environ["TEST_POSTHOG_KEY"] = API_KEY
    done = threading.Event()
    now = [END + timedelta(hours=12)]  # noon: far from every job's landing window
    d = Daemon(config, on_cycle=lambda _r: done.set(), clock=lambda: now[0])
    thread = threading.Thread(target=d.serve, daemon=True)
    thread.start()
    try:
        assert done.wait(60)
        landings = d.monitor.landings()
        assert len(landings) == 4 and all(len(t) == 4 for t in landings.values())
        job = d._scheduler.get_job("cycle")
        assert job is not None
        # Polling every second by configuration; the next poll is an idle interval away instead.
        ahead = (job.next_run_time - datetime.now(UTC)).total_seconds()
        assert 3500 < ahead <= 3600
        # At the landing time, the configured interval again.
        now[0] = END + timedelta(hours=3, minutes=18)
        done.clear()
        d.request_cycle()
        assert done.wait(60)
        ahead = (job.next_run_time - datetime.now(UTC)).total_seconds()
        assert ahead <= 1.0
    finally:
        d.stop_event.set()
        thread.join(30)
