"""Checks that belong to no run: watched jobs whose runs stopped landing (stale sources), and PostHog
failing for longer than the bound. Their alerts go through the same decide stage as a run's
(`decide.decide_check`); this module says which jobs to look at and what the notice is."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.alerts import Alert, Notification
from monitor.config import WatchConfig
from monitor.rules.staleness import JobSeen
from monitor.stages.decide import with_job
from monitor.stages.discover import DiscoveredRun


def jobs_seen(last: Mapping[str, tuple[str, str, datetime]], discovered: Iterable[DiscoveredRun],
              jobs: Mapping[str, Mapping[str, Any]], watch: WatchConfig) -> list[JobSeen]:
    """The newest run of every watched, enabled job and level, by job key.

    `last`: the store's newest processed run per job key; `discovered`: the runs PostHog has (the
    monitor's discovery, processed or not). Staleness is judged from what PostHog has: a run discovered
    but not processed (a backlog, a run being retried or quarantined) proves the source is alive. A job
    PostHog does not list is named as its runs name it.
    """
    newest = dict(last)
    named: dict[str, str] = {}
    for d in discovered:
        if d.job_name:
            named[d.job_key] = d.job_name
        if d.job_key not in newest or d.emitted_at > newest[d.job_key][2]:
            newest[d.job_key] = (d.level, d.run_id, d.emitted_at)
    out: list[JobSeen] = []
    for job_key, (level, last_run_id, emitted_at) in sorted(newest.items()):
        job_id = job_key.split("|", 1)[0]
        job = jobs.get(job_id)
        name = str(job.get("name")) if job else named.get(job_key) or job_id.removeprefix("name:")
        if job is not None and not job.get("enabled", True):
            continue  # switched off in PostHog on purpose: silence is expected
        if watch.jobs and job_id not in watch.jobs and name not in watch.jobs:
            continue
        if level not in watch.levels:
            continue
        out.append(JobSeen(job_key=job_key, job_name=name, level=level, last_run_id=last_run_id,
                           last_emitted_at=emitted_at))
    return out


def check_id(now: datetime) -> str:
    """Each source check is its own decision (the lifecycle skips a decision it has already made)."""
    return f"check@{now.isoformat()}#{uuid.uuid4().hex[:8]}"


def check_notification(alerts: Sequence[Alert], *, key: str, project_id: int, run_id: str, name: str, level: str,
                       at: datetime, run_url: str, host: str, now: datetime) -> Notification:
    return Notification(
        key=key, project_id=project_id, run_id=run_id, job_name=name, level=level, window_start=at, window_end=at,
        alerts=tuple(with_job(a, name, level) for a in alerts), run_url=run_url, host=host, created_at=now)
