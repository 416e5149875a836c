"""A small run of one job, four clusters and a noise bucket, as PostHog's run event properties: the run-payload
tests build its digest (unit) and land it on the local PostHog (integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.local.posthog.generator import make_run_event

END = datetime(2026, 10, 20, 3, tzinfo=UTC)
JOB = "00000000-0000-0000-0000-0000000000cc"


def run_props(day: int, items: list[str], reworded: bool, team_id: int = 1) -> dict[str, Any]:
    titles = ["Refund requests", "Python code generation", "SQL query generation", "Calendar agent"]
    members: list[list[str]] = [[] for _ in range(len(titles) + 1)]
    for it in items:
        members[int(it[1:]) % len(members)].append(it)
    clusters: list[dict[str, Any]] = []
    for c, title in enumerate(titles):
        t = title.replace("generation", "writing") if reworded else title
        clusters.append({"cluster_id": c, "items": members[c], "title": t, "description": f"About {t.lower()}."})
    clusters.append({"cluster_id": -1, "items": members[-1]})
    return make_run_event(team_id=team_id, level="trace", window_end=END + timedelta(days=day), clusters=clusters,
                          job_id=JOB, job_name="Payload job", max_samples=len(items))
