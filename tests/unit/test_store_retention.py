"""Retention as the daemon runs it: what it keeps per the config, and the pass itself (no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import ConfigError, parse_config
from monitor.daemon import Daemon
from monitor.store.base import ClusterSnapshot, ProcessedRun
from monitor.store.retention import STALE_LEARNING_RUNS, runs_to_keep

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _doc(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": "phx_test_key_0123456789"},
            "state": {"path": str(tmp_path / "state.sqlite"), **extra.pop("state", {})}, **extra}


def test_the_default_keeps_90_days_and_what_the_deepest_rule_reads(tmp_path: Path) -> None:
    cfg = parse_config(json.dumps(_doc(tmp_path)), "c.yaml", env={})
    assert cfg.state.retention_days == 90
    assert runs_to_keep(cfg) == STALE_LEARNING_RUNS == 8
    deep = parse_config(json.dumps(_doc(tmp_path, rules=[
        {"name": "slow", "metric": "avg_cost", "compare": "baseline", "window": 30, "above": 0.5, "for": "2 of 3"}])),
        "c.yaml", env={})
    assert runs_to_keep(deep) == 33
    off = parse_config(json.dumps(_doc(tmp_path, state={"retention_days": None})), "c.yaml", env={})
    assert off.state.retention_days is None and "nothing pruned" in off.state.replicas()
    with pytest.raises(ConfigError, match="retention_days"):
        parse_config(json.dumps(_doc(tmp_path, state={"retention_days": 0})), "c.yaml", env={})


def test_the_daemon_prunes_each_project_it_leads(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(_doc(tmp_path, state={"retention_days": 30})))
    d = Daemon(config, clock=lambda: NOW)
    try:
        for day in range(60):
            we = NOW - timedelta(days=day)
            d.monitor.store.commit_run(ProcessedRun(
                run_id=f"r{day}", job_key="j|trace", level="trace", window_end=we, emitted_at=we, event_uuid="u",
                payload=b"{}", snapshots=[ClusterSnapshot(run_id=f"r{day}", job_key="j|trace", level="trace",
                                                          window_end=we, cluster_id=0, lineage_id="L", title="t",
                                                          size=1, share=1.0)],
                alert_states=[], outbox=[], processed_at=we, run_metrics={}))
        d.prune_state()
        kept = d.monitor.store.processed_ids([f"r{day}" for day in range(60)])
        assert kept == {f"r{day}" for day in range(31)}  # window_end not before the clock minus 30 days
        d.prune_state()
        assert d.monitor.store.processed_ids([f"r{day}" for day in range(60)]) == kept
    finally:
        d.close()


def test_a_reload_that_changes_only_retention_keeps_the_state_and_its_lock(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(_doc(tmp_path)))
    d = Daemon(config, clock=lambda: NOW)
    try:
        leader = d.leader
        config.write_text(json.dumps(_doc(tmp_path, state={"retention_days": 30})))
        d.request_reload()
        d.maybe_reload()
        assert d.cfg.state.retention_days == 30
        assert d.leader is leader and leader.held, "the file lock was kept, not dropped and taken again"
    finally:
        d.close()
