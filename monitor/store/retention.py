"""Retention: what the state may forget, and the background pass that forgets it.

Without it the state grows by every run's payload and cluster snapshots forever (about 100 MB a year for
five daily jobs at the demo's size; bench/state_size.py). `state.retention_days` bounds it by age, and
the history the monitor itself reads is never pruned whatever its age: the newest runs of each job as
deep as the deepest rule looks (`window` plus its N-of-M), at least the runs the learned stale bound
reads, and at least the previous run that the next one diffs against.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from monitor.config import Config
from monitor.store.base import Leadership, PruneResult, Store

log = structlog.get_logger()

# The learned stale bound reads a job's last 8 runs (pipeline.Monitor.check_sources).
STALE_LEARNING_RUNS = 8
# How often the daemon prunes: a pass that finds nothing costs two small queries.
PRUNE_EVERY = timedelta(hours=6)


def runs_to_keep(cfg: Config) -> int:
    """The newest runs of each job that pruning never touches: what the rules and the stale bound read."""
    return max([STALE_LEARNING_RUNS, *(r.window + r.for_.of for r in cfg.rules)])


def prune_state(store: Store, cfg: Config, now: datetime, leader: Leadership | None = None) -> PruneResult | None:
    """One retention pass over a project's state, and over the leader's send claims of the notifications
    it removed (PostgreSQL); None when retention is off or the pass failed (it is retried at the next one:
    a failed pass loses nothing)."""
    days = cfg.state.retention_days
    if days is None:
        return None
    started = time.monotonic()
    try:
        result = store.prune(now - timedelta(days=days), runs_to_keep(cfg))
        if leader is not None:
            result = replace(result, send_claims=leader.prune_sends())
    except Exception as exc:  # a closed store during a reload, a dropped connection: try again later
        log.warning("state_prune_failed", project_id=cfg.posthog.project_id, error=f"{type(exc).__name__}: {exc}")
        return None
    log.info("state_pruned", project_id=cfg.posthog.project_id, retention_days=days, runs=result.runs,
             clusters=result.clusters, alert_states=result.alert_states, notifications=result.notifications,
             send_claims=result.send_claims,
             seconds=round(time.monotonic() - started, 3))
    return result
