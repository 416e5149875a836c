"""Stale sources: a watched job whose runs stopped arriving. Pure: last-seen times and a clock in.

Every other rule looks at runs; this one looks at their absence, which is how a broken clustering
workflow (or a broken PostHog key) shows itself. The alert is a state: it fires once when a job goes
quiet for longer than `stale_after`, repeats on the usual interval, and resolves when a run arrives.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.alerts import Alert, Link, fingerprint
from monitor.kinds import SOURCE_ERRORS as SOURCE_ERRORS_KIND
from monitor.kinds import STALE_SOURCE
from monitor.links import PostHogLinks

# Built-in kinds judged from PostHog itself rather than from a run (entries in monitor/kinds.py).
KIND = STALE_SOURCE.name


@dataclass(frozen=True)
class JobSeen:
    """The newest processed run of one job and level."""

    job_key: str
    job_name: str
    level: str
    last_run_id: str
    last_emitted_at: datetime


# Learning needs a few gaps to trust their median; before that the configured bound holds.
MIN_RUNS_TO_LEARN = 4


def learned_stale_after(run_times: Sequence[datetime], configured: timedelta) -> timedelta:
    """How long a job may stay quiet, from its own cadence: 1.5 times the median gap between its last
    runs, plus an hour of slack for a slow workflow. PostHog's jobs run daily, but a team may schedule
    one hourly (36 h of silence would be far too late) or weekly (36 h would page every week)."""
    times = sorted(set(run_times))
    if len(times) < MIN_RUNS_TO_LEARN:
        return configured
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    median = statistics.median(gaps)
    if median <= 0:
        return configured
    return timedelta(seconds=1.5 * median) + timedelta(hours=1)


def stale_alert_fingerprint(project_id: int, job_key: str) -> str:
    return fingerprint(project_id, job_key, KIND)


def stale_sources(seen: Iterable[JobSeen], *, now: datetime, stale_after: timedelta, project_id: int,
                  links: PostHogLinks) -> list[Alert]:
    alerts = []
    for j in seen:
        quiet = now - j.last_emitted_at
        if quiet <= stale_after:
            continue
        hours = quiet.total_seconds() / 3600
        alerts.append(Alert(
            fingerprint=stale_alert_fingerprint(project_id, j.job_key), rule=KIND, kind=KIND,
            severity=STALE_SOURCE.severity,
            summary=(f"No clustering run for {hours:.0f} h (expected at least every "
                     f"{stale_after.total_seconds() / 3600:.0f} h); the last was {j.last_run_id}"),
            run_id=j.last_run_id, job_name=j.job_name, level=j.level, metric=STALE_SOURCE.metric,
            value=round(hours, 1), threshold=stale_after.total_seconds() / 3600, unit=STALE_SOURCE.unit,
            links=(Link("Open last run", links.run(j.last_run_id)), Link("Clustering runs", links.clusters())),
            labels={"job": j.job_name, "level": j.level}))
    return alerts


SOURCE_ERRORS = SOURCE_ERRORS_KIND.name


def source_errors_alert(*, project_id: int, failing_since: datetime, now: datetime, bound: timedelta,
                        error: str, links: PostHogLinks) -> Alert | None:
    """PostHog itself failing for longer than `bound`: a run that never lands must not look like a quiet day."""
    if bound <= timedelta(0) or now - failing_since <= bound:
        return None
    minutes = (now - failing_since).total_seconds() / 60
    return Alert(
        fingerprint=fingerprint(project_id, SOURCE_ERRORS), rule=SOURCE_ERRORS, kind=SOURCE_ERRORS,
        severity=SOURCE_ERRORS_KIND.severity,
        summary=f"PostHog has answered only errors for {minutes:.0f} min: {error[:300]}",
        run_id="", job_name="PostHog", level="project", metric=SOURCE_ERRORS_KIND.metric, value=round(minutes, 1),
        threshold=bound.total_seconds() / 60, unit=SOURCE_ERRORS_KIND.unit,
        links=(Link("Clustering runs", links.clusters()),))
