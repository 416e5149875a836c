"""`cluster-monitor replay` and `silence` as processes on the local PostHog: what replay prints, what silences store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, PostHogEnv, config_doc, make_config, monitor_for


def _texts(slack: LocalSlack) -> list[str]:
    return [json.dumps(m) for m in slack.messages]


def test_replay_prints_the_drift_alerts_and_sends_nothing(
        drift_posthog: PostHogEnv, slack: LocalSlack, tmp_path: Path) -> None:
    import subprocess
    import sys

    state = tmp_path / "state" / "real.sqlite"
    cfg = make_config(drift_posthog, slack, None, state)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config_doc(cfg) | {
        "posthog": {"host": drift_posthog.url, "project_id": drift_posthog.project_id,
                    "api_key": "${KEY}", "lookback_days": 60}}))
    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--config", str(path), "--at", "2026-11-01T01:00:00+00:00"],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "KEY": API_KEY})
    assert out.returncode == 0, out.stderr
    for label in ("Cost spike", "Error rate", "New cluster", "Cluster split"):
        assert label in out.stdout, label
    assert f"{len(drift_posthog.dataset.runs)} runs replayed" in out.stderr
    assert slack.messages == [] and not state.exists()


def test_silences_from_the_cli_are_stored_listed_applied_and_removed(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    cfg = make_config(env, slack, None, tmp_path / "s.sqlite")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config_doc(cfg) | {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": "${KEY}", "lookback_days": 60}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor.cli", "silence", *args, "--config", str(path)],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "KEY": API_KEY})

    assert cli("add", "--for", "2h").returncode == 2  # nothing to mute: refused
    assert cli("add", "--kind", "new_cluster", "--for", "9999d", "--comment", "launch week").stdout.startswith(
        "silence #1 added")
    listed = cli("list").stdout
    assert "#1" in listed and "active" in listed and "launch week" in listed
    m = monitor_for(cfg)
    assert m.cycle().ok
    text = "\n".join(_texts(slack))
    assert "New cluster" not in text and "Cost spike" in text
    m.store.close()
    assert cli("remove", "1").returncode == 0 and cli("remove", "1").returncode == 1
    assert "no silences" in cli("list").stdout


def test_replay_since_until_takes_only_the_runs_that_landed_in_the_window(
        drift_posthog: PostHogEnv, slack: LocalSlack, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    cfg = make_config(drift_posthog, slack, None, tmp_path / "state.sqlite")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config_doc(cfg) | {
        "posthog": {"host": drift_posthog.url, "project_id": drift_posthog.project_id, "api_key": "${KEY}"}}))
    stamps = sorted(r["emitted_at"] for r in drift_posthog.dataset.runs)
    lo, hi = stamps[10], stamps[30]
    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--config", str(path), "--since", lo.isoformat(),
         "--until", hi.isoformat(), "--json"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "KEY": API_KEY})
    assert out.returncode == 0, out.stderr
    notices = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    in_window = {r["run_id"] for r in drift_posthog.dataset.runs if lo <= r["emitted_at"] <= hi}
    assert notices and {n["run_id"] for n in notices} <= in_window
    assert slack.messages == [] and not (tmp_path / "state.sqlite").exists()
