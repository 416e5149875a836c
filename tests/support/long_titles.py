"""One run's long text through the whole path, stage by stage, in CPU time: parse, diff, rules, charts, then Slack
and email rendered and delivered. Used by tests/integration/test_security.py (a 1 MB title) and by
`./dev bench long_titles` (bench/long_titles.py), which measures it against short text."""


from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from monitor.alerts import Alert, Notification
from monitor.config import ThresholdsConfig
from monitor.links import PostHogLinks
from monitor.local.posthog.generator import make_run_event
from monitor.matching import match_runs
from monitor.matching.lineage import assign_lineages
from monitor.metrics import ClusterMetrics
from monitor.notify.chart import alert_charts
from monitor.notify.email import EmailNotifier
from monitor.notify.slack import SlackNotifier
from monitor.rules.engine import RuleContext, evaluate
from monitor.rules.lifecycle import apply_lifecycle
from monitor.runs import run_from_properties

END = datetime(2026, 11, 20, 3, tzinfo=UTC)
LINKS = PostHogLinks("https://us.posthog.com", 2, "ai-observability")


@dataclass(frozen=True)
class PathResult:
    cpu: dict[str, float]  # stage -> CPU seconds
    notification: Notification

    @property
    def total(self) -> float:
        return sum(self.cpu.values())


def _props(day: int, title: str, job_name: str, run_label: str) -> dict[str, object]:
    return make_run_event(
        team_id=2, level="trace", window_end=END - timedelta(days=1 - day), job_id="job-1", job_name=job_name,
        run_label=run_label, clusters=[
            {"cluster_id": 0, "items": [f"a{day}-{i}" for i in range(20 + 30 * day)], "title": title,
             "description": title},
            {"cluster_id": 1, "items": [f"b{day}-{i}" for i in range(40)], "title": "Python code review"},
            {"cluster_id": 2, "items": [f"c{i}" for i in range(15)] if day == 0 else [],
             "title": "Invoice questions " + title[:50]}])


def through_pipeline(title: str, *, job_name: str, model: str, run_label: str, slack: SlackNotifier,
                     email: EmailNotifier) -> PathResult:
    """Two runs of one job whose cluster carries `title`: the second is diffed against the first, its cost,
    error and share alerts decided, charted, rendered and delivered. Returns CPU seconds per stage."""
    cpu: dict[str, float] = {}
    t = time.process_time()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.process_time()
        cpu[stage] = now - t
        t = now

    prev = run_from_properties(_props(0, "Login and sign-up " + title, job_name, run_label + "a"))
    new = run_from_properties(_props(1, title + " login", job_name, run_label + "b"))
    lap("parse")
    diff = match_runs(prev, new)
    lineages = assign_lineages(diff, {}, new, iter(f"lineage-{i}" for i in range(1000)).__next__).lineages
    lap("diff")
    metrics = {0: ClusterMetrics(0, items=50, total_cost=5.0, avg_cost=0.1, error_count=10, error_rate=0.2),
               1: ClusterMetrics(1, items=40, total_cost=1.0, avg_cost=0.025)}
    prev_metrics = {0: ClusterMetrics(0, items=20, total_cost=0.2, avg_cost=0.01, error_rate=0.0),
                    1: ClusterMetrics(1, items=40, total_cost=1.0, avg_cost=0.025),
                    2: ClusterMetrics(2, items=15, total_cost=0.3, avg_cost=0.02)}
    ctx = RuleContext(project_id=2, run=new, prev_run=prev, diff=diff, metrics=metrics, prev_metrics=prev_metrics,
                      lineages=lineages, prev_lineages={}, thresholds=ThresholdsConfig(), links=LINKS)
    alerts = [_with_model(a, model) for a in evaluate(ctx)]
    lc = apply_lifecycle(alerts, {}, run_id=new.run_id, job_key="job-1|trace", now=END,
                         repeat_interval=timedelta(hours=72))
    n = Notification(
        key=f"run:{new.run_id}", project_id=2, run_id=new.run_id, job_name=new.job_name, level=new.level,
        window_start=new.window_start, window_end=new.window_end, alerts=tuple(lc.notify),
        run_url=LINKS.run(new.run_id), host=LINKS.base, created_at=END,
        charts=alert_charts(new, prev, diff, metrics, prev_metrics, lc.notify))
    lap("rules")
    sent = slack.send(n)
    if not sent.ok:
        raise RuntimeError(sent.error)
    lap("slack")
    sent = email.send(n)
    if not sent.ok:
        raise RuntimeError(sent.error)
    lap("email")
    return PathResult(cpu, n)


def _with_model(a: Alert, model: str) -> Alert:
    """The model behind an alert, as attribution will name it: in its labels and its sentence."""
    return msgspec.structs.replace(a, labels={**a.labels, "model": model}, summary=f"{a.summary} on model {model}")
