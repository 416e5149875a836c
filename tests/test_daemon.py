"""The daemon as operators run it: a process that gets SIGTERM mid-cycle and restarts, and its HTTP
health and metrics endpoints."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitor.daemon import Daemon
from monitor.local.posthog.faults import Fault
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, PostHogEnv, make_config, monitor_for


def _write_config(path: Path, env: PostHogEnv, slack: LocalSlack, state: Path, *, max_retries: int = 1,
                  **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": "${TEST_POSTHOG_KEY}",
                    "lookback_days": 60, "max_retries": max_retries},
        "schedule": {"interval_seconds": 1},
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"path": str(state)},
        "delivery": {"max_backoff_seconds": 1},
        **extra,
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "TEST_POSTHOG_KEY": API_KEY})


def _runs_in(state: Path) -> set[str]:
    with sqlite3.connect(state) as db:
        return {r[0] for r in db.execute("SELECT run_id FROM runs")}


def test_sigterm_mid_cycle_exits_0_and_a_restart_skips_nothing_and_repeats_nothing(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    # Control: the same scenario in its own project, one uninterrupted in-process pass.
    control_env = posthog_factory("drift", scale=0.1, days=8)
    control_slack = LocalSlack.start()
    try:
        cfg = make_config(control_env, control_slack, None, tmp_path / "control.sqlite",
                          alerting={"stale_after_hours": 0})
        control = monitor_for(cfg)
        assert control.cycle().ok
        expected = sorted(json.dumps(m["blocks"], sort_keys=True) for m in control_slack.messages)
        headers = sorted(m["blocks"][0]["text"]["text"] for m in control_slack.messages)
        control.store.close()
    finally:
        control_slack.stop()
    assert expected

    env = posthog_factory("drift", scale=0.1, days=8)
    all_runs = {r["run_id"] for r in env.dataset.runs}
    state = tmp_path / "state.sqlite"
    config = _write_config(tmp_path / "config.yaml", env, slack, state)
    log = tmp_path / "daemon.log"
    # Each run fetch takes a while, so the backlog is still being worked through when SIGTERM comes.
    env.server.faults.add(Fault(kind="latency", seconds=0.25, name="get_run", count=None))
    proc = _start(config, log)
    try:
        assert env.server.wait_for_requests(6, timeout=60, name="cluster-monitor:get_run"), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _runs_in(state)
    assert 0 < len(done) < len(all_runs), "SIGTERM should have come mid-backlog"
    assert '"event": "cycle_interrupted"' in log.read_text()

    env.server.faults.clear()
    proc = _start(config, log)
    try:
        assert slack.wait_for(len(expected), timeout=120), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _runs_in(state) == all_runs
    got = sorted(json.dumps(m["blocks"], sort_keys=True) for m in slack.messages)
    assert len(got) == len(set(got)), "a notification was sent twice"
    # Projects differ (ids in links and traces), so compare what each message announces.
    assert len(got) == len(expected)
    assert sorted(m["blocks"][0]["text"]["text"] for m in slack.messages) == headers


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
    config = _write_config(tmp_path / "config.yaml", env, slack, tmp_path / "s.sqlite", max_retries=0,
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

    from bench.latency import NextRun

    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    # Polling once an hour: only the push can explain a message within seconds.
    config = _write_config(tmp_path / "config.yaml", env, slack, tmp_path / "s.sqlite",
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
    config = _write_config(tmp_path / "config.yaml", env, slack, tmp_path / "s.sqlite",
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
