"""Alerts that explain themselves, end to end: the drift scenario through the whole pipeline, read back from
the local Slack and SMTP servers. Each cost spike names the model behind it, each error alert the error
behind it, and the one explanation query is asked only for runs whose message has such alerts."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from monitor.stages.explain import QUERY_NAME
from tests.conftest import PostHogEnv, make_config, monitor_for

# What the drift scenario does (monitor/local/posthog/scenarios.py): shipping moves to gpt-4o, billing's
# payments provider fails with this error.
SWITCHED_MODEL = "gpt-4o"
SURGE_ERROR = "UpstreamError: payments provider returned 502 Bad Gateway"


def _slack_sections(messages: list[dict[str, Any]], label: str) -> list[str]:
    """The text of every firing alert section of that kind label (resolved notices say 'Resolved · ')."""
    out = []
    for msg in messages:
        for b in msg.get("blocks", []):
            text = (b.get("text") or {}).get("text", "") if b.get("type") == "section" else ""
            if f"*{label}*" in text:
                out.append(text)
    return out


def _email_parts(messages: list[EmailMessage], label: str) -> list[str]:
    """Every firing alert paragraph of that kind label in the plain-text parts."""
    out = []
    for msg in messages:
        part = msg.get_body(preferencelist=("plain",))
        assert part is not None
        text = part.get_content().replace("\r\n", "\n")  # SMTP's line ends
        out += [p for p in text.split("\n\n") if re.match(rf"\[[A-Z]+\] {re.escape(label)}\b", p.strip())]
    return out


def _html(messages: list[EmailMessage]) -> str:
    bodies = [m.get_body(preferencelist=("html",)) for m in messages]
    return "\n".join(b.get_content() for b in bodies if b is not None)


def test_cost_spikes_name_the_model_and_error_alerts_the_error_in_slack_and_email(
        drift_posthog: PostHogEnv, slack: LocalSlack, smtp: LocalSMTP, tmp_path: Path) -> None:
    m = monitor_for(make_config(drift_posthog, slack, smtp, tmp_path / "state.sqlite"))
    seen = len(drift_posthog.requests(method="POST"))
    try:
        result = m.cycle()
    finally:
        m.store.close()
    assert result.ok, result.failed

    spikes = _slack_sections(slack.messages, "Cost spike")
    assert spikes, "the drift scenario has a cost spike"
    for text in spikes:
        assert f"{SWITCHED_MODEL} went from " in text and "of this cluster's generations" in text, text
    errors = _slack_sections(slack.messages, "Error rate") + _slack_sections(slack.messages, "Error spike")
    assert errors, "the drift scenario has an error surge"
    for text in errors:
        assert "Top error: \u201c" in text and "HTTP " in text, text
    assert any(SURGE_ERROR in t and "HTTP 502" in t for t in errors)
    # Representative traces open in PostHog at the trace's time.
    assert re.search(r"<https?://[^|>]+/ai-observability/traces/[^|>?]+\?timestamp=[^|>]+\|", "\n".join(spikes))

    mail_spikes = _email_parts(smtp.messages, "Cost spike")
    assert len(mail_spikes) == len(spikes)
    for text in mail_spikes:
        assert f"  - {SWITCHED_MODEL} went from " in text, text
    mail_errors = _email_parts(smtp.messages, "Error rate") + _email_parts(smtp.messages, "Error spike")
    assert len(mail_errors) == len(errors)
    for text in mail_errors:
        assert "  - Top error: \u201c" in text, text
    html = _html(smtp.messages)
    assert f"<li>{SWITCHED_MODEL} went from " in html and SURGE_ERROR in html

    # One explanation query per run whose message has firing cost, latency or error alerts, none otherwise.
    mine = drift_posthog.requests(method="POST")[seen:]
    asked = [r for r in mine if r.get("name") == f"cluster-monitor:{QUERY_NAME}"]
    explained_runs = {n.run_id for n in result.notices if any(a.explanation for a in n.alerts)}
    assert asked and {r["values"]["run_id"] for r in asked} == explained_runs
    assert len(asked) == len(explained_runs)
    assert {r["status"] for r in asked} == {200}
