"""The daemon as a process: SIGTERM mid-cycle exits 0, and a restart skips nothing and repeats nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from monitor.local.posthog.faults import Fault
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, make_config, monitor_for, write_daemon_config


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
    config = write_daemon_config(tmp_path / "config.yaml", env, slack, state)
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
