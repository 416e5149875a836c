"""Alerts that explain themselves, end to end: the drift scenario through the whole pipeline, read back from
the local Slack and SMTP servers. Each cost spike names the model behind it, each error alert the error
behind it, and the one explanation query is asked only for runs whose message has such alerts."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
import pytest

from monitor import kinds
from monitor.alerts import Alert, Notification
from monitor.links import PostHogLinks
from monitor.local.posthog.generator import generate
from monitor.local.posthog.scenarios import TOPICS
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from monitor.notify.render import render_slack
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient
from monitor.stages import explain, load
from monitor.stages.discover import DiscoveredRun
from monitor.stages.explain import QUERY_NAME
from tests.conftest import API_KEY, END, PostHogEnv, make_config, monitor_for, new_project_id

# What the drift scenario does (monitor/local/posthog/scenarios.py): shipping moves to gpt-4o, billing's
# payments provider fails with this error.
SWITCHED_MODEL = "gpt-4o"
SURGE_ERROR = "UpstreamError: payments provider returned 502 Bad Gateway"
TOPIC_TITLES = {t.title for t in TOPICS.values()}


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
    # Every level: an evaluation cluster's cost is that of the generations its evaluations judged, and is
    # explained by their models as the other levels' are.
    m = monitor_for(make_config(drift_posthog, slack, smtp, tmp_path / "state.sqlite",
                                watch={"levels": ["trace", "generation", "evaluation"]}))
    seen = len(drift_posthog.requests(method="POST"))
    try:
        result = m.cycle()
    finally:
        m.store.close()
    assert result.ok, result.failed

    spikes = _slack_sections(slack.messages, "Cost spike")
    assert spikes, "the drift scenario has a cost spike"
    spiked_levels = {n.level for n in result.notices for a in n.alerts
                     if a.kind == kinds.COST_SPIKE.name and a.status == "firing"}
    assert spiked_levels == {"trace", "generation", "evaluation"}, spiked_levels
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


def _discovered(run: dict[str, Any]) -> DiscoveredRun:
    return DiscoveredRun(run_id=run["run_id"], level=run["level"], job_id=run["job_id"], job_name=run["job_name"],
                         event=queries.EVENT_FOR_LEVEL[run["level"]], event_uuid=run["event_uuid"],
                         emitted_at=run["emitted_at"], window_end=run["window_end"])


@pytest.mark.parametrize(("level", "summaries"),
                         [("trace", True), ("generation", True), ("trace", False), ("evaluation", False)])
def test_representative_traces_carry_summary_titles_where_posthog_wrote_them(level: str, summaries: bool) -> None:
    # The generator writes PostHog's summary events ($ai_trace_summary / $ai_generation_summary, titled by
    # the topic) with the embeddings; without them the query still answers, and traces go by their ids.
    # An evaluation's item is titled by the judge's reasoning, which every evaluation has.
    ds = generate("steady", days=2, team_id=new_project_id(), end=END, scale=0.05, embeddings=summaries,
                  evaluations=level == "evaluation")
    server = LocalPostHog(api_key=API_KEY)
    server.load(ds)
    server.start()
    run_row = max((r for r in ds.runs if r["level"] == level), key=lambda r: r["window_end"])
    d = _discovered(run_row)
    client = PostHogClient(server.url, ds.team_id, API_KEY)
    try:
        run = load.fetch_run(client, d)
        cluster = max((c for c in run.clusters if not c.is_noise), key=lambda c: c.size)
        alert = Alert(fingerprint="f", rule="r", kind=kinds.COST_SPIKE.name, severity="critical", summary="s",
                      run_id=run.run_id, job_name=run.job_name, level=level, cluster_id=cluster.cluster_id,
                      cluster_title=cluster.title, metric=kinds.COST_SPIKE.metric, value=1.0)
        links = PostHogLinks("https://eu.posthog.com", ds.team_id)
        [told] = explain.explain_alerts(client, run, None, d, [alert], None, links)
    finally:
        client.close()
        server.stop()
    assert told.explanation and told.explanation[0].startswith("Models of this cluster's generations: ")
    reasonings = {json.loads(e[3]).get("$ai_evaluation_reasoning") for e in ds.events if e[1] == "$ai_evaluation"}
    assert 2 <= len(told.traces) <= 3
    ids = [t.trace_id for t in told.traces]
    assert len(set(ids)) == len(ids)  # each trace once, at generation level too
    for t in told.traces:
        assert t.url.startswith(f"https://eu.posthog.com/project/{ds.team_id}/ai-observability/traces/{t.trace_id}?")
        assert "timestamp=" in t.url and (("event=" in t.url) == (level == "generation"))
        if level == "evaluation":
            assert t.title and t.title in reasonings, t.title
        else:
            assert (t.title in TOPIC_TITLES) if summaries else t.title == ""
    # Titles come from users' apps: inert in Slack.
    told = msgspec.structs.replace(told, traces=tuple(msgspec.structs.replace(t, title="*bold* <!channel>")
                                                      for t in told.traces))
    n = Notification(key="k", project_id=ds.team_id, run_id=run.run_id, job_name=run.job_name, level=level,
                     window_start=run.window_start, window_end=run.window_end, alerts=(told,), run_url="")
    section = render_slack(n).blocks[1]["text"]["text"]
    assert "<!channel>" not in section and "*bold*" not in section
