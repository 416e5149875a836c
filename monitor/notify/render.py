"""Notifications to Slack Block Kit and to email (subject, text, HTML), from Jinja templates.

Templates write the words; Python builds the structure. Slack messages are assembled from slack-sdk's
Block Kit model classes, which check Slack's limits when serialised, so a template cannot produce an
invalid message. Untrusted text (titles, descriptions, trace ids, job and model names) is made safe in
two steps. First `for_display` bounds it: each value is cut to its length in DISPLAY_LIMITS (the full
value stays in the data, the store and the links), made one line, and stripped of control characters
(NUL, BEL, ...) and bidirectional overrides, before any template sees it; the cut happens before any
other work, so a 1 MB title costs no more than a short one. Then it is escaped in exactly one place per
medium: the `mrkdwn` filter for Slack (which also neutralises Slack's formatting characters), autoescape
for HTML, and `header_safe` for mail subjects. The environment is sandboxed because people edit the
templates.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup
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

from monitor import kinds
from monitor.alerts import Alert, Chart, Link, Notification
from monitor.notify.actions import action_buttons


def _shipped_templates() -> Path:
    """Inside the package when installed from a wheel or sdist (setup.py copies the top-level templates/
    there at build time); the checkout's templates/ when run from source or an editable install."""
    here = Path(__file__).resolve().parents[1]
    inside = here / "templates"
    return inside if inside.is_dir() else here.parent / "templates"


SHIPPED_TEMPLATES = _shipped_templates()
ICONS = {"critical": "🔴", "warning": "🟠", "info": "🔵", "resolved": "✅"}
COLORS = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}
# What people read for an alert kind (monitor/kinds.py): its label, or "Rule <name>".
kind_label = kinds.label
# Slack's documented limits for the blocks used here.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75


# Slack mrkdwn has no escape for its formatting characters, so those in data are swapped for look-alikes
# Slack does not parse: `*bold*`, `~strike~` and backticks (code, and the end of the code span a run id
# sits in) always; `_` only where it could open or close italics (a word boundary), so run ids and
# model names such as `2_trace_20261101` read and copy unchanged.
_MRKDWN_LOOKALIKES = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
_ITALIC_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def mrkdwn(value: Any) -> str:
    """Data as literal Slack mrkdwn, on one line: no mention (`<!channel>`), link (`<url|x>`), entity,
    bold, italics, strike, code or quote can form, and no line break can fake a line of the message."""
    text = one_line(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").translate(_MRKDWN_LOOKALIKES)
    text = _ITALIC_UNDERSCORE.sub("\u02cd", text)
    # A line that starts with ">" is a quote: data never starts one (it is one line, so only its start counts).
    return "\u203a" + text[4:] if text.startswith("&gt;") else text


def one_line(value: Any) -> str:
    """Text without control characters, bidirectional overrides or line breaks (runs of blanks become one)."""
    text = "" if value is None else str(value)
    return _BLANKS.sub(" ", _BIDI_CONTROLS.sub("", _CONTROL.sub(" ", text))).strip()


_BLANKS = re.compile(r"\s+")


def header_safe(value: Any) -> str:
    """A one-line string for mail headers: newlines and control characters become spaces."""
    return one_line(value)


# How much of each untrusted value is shown (characters; the full value stays in the data and the links).
# A PostHog cluster title is a few words and a summary one sentence: the limits leave room for long
# ones and keep a message readable (and Slack's 3,000-character sections whole) when data is absurd.
DISPLAY_LIMITS = {
    "title": 150,  # cluster titles, current and previous, in alerts and charts
    "summary": 600,  # an alert's sentence, which may quote titles and model names
    "job_name": 100,
    "run_id": 160,
    "level": 40,
    "trace_id": 80,
    "model": 80,  # labels: model names and other values
    "link_label": 75,  # Slack's button text limit
}
# A link longer than this is left out rather than cut (a cut URL opens the wrong page): Slack's limit.
MAX_URL = 3000


def display(value: Any, limit: int) -> str:
    """`value` as shown to people: at most `limit` characters, one line, no control or bidi characters.

    Costs O(limit), not O(len(value)): only the first 4 x limit characters are looked at, room enough for
    the blanks and controls cleaning removes; a value beyond them is shown cut, with its ellipsis."""
    text = "" if value is None else str(value)
    head = one_line(text[: limit * 4 + 1])
    cut = len(head) > limit or len(text) > limit * 4 + 1
    return head[: limit - 1].rstrip() + "…" if cut else head


def for_display(n: Notification) -> Notification:
    """The notification as templates see it: every value from data bounded by DISPLAY_LIMITS."""
    lim = DISPLAY_LIMITS
    alerts = tuple(msgspec.structs.replace(
        a, summary=display(a.summary, lim["summary"]), run_id=display(a.run_id, lim["run_id"]),
        job_name=display(a.job_name, lim["job_name"]), level=display(a.level, lim["level"]),
        cluster_title=display(a.cluster_title, lim["title"]) if a.cluster_title else a.cluster_title,
        previous_title=display(a.previous_title, lim["title"]) if a.previous_title else a.previous_title,
        top_trace_ids=tuple(display(t, lim["trace_id"]) for t in a.top_trace_ids[:5]),
        labels={display(k, lim["model"]): display(v, lim["model"]) for k, v in list(a.labels.items())[:10]},
        links=tuple(Link(display(x.label, lim["link_label"]), x.url) for x in a.links if len(x.url) <= MAX_URL))
        for a in n.alerts)
    charts = tuple(msgspec.structs.replace(c, bars=tuple(
        msgspec.structs.replace(b, title=display(b.title, lim["title"])) for b in c.bars)) for c in n.charts)
    return msgspec.structs.replace(
        n, run_id=display(n.run_id, lim["run_id"]), job_name=display(n.job_name, lim["job_name"]),
        level=display(n.level, lim["level"]), alerts=alerts, charts=charts,
        run_url=n.run_url if len(n.run_url) <= MAX_URL else "")


# C0 and C1 controls (NUL, BEL, ESC, CSI, ...) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Bidirectional-override and isolate controls: a title holding U+202E reverses the text after it on
# screen ("level · trace" shown as "level · ecart"), which is how spoofed text hides in plain sight.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def strip_bidi(value: Any) -> Any:
    """Every value a template prints; markup the template made itself (a macro's output) is left as it is."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return _BIDI_CONTROLS.sub("", value)


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
    spike = kinds.COST_SPIKE
    a = Alert(fingerprint="f", rule=spike.name, kind=spike.name, severity=spike.severity, summary="s", run_id="r",
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
            "window_end": _fmt_time(n.window_end, tz), "tz_name": tz.key, "kind_labels": _Labels(),
            "still_firing": bool(firing) and all(a.notice > 1 for a in firing),
            "notes": {a.fingerprint: lifecycle_note(a, tz) for a in n.alerts}}


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return kind_label(key)


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _duration(seconds: float) -> str:
    """'3 days 4 h', '5 h 20 min', '12 min': the two largest units, what a person wants to know."""
    minutes = max(0, round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def _day(dt: Any, tz: ZoneInfo) -> str:
    local = dt.astimezone(tz)
    return f"{local.day} {local:%b %H:%M}"


def lifecycle_note(a: Alert, tz: ZoneInfo) -> str:
    """'Still firing since 23 Nov 04:00, 3rd notice' on a reminder, 'Lasted 2 days 4 h (since ...)' on a
    resolved notice; empty for a first notice and for one-off events."""
    if a.firing_since is None:
        return ""
    if a.status == "resolved":
        if a.resolved_at is None:
            return f"Had been firing since {_day(a.firing_since, tz)}"
        lasted = _duration((a.resolved_at - a.firing_since).total_seconds())
        return f"Lasted {lasted} (firing since {_day(a.firing_since, tz)})"
    if a.notice > 1:
        return f"Still firing since {_day(a.firing_since, tz)}, {_ordinal(a.notice)} notice"
    return ""


def _truncate(text: str, limit: int) -> str:
    """At most `limit` characters; an entity (`&amp;`) the cut would break is left out whole."""
    return text if len(text) <= limit else _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def render_slack(n: Notification, *, tz: ZoneInfo | None = None, max_alerts: int = 10,
                 templates: Templates | None = None, actions: bool = False) -> SlackMessage:
    """`actions`: "Silence 24h" and "Acknowledge" buttons on firing alerts (slack.actions; notify/actions.py)."""
    tz = tz or ZoneInfo("UTC")
    env = templates or _SHIPPED
    # The buttons carry the alert's full values (a silence must match the real title, not its display cut).
    raw = {a.fingerprint: a for a in n.alerts}
    n = for_display(n)
    ctx = _common(n, tz)
    header = _truncate(header_safe(env.get_template("slack/header.txt.j2").render(**ctx)), MAX_HEADER)
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header, emoji=True))]
    shown = list(n.alerts[:max_alerts])
    for a in shown:
        icon = ICONS["resolved"] if a.status == "resolved" else ICONS.get(a.severity, "")
        text = env.get_template("slack/alert.md.j2").render(
            alert=a, icon=icon, note=ctx["notes"][a.fingerprint],
            kind_label=("Resolved · " if a.status == "resolved" else "") + kind_label(a.kind))
        fields = _fields(a)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_truncate(text, MAX_SECTION_TEXT), verbatim=True),
                                   fields=fields or None))
        buttons = [ButtonElement(text=PlainTextObject(text=_truncate(link.label, MAX_BUTTON_TEXT)),
                                 url=link.url, action_id=f"link-{i}-{k}")
                   for k, link in enumerate(a.links[:5])
                   for i in [len(blocks)]]
        if actions:
            buttons += action_buttons(raw.get(a.fingerprint, a), n.project_id)
        if buttons:
            blocks.append(ActionsBlock(elements=buttons))
    more = len(n.alerts) - len(shown)
    if more > 0:
        where = f"<{n.run_url}|open the run in PostHog>" if n.run_url else "see the run in PostHog"
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f"…and {more} more alert{'s' if more != 1 else ''}: {where}", verbatim=True)))
    blocks.append(DividerBlock())
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text=_truncate(env.get_template("slack/context.md.j2").render(**ctx), MAX_SECTION_TEXT), verbatim=True)]))
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"{len(blocks)} blocks is over Slack's {MAX_BLOCKS}")
    # to_dict() validates every block against Slack's limits (SlackObjectFormationError otherwise).
    dicts = [b.to_dict() for b in blocks]
    # The fallback (notifications, screen readers) is mrkdwn too: data in it goes through the same filter.
    fallback = mrkdwn(header) + "\n" + "\n".join(
        f"- {mrkdwn(a.cluster_title) + ': ' if a.cluster_title else ''}{mrkdwn(a.summary)}" for a in shown)
    return SlackMessage(text=_truncate(fallback, 3000), blocks=dicts)


def _fields(a: Alert) -> list[MarkdownTextObject]:
    out = []
    for label, v in (("Now", a.value), ("Threshold", a.threshold), ("Previous run", a.previous_value)):
        s = fmt_value(v, a.unit)
        if s is not None:
            out.append(MarkdownTextObject(text=f"*{label}*\n{s}", verbatim=True))
    return out


def fmt_value(v: float | None, unit: str) -> str | None:
    if v is None:
        return None
    text = kinds.in_unit(v, unit)
    return text if text is not None else f"{v:,.4g}"


def _chart_view(c: Chart) -> dict[str, Any]:
    """A chart as the template draws it: bar lengths in percent of the largest value, values as text."""
    top = max([b.before or 0.0 for b in c.bars] + [b.now or 0.0 for b in c.bars]) or 1.0

    def pct(v: float | None) -> float:
        return 0.0 if not v or v <= 0 else max(1.0, round(100 * v / top, 1))

    bars = [{"title": b.title, "alert": b.alert, "before_pct": pct(b.before), "now_pct": pct(b.now),
             "before": "new" if b.before is None else fmt_value(b.before, c.unit),
             "now": "gone" if b.now is None else fmt_value(b.now, c.unit)} for b in c.bars]
    return {"label": c.label, "bars": bars}


def render_email(n: Notification, *, tz: ZoneInfo | None = None, max_alerts: int = 25,
                 templates: Templates | None = None) -> EmailParts:
    tz = tz or ZoneInfo("UTC")
    env = templates or _SHIPPED
    n = for_display(n)
    ctx = _common(n, tz)
    shown = list(n.alerts[:max_alerts])
    ctx.update(alerts=shown, more=len(n.alerts) - len(shown), colors=COLORS | {"resolved": "#059669"},
               charts=[_chart_view(c) for c in n.charts if c.bars])
    subject = _truncate(header_safe(env.get_template("email/subject.txt.j2").render(**ctx)), 200)
    ctx["subject"] = subject
    text = env.get_template("email/notification.txt.j2").render(**ctx)
    html = env.get_template("email/notification.html.j2").render(**ctx)
    return EmailParts(subject=subject, text=text, html=html)
