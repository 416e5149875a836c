"""Notifications to Slack Block Kit and to email (subject, text, HTML), from Jinja templates.

Templates write the words; Python builds the structure. Slack messages are assembled from slack-sdk's
Block Kit model classes, which check Slack's limits when serialised, so a template cannot produce an
invalid message. Untrusted text (titles, descriptions, trace ids, job and model names) is escaped in
exactly one place per medium: the `mrkdwn` filter for Slack, autoescape for HTML, and `header_safe`
for mail subjects. The environment is sandboxed because people edit the templates.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from monitor.alerts import Alert, Notification


def _shipped_templates() -> Path:
    """Inside the package when installed from a wheel or sdist (setup.py copies the top-level templates/
    there at build time); the checkout's templates/ when run from source or an editable install."""
    here = Path(__file__).resolve().parents[1]
    inside = here / "templates"
    return inside if inside.is_dir() else here.parent / "templates"


SHIPPED_TEMPLATES = _shipped_templates()
ICONS = {"critical": "🔴", "warning": "🟠", "info": "🔵", "resolved": "✅"}
COLORS = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}
KIND_LABELS = {
    "cost_spike": "Cost spike", "cluster_cost": "Cluster cost", "cluster_avg_cost": "Average cost",
    "error_rate": "Error rate", "error_spike": "Error spike", "p95_latency": "p95 latency",
    "share_shift": "Traffic shift", "new_cluster": "New cluster", "disappeared": "Cluster disappeared",
    "split": "Cluster split", "merge": "Clusters merged", "mix_shift": "Traffic mix shift",
    "stale_source": "No new runs", "source_errors": "PostHog unreachable",
}


def kind_label(kind: str) -> str:
    """What people read for an alert kind; rules show their configured name (letters, digits, `_.- `)."""
    prefix, _, name = kind.partition(":")
    if prefix in ("rule", "rule_change") and name:
        return f"Rule {name}"
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())
# Slack's documented limits for the blocks used here.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_URL = 3000


def mrkdwn(value: Any) -> str:
    """Escape text for Slack mrkdwn: no mention (`<!channel>`), link (`<url|x>`) or entity can form."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BIDI_CONTROLS.sub("", _CONTROL.sub(" ", text))


def header_safe(value: Any) -> str:
    """A one-line string for mail headers: newlines and control characters become spaces."""
    return _BIDI_CONTROLS.sub("", re.sub(r"\s+", " ", _CONTROL.sub(" ", "" if value is None else str(value))).strip())


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


# Bidirectional-override and isolate controls: a title holding U+202E reverses the text after it on
# screen ("level · trace" shown as "level · ecart"), which is how spoofed text hides in plain sight.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def strip_bidi(value: Any) -> Any:
    return _BIDI_CONTROLS.sub("", value) if isinstance(value, str) else value


# What renders a notification: the shipped templates, or a user's folder in front of them.
Templates = ImmutableSandboxedEnvironment


def template_env(override: Path | None = None) -> Templates:
    """The templates to render with: `override` (a user's folder, CLUSTER_MONITOR_TEMPLATES, read by the
    wiring) first, falling back to the shipped ones template by template, so a user overrides one file
    by giving a file of the same name and keeps the rest."""
    dirs = [override] if override is not None else []
    env = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in [*dirs, SHIPPED_TEMPLATES]]),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
        finalize=strip_bidi)
    env.filters["mrkdwn"] = mrkdwn
    env.filters["header_safe"] = header_safe
    return env


_SHIPPED = template_env()


def check_templates(templates: Templates | None = None) -> list[str]:
    """Render every template with a sample notification: problems as 'template: error' lines."""
    from datetime import UTC, datetime, timedelta

    from monitor.alerts import Link

    now = datetime(2026, 1, 8, 3, 0, tzinfo=UTC)
    a = Alert(fingerprint="f", rule="cost_spike", kind="cost_spike", severity="critical", summary="s", run_id="r",
              job_name="j", level="trace", cluster_id=0, cluster_title="t", previous_title="p",
              top_trace_ids=("x",), links=(Link("Open run", "https://x"),))
    n = Notification(key="k", project_id=1, run_id="r", job_name="j", level="trace", window_start=now - timedelta(7),
                     window_end=now, alerts=(a,), run_url="https://x")
    problems = []
    for name, fn in (("slack", lambda: render_slack(n, templates=templates)),
                     ("email", lambda: render_email(n, templates=templates))):
        try:
            fn()
        except (TemplateError, ValueError) as exc:
            problems.append(f"{name} templates: {type(exc).__name__}: {exc}{_where(exc)}")
    return problems


def _where(exc: BaseException) -> str:
    """' (file, line N)' of the template that failed: Jinja's own message names neither."""
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        return f" ({exc.filename or exc.name}, line {exc.lineno})"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):  # Jinja rewrites tracebacks to point into the template
            return f" ({frame.filename}, line {frame.lineno})"
    return ""


@dataclass(frozen=True)
class SlackMessage:
    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class EmailParts:
    subject: str
    text: str
    html: str
    # Inline images by content id, referenced from the HTML as cid:<id>.
    images: dict[str, bytes] = field(default_factory=dict)


def _fmt_time(dt: Any, tz: ZoneInfo) -> str:
    return f"{dt.astimezone(tz):%Y-%m-%d %H:%M} {tz.key if tz.key != 'UTC' else 'UTC'}"


def _common(n: Notification, tz: ZoneInfo) -> dict[str, Any]:
    firing = [a for a in n.alerts if a.status != "resolved"]
    resolved = [a for a in n.alerts if a.status == "resolved"]
    top = firing[0] if firing else (resolved[0] if resolved else None)
    worst = firing[0].severity if firing else "resolved"
    headline = ""
    if top is not None:
        label = kind_label(top.kind)
        headline = f"{label} in {top.cluster_title}" if top.cluster_title else label
    return {"notification": n, "n_firing": len(firing), "n_resolved": len(resolved), "icon": ICONS.get(worst, ""),
            "headline": headline, "window_start": _fmt_time(n.window_start, tz),
            "window_end": _fmt_time(n.window_end, tz), "tz_name": tz.key, "kind_labels": _Labels()}


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return kind_label(key)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_slack(n: Notification, *, tz: ZoneInfo | None = None, max_alerts: int = 10,
                 templates: Templates | None = None) -> SlackMessage:
    tz = tz or ZoneInfo("UTC")
    env = templates or _SHIPPED
    ctx = _common(n, tz)
    header = _truncate(header_safe(env.get_template("slack/header.txt.j2").render(**ctx)), MAX_HEADER)
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header, emoji=True))]
    shown = list(n.alerts[:max_alerts])
    for a in shown:
        icon = ICONS["resolved"] if a.status == "resolved" else ICONS.get(a.severity, "")
        text = env.get_template("slack/alert.md.j2").render(
            alert=a, icon=icon, kind_label=("Resolved · " if a.status == "resolved" else "")
            + kind_label(a.kind))
        fields = _fields(a)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_truncate(text, MAX_SECTION_TEXT), verbatim=True),
                                   fields=fields or None))
        buttons = [ButtonElement(text=PlainTextObject(text=_truncate(link.label, MAX_BUTTON_TEXT)),
                                 url=link.url, action_id=f"link-{i}-{k}")
                   for k, link in enumerate(a.links[:5]) if len(link.url) <= MAX_URL
                   for i in [len(blocks)]]
        if buttons:
            blocks.append(ActionsBlock(elements=buttons))
    more = len(n.alerts) - len(shown)
    if more > 0:
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f"…and {more} more alert{'s' if more != 1 else ''}: <{n.run_url}|open the run in PostHog>",
            verbatim=True)))
    blocks.append(DividerBlock())
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text=_truncate(env.get_template("slack/context.md.j2").render(**ctx), MAX_SECTION_TEXT), verbatim=True)]))
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"{len(blocks)} blocks is over Slack's {MAX_BLOCKS}")
    # to_dict() validates every block against Slack's limits (SlackObjectFormationError otherwise).
    dicts = [b.to_dict() for b in blocks]
    fallback = header + "\n" + "\n".join(
        f"- {a.cluster_title + ': ' if a.cluster_title else ''}{a.summary}" for a in shown)
    return SlackMessage(text=mrkdwn(_truncate(fallback, 3000)), blocks=dicts)


def _fields(a: Alert) -> list[MarkdownTextObject]:
    def fmt(v: float | None) -> str | None:
        if v is None:
            return None
        if a.unit == "usd":
            return f"${v:,.4f}" if abs(v) < 1 else f"${v:,.2f}"
        if a.unit == "ratio":
            return f"{v:.1%}"
        if a.unit == "s":
            return f"{v:.2f} s"
        return f"{v:,.4g}"

    out = []
    for label, v in (("Now", a.value), ("Threshold", a.threshold), ("Previous run", a.previous_value)):
        s = fmt(v)
        if s is not None:
            out.append(MarkdownTextObject(text=f"*{label}*\n{s}", verbatim=True))
    return out


def render_email(n: Notification, *, tz: ZoneInfo | None = None, max_alerts: int = 25,
                 chart: bytes | None = None, templates: Templates | None = None) -> EmailParts:
    tz = tz or ZoneInfo("UTC")
    env = templates or _SHIPPED
    ctx = _common(n, tz)
    shown = list(n.alerts[:max_alerts])
    ctx.update(alerts=shown, more=len(n.alerts) - len(shown), colors=COLORS | {"resolved": "#059669"},
               chart_cid="chart" if chart else None)
    subject = _truncate(header_safe(env.get_template("email/subject.txt.j2").render(**ctx)), 200)
    ctx["subject"] = subject
    text = env.get_template("email/notification.txt.j2").render(**ctx)
    html = env.get_template("email/notification.html.j2").render(**ctx)
    return EmailParts(subject=subject, text=text, html=html, images={"chart": chart} if chart else {})
