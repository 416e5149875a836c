"""One monitoring cycle, stage by stage, in the order of the diagram:

    discover -> fetch run -> diff vs previous run -> cluster metrics -> rules -> lifecycle -> outbox -> notify

Each stage is a function in monitor/stages/ (discover, load, diff, measure, evaluate, decide, route,
enqueue); this module is the thin shell that runs them in order, hands them PostHog and the store, logs
and counts, and commits each run's outcome in one transaction before anything is sent (delivery:
monitor/notify/outbox.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import structlog

from monitor import telemetry
from monitor.alerts import Alert, Notification
from monitor.config import Config, Silence
from monitor.links import PostHogLinks
from monitor.matching import embeddings as emb
from monitor.metrics import ClusterMetrics, MetricsParseError
from monitor.notify.catchup import summarise, summary_key
from monitor.notify.outbox import Deliverer
from monitor.posthog.client import PostHogClient, PostHogError
from monitor.rules.engine import RuleContext
from monitor.rules.staleness import KIND as STALE_KIND
from monitor.rules.staleness import (
    SOURCE_ERRORS,
    learned_stale_after,
    source_errors_alert,
    stale_sources,
)
from monitor.runs import Run, RunParseError
from monitor.stages import (
    checks,
    cursor,
    decide,
    discover,
    enqueue,
    evaluate,
    explain,
    failures,
    load,
    measure,
    route,
)
from monitor.stages.diff import diff_run
from monitor.stages.discover import INGESTION_GRACE, DiscoveredRun
from monitor.status import publish as publish_state
from monitor.store.base import AlertState, ClusterSnapshot, RunFailure, Store

__all__ = ["INGESTION_GRACE", "CycleResult", "DiscoveredRun", "Monitor"]

log = structlog.get_logger()

# Adaptive polling's memory: the landing times of each job's last runs (see Monitor.landings).
LANDINGS_KEY = "landings"


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

    @classmethod
    def combine(cls, results: list[CycleResult]) -> CycleResult:
        """One cycle's outcome over every project: ok only when every project's was."""
        out = cls(standby=all(r.standby for r in results))
        errors = [r.error for r in results if r.error]
        out.error = "; ".join(errors) if errors else None
        for r in results:
            out.discovered += r.discovered
            out.processed.extend(r.processed)
            out.failed.update(r.failed)
            out.notifications += r.notifications
            out.notices.extend(r.notices)
            out.delivered += r.delivered
        return out


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
        self.jobs = discover.JobIndex(client.clustering_jobs, clock)
        # `replay --since/--until`: only runs that landed in this window (None: open).
        self.replay_window: tuple[datetime | None, datetime | None] = (None, None)
        self._watch_checked = False
        # The last discovery's watched runs, whatever became of them (see `discover`).
        self.landed: list[DiscoveredRun] = []
        # The run being processed, for the daemon's watchdog to blame if the cycle hangs on it.
        self.in_hand: DiscoveredRun | None = None

    # --- discover ------------------------------------------------------------------------------------
    def discover(self, now: datetime) -> list[DiscoveredRun]:
        """The runs to process now. Also keeps `landed`: every watched run PostHog has in the window, processed
        or not, quarantined or not; stale-source checks judge from it, not from what the monitor processed."""
        since, after = discover.discovery_bounds(now, self.cfg.posthog.lookback_days, self.store.cursor())
        found = discover.list_runs(self.client, since, after)
        self.landed = discover.select_runs(found.values(), lambda d: discover.is_watched(d, self.cfg.watch, self.jobs),
                                           self.replay_window, lambda ids: set())
        quarantined = {f.run_id for f in self.store.run_failures(quarantined=True)}
        done = self.store.processed_ids([d.run_id for d in self.landed]) | quarantined
        return [d for d in self.landed if d.run_id not in done]

    def check_watch(self) -> list[str] | None:
        """Warn of watched levels with no enabled job (see discover.levels_without_job); returns them, or
        None when the jobs could not be read. Asked by the first cycle that reaches PostHog (so at start,
        without holding the start up when PostHog is down), from the job list discovery keeps anyway."""
        jobs = self.jobs.get()
        if jobs is None:
            return None
        self._watch_checked = True
        missing = discover.levels_without_job(self.cfg.watch, jobs.values())
        for level in missing:
            log.warning("watched_level_without_job", project_id=self.cfg.posthog.project_id, level=level,
                        jobs=len(jobs), named=self.cfg.watch.jobs or None)
        return missing

    def rewind_cursor(self) -> None:
        """Discovery looks back over the whole look-back window at the next cycle (then moves on as usual)."""
        since = self.clock() - timedelta(days=self.cfg.posthog.lookback_days)
        self.store.set_cursor(since)
        log.info("cursor_rewound", to=since.isoformat())

    # --- one run: load -> diff -> measure -> evaluate -> decide -> route -> enqueue ---------------------
    def fetch_run(self, d: DiscoveredRun) -> Run:
        return load.fetch_run(self.client, d)

    def fetch_metrics(self, run: Run, d: DiscoveredRun) -> dict[int, ClusterMetrics]:
        return self.measure(run, d).metrics

    def measure(self, run: Run, d: DiscoveredRun) -> measure.Measured:
        return measure.measure_run(self.client, run, d,
                                   measure.query_metrics_needed(self.cfg.thresholds, self.cfg.rules))

    def process(self, d: DiscoveredRun, now: datetime) -> Notification | None:
        # The new run first, the previous one after: the answer's buffers are gone before the previous
        # run is read, and its stored bytes go as soon as they are decoded.
        run = self.fetch_run(d)
        prev = load.previous_run(self.store, d.job_key, run)
        prev_lineages = self.store.lineages(prev.run_id) if prev else {}
        vectors = measure.fetch_cluster_vectors(self.client, run, d)
        prev_vectors = emb.decode(self.store.cluster_vectors(prev.run_id)) if prev else None
        diff, lineages = diff_run(prev, run, prev_lineages, threshold=self.cfg.matching.threshold,
                                  prev_vectors=prev_vectors, vectors=vectors)
        measured = self.measure(run, d)
        metrics = measured.metrics
        prev_metrics = measure.stored_metrics(self.store.run_snapshots(prev.run_id)) if prev else {}
        ctx = RuleContext(
            project_id=self.cfg.posthog.project_id, run=run, prev_run=prev, diff=diff, metrics=metrics,
            prev_metrics=prev_metrics, lineages=lineages, prev_lineages=prev_lineages,
            thresholds=self.cfg.thresholds, links=self.links)
        history, run_history = self._rule_history(d.job_key, run) if self.cfg.rules else ([], [])
        ev = evaluate.evaluate_run(ctx, self.cfg.rules, history, run_history)
        alerts = ev.alerts
        if measured.note:
            alerts = [msgspec.structs.replace(a, summary=f"{a.summary} ({measured.note})") for a in alerts]
        for a in alerts:
            telemetry.ALERTS_FIRED.labels(kind=a.kind, severity=a.severity).inc()
        present = {lineages[c.cluster_id]: c.title for c in run.clusters if c.cluster_id in lineages}
        dec = decide.decide_run(
            alerts, self.store.alert_states(d.job_key), run_id=run.run_id, job_key=d.job_key,
            job_name=run.job_name or run.job_id, level=run.level, now=now,
            repeat_interval=timedelta(hours=self.cfg.alerting.repeat_interval_hours), present_lineages=present,
            inhibit=self.cfg.inhibit, silences=self._silences)
        _log_muted(dec)
        notification = None
        outbox: list[route.OutboxRow] = []
        if dec.notify:
            told = explain.explain_alerts(self.client, run, prev, d, dec.notify, diff, self.links)
            notification = route.run_notification(
                run, prev, diff, told, metrics=metrics, prev_metrics=prev_metrics,
                project_id=self.cfg.posthog.project_id, links=self.links, host=self.cfg.posthog.links_host, now=now)
            held = route.is_held(now, d.emitted_at, timedelta(hours=self.cfg.alerting.catch_up_after_hours))
            outbox = self._outbox_for(notification, held=held)
        self.store.commit_run(enqueue.processed_run(
            run, d, lineages=lineages, metrics=metrics, alert_states=dec.lifecycle.states, outbox=outbox,
            run_metrics=ev.run_metrics, now=now, cluster_vectors=emb.encode(vectors)))
        telemetry.RUNS_PROCESSED.labels(level=run.level).inc()
        log.info("run_processed", run_id=run.run_id, job=run.job_name, level=run.level,
                 clusters=len(run.clusters), items=run.clustered_size, prev_run_id=prev.run_id if prev else None,
                 matched=len(diff.matches) if diff else 0, new=len(diff.new) if diff else 0,
                 disappeared=len(diff.disappeared) if diff else 0, alerts=len(alerts), notify=len(dec.notify))
        return notification

    def _rule_history(self, job_key: str, run: Run) -> tuple[list[ClusterSnapshot], list[dict[str, float]]]:
        """The job's earlier runs, as deep as the deepest rule looks, and each one's run-level metrics."""
        snaps = self.store.lineage_history(job_key, before=run.window_end,
                                           runs=evaluate.history_depth(self.cfg.rules))
        order = list(dict.fromkeys(s.run_id for s in snaps))
        return snaps, [evaluate.decode_run_metrics(self.store.kv_get(f"run_metrics:{rid}")) for rid in order]

    def _silences(self) -> list[Silence]:
        silences, unreadable = decide.active_silences(self.cfg.silences, self.store.silences())
        for sid, error in unreadable:
            log.warning("silence_unreadable", silence_id=sid, error=error)
        return silences

    def _outbox_for(self, n: Notification, held: bool = False) -> list[route.OutboxRow]:
        channels = set(self.deliverer.channels if self.deliverer else ())
        rows, unrouted = route.outbox_rows(n, self.cfg.routes, self.cfg.rules, channels, held=held)
        for name, count in unrouted:
            log.warning("alerts_without_channel", route=name, key=n.key, alerts=count)
        return rows

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
        if result.error is None and not self._watch_checked:
            self.check_watch()
        earliest_failed, interrupted = self._process_runs(todo, result, stop)
        result.notifications += self.summarise_held(self.clock())
        if result.error is None:
            self._advance_cursor(todo, result, earliest_failed)
        if result.processed:
            done = set(result.processed)
            self._record_landings([d for d in todo if d.run_id in done])
        if result.error is None and not interrupted:
            # Only when PostHog answered: an outage is not a stale job (readiness reports outages).
            stale = self.check_sources(self.clock(), discovered=self.landed)
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

    def _process_runs(self, todo: list[DiscoveredRun], result: CycleResult,
                      stop: Callable[[], bool] | None) -> tuple[datetime | None, bool]:
        """Each discovered run through the stages, oldest first; (when the first run left undone landed,
        whether `stop` interrupted). A run that fails holds back the later runs of its job (diffs stay in
        order) until it succeeds or is quarantined (monitor/stages/failures.py); then they go on."""
        blocked: set[str] = set()
        earliest_failed: datetime | None = None
        failing = {f.run_id: f for f in self.store.run_failures(quarantined=False)}
        for i, d in enumerate(todo):
            telemetry.CYCLE_RUNS_LEFT.set(len(todo) - i)
            if stop is not None and stop():
                # Everything from here on is left for the next start; the cursor stays before it.
                earliest_failed = d.emitted_at if earliest_failed is None else min(earliest_failed, d.emitted_at)
                log.info("cycle_interrupted", remaining=len(todo) - len(result.processed) - len(result.failed))
                telemetry.CYCLE_RUNS_LEFT.set(0)
                return earliest_failed, True
            if d.job_key in blocked or failures.waiting(failing.get(d.run_id), self.clock()):
                # An earlier run of this job failed, or this one waits for its next try: later ones wait.
                blocked.add(d.job_key)
                earliest_failed = d.emitted_at if earliest_failed is None else min(earliest_failed, d.emitted_at)
                continue
            self.in_hand = d
            try:
                n = self.process(d, self.clock())
            except Exception as exc:  # a bad run must not stop the cycle, nor its job for good
                result.failed[d.run_id] = failures.message(exc)
                if self.run_failed(d, exc, failing.get(d.run_id)):
                    continue  # quarantined: the job's later runs go on, and the cursor may pass it
                blocked.add(d.job_key)
                earliest_failed = d.emitted_at if earliest_failed is None else min(earliest_failed, d.emitted_at)
                continue
            finally:
                self.in_hand = None
            result.processed.append(d.run_id)
            if n is not None:
                result.notifications += 1
                result.notices.append(n)
        telemetry.CYCLE_RUNS_LEFT.set(0)
        return earliest_failed, False

    def run_failed(self, d: DiscoveredRun, exc: BaseException, prev: RunFailure | None = None) -> bool:
        """Log and count a run's failure; unless transient, record it, and quarantine the run with its alert
        once it has failed schedule.run_attempts times (one transaction). True when quarantined."""
        reason = type(exc).__name__
        telemetry.RUN_FAILURES.labels(reason=reason).inc()
        transient = failures.is_transient(exc)
        field_, error = failures.failure_field(exc), failures.describe(exc)
        if not isinstance(exc, (PostHogError, RunParseError, MetricsParseError)):
            log.exception("run_crashed", run_id=d.run_id, job=d.job_name, level=d.level, field=field_)
        log.error("run_failed", run_id=d.run_id, job=d.job_name, level=d.level, error=failures.message(exc),
                  field=field_, reason=reason, transient=transient)
        if transient:
            return False
        now = self.clock()
        sched = self.cfg.schedule
        f = failures.next_failure(prev, d, field=field_, error=error, now=now, attempts_allowed=sched.run_attempts,
                                  retry_seconds=sched.run_retry_seconds)
        if f.quarantined_at is None:
            self.store.record_run_failure(f, now=now)
            log.warning("run_retry_later", run_id=d.run_id, job=d.job_name, attempts=f.attempts,
                        retry_at=f.next_attempt_at.isoformat())
            return False
        alert = failures.quarantine_alert(f, project_id=self.cfg.posthog.project_id, links=self.links)
        n, states, outbox = self._check_outcome([alert], self.store.alert_states(d.job_key), job_key=d.job_key,
                                                now=now, key=f"quarantine:{d.run_id}", run_id=d.run_id,
                                                name=f.job_name, level=d.level, at=d.emitted_at,
                                                run_url=self.links.run(d.run_id))
        self.store.record_run_failure(f, states, outbox, now=now)
        telemetry.RUNS_QUARANTINED.inc()
        log.error("poison_run_quarantined", run_id=d.run_id, job=d.job_name, level=d.level, field=f.field, error=error,
                  attempts=f.attempts, notified=n is not None)
        return True

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
        doc = cursor.add_landings(self.landings(), runs)
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
        n, states_out, outbox = self._check_outcome(alerts, states, job_key=job_key, now=now, key=key,
                                                    run_id=run_id, name=name, level=level, at=at, run_url=run_url)
        self.store.commit_alerts(states_out, outbox, now)
        return n

    def _check_outcome(self, alerts: list[Alert], states: dict[str, AlertState], *, job_key: str, now: datetime,
                       key: str, run_id: str, name: str, level: str, at: datetime, run_url: str,
                       ) -> tuple[Notification | None, list[AlertState], list[route.OutboxRow]]:
        """What `_decide_check` commits: (the notification, alert states, outbox rows)."""
        dec = decide.decide_check(alerts, states, check_id=checks.check_id(now), job_key=job_key, now=now,
                                  repeat_interval=timedelta(hours=self.cfg.alerting.repeat_interval_hours),
                                  silences=self._silences)
        for a in dec.lifecycle.notify:
            telemetry.ALERTS_FIRED.labels(kind=a.kind, severity=a.severity).inc()
        _log_muted(dec)
        n = checks.check_notification(
            dec.notify, key=key, project_id=self.cfg.posthog.project_id, run_id=run_id, name=name, level=level,
            at=at, run_url=run_url, host=self.cfg.posthog.links_host, now=now) if dec.notify else None
        return n, list(dec.lifecycle.states), self._outbox_for(n) if n else []

    def summarise_held(self, now: datetime) -> int:
        """Fold held notifications into one catch-up message per channel; returns how many were queued.

        Idempotent: the summary's key comes from the held entries' ids, and they are marked done only
        after the summary is committed, so a crash in between queues the same summary again, which the
        outbox's unique key drops.
        """
        queued = 0
        for channel, entries in route.held_by_channel(self.store.outbox("pending")).items():
            notices: list[Notification] = []
            for e in entries:
                try:
                    notices.append(msgspec.json.decode(e.payload, type=Notification))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    self.store.mark_failed(e.id, f"undecodable held notification: {exc}")
            if notices:
                n = summarise(notices, key=summary_key([e.id for e in entries]), run_url=self.links.clusters(),
                              now=now, importance=decide.importance)
                self.store.commit_alerts([], [(n.key, channel, msgspec.json.encode(n))], now)
                queued += 1
                log.info("catch_up_summarised", channel=channel, runs=len(notices), alerts=len(n.alerts), key=n.key)
            for e in entries:
                self.store.mark_sent(e.id, now)
        return queued

    def check_sources(self, now: datetime, discovered: Sequence[DiscoveredRun] = ()) -> list[Notification]:
        """Stale-source alerts for watched jobs whose runs stopped landing in PostHog; returns the
        notifications queued. Judged from what PostHog has: every run `discovered` (processed, behind in
        the backlog, failing or quarantined) counts as seen; a monitor that is behind is not a stale job,
        and failures are reported as such (retries, then the quarantine alert), not as silence."""
        stale_after = timedelta(hours=self.cfg.alerting.stale_after_hours)
        if stale_after <= timedelta(0):
            return []
        queued: list[Notification] = []
        for seen in checks.jobs_seen(self.store.last_runs(), discovered, self.jobs.jobs or {}, self.cfg.watch):
            job_key, name, level = seen.job_key, seen.job_name, seen.level
            last_run_id, emitted_at = seen.last_run_id, seen.last_emitted_at
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
        new = cursor.next_cursor(todo, result.processed, earliest_failed, self.store.cursor())
        if new is not None:
            self.store.set_cursor(new)


def _log_muted(dec: decide.Decision) -> None:
    for a, why in dec.inhibited:
        telemetry.ALERTS_SILENCED.labels(kind=a.kind).inc()
        log.info("alert_inhibited", kind=a.kind, run_id=a.run_id, cluster_id=a.cluster_id, by=why)
    for a, s in dec.silenced:
        telemetry.ALERTS_SILENCED.labels(kind=a.kind).inc()
        log.info("alert_silenced", kind=a.kind, run_id=a.run_id, cluster_id=a.cluster_id, silence=s.comment,
                 until=s.until.isoformat() if s.until else None)
