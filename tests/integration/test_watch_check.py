"""Watching a level no clustering job produces says so (issue 14): a warning in the log at the daemon's
first cycle (once), and in `check-config` when PostHog answers; offline, check-config says it could not
check. The projects here have trace and generation jobs, no evaluation job (the drift scenario has one by
default)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor.cli import app
from tests.conftest import API_KEY, END, PostHogEnv, make_config, monitor_for, start_posthog


@pytest.fixture(scope="module")
def no_evaluation_job() -> Iterator[PostHogEnv]:
    """The drift scenario without its evaluation runs: PostHog knows no evaluation-level clustering job."""
    env = start_posthog("drift", scale=0.05, days=3, evaluations=False)
    yield env
    env.server.stop()


def _write(path: Path, host: str, project_id: int, levels: list[str]) -> Path:
    path.write_text(json.dumps({
        "posthog": {"host": host, "project_id": project_id, "api_key": API_KEY, "max_retries": 0},
        "watch": {"levels": levels}, "state": {"path": str(path.with_suffix(".sqlite"))}}))
    return path


def test_check_config_names_a_watched_level_without_a_job(no_evaluation_job: PostHogEnv, tmp_path: Path) -> None:
    runner = CliRunner()
    pid = no_evaluation_job.project_id
    out = runner.invoke(app, ["check-config", "-c", str(_write(tmp_path / "a.json", no_evaluation_job.url, pid,
                                                              ["trace", "generation", "evaluation"]))])
    assert out.exit_code == 0, out.output
    assert f"warning: project {pid} watches level 'evaluation' but has no enabled evaluation-level" in out.stderr
    assert "'trace'" not in out.stderr and "'generation'" not in out.stderr
    fine = runner.invoke(app, ["check-config", "-c", str(_write(tmp_path / "b.json", no_evaluation_job.url, pid,
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
        no_evaluation_job: PostHogEnv, tmp_path: Path) -> None:
    cfg = make_config(no_evaluation_job, None, None, tmp_path / "s.sqlite",
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
    assert [(e["level"], e["project_id"]) for e in warned] == [("evaluation", no_evaluation_job.project_id)]
