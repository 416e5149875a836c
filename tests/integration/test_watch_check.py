"""Watching a level no clustering job produces says so (issue 14): a warning in the log at the daemon's
first cycle (once), and in `check-config` when PostHog answers; offline, check-config says it could not
check. The drift fixture's project has trace and generation jobs, no evaluation job."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor.cli import app
from tests.conftest import API_KEY, END, PostHogEnv, make_config, monitor_for


def _write(path: Path, host: str, project_id: int, levels: list[str]) -> Path:
    path.write_text(json.dumps({
        "posthog": {"host": host, "project_id": project_id, "api_key": API_KEY, "max_retries": 0},
        "watch": {"levels": levels}, "state": {"path": str(path.with_suffix(".sqlite"))}}))
    return path


def test_check_config_names_a_watched_level_without_a_job(drift_posthog: PostHogEnv, tmp_path: Path) -> None:
    runner = CliRunner()
    pid = drift_posthog.project_id
    out = runner.invoke(app, ["check-config", "-c", str(_write(tmp_path / "a.json", drift_posthog.url, pid,
                                                              ["trace", "generation", "evaluation"]))])
    assert out.exit_code == 0, out.output
    assert f"warning: project {pid} watches level 'evaluation' but has no enabled evaluation-level" in out.stderr
    assert "'trace'" not in out.stderr and "'generation'" not in out.stderr
    fine = runner.invoke(app, ["check-config", "-c", str(_write(tmp_path / "b.json", drift_posthog.url, pid,
                                                               ["trace", "generation"]))])
    assert fine.exit_code == 0 and "every watched level (trace, generation) has an enabled" in fine.stdout
    assert "warning: project" not in fine.output


def test_check_config_offline_says_it_could_not_check(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = CliRunner()
    cfg = str(_write(tmp_path / "c.json", f"http://127.0.0.1:{port}", 5, ["evaluation"]))
    out = runner.invoke(app, ["check-config", "-c", cfg])
    assert out.exit_code == 0, out.output
    assert "ok (project 5" in out.stdout and "jobs: could not check project 5's clustering jobs" in out.stdout
    assert "warning: project" not in out.output
    skipped = runner.invoke(app, ["check-config", "--offline", "-c", cfg])
    assert skipped.exit_code == 0 and "jobs: not checked (--offline)" in skipped.stdout


def test_the_first_cycle_warns_of_a_watched_level_without_a_job_once(
        drift_posthog: PostHogEnv, tmp_path: Path) -> None:
    cfg = make_config(drift_posthog, None, None, tmp_path / "s.sqlite",
                      watch={"levels": ["trace", "generation", "evaluation"]})
    # Long after the data: discovery finds nothing, the cycle is quick.
    m = monitor_for(cfg, clock=lambda: END + timedelta(days=400))
    try:
        with capture_logs() as logs:
            assert m.cycle().ok
            assert m.cycle().ok
    finally:
        m.client.close()
        m.store.close()
    warned = [e for e in logs if e["event"] == "watched_level_without_job"]
    assert [(e["level"], e["project_id"]) for e in warned] == [("evaluation", drift_posthog.project_id)]
