"""Discover: which runs landed since the cursor, of the watched jobs and levels, not yet processed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from monitor.config import WatchConfig
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient, PostHogError
from monitor.runs import RunParseError, parse_time

log = structlog.get_logger()

# Events are ingested with a delay: discovery looks back this far behind its cursor and skips what it has.
INGESTION_GRACE = timedelta(hours=2)
# How often the list of clustering jobs (names, enabled) is fetched again.
JOBS_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class DiscoveredRun:
    run_id: str
    level: str
    job_id: str
    job_name: str
    event: str
    event_uuid: str
    emitted_at: datetime
    window_end: datetime

    @property
    def job_key(self) -> str:
        return f"{self.job_id or 'name:' + self.job_name}|{self.level}"


def discovered_from_row(row: Mapping[str, Any]) -> DiscoveredRun:
    run_id = str(row.get("run_id") or "")
    if not run_id:
        raise RunParseError(str(row.get("event_uuid")), "$ai_clustering_run_id", "empty")
    level = str(row.get("level") or "") or ("trace" if row.get("event") == "$ai_trace_clusters" else "generation")
    return DiscoveredRun(
        run_id=run_id, level=level, job_id=str(row.get("job_id") or ""), job_name=str(row.get("job_name") or ""),
        event=str(row.get("event") or queries.EVENT_FOR_LEVEL.get(level, "$ai_trace_clusters")),
        event_uuid=str(row.get("event_uuid") or ""),
        emitted_at=parse_time(run_id, "timestamp", row.get("emitted_at"), naive=None),
        window_end=parse_time(run_id, "$ai_window_end", row.get("window_end")),
    )


def discovery_bounds(now: datetime, lookback_days: float, cursor: datetime | None) -> tuple[datetime, datetime]:
    """(since, after): runs emitted since the look-back horizon, from a little behind the cursor on."""
    since = now - timedelta(days=lookback_days)
    return since, (max(since, cursor - INGESTION_GRACE) if cursor else since)


def list_runs(client: PostHogClient, since: datetime, after: datetime) -> dict[str, DiscoveredRun]:
    """Every run event after `after` (paged by emitted_at and uuid); unparseable rows are logged, skipped."""
    after_uuid = ""
    found: dict[str, DiscoveredRun] = {}
    for _page in range(100):
        res = client.query(queries.DISCOVER_RUNS, {
            # datetimes: the client binds them with an explicit offset and microseconds (queries.time_value),
            # so the project's timezone cannot shift them and the keyset's `after_ts` matches exactly.
            "since": since, "after_ts": after, "after_uuid": after_uuid,
        }, name="discover_runs")
        fresh = 0
        for row in res.rows():
            try:
                d = discovered_from_row(row)
            except RunParseError as exc:
                log.warning("run_skipped_unparseable", run_id=exc.run_id, field=exc.field, error=exc.problem)
                continue
            if d.run_id not in found:
                fresh += 1
            found.setdefault(d.run_id, d)
        if not res.has_more or not res.results or fresh == 0:
            break
        last = res.rows()[-1]
        after = parse_time("?", "emitted_at", last["emitted_at"], naive=None)
        after_uuid = str(last["event_uuid"])
    return found


def select_runs(found: Iterable[DiscoveredRun], watched: Callable[[DiscoveredRun], bool],
                window: tuple[datetime | None, datetime | None],
                processed: Callable[[list[str]], set[str]]) -> list[DiscoveredRun]:
    """The runs to process, oldest first: watched, inside `window` (replay's --since/--until), not processed."""
    lo, hi = window
    runs = [d for d in found
            if watched(d) and (lo is None or d.emitted_at >= lo) and (hi is None or d.emitted_at <= hi)]
    done = processed([d.run_id for d in runs])
    todo = [d for d in runs if d.run_id not in done]
    todo.sort(key=lambda d: (d.emitted_at, d.window_end, d.run_id))
    return todo


class JobIndex:
    """The project's clustering jobs by id. Jobs change rarely: fetched once an hour, or again when a run
    names a job not seen before; None until a fetch has succeeded."""

    def __init__(self, fetch: Callable[[], list[dict[str, Any]]], clock: Callable[[], datetime]) -> None:
        self._fetch = fetch
        self._clock = clock
        self.jobs: dict[str, dict[str, Any]] | None = None
        self._fetched_at: datetime | None = None

    def get(self, refresh: bool = False) -> dict[str, dict[str, Any]] | None:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > JOBS_TTL
        if self.jobs is None or stale or refresh:
            try:
                self.jobs = {str(j.get("id")): j for j in self._fetch()}
            except PostHogError as exc:
                log.warning("clustering_jobs_unavailable", error=str(exc))
            self._fetched_at = now
        return self.jobs


def levels_without_job(watch: WatchConfig, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The watched levels no enabled job of the project clusters (among the jobs `watch.jobs` names, when
    it names some): their runs will never come, and nothing else would say so (`watch: [evaluation]`
    with no evaluation job finds no run, silently). Jobs come from the clustering-jobs endpoint
    (`analysis_level`, `enabled`)."""
    active = {str(j.get("analysis_level") or "") for j in jobs if j.get("enabled", True) and (
        not watch.jobs or str(j.get("id")) in watch.jobs or str(j.get("name")) in watch.jobs)}
    return [level for level in watch.levels if level not in active]


def is_watched(d: DiscoveredRun, watch: WatchConfig, jobs: JobIndex) -> bool:
    """`watch:` names jobs (by id or name) and levels; with no jobs named, every enabled job is watched."""
    if d.level not in watch.levels:
        return False
    if watch.jobs:
        return d.job_id in watch.jobs or d.job_name in watch.jobs
    index = jobs.get()
    if index is None or not d.job_id:
        return True
    job = index.get(d.job_id)
    if job is None:
        # A job created since the last look, or deleted: look again once, then take the run.
        job = (jobs.get(refresh=True) or {}).get(d.job_id)
    return job is None or bool(job.get("enabled", True))
