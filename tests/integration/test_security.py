"""Hostile data through the whole pipeline, and secrets that must never be written anywhere."""

from __future__ import annotations

import html
import io
import json
import re
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import markupsafe
import pytest
import structlog

from monitor import logs
from monitor.alerts import Alert, Notification
from monitor.local.posthog.generator import make_run_event, run_event_row
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from monitor.notify.email import EmailNotifier
from monitor.notify.render import DISPLAY_LIMITS, one_line
from monitor.notify.slack import SlackNotifier
from tests.conftest import END, PostHogEnv, make_config, monitor_for
from tests.integration.test_notify import LINKS, _mrkdwn_texts
from tests.support.long_titles import through_pipeline

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


# --- Titles that try to format, ping, fake lines or hide (issue 16), as the two channels receive them ---

HOSTILE_TITLES = [
    "*bold* _it_ ~strike~ `code` ```pre```",
    "> a fake quote",
    "<!channel> <!here|here> <@U123> <#C123> <https://evil.example|click here>",
    "two\nlines\r\n*Cost:* $0.00 (fake line)",
    "\u202eevil\u202c bidi \u2066iso\u2069 \u200fmark",
    "nul\x00 bel\x07 esc\x1b[31mred del\x7f c1\x85",
    "line\u2028separator\u2029paragraph\ttab",
    "ログイン <b>bold</b> & café",
]
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
# What Slack shows for the look-alikes mrkdwn puts in place of its formatting characters.
LOOKALIKES = str.maketrans({"\u2217": "*", "\u223c": "~", "\u02cb": "`", "\u02cd": "_", "\u203a": ">"})


def _hostile_notification() -> Notification:
    run_id = "2_trace_20261101_031000_hostile"
    alerts = tuple(Alert(
        fingerprint=f"fp{i}", rule="error_rate", kind="error_rate", severity="critical", summary=f"Summary {i}",
        run_id=run_id, job_name=title, level="trace", cluster_id=i, cluster_title=title,
        previous_title=f"{title} (before)") for i, title in enumerate(HOSTILE_TITLES))
    return Notification(key=f"run:{run_id}", project_id=2, run_id=run_id, job_name=HOSTILE_TITLES[3], level="trace",
                        window_start=END - timedelta(days=7), window_end=END, alerts=alerts,
                        run_url=LINKS.run(run_id), host=LINKS.base)


def _seen_in_slack(text: str) -> str:
    return html.unescape(text).translate(LOOKALIKES)


def test_hostile_titles_reach_slack_as_one_literal_line(slack: LocalSlack) -> None:
    assert SlackNotifier(webhook_url=slack.webhook_url).send(_hostile_notification()).ok
    assert slack.wait_for(1)
    msg = slack.messages[0]
    assert slack.block_errors == []
    sections = [b["text"]["text"] for b in msg["blocks"] if b["type"] == "section"]
    assert len(sections) == len(HOSTILE_TITLES)
    for i, (title, text) in enumerate(zip(HOSTILE_TITLES, sections, strict=True)):
        lines = text.split("\n")
        # The title stays on the alert's first line: the next line is the alert's own, not one from the title.
        assert lines[0].startswith("🔴 *Error rate* · ") and lines[1] == f"Summary {i}", lines
        shown = lines[0].removeprefix("🔴 *Error rate* · ")
        # What it contains is inert: no formatting character, mention, link or entity of its own...
        assert not set(shown) & set("*~`<>"), shown
        assert not re.search(r"(?<![^\W_])_|_(?![^\W_])", shown) and not shown.startswith("&gt;"), shown
        assert not re.search(r"&(?!amp;|lt;|gt;)", shown) and not CONTROL.search(shown), shown
        # ...and reads as the title did, on one line.
        assert _seen_in_slack(shown) == one_line(title), (shown, title)
        assert f"_was '{shown} (before)' in the previous run_" in lines
    for text in [msg["text"], *_mrkdwn_texts(msg["blocks"])]:
        assert "<!" not in text and "<@" not in text and "<#" not in text and not CONTROL.search(text)
    # The fallback text (notifications, screen readers): one line per alert, data inert there too.
    fallback = msg["text"].split("\n")
    assert len(fallback) == 1 + len(HOSTILE_TITLES)
    assert all(line.startswith("- ") and "*" not in line and "`" not in line for line in fallback[1:])


def test_hostile_titles_reach_email_without_controls_or_markup(smtp: LocalSMTP) -> None:
    n = _hostile_notification()
    notifier = EmailNotifier(host="127.0.0.1", port=smtp.port, security="none", sender="m@x.test",
                             recipients=["t@x.test"])
    assert notifier.send(n).ok
    assert smtp.wait_for(1)
    msg = smtp.messages[0]
    plain, page = msg.get_body(preferencelist=("plain",)), msg.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage) and isinstance(page, EmailMessage)
    text, html_text = plain.get_content().replace("\r\n", "\n"), page.get_content().replace("\r\n", "\n")
    for part in (str(msg["Subject"]), text, html_text):
        assert not CONTROL.search(part), CONTROL.findall(part)
        assert "\r" not in part
    assert sorted(k.lower() for k, _ in msg.items()) == sorted(
        ["subject", "from", "to", "date", "message-id", "x-cluster-monitor-key", "mime-version", "content-type"])
    # Plain text: each alert's heading on one line, then its own summary line.
    lines = text.split("\n")
    for i, title in enumerate(HOSTILE_TITLES):
        k = lines.index(f"[CRITICAL] Error rate: {one_line(title)}")
        assert lines[k + 1] == f"  Summary {i}"
    # HTML: titles are text (escaped), never markup.
    assert "<b>bold</b>" not in html_text and "<!channel>" not in html_text and "<https://evil" not in html_text
    for title in HOSTILE_TITLES:
        assert f">{markupsafe.escape(one_line(title))}</div>" in html_text, title


@pytest.mark.parametrize("size", [1_000_000])
def test_a_1mb_title_goes_through_parse_diff_rules_slack_and_email_in_under_a_second_of_cpu(
        size: int, slack: LocalSlack, smtp: LocalSMTP) -> None:
    """Issue 16: a 4,000-character title took 86 s in the email chart. Now every stage is linear and display
    text is bounded: a 1 MB title, description, job name and model name, and a 100 KB run id."""
    huge = ("Ωmega заголовок 日本語 *bold* <!channel> " + "x" * size)[:size]
    slack_n = SlackNotifier(webhook_url=slack.webhook_url)
    email_n = EmailNotifier(host="127.0.0.1", port=smtp.port, security="none", sender="m@x.test",
                            recipients=["t@x.test"])
    start = time.process_time()
    r = through_pipeline(huge, job_name=huge, model=huge, run_label="r" * 100_000, slack=slack_n, email=email_n)
    cpu = time.process_time() - start
    assert cpu < 1.0, r.cpu
    # The alerts were about the huge cluster, and it was charted: the path did its work.
    kinds = {a.kind for a in r.notification.alerts}
    assert {"cost_spike", "error_rate"} <= kinds and r.notification.charts
    assert any(len(a.cluster_title or "") > size for a in r.notification.alerts)  # the data keeps it whole
    assert slack.wait_for(1) and smtp.wait_for(1)
    # What people receive is bounded: the Slack message and the email are a few kilobytes.
    assert len(json.dumps(slack.messages[0])) < 40_000
    assert len(smtp.messages[0].as_bytes()) < 200_000
    page = smtp.messages[0].get_body(preferencelist=("html",))
    assert isinstance(page, EmailMessage)
    longest = max(len(m) for m in re.findall(r"x+", page.get_content()))
    assert longest < max(DISPLAY_LIMITS.values())  # each value is cut to its own limit
