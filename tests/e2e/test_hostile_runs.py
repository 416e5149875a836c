"""Issue 16's done-when, through the daemon process: crafted run payloads next to normal ones leave the daemon
responsive, every well-formed run processed and each malformed one quarantined and alerted once; SIGTERM ends
the process within its deadline even with a stuck cycle (non-zero then), and the watchdog abandons a stuck cycle
by itself, blaming the run in hand."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from monitor.daemon import EXIT_ABANDONED
from monitor.local.posthog.faults import Fault
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, END, PostHogEnv, write_daemon_config
from tests.e2e.test_ha import _until as ha_until
from tests.support.hostile_runs import land

SERVER = {"host": "127.0.0.1", "port": 0}


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "TEST_POSTHOG_KEY": API_KEY})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TEST_POSTHOG_KEY": API_KEY}, check=False)


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if f'"event": "{name}"' in line:
            out.append(json.loads(line))
    return out


def _until(cond: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    """Poll a condition: the daemon is another process, there is nothing to wait on but its effects."""
    return ha_until(cond, timeout, what, logs=lambda: log.read_text()[-4000:])


def _healthz(log: Path) -> int:
    port = _until(lambda: _events(log, "health_server_started"), 30, "the health server", log)[-1]["port"]
    return int(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code)


def _metric(log: Path, name: str) -> float:
    port = _until(lambda: _events(log, "health_server_started"), 30, "the health server", log)[-1]["port"]
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _quarantine_messages(slack: LocalSlack) -> list[str]:
    return [t for t in (json.dumps(m["blocks"]) for m in slack.messages) if "Run quarantined" in t]


def _processed(state: Path) -> set[str]:
    if not state.exists():
        return set()
    with sqlite3.connect(state) as db:
        try:
            return {r[0] for r in db.execute("SELECT run_id FROM runs")}
        except sqlite3.OperationalError:  # not created yet
            return set()


def test_crafted_runs_through_the_daemon_process(posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    landed = land(env.server, env.project_id, END)
    state = tmp_path / "state.sqlite"
    config = write_daemon_config(
        tmp_path / "config.yaml", env, slack, state, server=SERVER,
        schedule={"interval_seconds": 1, "run_attempts": 2, "run_retry_seconds": 0, "shutdown_deadline_seconds": 10})
    log = tmp_path / "daemon.log"
    malformed = {x.crafted for x in landed if x.case.malformed}
    well_formed = {r for x in landed for r in x.good} | {x.crafted for x in landed if not x.case.malformed}
    proc = _start(config, log)
    try:
        assert _healthz(log) == 200
        _until(lambda: len(_quarantine_messages(slack)) >= len(malformed) and well_formed <= _processed(state),
               180, "every well-formed run processed and every malformed one alerted", log)
        assert _healthz(log) == 200, "the daemon stays responsive"
        # A few more cycles: nothing is retried or alerted again.
        cycles = len(_events(log, "cycle_done"))
        _until(lambda: len(_events(log, "cycle_done")) >= cycles + 3, 60, "three more cycles", log)
        assert len(_quarantine_messages(slack)) == len(malformed)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()[-3000:]
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not malformed & _processed(state)
    for x in landed:
        if x.case.malformed:
            text = next(t for t in _quarantine_messages(slack) if json.dumps(x.crafted)[1:-1] in t)
            assert f"Hostile {x.case.name}" in text and x.case.field in text
    listed = _cli("runs", "--config", str(config), "--quarantined", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)} == malformed
    status = _cli("status", "--config", str(config), "--json")
    assert {q["run_id"] for q in json.loads(status.stdout)["projects"][0]["quarantined"]} == malformed
    text = _cli("status", "--config", str(config)).stdout
    assert f"Quarantined runs ({len(malformed)})" in text and all(r in text for r in malformed)
    # After a fix, `runs retry RUN_ID` hands one back to the daemon; a wrong action is one line, exit 2.
    target = sorted(malformed)[0]
    retried = _cli("runs", "retry", target, "--config", str(config))
    assert retried.returncode == 0 and "tried again" in retried.stdout, retried.stderr
    left = json.loads(_cli("runs", "--config", str(config), "--json").stdout)
    assert {r["run_id"] for r in left} == malformed - {target}
    assert _cli("runs", "retry", target, "--config", str(config)).returncode == 1, "nothing to retry any more"
    bad = _cli("runs", "bogus", "--config", str(config))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "retry RUN_ID" in bad.stderr


def _stuck(env: PostHogEnv, slack: LocalSlack, tmp_path: Path, cycle_timeout: float | None) -> Path:
    """A daemon's config whose every run fetch hangs far longer than the 2 s shutdown deadline (and within the
    client's own timeout)."""
    env.server.faults.add(Fault(kind="latency", seconds=40, name="get_run", count=None))
    config = write_daemon_config(
        tmp_path / "config.yaml", env, slack, tmp_path / "state.sqlite", server=SERVER, max_retries=0,
        schedule={"interval_seconds": 1, "shutdown_deadline_seconds": 2, "cycle_timeout_seconds": cycle_timeout})
    doc = json.loads(config.read_text())
    doc["posthog"]["timeout_seconds"] = 120
    config.write_text(json.dumps(doc))
    return config


def test_sigterm_with_a_stuck_cycle_ends_the_process_within_its_deadline_non_zero(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    config = _stuck(env, slack, tmp_path, cycle_timeout=None)
    log = tmp_path / "daemon.log"
    proc = _start(config, log)
    try:
        _until(lambda: _metric(log, "cluster_monitor_cycle_runs_left") > 0, 60, "a run in hand", log)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == EXIT_ABANDONED, log.read_text()[-3000:]
        assert time.monotonic() - started < 2 + 5, "stopped within its deadline (plus start-up slack)"
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = _events(log, "daemon_stopped")
    assert stopped and stopped[-1]["clean"] is False and stopped[-1]["exit_code"] == EXIT_ABANDONED


def test_the_watchdog_abandons_a_stuck_cycle_and_blames_the_run_in_hand(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    config = _stuck(env, slack, tmp_path, cycle_timeout=2)
    log = tmp_path / "daemon.log"
    proc = _start(config, log)
    try:
        # Nobody signals it: the watchdog gives up on the cycle and the process ends by itself.
        assert proc.wait(timeout=60) == EXIT_ABANDONED, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    abandoned = _events(log, "cycle_abandoned")
    assert len(abandoned) == 1 and len(abandoned[0]["run_ids"]) == 1
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        rows = db.execute("SELECT run_id, attempts, field FROM run_failures").fetchall()
    assert rows == [(abandoned[0]["run_ids"][0], 1, "(processing)")]
