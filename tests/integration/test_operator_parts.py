"""Operator parts: the health check reads the daemon's port from the config, and a log line keeps every
field a caller gave it (the clustering level beside the log level)."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from monitor import logs
from monitor.cli import app
from monitor.daemon import Daemon
from monitor.local.slack import LocalSlack
from tests.conftest import PostHogEnv, make_config, monitor_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, server: dict[str, object] | None) -> Path:
    path = tmp_path / "config.yaml"
    doc: dict[str, object] = {"posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": "${KEY}"},
                              "state": {"path": str(tmp_path / "state.sqlite")}}
    if server is not None:
        doc["server"] = server
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def test_healthcheck_probes_the_port_the_config_gives_the_daemon(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY", "phx_test")
    runner = CliRunner()
    env = {"KEY": "phx_test"}
    config = _config(tmp_path, {"host": "0.0.0.0", "port": _free_port()})
    down = runner.invoke(app, ["healthcheck", "--config", str(config), "--timeout", "2"], env=env)
    assert down.exit_code == 1 and "refused" in down.stderr.lower()

    daemon = Daemon(config)
    daemon.start_health_server()
    try:
        # CLUSTER_MONITOR_CONFIG, as the image sets it, stands for --config.
        up = runner.invoke(app, ["healthcheck"], env={**env, "CLUSTER_MONITOR_CONFIG": str(config)})
        assert up.exit_code == 0 and up.stdout.strip().endswith("/healthz: ok"), up.stderr
        # No cycle has run: alive, not ready.
        unready = runner.invoke(app, ["healthcheck", "--config", str(config), "--ready"], env=env)
        assert unready.exit_code == 1 and "503" in unready.stderr
    finally:
        srv = daemon._health_server
        assert srv is not None
        srv.shutdown()
        srv.server_close()
        daemon.close()

    off = runner.invoke(app, ["healthcheck", "--config", str(_config(tmp_path, None))], env=env)
    assert off.exit_code == 1 and "server.port is not set" in off.stderr
    # A config the check cannot read is unhealthy (1), never Docker's reserved 2.
    bad = runner.invoke(app, ["healthcheck", "--config", str(tmp_path / "missing.yaml")], env=env)
    assert bad.exit_code == 1


def test_a_log_line_keeps_the_clustering_level_beside_the_log_level(
        drift_posthog: PostHogEnv, slack: LocalSlack, tmp_path: Path) -> None:
    buf = io.StringIO()
    logs.configure("info", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    try:
        m = monitor_for(make_config(drift_posthog, slack, None, tmp_path / "s.sqlite"))
        assert m.cycle().ok
        m.store.close()
    finally:
        logs.configure("info")
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    processed = [e for e in events if e["event"] == "run_processed"]
    assert processed and all(e["level"] == "info" for e in processed)
    assert {e["clustering_level"] for e in processed} == {r["level"] for r in drift_posthog.dataset.runs}
    assert all("timestamp" in e for e in events)
