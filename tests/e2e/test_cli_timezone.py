"""Issue 14's done-when, as a user would check it: `cluster-monitor local-posthog --timezone Asia/Kolkata`
and `--timezone Pacific/Chatham` serve the drift scenario (evaluations included), and `cluster-monitor
once` against each delivers the same Slack messages as against `--timezone UTC`, pass-rate alerts included.
Processes, as run by hand; the data ends at today's midnight UTC, as the command generates it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.local.slack import LocalSlack

ZONES = ("UTC", "Asia/Kolkata", "Pacific/Chatham")
KEY = "phx_e2e_tz_key"
_SERVING = re.compile(r"local PostHog serving at (http://\S+) ")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One `local-posthog` process per timezone, started together; tz -> URL."""
    procs = {tz: subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "local-posthog", "--port", "0", "--timezone", tz, "--scale", "0.05",
         "--days", "4", "--seed", "5", "--evaluations", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for tz in ZONES}
    urls: dict[str, str] = {}
    try:
        for tz, p in procs.items():
            assert p.stdout is not None
            for line in p.stdout:  # blocks until the server says it serves (or the process ends)
                m = _SERVING.search(line)
                if m:
                    assert f"timezone {tz}," in line, line
                    urls[tz] = m.group(1)
                    break
            assert tz in urls, f"local-posthog --timezone {tz} ended without serving (exit {p.wait(10)})"
        yield urls
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(30)


def _once(url: str, tmp: Path) -> list[str]:
    slack = LocalSlack.start()
    try:
        cfg = tmp / "config.yaml"
        cfg.write_text(json.dumps({
            "posthog": {"host": url, "project_id": 1, "api_key": "${KEY}", "lookback_days": 30},
            "watch": {"levels": ["trace", "generation", "evaluation"]},
            # Every run told on its own and no staleness: what is sent does not depend on the minute.
            "alerting": {"catch_up_after_hours": 0, "stale_after_hours": 0},
            "slack": {"webhook_url": slack.webhook_url},
            "state": {"path": str(tmp / "state.sqlite")},
        }))
        out = subprocess.run([sys.executable, "-m", "monitor.cli", "once", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=600, env={**os.environ, "KEY": KEY})
        assert out.returncode == 0, out.stderr[-3000:]
        return [json.dumps({k: m.get(k) for k in ("text", "blocks", "attachments")}, sort_keys=True)
                .replace(url, "HOST") for m in slack.messages]
    finally:
        slack.stop()


def test_once_against_local_posthog_in_kolkata_and_chatham_sends_what_it_sends_in_utc(
        servers: dict[str, str], tmp_path: Path) -> None:
    got = {}
    for tz, url in servers.items():
        d = tmp_path / tz.replace("/", "_")
        d.mkdir()
        got[tz] = _once(url, d)
    utc = got["UTC"]
    # Whatever kinds the monitor has (evaluation-level ones included, the evaluation runs being watched).
    assert len(utc) >= 5, utc
    for tz in ZONES[1:]:
        assert got[tz] == utc, tz
