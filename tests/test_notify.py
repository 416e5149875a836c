"""Notifications through their real interfaces: slack-sdk over HTTP to the local Slack endpoint, SMTP to
a local aiosmtpd server, parsed back with the standard email package; delivery through the outbox."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import msgspec
import pytest
from PIL import Image
from slack_sdk.models.blocks import Block

from monitor.alerts import Alert, Link, Notification, ShareBar
from monitor.links import PostHogLinks
from monitor.localslack import LocalSlack
from monitor.localsmtp import LocalSMTP
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Deliverer, Notifier
from monitor.notify.slack import SlackNotifier
from monitor.store.sqlite import SQLiteStore

NOW = datetime(2026, 11, 1, 4, tzinfo=UTC)
HOSTILE = ("<!channel> <!here> <@U123> <https://evil.example|click me> *bold* _it_ ~s~ `code` & "
           "<script>alert(1)</script>\r\nBcc: victim@evil.example\n\u202eRTL 🎉")
LINKS = PostHogLinks("https://us.posthog.com", 2, "ai-observability")


def _alert(i: int = 0, title: str = HOSTILE, kind: str = "cost_spike") -> Alert:
    run_id = "2_trace_20261101_031000_job/with?odd&chars"
    return Alert(
        fingerprint=f"fp{i}", rule=kind, kind=kind, severity="critical" if i == 0 else "warning",
        summary=f"Average cost per item $0.0012, was $0.0004 {HOSTILE}", run_id=run_id,
        job_name=HOSTILE, level="trace", cluster_id=i, cluster_title=title, previous_title="Login & sign-up <b>",
        metric="avg_cost", value=0.0012, threshold=0.0008, previous_value=0.0004, unit="usd",
        top_trace_ids=(f"trace<{i}>&'\"", "t2"),
        links=(Link("Open run", LINKS.run(run_id)), Link("Open cluster", LINKS.cluster(run_id, i)),
               Link("Top trace", LINKS.trace(f"trace<{i}>&"))))


def _notification(n_alerts: int = 1, key: str = "run:k1", shares: bool = True) -> Notification:
    return Notification(
        key=key, project_id=2, run_id=f"2_trace_20261101_031000_job/with?odd&chars_{key}", job_name=HOSTILE,
        level="trace", window_start=NOW - timedelta(days=7), window_end=NOW,
        alerts=tuple(_alert(i) for i in range(n_alerts)), run_url=LINKS.run("2_trace_x"), host=LINKS.base,
        created_at=NOW,
        shares=(ShareBar(HOSTILE, 0.2, 0.35, alert=True), ShareBar("Python code review", 0.3, 0.28),
                ShareBar("Brand new workload", None, 0.05)) if shares else ())


@pytest.fixture
def bot_slack() -> object:
    s = LocalSlack.start(token="xoxb-test-token", channels={"C123"})
    yield s
    s.stop()


def _mrkdwn_texts(node: object) -> list[str]:
    """Every string Slack parses as mrkdwn (plain_text objects are shown literally and never ping)."""
    out: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            out.append(node["text"])
        for v in node.values():
            out.extend(_mrkdwn_texts(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_mrkdwn_texts(v))
    return out


def _no_pings_or_links_from_data(text: str) -> None:
    for bad in ("<!channel>", "<!here>", "<@U123>", "<https://evil", "<script"):
        assert bad not in text, bad


def test_slack_webhook_blocks_are_valid_within_limits_and_escape_hostile_text(slack: LocalSlack) -> None:
    notifier = SlackNotifier(webhook_url=slack.webhook_url)
    assert notifier.send(_notification(n_alerts=60)).ok
    assert slack.wait_for(1)
    msg = slack.messages[0]
    assert slack.block_errors == []
    blocks = msg["blocks"]
    assert 0 < len(blocks) <= 50
    for b in blocks:
        parsed = Block.parse(b)
        assert parsed is not None
        parsed.validate_json()
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
    assert msg["text"]  # the fallback shown in notifications and by screen readers
    text = "\n".join([msg["text"], *_mrkdwn_texts(blocks)])
    _no_pings_or_links_from_data(text)
    assert "&lt;!channel&gt;" in text and "&amp;" in text
    assert "\u202e" not in json.dumps(msg, ensure_ascii=False)  # no right-to-left override spoofing
    assert "more" in text  # 60 alerts do not fit: the rest are summarised, never dropped silently
    # Links back into PostHog are URL-encoded: data cannot break out of the URL.
    urls = [e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"] if "url" in e]
    assert urls and all(" " not in u and "<" not in u for u in urls)
    assert any("job%2Fwith%3Fodd%26chars" in u for u in urls)


def test_slack_bot_token_posts_to_the_channel_and_a_bad_token_is_permanent(bot_slack: LocalSlack) -> None:
    good = SlackNotifier(bot_token="xoxb-test-token", channel="C123", base_url=bot_slack.api_base_url)
    res = good.send(_notification())
    assert res.ok and res.ts
    assert bot_slack.messages[0]["channel"] == "C123"
    bad = SlackNotifier(bot_token="xoxb-wrong", channel="C123", base_url=bot_slack.api_base_url)
    res = bad.send(_notification())
    assert not res.ok and res.permanent and "invalid_auth" in (res.error or "")
    lost = SlackNotifier(bot_token="xoxb-test-token", channel="C999", base_url=bot_slack.api_base_url)
    res = lost.send(_notification())
    assert not res.ok and res.permanent and "channel_not_found" in (res.error or "")
    assert len(bot_slack.messages) == 1


def _email(smtp: LocalSMTP) -> EmailNotifier:
    return EmailNotifier(host="127.0.0.1", port=smtp.port, security="none", sender="Monitor <m@x.test>",
                         recipients=["team@x.test"])


def test_email_is_multipart_with_an_inline_chart_and_no_header_injection(smtp: LocalSMTP) -> None:
    assert _email(smtp).send(_notification()).ok
    assert smtp.wait_for(1)
    msg = smtp.messages[0]
    # One Subject, no smuggled headers, no line breaks in it.
    assert len(msg.get_all("Subject") or []) == 1 and msg["Bcc"] is None
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    for h in ("From", "To", "Date", "Message-ID"):
        assert msg[h], h
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    html_text = html.get_content()
    assert "<script" not in html_text and "&lt;script&gt;" in html_text
    assert "<!channel>" not in html_text
    assert "\u202e" not in html_text + plain.get_content() + str(msg["Subject"])
    # The chart: a PNG inside multipart/related, referenced by its Content-ID.
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    images = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    assert len(images) == 1
    cid = str(images[0]["Content-ID"]).strip("<>")
    assert f'src="cid:{cid}"' in html_text
    png = images[0].get_content()
    assert isinstance(png, bytes)
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.width == 592 and img.height > 60


def test_an_email_without_chart_data_has_no_image(smtp: LocalSMTP) -> None:
    assert _email(smtp).send(_notification(shares=False)).ok
    assert smtp.wait_for(1)
    assert not [p for p in smtp.messages[0].walk() if p.get_content_maintype() == "image"]


def _enqueue(store: SQLiteStore, n: Notification, channels: list[str]) -> None:
    payload = msgspec.json.encode(n)
    store.commit_alerts([], [(n.key, ch, payload) for ch in channels], NOW)


def _drain(deliverer: Deliverer, store: SQLiteStore, start: datetime, rounds: int = 20) -> datetime:
    """Deliver until nothing is pending, moving the injected clock past each backoff."""
    now = start
    for _ in range(rounds):
        deliverer.deliver_due(now)
        if not store.outbox("pending"):
            break
        now += timedelta(hours=1)
    return now


def test_delivery_survives_429_and_500_for_a_while_and_a_restart_with_pending_notifications(
        slack: LocalSlack, smtp: LocalSMTP, tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SQLiteStore(path)
    notifiers: dict[str, Notifier] = {"slack": SlackNotifier(webhook_url=slack.webhook_url), "email": _email(smtp)}
    for i in range(3):
        _enqueue(store, _notification(key=f"run:{i}"), ["slack", "email"])
    # Slack answers 500 six times, then 429 with Retry-After four times; the mail server refuses twice.
    slack.fail_next(6, 500)
    slack.fail_next(4, 429, error="ratelimited", retry_after=0)
    smtp.refuse_code = 451
    first = Deliverer(store, notifiers, min_interval=0, sleep=lambda s: None)
    first.deliver_due(NOW)
    smtp.refuse_code = None
    # The daemon stops here with notifications pending; a new one starts on the same state file.
    assert store.outbox("pending")
    store.close()
    store = SQLiteStore(path)
    second = Deliverer(store, notifiers, min_interval=0, sleep=lambda s: None)
    _drain(second, store, NOW)
    assert store.outbox("pending") == [] and store.outbox("failed") == []
    sent = store.outbox("sent")
    assert len(sent) == 6 and max(e.attempts for e in sent) >= 1
    # Each notification arrived exactly once on each channel.
    assert len(slack.messages) == 3 and len(set(map(json.dumps, (m["blocks"] for m in slack.messages)))) == 3
    assert len(smtp.messages) == 3 and len({m["X-Cluster-Monitor-Key"] for m in smtp.messages}) == 3
    store.close()


def test_a_permanent_error_is_kept_as_failed_not_retried_forever(bot_slack: LocalSlack, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    notifiers: dict[str, Notifier] = {"slack": SlackNotifier(bot_token="xoxb-test-token", channel="C404",
                                        base_url=bot_slack.api_base_url)}
    _enqueue(store, _notification(), ["slack"])
    d = Deliverer(store, notifiers, min_interval=0, sleep=lambda s: None)
    _drain(d, store, NOW)
    failed = store.outbox("failed")
    assert len(failed) == 1 and failed[0].attempts == 1 and "channel_not_found" in (failed[0].last_error or "")
    before = bot_slack.requests
    d.deliver_due(NOW + timedelta(days=3))
    assert bot_slack.requests == before  # nothing more was tried
    store.close()


def test_email_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    """Renders the email's HTML (chart inlined) in Debian's chromium and keeps the screenshot."""
    import base64
    import shutil
    import subprocess

    from monitor.notify.chart import share_chart
    from monitor.notify.render import render_email

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is installed by ./dev setup (apt-get install chromium)"
    n = _notification(n_alerts=3)
    parts = render_email(n, chart=share_chart(n.shares))
    png = base64.b64encode(parts.images["chart"]).decode()
    page = tmp_path / "email.html"
    page.write_text(parts.html.replace("cid:chart", f"data:image/png;base64,{png}"))
    out = Path("tests/artifacts/email-screenshot.png").resolve()
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=680,1400",
                    f"--screenshot={out}", page.as_uri()], check=True, capture_output=True, timeout=120)
    with Image.open(out) as img:
        assert img.size == (680, 1400)
        # Something was drawn: a blank page would be a single colour.
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 50
