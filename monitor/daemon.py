"""The long-lived process: scheduler, signals and the serve loop.

One cycle at a time (APScheduler: max one instance, coalesced, with a misfire grace), so a slow cycle
delays the next instead of stacking. SIGTERM/SIGINT stop it: a cycle in flight finishes (every run is
committed in one transaction, so abandoning one at the deadline corrupts nothing). SIGHUP, or an edit
of the config file, reloads the config at the next cycle (monitor/app/reload.py). Wiring is in
monitor/app/wiring.py, the HTTP port in monitor/app/http.py, adaptive polling in monitor/pacing.py.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor import systemd, telemetry
from monitor.app.http import Health, HealthServer, start_http_server
from monitor.app.reload import ConfigWatch, reconcile_projects
from monitor.app.slack_actions import SlackActions
from monitor.app.wiring import Project, open_project
from monitor.config import Config, load_config
from monitor.pacing import Pacing, next_poll_delay
from monitor.pipeline import CycleResult, Monitor
from monitor.store import Leadership, StoreError
from monitor.store.retention import PRUNE_EVERY, prune_state

log = structlog.get_logger()
# APScheduler reports every coalesced or skipped slot at WARNING: with one cycle at a time that is normal.
logging.getLogger("apscheduler").setLevel(logging.ERROR)

PUSH_RECHECK_SECONDS = 10.0


class Daemon:
    def __init__(self, config_path: str | Path, *, cfg: Config | None = None,
                 on_cycle: Callable[[CycleResult], None] | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], datetime] | None = None,
                 after_send: Callable[[], None] | None = None) -> None:
        # `clock` is the monitor's idea of now (the demo runs on its local PostHog's virtual clock);
        # `wall_clock` times health and readiness; `after_send` goes to every project's Deliverer
        # (tests/support/crashing_daemon.py kills the process there; None in production).
        self.config_path = Path(config_path)
        self.cfg = cfg or load_config(self.config_path)
        self._watch = ConfigWatch(self.config_path)
        self._clock = clock
        self._after_send = after_send
        # The top-level project first, then those of `projects:`, polled in turn in every cycle.
        self.projects = [self._open(c) for c in self.cfg.per_project()]
        self.health = Health(started_at=wall_clock(), clock=wall_clock,
                             ready_after_failure=self.cfg.server.ready_after_failure_seconds,
                             leading=self._leading, stuck_after=self.cfg.state.leader_lease_seconds)
        self.stop_event = threading.Event()
        self._cycle_lock = threading.Lock()
        self._on_cycle = on_cycle
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._health_server: HealthServer | None = None

    def close(self) -> None:
        for p in self.projects:
            p.close()
            # Closing the lock's session hands leadership over at the standby's next cycle.
            p.leader.release()

    def _open(self, cfg: Config, leader: Leadership | None = None) -> Project:
        def fenced(lead: Leadership) -> tuple[Callable[[], bool], Callable[[int], bool]]:
            return (lambda: self._proved(lead.verify())), (lambda entry_id: self._proved(lead.claim(entry_id)))

        return open_project(cfg, leader, clock=self._clock, fences=fenced, after_send=self._after_send)

    def _leading(self) -> bool:
        return any(p.leader.held for p in self.projects)

    def _proved(self, leading: bool) -> bool:
        """A fence answered: the cycle is making progress (whatever the answer), and the gauge follows."""
        self.health.progress()
        telemetry.IS_LEADER.set(1 if self._leading() else 0)
        return leading

    def heartbeat(self) -> None:
        """Ping systemd's watchdog while alive (a stuck cycle stops the pings, and systemd restarts the
        process). Between cycles, also renew the leader's lease (a leader idle until its next cycle is not
        hung) and learn at once of a lock lost meanwhile; during a cycle the cycle renews it as it
        progresses: a stuck cycle must let its lease run out."""
        if self.health.alive(self.health.clock()):
            systemd.notify("WATCHDOG=1")
        if self.health.cycle_started is not None:
            return
        for p in list(self.projects):
            if p.leader.held:
                p.leader.verify()
        telemetry.IS_LEADER.set(1 if self._leading() else 0)

    @property
    def monitor(self) -> Monitor:
        """The top-level project's monitor."""
        return self.projects[0].monitor

    @property
    def leader(self) -> Leadership:
        return self.projects[0].leader

    def request_reload(self) -> None:
        """Reload the config at the next cycle (SIGHUP), even if the file's mtime did not move."""
        self._watch.requested.set()

    def maybe_reload(self) -> None:
        cfg = self._watch.changed_config(self.cfg)
        if cfg is None:
            return
        self.projects = reconcile_projects(self.projects, cfg, self._open)
        self.cfg = cfg
        log.info("config_reloaded", path=str(self.config_path), projects=len(self.projects))

    def run_cycle(self) -> CycleResult | None:
        if not self._cycle_lock.acquire(blocking=False):
            return None
        try:
            self.health.cycle_started = self.health.clock()
            self.maybe_reload()
            results = [self._project_cycle(p) for p in self.projects]
            result = results[0] if len(results) == 1 else CycleResult.combine(results)
            telemetry.IS_LEADER.set(1 if self._leading() else 0)
            self._pace()
            now = self.health.clock()
            if result.ok:
                self.health.last_success = now
            else:
                self.health.last_failure = now
            if self._on_cycle is not None:
                self._on_cycle(result)
            return result
        finally:
            self.health.cycle_started = None
            self._cycle_lock.release()

    def _project_cycle(self, p: Project) -> CycleResult:
        if self.stop_event.is_set():
            return CycleResult()
        result = self._lead(p)
        if result is not None:
            return result
        try:
            return p.monitor.cycle(stop=lambda: self._should_stop(p))
        except Exception as exc:  # the daemon outlives any bug in one cycle; the next one retries
            log.exception("cycle_crashed", project_id=p.cfg.posthog.project_id)
            return CycleResult(error=f"{type(exc).__name__}: {exc}")

    def _lead(self, p: Project) -> CycleResult | None:
        """None when this replica is the project's leader and should run its cycle; otherwise the cycle's
        result: standby (another replica leads) or an error (PostgreSQL unreachable: nobody can be sure
        to lead)."""
        try:
            leading = p.leader.acquire()
        except StoreError as exc:
            log.error("leader_check_failed", project_id=p.cfg.posthog.project_id, error=str(exc))
            return CycleResult(error=str(exc))
        finally:
            telemetry.IS_LEADER.set(1 if self._leading() else 0)  # as soon as it changes, not at the cycle's end
        if leading:
            p.standby_logged = False
            return None
        if not p.standby_logged:
            log.info("leader_standby", project_id=p.cfg.posthog.project_id, state=p.cfg.state.describe())
            p.standby_logged = True
        return CycleResult(standby=True)

    def prune_state(self) -> None:
        """Retention (monitor/store/retention.py) for each project this replica leads."""
        for p in list(self.projects):
            if p.leader.held:
                prune_state(p.monitor.store, p.cfg, p.monitor.clock())

    def _should_stop(self, p: Project) -> bool:
        """Asked between runs: stop on shutdown, and stop acting at once if the leader lock was lost."""
        return self.stop_event.is_set() or not self._proved(p.leader.verify())

    def _pace(self) -> None:
        """Adaptive polling: move the next scheduled cycle to the delay the landing history calls for."""
        pacing = Pacing.from_schedule(self.cfg.schedule)
        if pacing is None or not self._scheduler.running:
            return
        landings = {f"{p.cfg.posthog.project_id}:{job}": times for p in self.projects
                    for job, times in p.monitor.landings().items()}
        delay = next_poll_delay(landings, self.monitor.clock(), pacing)
        job = self._scheduler.get_job("cycle")
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        log.debug("next_poll", delay_s=round(delay, 1))

    def _keep_lease(self) -> None:
        every = min(self.cfg.state.leader_lease_seconds / 3, 10.0)
        while not self.stop_event.wait(every):
            try:
                self.heartbeat()
            except Exception:  # a bug here must not end the heartbeat for good
                log.exception("heartbeat_crashed")

    def request_cycle(self) -> None:
        """Run a cycle now (pushed), and once more shortly after: PostHog may take a few seconds to make
        a just-ingested event queryable. A cycle already running is followed by another."""
        now = datetime.now(UTC)
        for i, delay in enumerate((0.0, PUSH_RECHECK_SECONDS)):
            self._scheduler.add_job(self._pushed_cycle, "date", run_date=now + timedelta(seconds=delay),
                                    id=f"push-{i}", replace_existing=True, misfire_grace_time=60)

    def _pushed_cycle(self) -> None:
        while self.run_cycle() is None and not self.stop_event.is_set():
            # A scheduled cycle holds the lock: wait for it, then run, since it may have missed the run.
            with self._cycle_lock:
                pass

    def _trigger(self) -> IntervalTrigger | CronTrigger:
        sched = self.cfg.schedule
        if sched.cron:
            return CronTrigger.from_crontab(sched.cron, timezone="UTC")
        return IntervalTrigger(seconds=sched.interval_seconds, timezone="UTC")

    def start_health_server(self) -> None:
        # Clicks are dated by the wall clock, as `silence add` and `ack` date theirs (not the demo's virtual one).
        actions = SlackActions(lambda: self.cfg, wall_clock=self.health.clock)
        self._health_server = start_http_server(self.cfg.server, self.health, self.request_cycle,
                                                slack_actions=actions.handle)

    def install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            self.stop_event.set()

        def reload(_signum: int, _frame: Any) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, reload)

    def serve(self, *, run_first: bool = True, shutdown_deadline: float = 30.0) -> int:
        """Run until stopped; returns the process exit code."""
        self.start_health_server()
        self._scheduler.add_job(
            self.run_cycle, self._trigger(), id="cycle", max_instances=1, coalesce=True,
            misfire_grace_time=self.cfg.schedule.misfire_grace_seconds,
            next_run_time=datetime.now(UTC) if run_first else None)
        # Retention beside the cycles, in the scheduler's worker pool: pruning never holds a cycle up.
        self._scheduler.add_job(
            self.prune_state, IntervalTrigger(seconds=PRUNE_EVERY.total_seconds(), timezone="UTC"), id="prune",
            max_instances=1, coalesce=True, next_run_time=datetime.now(UTC) + timedelta(minutes=1))
        self._scheduler.start()
        # The idle leader's heartbeat, a few times per lease (and at least every 10 s, so a lost lock shows).
        threading.Thread(target=self._keep_lease, name="lease", daemon=True).start()
        systemd.notify("READY=1")
        log.info("daemon_started", project_id=self.cfg.posthog.project_id, host=self.cfg.posthog.host,
                 projects=len(self.projects),
                 interval_s=self.cfg.schedule.interval_seconds, cron=self.cfg.schedule.cron,
                 state=self.cfg.state.describe())
        self.stop_event.wait()
        systemd.notify("STOPPING=1")
        self._scheduler.shutdown(wait=False)
        # Let a cycle in flight finish its current run; a run is one transaction, so stopping later is safe.
        finished = self._cycle_lock.acquire(timeout=shutdown_deadline)
        if finished:
            self._cycle_lock.release()
        else:
            log.warning("shutdown_deadline_passed", seconds=shutdown_deadline)
        if self._health_server is not None:
            self._health_server.shutdown()
        if finished:
            self.close()
        log.info("daemon_stopped", clean=finished)
        return 0
