"""Hostile data through the whole pipeline, and secrets that must never be written anywhere."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from monitor import logs
from monitor.local.posthog.generator import make_run_event, run_event_row
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from tests.conftest import END, PostHogEnv, make_config, monitor_for
from tests.test_notify import _mrkdwn_texts

EVIL = "x'); DROP TABLE events; -- {run_id} \\' \" `{{7*7}}` <!channel> <script>"


def test_quotes_braces_and_sql_in_titles_and_trace_ids_stay_data(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    job = EVIL  # lands in the run id, which the monitor binds as a value
    for day in (0, 1):
        items = [f"{EVIL}-{i}" for i in range(40 + day * 30)]
        props = make_run_event(
            team_id=env.project_id, level="trace", window_end=END - timedelta(days=1 - day), job_id=job,
            job_name=f"job {EVIL}", clusters=[
                {"cluster_id": 0, "items": items[:20], "title": f"Stable {EVIL}", "description": EVIL},
                {"cluster_id": 1, "items": items[20:], "title": f"Growing {EVIL}" if day else f"Other {EVIL}"}])
        env.server.engine.insert([run_event_row(props, team_id=env.project_id,
                                                emitted_at=END - timedelta(days=1 - day, minutes=-5))])
    m = monitor_for(make_config(env, slack, None, tmp_path / "s.sqlite"))
    seen = len(env.server.requests)
    r = m.cycle()
    assert r.ok, r.failed
    mine = env.server.requests[seen:]
    assert mine and all(q["status"] == 200 for q in mine)
    for q in mine:
        # The hostile text travels only as bound values, never inside the query text.
        assert "DROP TABLE" not in (q.get("query") or "")
    assert any(EVIL in str(v) for q in mine for v in (q.get("values") or {}).values())
    assert sum(1 for run_id in r.processed if EVIL in run_id) == 2
    assert slack.messages
    for msg in slack.messages:  # whatever Slack would parse as mrkdwn holds no mention
        for text in [msg["text"], *_mrkdwn_texts(msg["blocks"])]:
            assert "<!channel>" not in text and "<script" not in text
    m.store.close()


def test_secrets_never_reach_logs_errors_or_the_outbox(posthog_factory: Any, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.05, days=4)
    key = "phx_" + "s3cr3t" * 6
    hook_secret = "hooksecret" + "9" * 16
    smtp_password = "smtp-pass-" + "7" * 12
    slack = LocalSlack.start()
    smtp = LocalSMTP.start(username="monitor", password="a-different-password")
    buf = io.StringIO()
    logs.configure("debug", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    try:
        env.server.api_key = key
        cfg = make_config(env, None, None, tmp_path / "s.sqlite",
                          slack={"webhook_url": f"{slack.url}/services/T0/B0/{hook_secret}"},
                          email={"host": "127.0.0.1", "port": smtp.port, "security": "none", "from": "m@x.test",
                                 "to": ["t@x.test"], "username": "monitor", "password": smtp_password})
        cfg = cfg.model_copy(update={"posthog": cfg.posthog.model_copy(update={"api_key": _secret(key)})})
        slack.fail_next(1000, 404, error="no_service")
        m = monitor_for(cfg)
        r = m.cycle()
        assert r.processed and r.notifications  # the pipeline ran, and delivery failed on both channels
        failed = m.store.outbox("failed") + m.store.outbox("pending")
        assert failed
        # And a PostHog that refuses the key: the error names the status, not the key.
        env.server.api_key = "phx_other"
        bad = m.cycle()
        assert not bad.ok
        emitted = "\n".join([buf.getvalue(), str(bad.error), json.dumps([e.last_error for e in failed]),
                             json.dumps([str(r.failed)])])
        for secret in (key, hook_secret, smtp_password):
            assert secret not in emitted, secret
        assert "notification_failed" in buf.getvalue() or "notification_retry" in buf.getvalue()
        m.store.close()
    finally:
        logs.configure("info")
        slack.stop()
        smtp.stop()


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)
