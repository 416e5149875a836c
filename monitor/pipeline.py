"""One monitoring cycle, stage by stage, in the order of the diagram:

    discover -> fetch run -> diff vs previous run -> cluster metrics -> rules -> lifecycle -> outbox -> notify

The stages in the middle are the pure functions of monitor.matching, monitor.metrics and monitor.rules;
this module is the shell that feeds them from PostHog and the store, and commits each run's outcome in
one transaction before anything is sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog

from monitor import kinds, telemetry
from monitor.alerts import Alert, Notification
from monitor.config import Config, Silence
from monitor.links import PostHogLinks
from monitor.matching import embeddings as emb
from monitor.matching import match_runs
from monitor.matching.lineage import assign_lineages
from monitor.matching.model import RunDiff
from monitor.metrics import ClusterMetrics, MetricsParseError, metrics_from_rows
from monitor.notify.catchup import HELD_PREFIX, summarise, summary_key
from monitor.notify.chart import alert_charts
from monitor.notify.outbox import Deliverer
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient, PostHogError
from monitor.rules.engine import RuleContext, evaluate
from monitor.rules.inhibit import split_inhibited
from monitor.rules.language import run_metrics
from monitor.rules.lifecycle import apply_lifecycle
from monitor.rules.routing import DEFAULT_ROUTE, route_alerts
from monitor.rules.silences import split_silenced
from monitor.rules.staleness import KIND as STALE_KIND
from monitor.rules.staleness import (
    SOURCE_ERRORS,
    JobSeen,
    learned_stale_after,
    source_errors_alert,
    stale_sources,
)
from monitor.runs import Run, RunParseError, decode_stored_run, encode_digest, parse_clusters, parse_time
from monitor.status import publish as publish_state
from monitor.store.base import AlertState, ClusterSnapshot, OutboxEntry, ProcessedRun, Store

log = structlog.get_logger()

# Events are ingested with a delay: discovery looks back this far behind its cursor and skips what it has.
INGESTION_GRACE = timedelta(hours=2)
# Adaptive polling's memory: the landing times of each job's last runs (see Monitor.landings).
LANDINGS_KEY = "landings"
LANDINGS_KEPT = 30
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


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


@dataclass
class CycleResult:
    discovered: int = 0
    processed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notifications: int = 0
    # The notifications this cycle queued, in order (replay prints them).
    notices: list[Notification] = field(default_factory=list)
    delivered: int = 0
    error: str | None = None
    # Another replica holds the leader lock: this one did nothing, on purpose.
    standby: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


class Monitor:
    """The shell around the functional core for one PostHog project."""

    def __init__(
        self,
        cfg: Config,
        client: PostHogClient,
        store: Store,
        deliverer: Deliverer | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.store = store
        self.deliverer = deliverer
        self.clock = clock
        self.links = PostHogLinks(cfg.posthog.links_host, cfg.posthog.project_id, cfg.posthog.ui_path)
        self._jobs: dict[str, dict[str, Any]] | None = None
        # `replay --since/--until`: only runs that landed in this window (None: open).
        self.replay_window: tuple[datetime | None, datetime | None] = (None, None)
        self._jobs_fetched_at: datetime | None = None

    # --- discovery -----------------------------------------------------------------------------------
    def discover(self, now: datetime) -> list[DiscoveredRun]:
        since = now - timedelta(days=self.cfg.posthog.lookback_days)
        cursor = self.store.cursor()
        after = max(since, cursor - INGESTION_GRACE) if cursor else since
        after_uuid = ""
        found: dict[str, DiscoveredRun] = {}
        for _page in range(100):
            res = self.client.query(queries.DISCOVER_RUNS, {
                "since": _q(since), "after_ts": _q(after), "after_uuid": after_uuid,
            }, name="discover_runs")
            fresh = 0
            for row in res.rows():
                try:
                    d = _discovered(row)
                except RunParseError as exc:
                    log.warning("run_skipped_unparseable", run_id=exc.run_id, field=exc.field, error=exc.problem)
                    continue
                if d.run_id not in found:
                    fresh += 1
                found.setdefault(d.run_id, d)
            if not res.has_more or not res.results or fresh == 0:
                break
            last = res.rows()[-1]
            after = parse_time("?", "emitted_at", last["emitted_at"])
            after_uuid = str(last["event_uuid"])
        lo, hi = self.replay_window
        runs = [d for d in found.values() if self._watched(d)
                and (lo is None or d.emitted_at >= lo) and (hi is None or d.emitted_at <= hi)]
        done = self.store.processed_ids([d.run_id for d in runs])
        todo = [d for d in runs if d.run_id not in done]
        todo.sort(key=lambda d: (d.emitted_at, d.window_end, d.run_id))
        return todo

    def rewind_cursor(self) -> None:
        """Discovery looks back over the whole look-back window at the next cycle (then moves on as usual)."""
        since = self.clock() - timedelta(days=self.cfg.posthog.lookback_days)
        self.store.set_cursor(since)
        log.info("cursor_rewound", to=since.isoformat())

    def _watched(self, d: DiscoveredRun) -> bool:
        watch = self.cfg.watch
        if d.level not in watch.levels:
            return False
        if watch.jobs:
            return d.job_id in watch.jobs or d.job_name in watch.jobs
        jobs = self._job_index()
        if jobs is None or not d.job_id:
            return True
        job = jobs.get(d.job_id)
        if job is None:
            # A job created since the last look, or deleted: look again once, then take the run.
            jobs = self._job_index(refresh=True)
            job = (jobs or {}).get(d.job_id)
        return job is None or bool(job.get("enabled", True))

    def _job_index(self, refresh: bool = False) -> dict[str, dict[str, Any]] | None:
        """Jobs change rarely: fetched once an hour, or when a run names a job not seen before."""
        now = self.clock()
        stale = self._jobs_fetched_at is None or now - self._jobs_fetched_at > timedelta(hours=1)
        if self._jobs is None or stale or refresh:
            try:
                self._jobs = {str(j.get("id")): j for j in self.client.clustering_jobs()}
            except PostHogError as exc:
                log.warning("clustering_jobs_unavailable", error=str(exc))
            self._jobs_fetched_at = now
        return self._jobs

    # --- one run -------------------------------------------------------------------------------------
    def fetch_run(self, d: DiscoveredRun) -> Run:
        res = self.client.query(queries.GET_RUN, {
            "event": d.event,
            "emitted_from": _q(d.emitted_at - timedelta(seconds=1)),
            "emitted_to": _q(d.emitted_at + timedelta(seconds=1)),
            "run_id": d.run_id,
        }, name="get_run")
        rows = res.rows()
        if not rows:
            raise PostHogError(f"get_run: run {d.run_id!r} not found", retryable=True, query_name="get_run")
        return run_from_row(rows[0], d)

    def fetch_metrics(self, run: Run, d: DiscoveredRun) -> dict[int, ClusterMetrics]:
        q = queries.CLUSTER_METRICS.get(run.level, queries.CLUSTER_METRICS["generation"])
        res = self.client.query(q, {
            "event": d.event,
            "emitted_from": _q(d.emitted_at - timedelta(seconds=1)),
            "emitted_to": _q(d.emitted_at + timedelta(seconds=1)),
            "run_id": run.run_id,
            "window_start": _q(run.window_start),
            "window_end": _q(run.window_end),
        }, name=f"cluster_metrics_{run.level}")
        return metrics_from_rows(res.rows(), run.run_id)

    def fetch_cluster_vectors(self, run: Run, d: DiscoveredRun) -> emb.ClusterVectors:
        """The run's cluster means in PostHog's embedding space: one query, answered inside ClickHouse.
        Never fails the run: without them (an older PostHog that does not know the table, a key not
        allowed to read it, rows past retention) matching goes on with its lexical signals, said once
        per run in the log and counted in /metrics."""
        try:
            res = self.client.query(queries.CLUSTER_EMBEDDINGS, queries.cluster_embeddings_values(
                level=run.level, event=d.event, emitted_from=_q(d.emitted_at - timedelta(seconds=1)),
                emitted_to=_q(d.emitted_at + timedelta(seconds=1)), run_id=run.run_id,
                window_start=_q(run.window_start), window_end=_q(run.window_end)), name="cluster_embeddings")
            vecs = emb.vectors_from_rows([[r.get("cluster_id"), r.get("items"), r.get("mean")] for r in res.rows()])
        except PostHogError as exc:
            telemetry.EMBEDDINGS_MISSING.labels(reason="unavailable").inc()
            log.warning("cluster_embeddings_unavailable", run_id=run.run_id, status=exc.status, error=str(exc))
            return {}
        covered = emb.coverage(run, vecs)
        if covered < 1.0:
            telemetry.EMBEDDINGS_MISSING.labels(reason="empty" if not vecs else "partial").inc()
            log.info("cluster_embeddings_partial", run_id=run.run_id, clusters=len(vecs),
                     item_coverage=round(covered, 3))
        return vecs

    def process(self, d: DiscoveredRun, now: datetime) -> Notification | None:
        # The new run first, the previous one after: the answer's buffers are gone before the previous
        # run is read, and its stored bytes go as soon as they are decoded.
        run = self.fetch_run(d)
        prev = self._previous(d.job_key, run)
        vectors = self.fetch_cluster_vectors(run, d)
        diff: RunDiff | None = match_runs(
            prev, run, threshold=self.cfg.matching.threshold, prev_vectors=emb.decode(self.store.cluster_vectors(
                prev.run_id)), new_vectors=vectors) if prev else None
        prev_lineages = self.store.lineages(prev.run_id) if prev else {}
        counter = iter(range(1_000_000))
        lineages = assign_lineages(
            diff, prev_lineages, run, lambda: f"{run.run_id}#{next(counter)}",
            prev_sizes={c.cluster_id: c.size for c in prev.clusters} if prev else None).lineages
        metrics = self.fetch_metrics(run, d)
        prev_metrics = self._prev_metrics(prev) if prev else {}
        ctx = RuleContext(
            project_id=self.cfg.posthog.project_id, run=run, prev_run=prev, diff=diff, metrics=metrics,
            prev_metrics=prev_metrics, lineages=lineages, prev_lineages=prev_lineages,
            thresholds=self.cfg.thresholds, links=self.links)
        current = run_metrics(ctx, ctx.mix_shift)
        history, run_history = self._rule_history(d.job_key, run) if self.cfg.rules else ([], [])
        alerts = evaluate(ctx, self.cfg.rules, history, run_history, current)
        for a in alerts:
            telemetry.ALERTS_FIRED.labels(kind=a.kind, severity=a.severity).inc()
        present = {lineages[c.cluster_id]: c.title for c in run.clusters if c.cluster_id in lineages}
        lc = apply_lifecycle(
            alerts, self.store.alert_states(d.job_key), run_id=run.run_id, job_key=d.job_key, now=now,
            repeat_interval=timedelta(hours=self.cfg.alerting.repeat_interval_hours), present_lineages=present)
        notification = None
        outbox: list[tuple[str, str, bytes]] = []
        notify = [replace_alert_job(a, run.job_name or run.job_id, run.level) for a in lc.notify]
        to_notify = self._unsilenced(self._uninhibited(notify, alerts), now)
        if to_notify:
            notification = Notification(
                key=f"run:{run.run_id}", project_id=self.cfg.posthog.project_id, run_id=run.run_id,
                job_name=run.job_name or run.job_id, level=run.level, window_start=run.window_start,
                window_end=run.window_end, alerts=tuple(sorted(to_notify, key=_importance)),
                run_url=self.links.run(run.run_id), host=self.cfg.posthog.links_host, created_at=now,
                charts=alert_charts(run, prev, diff, metrics, prev_metrics, to_notify))
            catch_up = timedelta(hours=self.cfg.alerting.catch_up_after_hours)
            held = catch_up > timedelta(0) and now - d.emitted_at > catch_up
            outbox = self._outbox_for(notification, held=held)
        total = run.clustered_size or 1
        snapshots = [
            ClusterSnapshot(run_id=run.run_id, job_key=d.job_key, level=run.level, window_end=run.window_end,
                            cluster_id=c.cluster_id, lineage_id=lineages.get(c.cluster_id, f"noise:{d.job_key}"),
                            title=c.title, size=c.size, share=c.size / total,
                            metrics=metrics[c.cluster_id].as_dict() if c.cluster_id in metrics else {})
            for c in run.clusters
        ]
        self.store.commit_run(ProcessedRun(
            run_id=run.run_id, job_key=d.job_key, level=run.level, window_end=run.window_end,
            emitted_at=d.emitted_at, event_uuid=d.event_uuid, payload=encode_digest(run), snapshots=snapshots,
            alert_states=lc.states, outbox=outbox, processed_at=now, run_metrics=current,
            cluster_vectors=emb.encode(vectors)))
        telemetry.RUNS_PROCESSED.labels(level=run.level).inc()
        log.info("run_processed", run_id=run.run_id, job=run.job_name, level=run.level,
                 clusters=len(run.clusters), items=run.clustered_size, prev_run_id=prev.run_id if prev else None,
                 matched=len(diff.matches) if diff else 0, new=len(diff.new) if diff else 0,
                 disappeared=len(diff.disappeared) if diff else 0, alerts=len(alerts), notify=len(to_notify))
        return notification

    def _rule_history(self, job_key: str, run: Run) -> tuple[list[ClusterSnapshot], list[dict[str, float]]]:
        """The job's earlier runs, as deep as the deepest rule looks (its window plus its N-of-M)."""
        depth = max(r.window + r.for_.of for r in self.cfg.rules)
        snaps = self.store.lineage_history(job_key, before=run.window_end, runs=depth)
        order = list(dict.fromkeys(s.run_id for s in snaps))
        run_history: list[dict[str, float]] = []
        for rid in order:
            raw = self.store.kv_get(f"run_metrics:{rid}")
            try:
                decoded = msgspec.json.decode(raw) if raw else {}
            except msgspec.DecodeError:
                decoded = {}
            run_history.append(decoded if isinstance(decoded, dict) else {})
        return snaps, run_history

    def _uninhibited(self, to_notify: list[Alert], firing: list[Alert]) -> list[Alert]:
        keep, muted = split_inhibited(to_notify, firing, self.cfg.inhibit)
        for a, why in muted:
            telemetry.ALERTS_SILENCED.labels(kind=a.kind).inc()
            log.info("alert_inhibited", kind=a.kind, run_id=a.run_id, cluster_id=a.cluster_id, by=why)
        return keep

    def _previous(self, job_key: str, run: Run) -> Run | None:
        rec = self.store.previous_run(job_key, before=run.window_end)
        if rec is None:
            return None
        try:
            return decode_stored_run(rec[1])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RunParseError(rec[0], "(stored payload)", f"unreadable: {exc}") from exc

    def _unsilenced(self, alerts: list[Alert], now: datetime) -> list[Alert]:
        if not alerts:
            return alerts
        silences = list(self.cfg.silences)
        for sid, spec in self.store.silences():
            try:
                silences.append(Silence.model_validate({**spec, "comment": spec.get("comment") or f"silence #{sid}"}))
            except ValueError as exc:  # written by an older version, say: skip it, loudly
                log.warning("silence_unreadable", silence_id=sid, error=str(exc))
        keep, muted = split_silenced(alerts, silences, now)
        for a, s in muted:
            telemetry.ALERTS_SILENCED.labels(kind=a.kind).inc()
            log.info("alert_silenced", kind=a.kind, run_id=a.run_id, cluster_id=a.cluster_id, silence=s.comment,
                     until=s.until.isoformat() if s.until else None)
        return keep

    def _prev_metrics(self, prev: Run) -> dict[int, ClusterMetrics]:
        out: dict[int, ClusterMetrics] = {}
        for snap in self.store.run_snapshots(prev.run_id):
            if snap.metrics:
                out[snap.cluster_id] = msgspec.convert(snap.metrics, ClusterMetrics)
        return out

    # --- the cycle -----------------------------------------------------------------------------------
    def cycle(self, stop: Callable[[], bool] | None = None) -> CycleResult:
        """One poll. `stop` is asked between runs: a shutdown waits for at most the run in hand."""
        started = time.monotonic()
        now = self.clock()
        result = CycleResult()
        try:
            todo = self.discover(now)
        except PostHogError as exc:
            result.error = str(exc)
            log.error("discovery_failed", error=str(exc), status=exc.status)
            todo = []
        # Held notifications a crash left behind are summarised on their own, before new ones join them.
        result.notifications += self.summarise_held(now)
        pushed = self._check_posthog(now, result.error)
        result.notices.extend(pushed)
        result.notifications += len(pushed)
        result.discovered = len(todo)
        blocked: set[str] = set()
        earliest_failed: datetime | None = None
        interrupted = False
        for i, d in enumerate(todo):
            telemetry.CYCLE_RUNS_LEFT.set(len(todo) - i)
            if stop is not None and stop():
                # Everything from here on is left for the next start; the cursor stays before it.
                interrupted = True
                earliest_failed = d.emitted_at if earliest_failed is None else min(earliest_failed, d.emitted_at)
                log.info("cycle_interrupted", remaining=len(todo) - len(result.processed) - len(result.failed))
                break
            if d.job_key in blocked:
                # An earlier run of this job failed: later ones wait, so diffs stay in order.
                continue
            try:
                n = self.process(d, self.clock())
            except (PostHogError, RunParseError, MetricsParseError) as exc:
                reason = type(exc).__name__
                telemetry.RUN_FAILURES.labels(reason=reason).inc()
                log.error("run_failed", run_id=d.run_id, job=d.job_name, level=d.level, error=str(exc),
                          reason=reason)
                result.failed[d.run_id] = str(exc)
                blocked.add(d.job_key)
                earliest_failed = d.emitted_at if earliest_failed is None else min(earliest_failed, d.emitted_at)
                continue
            result.processed.append(d.run_id)
            if n is not None:
                result.notifications += 1
                result.notices.append(n)
        telemetry.CYCLE_RUNS_LEFT.set(0)
        result.notifications += self.summarise_held(self.clock())
        if result.error is None:
            self._advance_cursor(todo, result, earliest_failed)
        if result.processed:
            done = set(result.processed)
            self._record_landings([d for d in todo if d.run_id in done])
        if result.error is None and not interrupted:
            # Only when PostHog answered: an outage is not a stale job (readiness reports outages).
            stale = self.check_sources(self.clock(), discovered=todo)
            result.notifications += len(stale)
            result.notices.extend(stale)
        if self.deliverer is not None and not interrupted:
            result.delivered = self.deliverer.deliver_due(self.clock())
        publish_state(self.cfg, self.store, self.clock())
        elapsed = time.monotonic() - started
        telemetry.CYCLE_SECONDS.observe(elapsed)
        telemetry.CYCLES.labels(outcome="ok" if result.ok else "failed").inc()
        if result.ok:
            telemetry.LAST_SUCCESS.set(time.time())
        log.info("cycle_done", discovered=result.discovered, processed=len(result.processed),
                 failed=len(result.failed), notifications=result.notifications, delivered=result.delivered,
                 seconds=round(elapsed, 3))
        return result

    def landings(self) -> dict[str, list[datetime]]:
        """Job key -> when its recent processed runs landed (emitted_at): what adaptive polling learns
        from. Kept in the store's key-value table, so the Store interface stays as it is; a crash between
        a run's commit and this record loses one sample, nothing else."""
        text = self.store.kv_get(LANDINGS_KEY)
        if not text:
            return {}
        try:
            doc = msgspec.json.decode(text, type=dict[str, list[datetime]])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("landings_unreadable", error=str(exc))
            return {}
        return doc

    def _record_landings(self, runs: Sequence[DiscoveredRun]) -> None:
        doc = self.landings()
        for d in runs:
            times = doc.setdefault(d.job_key, [])
            if d.emitted_at not in times:
                times.append(d.emitted_at)
        for key, times in doc.items():
            doc[key] = sorted(times)[-LANDINGS_KEPT:]
        self.store.kv_set(LANDINGS_KEY, msgspec.json.encode(doc).decode())

    def _check_posthog(self, now: datetime, error: str | None) -> list[Notification]:
        """Fire "PostHog unreachable" when discovery has failed for longer than the bound; resolve on success."""
        key = "posthog_failing_since"
        since_text = self.store.kv_get(key)
        if error is None:
            if since_text:
                self.store.kv_set(key, "")
        elif not since_text:
            self.store.kv_set(key, now.isoformat())
            since_text = now.isoformat()
        job_key = f"posthog|{self.cfg.posthog.project_id}"
        states = {fp: st for fp, st in self.store.alert_states(job_key).items() if st.kind == SOURCE_ERRORS}
        alert = None
        if error is not None and since_text:
            alert = source_errors_alert(
                project_id=self.cfg.posthog.project_id, failing_since=datetime.fromisoformat(since_text), now=now,
                bound=timedelta(minutes=self.cfg.alerting.posthog_errors_after_minutes), error=error,
                links=self.links)
        if alert is None and not any(st.status == "firing" for st in states.values()):
            return []
        n = self._decide_check([alert] if alert else [], states, job_key=job_key, now=now,
                               key=f"posthog:{now.isoformat()}", run_id="", name="PostHog", level="project",
                               at=now, run_url=self.links.clusters())
        if n is None:
            return []
        log.warning("posthog_unreachable" if alert else "posthog_recovered", since=since_text)
        return [n]

    def _decide_check(self, alerts: list[Alert], states: dict[str, AlertState], *, job_key: str, now: datetime,
                      key: str, run_id: str, name: str, level: str, at: datetime,
                      run_url: str) -> Notification | None:
        """The lifecycle, silences and outbox of a check that belongs to no run (a stale job, PostHog down),
        committed at once; returns the notification queued, if any."""
        lc = apply_lifecycle(alerts, states, run_id=_check_id(now), job_key=job_key, now=now,
                             repeat_interval=timedelta(hours=self.cfg.alerting.repeat_interval_hours))
        for a in lc.notify:
            telemetry.ALERTS_FIRED.labels(kind=a.kind, severity=a.severity).inc()
        to_notify = self._unsilenced(lc.notify, now)
        n = Notification(
            key=key, project_id=self.cfg.posthog.project_id, run_id=run_id, job_name=name, level=level,
            window_start=at, window_end=at, alerts=tuple(replace_alert_job(a, name, level) for a in to_notify),
            run_url=run_url, host=self.cfg.posthog.links_host, created_at=now) if to_notify else None
        self.store.commit_alerts(lc.states, self._outbox_for(n) if n else [], now)
        return n

    def _outbox_for(self, n: Notification, held: bool = False) -> list[tuple[str, str, bytes]]:
        """One outbox row per channel of every route the notification's alerts go to (see `routes:`);
        `held` rows wait for the cycle's catch-up summary."""
        channels = set(self.deliverer.channels if self.deliverer else ())
        rows: list[tuple[str, str, bytes]] = []
        for name, alerts in route_alerts(n.alerts, self.cfg.routes, self.cfg.rules).items():
            suffix = "" if name == DEFAULT_ROUTE else f"@{name}"
            part = n if len(alerts) == len(n.alerts) else msgspec.structs.replace(n, alerts=tuple(alerts))
            part = msgspec.structs.replace(part, key=n.key + suffix)
            payload = msgspec.json.encode(part)
            targets = [ch for ch in (f"slack{suffix}", f"email{suffix}") if ch in channels]
            if not targets and channels:  # none at all: replay, or a config without channels
                log.warning("alerts_without_channel", route=name or "default", key=n.key, alerts=len(alerts))
            rows.extend((part.key, HELD_PREFIX + ch if held else ch, payload) for ch in targets)
        return rows

    def summarise_held(self, now: datetime) -> int:
        """Fold held notifications into one catch-up message per channel; returns how many were queued.

        Idempotent: the summary's key comes from the held entries' ids, and they are marked done only
        after the summary is committed, so a crash in between queues the same summary again, which the
        outbox's unique key drops.
        """
        held = [e for e in self.store.outbox("pending") if e.channel.startswith(HELD_PREFIX)]
        by_channel: dict[str, list[OutboxEntry]] = {}
        for e in held:
            by_channel.setdefault(e.channel.removeprefix(HELD_PREFIX), []).append(e)
        queued = 0
        for channel, entries in sorted(by_channel.items()):
            notices: list[Notification] = []
            for e in entries:
                try:
                    notices.append(msgspec.json.decode(e.payload, type=Notification))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.store.mark_failed(e.id, f"undecodable held notification: {exc}")
            if notices:
                n = summarise(notices, key=summary_key([e.id for e in entries]), run_url=self.links.clusters(),
                              now=now, importance=_importance)
                self.store.commit_alerts([], [(n.key, channel, msgspec.json.encode(n))], now)
                queued += 1
                log.info("catch_up_summarised", channel=channel, runs=len(notices), alerts=len(n.alerts), key=n.key)
            for e in entries:
                self.store.mark_sent(e.id, now)
        return queued

    def check_sources(self, now: datetime, discovered: Sequence[DiscoveredRun] = ()) -> list[Notification]:
        """Stale-source alerts for watched jobs whose runs stopped; returns the notifications queued.

        A run discovered but not yet processed (a backlog, or a run that keeps failing) still proves the
        source is alive: failures are reported as such, not as silence.
        """
        stale_after = timedelta(hours=self.cfg.alerting.stale_after_hours)
        if stale_after <= timedelta(0):
            return []
        queued: list[Notification] = []
        jobs = self._jobs or {}
        last = self.store.last_runs()
        for d in discovered:
            if d.job_key not in last or d.emitted_at > last[d.job_key][2]:
                last[d.job_key] = (d.level, d.run_id, d.emitted_at)
        for job_key, (level, last_run_id, emitted_at) in sorted(last.items()):
            job_id = job_key.split("|", 1)[0]
            job = jobs.get(job_id)
            name = str(job.get("name")) if job else job_id.removeprefix("name:")
            if job is not None and not job.get("enabled", True):
                continue  # switched off in PostHog on purpose: silence is expected
            if self.cfg.watch.jobs and job_id not in self.cfg.watch.jobs and name not in self.cfg.watch.jobs:
                continue
            if level not in self.cfg.watch.levels:
                continue
            seen = JobSeen(job_key=job_key, job_name=name, level=level, last_run_id=last_run_id,
                           last_emitted_at=emitted_at)
            bound = stale_after
            if self.cfg.alerting.stale_learned:
                recent = self.store.lineage_history(job_key, before=now, runs=8)
                bound = learned_stale_after([s.window_end for s in recent], stale_after)
            alerts = stale_sources([seen], now=now, stale_after=bound,
                                   project_id=self.cfg.posthog.project_id, links=self.links)
            states = {fp: st for fp, st in self.store.alert_states(job_key).items() if st.kind == STALE_KIND}
            if not alerts and not any(st.status == "firing" for st in states.values()):
                continue
            n = self._decide_check(alerts, states, job_key=job_key, now=now, key=f"stale:{job_key}:{now.isoformat()}",
                                   run_id=last_run_id, name=name, level=level, at=emitted_at,
                                   run_url=self.links.run(last_run_id))
            if n is not None:
                queued.append(n)
                log.warning("source_stale" if alerts else "source_recovered", job=name, level=level,
                            last_run_id=last_run_id, since=emitted_at.isoformat())
        return queued

    def _advance_cursor(self, todo: list[DiscoveredRun], result: CycleResult,
                        earliest_failed: datetime | None) -> None:
        """The cursor never passes a run that is not processed: it stops just before the first failure."""
        done = set(result.processed)
        candidates = [d.emitted_at for d in todo if d.run_id in done]
        if earliest_failed is not None:
            candidates = [t for t in candidates if t < earliest_failed]
        current = self.store.cursor()
        if candidates:
            new = max(candidates)
            if current is None or new > current:
                self.store.set_cursor(new)


def _check_id(now: datetime) -> str:
    """Each source check is its own decision (the lifecycle skips a decision it has already made)."""
    return f"check@{now.isoformat()}#{uuid.uuid4().hex[:8]}"


def replace_alert_job(a: Alert, job_name: str, level: str) -> Alert:
    """Resolved notices are built from stored state, which does not keep the job's name."""
    return msgspec.structs.replace(a, job_name=a.job_name or job_name, level=a.level or level)


def _importance(a: Alert) -> tuple[int, int, float]:
    return (_SEVERITY_ORDER.get(a.severity, 3), kinds.order(a.kind), -abs(a.value or 0.0))


def _q(dt: datetime) -> str:
    """Times are bound as ISO strings and parsed by parseDateTimeBestEffort in the query."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _discovered(row: dict[str, Any]) -> DiscoveredRun:
    run_id = str(row.get("run_id") or "")
    if not run_id:
        raise RunParseError(str(row.get("event_uuid")), "$ai_clustering_run_id", "empty")
    level = str(row.get("level") or "") or ("trace" if row.get("event") == "$ai_trace_clusters" else "generation")
    return DiscoveredRun(
        run_id=run_id, level=level, job_id=str(row.get("job_id") or ""), job_name=str(row.get("job_name") or ""),
        event=str(row.get("event") or queries.EVENT_FOR_LEVEL.get(level, "$ai_trace_clusters")),
        event_uuid=str(row.get("event_uuid") or ""),
        emitted_at=parse_time(run_id, "timestamp", row.get("emitted_at")),
        window_end=parse_time(run_id, "$ai_window_end", row.get("window_end")),
    )


def run_from_row(row: dict[str, Any], d: DiscoveredRun) -> Run:
    run_id = d.run_id
    kind = row.get("clusters_type", "Array")
    if kind != "Array":
        raise RunParseError(run_id, "$ai_clusters", "missing" if kind in ("Null", "", None)
                            else f"expected an array of clusters, got a JSON {kind}")
    clusters = parse_clusters(run_id, row.get("clusters"))
    total_raw = row.get("total_items")
    try:
        total = int(str(total_raw).strip('"')) if total_raw not in (None, "") else sum(c.size for c in clusters)
    except ValueError as exc:
        raise RunParseError(run_id, "$ai_total_items_analyzed", f"not an integer: {total_raw!r}") from exc
    params_raw = row.get("params")
    params: dict[str, Any] = {}
    if params_raw:
        try:
            p = msgspec.json.decode(params_raw) if isinstance(params_raw, (str, bytes)) else params_raw
            params = p if isinstance(p, dict) else {}
        except msgspec.DecodeError:
            params = {}
    return Run(
        run_id=run_id, level=d.level, job_id=str(row.get("job_id") or d.job_id),
        job_name=str(row.get("job_name") or d.job_name),
        window_start=parse_time(run_id, "$ai_window_start", row.get("window_start")),
        window_end=parse_time(run_id, "$ai_window_end", row.get("window_end")),
        total_items=total, clusters=clusters, params=params, timestamp=d.emitted_at,
    )
