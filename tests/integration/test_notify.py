"""Notifications through their real interfaces: slack-sdk over HTTP to the local Slack endpoint (incoming
webhook and chat.postMessage), smtplib to a local aiosmtpd server parsed back with the standard email
package, and delivery through the SQLite outbox with an injected clock.

Nothing in the code under test is patched. The only seam is slack-sdk's own retry sleeps (its retry
handlers call time.sleep): they are recorded instead of slept, so a 429's Retry-After is checked, not waited.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import markupsafe
import msgspec
import pytest
from PIL import Image
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry import handler as retry_handler
from slack_sdk.models.blocks import Block

from monitor.alerts import Alert, Chart, ChartBar, Link, Notification
from monitor.links import PostHogLinks
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP, _free_port
from monitor.notify import render
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Deliverer, Notifier
from monitor.notify.slack import SlackNotifier
from monitor.store.sqlite import SQLiteStore

NOW = datetime(2026, 11, 1, 4, tzinfo=UTC)
BOT_TOKEN = "xoxb-test-token"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
# Untrusted text as it could come out of PostHog: cluster titles and descriptions are LLM-written,
# trace ids and model names are whatever the instrumented app sent.
HOSTILE = ("🎉 مرحبا \u202eRTL\u2066iso\u2069 <!channel> <!here> <@U123> <https://evil.example|click me> "
           "*bold* _x_ ~x~ `code` ```pre``` & <script>alert(1)</script>\r\nBcc: victim@evil.example\n"
           "X-Injected: yes\r\n")
LONG_TITLE = HOSTILE + " " + "L" * 5000
RUN_ID = "2_trace_20261101_031000_job/with?odd&chars <!channel>\r\nBcc: run@evil.example"
MODEL = "gpt-4o<!here>&mini"
LINKS = PostHogLinks("https://us.posthog.com", 2, "ai-observability")
# The one link the monitor itself writes into mrkdwn: "…and N more alerts: <run url|open the run in PostHog>".
OUR_LINK = re.compile(r"<(" + re.escape(LINKS.base) + r"/[^\s<>|]+)\|open the run in PostHog>")
URL_SAFE = re.compile(r"^[A-Za-z0-9\-._~:/%]+$")  # what a PostHog link may hold once its parts are encoded


def _trace_id(i: int) -> str:
    return f"trace<!channel>&'\"`{i}"


def _alert(i: int, run_id: str) -> Alert:
    return Alert(
        fingerprint=f"fp{i}", rule="cost_spike", kind="cost_spike", severity=("critical", "warning", "info")[i % 3],
        summary=f"Average cost per item $0.0012 on model {MODEL}, was $0.0004 {HOSTILE}", run_id=run_id,
        job_name=HOSTILE, level="trace", cluster_id=i, cluster_title=LONG_TITLE if i == 1 else f"{HOSTILE} #{i}",
        previous_title=f"Login & sign-up <b>{HOSTILE}", metric="avg_cost", value=0.0012, threshold=0.0008,
        previous_value=0.0004, unit="usd", top_trace_ids=(_trace_id(i), f"<@U999>\r\n{i}", "t2"),
        labels={"model": MODEL}, status="resolved" if i == 2 else "firing",
        links=(Link("Open run", LINKS.run(run_id)), Link("Open cluster", LINKS.cluster(run_id, i)),
               Link("Top trace", LINKS.trace(_trace_id(i)))))


def _share_chart() -> Chart:
    return Chart(metric="share", label="Share of traffic", unit="ratio", bars=(
        ChartBar(HOSTILE, 0.2, 0.35, alert=True), ChartBar("Python code review", 0.3, 0.28),
        ChartBar("Brand new workload", None, 0.05), ChartBar("Refund requests", 0.1, None, alert=True)))


def _notification(n_alerts: int = 1, *, tag: str = "k1x", charts: bool = True) -> Notification:
    """One run's notification; `tag` ends the run id, so each notification can be told apart at the endpoint."""
    run_id = f"{RUN_ID} {tag}"
    return Notification(
        key=f"run:{run_id}", project_id=2, run_id=run_id, job_name=HOSTILE, level=f"trace {HOSTILE}",
        window_start=NOW - timedelta(days=7), window_end=NOW,
        alerts=tuple(_alert(i, run_id) for i in range(n_alerts)), run_url=LINKS.run(run_id), host=LINKS.base,
        created_at=NOW,
        charts=(_share_chart(),) if charts else ())


# --- fixtures and helpers --------------------------------------------------------------------------------

@pytest.fixture
def local_slack() -> Iterator[LocalSlack]:
    """One endpoint for both transports: webhooks under /services/, the Web API (token-checked) under /api/."""
    s = LocalSlack.start(token=BOT_TOKEN, channels={"C123"})
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """slack-sdk's retry handlers sleep (Retry-After, backoff): record the durations instead of sleeping."""
    slept: list[float] = []
    fake = SimpleNamespace(sleep=slept.append)
    monkeypatch.setattr(builtin_handlers, "time", fake)
    monkeypatch.setattr(retry_handler, "time", fake)
    return slept


def _slack_notifier(s: LocalSlack, transport: str, *, token: str = BOT_TOKEN, channel: str = "C123",
                    webhook_url: str | None = None) -> SlackNotifier:
    if transport == "webhook":
        return SlackNotifier(webhook_url=webhook_url or s.webhook_url)
    return SlackNotifier(bot_token=token, channel=channel, base_url=s.api_base_url)


def _email(smtp: LocalSMTP | None = None, *, port: int | None = None) -> EmailNotifier:
    return EmailNotifier(host="127.0.0.1", port=port or (smtp.port if smtp else 0), security="none",
                         sender="Cluster Monitor <m@x.test>", recipients=["team@x.test"])


def _no_sleep(_seconds: float) -> None:
    return None


def _deliverer(store: SQLiteStore, notifiers: dict[str, Notifier], **kw: Any) -> Deliverer:
    opts: dict[str, Any] = {"min_interval": 0.0, "sleep": _no_sleep, **kw}
    return Deliverer(store, notifiers, **opts)


def _enqueue(store: SQLiteStore, n: Notification, channels: list[str], now: datetime = NOW) -> None:
    """As the pipeline does: the notification goes into the outbox, one entry per channel."""
    payload = msgspec.json.encode(n)
    store.commit_alerts([], [(n.key, ch, payload) for ch in channels], now)


def _drain(deliverer: Deliverer, store: SQLiteStore, start: datetime, rounds: int = 20) -> datetime:
    """Deliver until nothing is pending, moving the injected clock to each entry's next attempt."""
    now = start
    for _ in range(rounds):
        deliverer.deliver_due(now)
        pending = store.outbox("pending")
        if not pending:
            break
        now = max(now, min(e.next_attempt_at for e in pending))
    return now


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _mrkdwn_objects(node: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            out.append(node)
        for v in node.values():
            out.extend(_mrkdwn_objects(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_mrkdwn_objects(v))
    return out


def _mrkdwn_texts(node: object) -> list[str]:
    """Every string Slack parses as mrkdwn (plain_text objects are shown literally and never ping)."""
    return [o["text"] for o in _mrkdwn_objects(node) if isinstance(o.get("text"), str)]


def _assert_valid_blocks(blocks: list[dict[str, Any]]) -> None:
    """slack-sdk's own Block Kit models accept every block, and Slack's documented limits hold."""
    assert 0 < len(blocks) <= 50
    for b in blocks:
        parsed = Block.parse(b)
        assert parsed is not None, b
        parsed.validate_json()
        assert parsed.to_dict() == b  # nothing in the block the model does not know
        if b["type"] == "header":
            assert b["text"]["type"] == "plain_text" and 0 < len(b["text"]["text"]) <= 150
        elif b["type"] == "section":
            assert 0 < len(b["text"]["text"]) <= 3000
            assert len(b.get("fields", [])) <= 10 and all(len(f["text"]) <= 2000 for f in b.get("fields", []))
        elif b["type"] == "context":
            assert 0 < len(b["elements"]) <= 10 and all(len(e["text"]) <= 3000 for e in b["elements"])
        elif b["type"] == "actions":
            assert 0 < len(b["elements"]) <= 25
            for e in b["elements"]:
                assert len(e["text"]["text"]) <= 75 and len(e["url"]) <= 3000 and len(e["action_id"]) <= 255
        else:
            assert b["type"] == "divider", b["type"]
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(ids) == len(set(ids))  # Slack rejects a message whose action ids repeat


def _assert_no_ping_or_link_from_data(msg: dict[str, Any]) -> None:
    texts = [msg["text"], *_mrkdwn_texts(msg["blocks"])]
    for text in texts:
        # The only angle brackets Slack will see are the monitor's own link back into PostHog.
        rest = OUR_LINK.sub("", text)
        assert "<" not in rest and ">" not in rest, rest[:300]
        assert "<!" not in text and "<@" not in text and "<#" not in text
        # Every & is the start of one of the three escapes Slack knows: data cannot form another entity.
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), text[:300]
    joined = "\n".join(texts)
    for escaped in ("&lt;!channel&gt;", "&lt;!here&gt;", "&lt;@U123&gt;", "&lt;https://evil.example|click me&gt;",
                    "&lt;script&gt;alert(1)&lt;/script&gt;", " &amp; ", "gpt-4o&lt;!here&gt;&amp;mini"):
        assert escaped in joined, escaped
    # verbatim: Slack does not auto-link bare URLs nor parse mentions in the data (Block Kit text object docs).
    assert all(o.get("verbatim") is True for o in _mrkdwn_objects(msg["blocks"]))
    for s in _strings(msg):
        assert not set(s) & set(BIDI), "bidi override or isolate reached Slack"
        assert "\r" not in s and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", s)
    # Slack's formatting from data is inert: the characters are swapped for look-alikes Slack does not parse,
    # and data starts no line (line breaks in it became spaces), so it cannot fake a line of the alert.
    for fmt in ("*bold*", "_x_", "~x~", "`code`", "```pre```"):
        assert fmt not in joined, fmt
    assert all(x in joined for x in ("\u2217bold\u2217", "\u02cdx\u02cd", "\u223cx\u223c", "\u02cbcode\u02cb"))
    assert not re.search(r"^(Bcc|X-Injected)", joined, re.MULTILINE)
    header = next(b for b in msg["blocks"] if b["type"] == "header")["text"]["text"]
    assert "\n" not in header and "🎉" in header  # one line; emoji kept


def _assert_posthog_urls(urls: list[str], run_id: str) -> None:
    assert urls
    for u in urls:
        assert u.startswith(LINKS.base + "/") and urlsplit(u).netloc == "us.posthog.com", u
        assert URL_SAFE.match(u), u  # every character of the run id, cluster and trace id is percent-encoded
    assert LINKS.base + "/clusters/" + quote(run_id, safe="") in urls
    assert any(u.endswith("/traces/" + quote(_trace_id(0), safe="")) for u in urls)


def _html_hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]


# --- 1 & 2: Slack, both transports: delivered, valid, within limits, hostile text inert --------------------

@pytest.mark.parametrize("transport", ["webhook", "bot"])
def test_slack_message_arrives_valid_within_limits_with_hostile_text_inert(
        local_slack: LocalSlack, transport: str) -> None:
    n = _notification(n_alerts=60)
    res = _slack_notifier(local_slack, transport).send(n)
    assert res.ok, res.error
    assert local_slack.wait_for(1) and len(local_slack.messages) == 1
    msg = local_slack.messages[0]
    if transport == "webhook":
        assert msg["path"] == urlsplit(local_slack.webhook_url).path and res.ts is None
    else:
        assert msg["path"] == "/api/chat.postMessage" and msg["channel"] == "C123" and res.ts == msg["ts"]
    assert msg["unfurl_links"] is False
    # The endpoint's own check (slack-sdk models) found nothing, and neither does ours with the limits.
    assert local_slack.block_errors == []
    blocks = msg["blocks"]
    _assert_valid_blocks(blocks)
    # A fallback text for notifications and screen readers, within chat.postMessage's limit.
    assert msg["text"].strip() and len(msg["text"]) <= 40_000
    # 60 alerts do not fit in 50 blocks: ten are shown, the rest summarised with a link, never dropped silently.
    alert_sections = [b for b in blocks if b["type"] == "section" and "Cost spike" in b["text"]["text"]]
    assert len(alert_sections) == 10
    assert sum("…and 50 more alerts" in b["text"]["text"] for b in blocks if b["type"] == "section") == 1
    # The 5,000-character title is cut to Slack's section limit, not rejected.
    # The 5,000-character title is cut for display, on the alert's first line, well within the section.
    long_section = alert_sections[1]["text"]["text"]
    first_line = long_section.split("\n")[0]
    assert first_line.endswith("…") and len(long_section) < 3000 and "L" * 100 not in long_section
    _assert_no_ping_or_link_from_data(msg)
    # Links back into PostHog: buttons and the "more" link, each part URL-encoded.
    buttons = [e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    more = [m for t in _mrkdwn_texts(blocks) for m in OUR_LINK.findall(t)]
    assert more == [n.run_url]
    _assert_posthog_urls(buttons + more, n.run_id)


# --- 2 & 3: email: MIME structure, the chart in HTML, headers, hostile text --------------------------------

def _bars(page: str) -> list[tuple[str, float]]:
    """(class, width in %) of every drawn bar of the email's charts, in order."""
    return [(cls, float(w)) for cls, w in re.findall(r'<td class="(cm-before|cm-now|cm-hot)" width="([0-9.]+)%"', page)]


def test_email_mime_structure_headers_and_html_chart(smtp: LocalSMTP) -> None:
    res = _email(smtp).send(_notification())
    assert res.ok, res.error
    assert smtp.wait_for(1)
    msg = smtp.messages[0]
    assert smtp.recipients[0] == ["team@x.test"]
    assert parseaddr(str(msg["From"])) == ("Cluster Monitor", "m@x.test")
    assert parseaddr(str(msg["To"])) == ("", "team@x.test")
    date = parsedate_to_datetime(str(msg["Date"]))
    if date.tzinfo is None:  # "-0000": UTC, with no local zone given (RFC 5322 3.3)
        date = date.replace(tzinfo=UTC)
    assert abs(date - datetime.now(UTC)) < timedelta(minutes=5)
    assert re.fullmatch(r"<[^<>@\s]+@cluster-monitor>", str(msg["Message-ID"]))
    assert msg["MIME-Version"] == "1.0"
    # multipart/alternative: the plain text first, then the HTML, which draws its chart itself (no image).
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    plain, page = msg.get_body(preferencelist=("plain",)), msg.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage) and isinstance(page, EmailMessage)
    assert plain.get_content_charset() == "utf-8" and page.get_content_charset() == "utf-8"
    html_text, text = page.get_content(), plain.get_content()
    assert "<img" not in html_text and "cid:" not in html_text
    # The alert comes first, the chart after it.
    assert html_text.index("Cost spike") < html_text.index("Share of traffic")
    # Each cluster: previous run, then this run; bar lengths relative to the largest value (35%).
    assert _bars(html_text) == [("cm-before", 57.1), ("cm-hot", 100.0),  # the alerted cluster, in red
                                ("cm-before", 85.7), ("cm-now", 80.0),
                                ("cm-now", 14.3),  # new: nothing before
                                ("cm-before", 28.6)]  # disappeared: its old share, nothing now
    for values in ("20.0% → 35.0%", "30.0% → 28.0%", "new → 5.0%", "10.0% → gone"):
        assert values in html_text, values
    # Dark mode and narrow screens: the client's own colour scheme, and a card that shrinks.
    assert '<meta name="color-scheme" content="light dark">' in html_text
    assert "@media (prefers-color-scheme: dark)" in html_text and "max-width:640px;width:100%" in html_text
    # The plain text says the same in words.
    assert "Share of traffic, previous run -> this run:" in text and "Brand new workload: new -> 5.0%" in text
    assert "Refund requests: 10.0% -> gone" in text


def test_email_without_chart_data_is_plain_multipart_alternative(smtp: LocalSMTP) -> None:
    notifier = _email(smtp)
    assert notifier.send(_notification(charts=False, tag="a1x")).ok
    assert notifier.send(_notification(charts=False, tag="b2x")).ok
    assert smtp.wait_for(2)
    first, second = smtp.messages
    assert [p.get_content_type() for p in first.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    page = first.get_body(preferencelist=("html",))
    assert isinstance(page, EmailMessage) and "Share of traffic" not in page.get_content()
    assert _bars(page.get_content()) == []
    assert first["Message-ID"] != second["Message-ID"]


def test_email_hostile_text_is_escaped_and_cannot_inject_headers(smtp: LocalSMTP) -> None:
    # The run id (and so the notification key) carries CR/LF, as a run event's properties could.
    n = _notification(n_alerts=60)
    res = _email(smtp).send(n)
    assert res.ok, res.error
    assert smtp.wait_for(1)
    msg = smtp.messages[0]
    # Exactly the headers the monitor writes: nothing smuggled in from the data, and one Subject.
    assert sorted(k.lower() for k, _ in msg.items()) == sorted(
        ["subject", "from", "to", "date", "message-id", "x-cluster-monitor-key", "mime-version", "content-type"])
    assert len(msg.get_all("Subject") or []) == 1 and msg["Bcc"] is None and msg["X-Injected"] is None
    assert smtp.recipients[0] == ["team@x.test"]  # and no extra envelope recipient
    for h in ("Subject", "X-Cluster-Monitor-Key"):
        value = str(msg[h])
        assert "\r" not in value and "\n" not in value, h
    subject = str(msg["Subject"])
    assert subject.startswith("[cluster-monitor] 59 alerts, 1 resolved: Cost spike in 🎉 مرحبا RTLiso <!channel>")
    assert len(subject) <= 200 and "🎉" in subject  # UTF-8 survives the RFC 2047 round trip
    plain = msg.get_body(preferencelist=("plain",))
    page = msg.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage) and isinstance(page, EmailMessage)
    # Line ends are CRLF on the wire; no bare CR from the data survives inside a line.
    text, html_text = plain.get_content().replace("\r\n", "\n"), page.get_content().replace("\r\n", "\n")
    assert "\r" not in text and "\r" not in html_text
    # HTML: the data is text, never markup.
    assert "<script" not in html_text.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "<!channel" not in html_text and "&lt;!channel&gt;" in html_text
    assert "<b>" not in html_text and "<https://evil" not in html_text
    assert html_text.count("<a ") == len(_html_hrefs(html_text))
    for part in (subject, text, html_text):
        assert not set(part) & set(BIDI)
        assert "🎉" in part and "مرحبا" in part
    # 25 alerts are shown in full, the rest counted with a link to the run.
    assert "…and 35 more" in html_text and "...and 35 more" in text
    # The 5,000-character title is cut for display (the links still carry the whole run).
    shown = render.display(LONG_TITLE, render.DISPLAY_LIMITS["title"])
    assert shown.endswith("…") and len(shown) == render.DISPLAY_LIMITS["title"]
    assert f">{markupsafe.escape(shown)}</div>" in html_text and "L" * 100 not in html_text
    # Links back into PostHog are URL-encoded in both parts.
    hrefs = _html_hrefs(html_text)
    _assert_posthog_urls(hrefs, n.run_id)
    # The plain text keeps one alert heading, and one link, per line: a URL never runs into the next word.
    assert len(re.findall(r"^\[(?:CRITICAL|WARNING|INFO)\] Cost spike: ", text, re.MULTILINE)) == 25
    text_links = re.findall(r"^  (?:Open run|Open cluster|Top trace): (.*)$", text, re.MULTILINE)
    assert len(text_links) == 25 * 3
    _assert_posthog_urls(text_links, n.run_id)


# --- 4: delivery under faults, through the SQLite outbox ------------------------------------------------

@pytest.mark.parametrize("transport", ["webhook", "bot"])
def test_slack_429_and_500_are_retried_with_backoff_and_delivered_exactly_once(
        local_slack: LocalSlack, transport: str, retry_sleeps: list[float], tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    _enqueue(store, _notification(tag="r1x"), ["slack"])
    # Slack is down for three requests, then rate-limits three more, asking for 7 seconds each time.
    local_slack.fail_next(3, 500)
    local_slack.fail_next(3, 429, error="ratelimited", retry_after=7)
    d = _deliverer(store, {"slack": _slack_notifier(local_slack, transport)})
    now, errors, backoffs = NOW, [], []
    for _ in range(10):
        d.deliver_due(now)
        (entry,) = store.outbox()
        if entry.status != "pending":
            break
        errors.append(entry.last_error or "")
        backoffs.append((entry.next_attempt_at - now).total_seconds())
        # Not due before its backoff: nothing more is sent.
        before = local_slack.requests
        assert d.deliver_due(now) == 0 and local_slack.requests == before
        now = entry.next_attempt_at
    assert entry.status == "sent" and entry.sent_at == now
    assert entry.attempts == len(errors) + 1 and len(errors) >= 2  # the outbox retried, not only slack-sdk
    assert backoffs == [2.0 ** k for k in range(len(backoffs))]
    assert any("internal_error" in e for e in errors) and any("ratelimited" in e for e in errors)
    # slack-sdk honoured Retry-After (7 s plus its jitter) before trying again.
    assert any(7 <= s < 8 for s in retry_sleeps)
    # Every armed failure was consumed, then exactly one message arrived.
    assert local_slack.requests == 7 and len(local_slack.messages) == 1
    assert "r1x" in json.dumps(local_slack.messages[0]["blocks"])
    d.deliver_due(now + timedelta(days=2))
    assert local_slack.requests == 7 and len(local_slack.messages) == 1
    store.close()


@pytest.mark.parametrize(("transport", "setup", "code"), [
    ("webhook", "removed webhook (404 no_service)", "no_service"),
    ("webhook", "revoked webhook (403 invalid_token)", "invalid_token"),
    ("webhook", "archived channel (410, a code not in the list: the 4xx status decides)", "channel_is_archived"),
    ("bot", "wrong token", "invalid_auth"),
    ("bot", "unknown channel", "channel_not_found"),
    ("bot", "deactivated workspace (200 ok:false)", "account_inactive"),
])
def test_a_permanent_slack_error_is_marked_failed_and_never_retried(
        local_slack: LocalSlack, transport: str, setup: str, code: str, tmp_path: Path) -> None:
    kw: dict[str, Any] = {}
    if setup.startswith("removed"):
        kw["webhook_url"] = f"{local_slack.url}/hooks/removed"
    elif setup.startswith("revoked"):
        local_slack.fail_next(1000, 403, error="invalid_token")
    elif setup.startswith("archived"):
        local_slack.fail_next(1000, 410, error="channel_is_archived")
    elif setup == "wrong token":
        kw["token"] = "xoxb-revoked"
    elif setup == "unknown channel":
        kw["channel"] = "C404"
    else:
        local_slack.fail_next(1000, 200, error="account_inactive")
    store = SQLiteStore(tmp_path / "state.sqlite")
    _enqueue(store, _notification(), ["slack"])
    d = _deliverer(store, {"slack": _slack_notifier(local_slack, transport, **kw)})
    _drain(d, store, NOW)
    (entry,) = store.outbox()
    assert entry.status == "failed" and entry.attempts == 1 and code in (entry.last_error or "")
    assert local_slack.requests == 1  # not even slack-sdk tried again
    d.deliver_due(NOW + timedelta(days=30))
    assert local_slack.requests == 1 and local_slack.messages == []
    store.close()


def test_a_retryable_error_that_never_heals_is_failed_after_max_attempts(
        local_slack: LocalSlack, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    _enqueue(store, _notification(), ["slack"])
    local_slack.fail_next(1000, 502, error="bad_gateway")  # slack-sdk does not retry a 502 itself
    d = _deliverer(store, {"slack": _slack_notifier(local_slack, "webhook")}, max_attempts=4)
    _drain(d, store, NOW)
    (entry,) = store.outbox()
    assert entry.status == "failed" and entry.attempts == 4 and "502" in (entry.last_error or "")
    assert local_slack.requests == 4
    d.deliver_due(NOW + timedelta(days=30))
    assert local_slack.requests == 4 and local_slack.messages == []
    store.close()


def test_smtp_refusal_is_retried_then_delivered_once(smtp: LocalSMTP, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    _enqueue(store, _notification(), ["email"])
    d = _deliverer(store, {"email": _email(smtp)})
    smtp.refuse_code = 451  # "try again later", at DATA
    now = NOW
    for attempt in (1, 2):
        assert d.deliver_due(now) == 0
        (entry,) = store.outbox()
        assert entry.status == "pending" and entry.attempts == attempt and "451" in (entry.last_error or "")
        assert d.deliver_due(now) == 0  # not due yet
        now = entry.next_attempt_at
    assert smtp.messages == []
    smtp.refuse_code = None
    assert d.deliver_due(now) == 1
    assert smtp.wait_for(1)
    (entry,) = store.outbox()
    assert entry.status == "sent" and entry.attempts == 3
    d.deliver_due(now + timedelta(days=2))
    assert len(smtp.messages) == 1
    store.close()


def test_smtp_permanent_refusal_fails_and_an_unreachable_server_is_retried(smtp: LocalSMTP, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    _enqueue(store, _notification(tag="p1x"), ["email"])
    _enqueue(store, _notification(tag="u2x"), ["down"])
    smtp.refuse_code = 554
    d = _deliverer(store, {"email": _email(smtp), "down": _email(port=_free_port())})
    d.deliver_due(NOW)
    refused, unreachable = store.outbox()
    assert refused.status == "failed" and refused.attempts == 1 and "554" in (refused.last_error or "")
    assert unreachable.status == "pending" and "ConnectionRefusedError" in (unreachable.last_error or "")
    smtp.refuse_code = None
    d.deliver_due(NOW + timedelta(days=1))
    assert store.outbox("failed")[0].id == refused.id and smtp.messages == []
    store.close()


def test_pending_notifications_survive_a_restart_and_each_is_delivered_once(
        local_slack: LocalSlack, smtp: LocalSMTP, tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    channels = ["slack", "email"]
    tags = ["a0x", "b1x", "c2x"]

    def notifiers() -> dict[str, Notifier]:
        return {"slack": _slack_notifier(local_slack, "bot"), "email": _email(smtp)}

    store = SQLiteStore(path)
    _enqueue(store, _notification(tag=tags[0]), channels)
    first = _deliverer(store, notifiers())
    assert first.deliver_due(NOW) == 2
    # Two more runs, while Slack is down and the mail server says "later".
    later = NOW + timedelta(minutes=5)
    for tag in tags[1:]:
        _enqueue(store, _notification(tag=tag), channels, later)
    local_slack.fail_next(1000, 503, error="service_unavailable")
    smtp.refuse_code = 421
    assert first.deliver_due(later) == 0
    assert len(store.outbox("pending")) == 4 and len(store.outbox("sent")) == 2
    store.close()  # the daemon stops with notifications pending

    local_slack.heal()
    smtp.refuse_code = None
    store = SQLiteStore(path)
    # Reprocessing after the restart enqueues the first run again: the outbox keeps one entry per key.
    _enqueue(store, _notification(tag=tags[0]), channels, later)
    second = _deliverer(store, notifiers())
    _drain(second, store, later)
    assert store.outbox("pending") == [] and store.outbox("failed") == []
    assert len(store.outbox("sent")) == 6
    assert smtp.wait_for(3)
    for tag in tags:
        assert sum(tag in json.dumps(m["blocks"]) for m in local_slack.messages) == 1, tag
        assert sum(str(m["X-Cluster-Monitor-Key"]).endswith(tag) for m in smtp.messages) == 1, tag
    assert len(local_slack.messages) == 3 and len(smtp.messages) == 3
    store.close()


def test_delivery_is_paced_per_channel_on_the_injected_clock(
        local_slack: LocalSlack, smtp: LocalSMTP, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    for tag in ("a0x", "b1x", "c2x"):
        _enqueue(store, _notification(tag=tag), ["slack", "email"])
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    d = Deliverer(store, {"slack": _slack_notifier(local_slack, "webhook"), "email": _email(smtp)},
                  min_interval=1.0, sleep=sleep, monotonic=lambda: clock[0])
    assert d.deliver_due(NOW) == 6
    # Slack waits a second before its 2nd and 3rd message; email, sent in between, had waited already.
    assert slept == [1.0, 1.0]
    assert len(local_slack.messages) == 3 and smtp.wait_for(3)
    store.close()



# Titles in the scripts that came out as boxes in the old Pillow chart: accented, Cyrillic, Japanese.
JA, RU, FR = "ログイン時のエラー対応", "Запросы на возврат средств", "Révision de CV — café crème"


def multiscript_notification() -> Notification:
    """The email of the screenshots in docs/: a cost spike (a 3rd notice), an error rate, a disappeared
    cluster and a resolved one, with a cost chart and a share chart, titles in three scripts."""
    run_id = "2_trace_20261123_031000_support-bot"
    since = NOW - timedelta(days=8)

    def alert(kind: str, title: str, summary: str, **kw: Any) -> Alert:
        return Alert(fingerprint=f"fp-{kind}", rule=kind, kind=kind, summary=summary, run_id=run_id,
                     job_name="Support bot", level="trace", cluster_title=title,
                     links=(Link("Open run", LINKS.run(run_id)), Link("Open cluster", LINKS.cluster(run_id, 0))),
                     **kw)

    alerts = (
        alert("cluster_avg_cost", JA, "Average cost $0.0420 per item is above $0.0200", severity="critical",
              cluster_id=0, metric="avg_cost", value=0.042, threshold=0.02, previous_value=0.011, unit="usd",
              firing_since=since, notice=3),
        alert("error_rate", RU, "Error rate 18.0% is at or above 10.0% (36 of 200 items)", severity="critical",
              cluster_id=1, metric="error_rate", value=0.18, threshold=0.1, previous_value=0.02, unit="ratio",
              firing_since=NOW),
        alert("disappeared", FR, "Cluster disappeared (had 120 items, 8.0% of traffic)", severity="warning",
              metric="share", value=0.0, previous_value=0.08, unit="ratio"),
        alert("p95_latency", "Python code review", "Resolved: p95 latency back under 20.00 s", severity="info",
              status="resolved", firing_since=NOW - timedelta(days=2, hours=5), resolved_at=NOW),
    )
    cost = Chart(metric="avg_cost", label="Average cost per item", unit="usd", bars=(
        ChartBar(JA, 0.011, 0.042, alert=True), ChartBar(RU, 0.006, 0.0071), ChartBar("Python code review", 0.004,
                                                                                       0.0038),
        ChartBar(FR, 0.009, None), ChartBar("日本語の請求書に関する質問", None, 0.012)))
    share = Chart(metric="share", label="Share of traffic", unit="ratio", bars=(
        ChartBar(FR, 0.08, None, alert=True), ChartBar(JA, 0.22, 0.31), ChartBar(RU, 0.18, 0.16),
        ChartBar("Python code review", 0.3, 0.29)))
    return Notification(
        key=f"run:{run_id}", project_id=2, run_id=run_id, job_name="Support bot", level="trace",
        window_start=NOW - timedelta(days=7), window_end=NOW, alerts=alerts, run_url=LINKS.run(run_id),
        host=LINKS.base, created_at=NOW, charts=(cost, share))


# (name, window size, extra Chromium flags): light, dark (the OS scheme and Blink's preferred scheme), phone.
RENDERS = [
    ("light", "680,1260", []),
    ("dark", "680,1260", ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]),
    ("narrow", "375,1340", []),
]


def _chromium(page: Path, profile: Path, size: str, flags: list[str], *out: str) -> str:
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is installed by ./dev setup (apt-get install chromium)"
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={size}", *flags,
                           *out, page.as_uri()], check=True, capture_output=True, timeout=120, text=True)
    return done.stdout


@pytest.mark.parametrize(("name", "size", "flags"), RENDERS, ids=[r[0] for r in RENDERS])
def test_email_html_renders_in_headless_chromium(name: str, size: str, flags: list[str], tmp_path: Path) -> None:
    """Renders the email's HTML in Debian's chromium: light, dark and phone-narrow, titles in three scripts.
    Keeps the screenshots in tests/artifacts/ (those in docs/ come from here)."""

    parts = render.render_email(multiscript_notification())
    page = tmp_path / "email.html"
    page.write_text(parts.html)
    out = Path(f"tests/artifacts/email-{name}.png").resolve()
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    _chromium(page, tmp_path / "profile", size, flags, f"--screenshot={out}")
    width, height = (int(x) for x in size.split(","))
    with Image.open(out) as img:
        rgb = img.convert("RGB")
        assert img.size == (width, height)
        colours = rgb.getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 50  # something was drawn: a blank page is one colour
        # The page around the card follows the reader's colour scheme.
        background = rgb.getpixel((2, 2))
        assert isinstance(background, tuple)
        if name == "dark":
            assert max(background) < 40, background
        else:
            assert min(background) > 230, background
        # The bars are drawn in their colours: this run's red (an alert) and blue, and the previous run's grey.
        drawn = {c for _, c in colours}
        hot, now = ((248, 113, 113), (96, 165, 250)) if name == "dark" else ((220, 38, 38), (37, 99, 235))
        assert hot in drawn and now in drawn
    # Nothing is wider than the window: on a phone the card, titles and bars shrink instead of scrolling.
    # Measured in a frame of the window's width (headless Chromium lays --dump-dom out at 500 px at least).
    probe = tmp_path / "probe.html"
    probe.write_text(
        f'<!DOCTYPE html><html><body style="margin:0"><iframe id="f" width="{width}" height="{height}" '
        f'style="border:0" srcdoc="{html.escape(parts.html, quote=True)}"></iframe><script>'
        'window.addEventListener("load", function () { var d = document.getElementById("f").contentDocument;'
        ' document.body.setAttribute("data-scroll-width", d.documentElement.scrollWidth); });</script></body></html>')
    dom = _chromium(probe, tmp_path / "profile", f"{max(width, 500)},{height}", flags, "--dump-dom")
    scroll = re.search(r'data-scroll-width="(\d+)"', dom)
    assert scroll is not None and int(scroll.group(1)) <= width, scroll


def test_a_resolved_notice_replies_in_the_thread_of_the_alert_it_resolves(
        local_slack: LocalSlack, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    d = _deliverer(store, {"slack": _slack_notifier(local_slack, "bot")})
    fired = _notification(1, tag="fired")
    _enqueue(store, fired, ["slack"])
    _drain(d, store, NOW)
    first_ts = local_slack.messages[0]["ts"]
    assert local_slack.messages[0].get("thread_ts") is None
    resolved_alert = msgspec.structs.replace(fired.alerts[0], status="resolved", summary="Resolved: cost is back")
    resolved = msgspec.structs.replace(fired, key="run:resolved", alerts=(resolved_alert,))
    other = _notification(1, tag="other")
    _enqueue(store, resolved, ["slack"])
    _enqueue(store, msgspec.structs.replace(other, alerts=(msgspec.structs.replace(
        other.alerts[0], fingerprint="fp-unrelated"),)), ["slack"])
    _drain(d, store, NOW + timedelta(hours=1))
    by_text = {m["ts"]: m for m in local_slack.messages}
    replies = [m for m in by_text.values() if m.get("thread_ts")]
    assert len(replies) == 1 and replies[0]["thread_ts"] == first_ts
    assert "Resolved" in json.dumps(replies[0]["blocks"])
    store.close()


# --- issue 17: reminders and resolved notices that say so; charts of what the alert is about ---------------

def test_reminders_count_their_notices_and_resolved_notices_say_how_long_it_lasted(
        local_slack: LocalSlack, smtp: LocalSMTP) -> None:
    from monitor.rules.lifecycle import apply_lifecycle

    start = datetime(2026, 11, 23, 3, 10, tzinfo=UTC)
    alert = Alert(fingerprint="fp-err", rule="error_rate", kind="error_rate", severity="critical",
                  summary="Error rate 18.0% is at or above 10.0%", run_id="r", job_name="Support bot", level="trace",
                  cluster_id=0, cluster_title="Refund requests", lineage_id="L1", metric="error_rate", value=0.18,
                  threshold=0.1, unit="ratio")
    states: dict[str, Any] = {}
    told: list[Alert] = []
    # A daily job, reminders every 48 h: told on day 0, reminded on days 2 and 4, resolved on day 5.
    for day in range(6):
        lc = apply_lifecycle([alert] if day < 5 else [], states, run_id=f"r{day}", job_key="j",
                             now=start + timedelta(days=day, minutes=day), repeat_interval=timedelta(hours=48),
                             present_lineages={"L1": "Refund requests"})
        states |= {s.fingerprint: s for s in lc.states}
        told += lc.notify
    assert [(a.status, a.notice) for a in told] == [("firing", 1), ("firing", 2), ("firing", 3), ("resolved", 1)]
    assert all(a.firing_since == start for a in told)
    notes = [render.lifecycle_note(a, ZoneInfo("UTC")) for a in told]
    assert notes == ["", "Still firing since 23 Nov 03:10, 2nd notice", "Still firing since 23 Nov 03:10, 3rd notice",
                     "Lasted 5 days (firing since 23 Nov 03:10)"]
    # As people receive them: the 3rd notice, then the resolved one, in Slack and by email.
    slack_n = SlackNotifier(webhook_url=local_slack.webhook_url)
    for k, a in ((2, told[2]), (3, msgspec.structs.replace(told[3], job_name="Support bot", level="trace"))):
        n = Notification(key=f"k{k}", project_id=2, run_id=f"r{k}", job_name="Support bot", level="trace",
                         window_start=NOW, window_end=NOW, alerts=(a,), run_url=LINKS.run(f"r{k}"))
        assert slack_n.send(n).ok and _email(smtp).send(n).ok
    assert local_slack.wait_for(2) and smtp.wait_for(2)
    reminder, resolved = (json.dumps(m["blocks"], ensure_ascii=False) for m in local_slack.messages)
    assert "_Still firing since 23 Nov 03:10, 3rd notice_" in reminder and "1 alert still firing" in reminder
    assert "_Lasted 5 days (firing since 23 Nov 03:10)_" in resolved
    subjects = [str(m["Subject"]) for m in smtp.messages]
    assert subjects[0].startswith("[cluster-monitor] 1 alert still firing: Error rate in Refund requests")
    for m, note in zip(smtp.messages, notes[2:], strict=True):
        for kind in ("plain", "html"):
            body = m.get_body(preferencelist=(kind,))
            assert isinstance(body, EmailMessage) and note in body.get_content()
