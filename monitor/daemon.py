"""The long-lived process: scheduler, signals and the serve loop.

One cycle at a time (APScheduler: max one instance, coalesced, with a misfire grace), so a slow cycle
delays the next instead of stacking. SIGTERM/SIGINT stop it: a cycle in flight finishes its run, within
schedule.shutdown_deadline_seconds. A watchdog abandons a cycle that makes no progress for
schedule.cycle_timeout_seconds (it reports it, blames the run in hand, and stops the process). When work is
abandoned the process exits non-zero, with os._exit if a worker thread is still stuck (Python cannot stop a
thread, and the scheduler's workers are not daemon threads): that is safe because every run, alert and
notification is committed in one store transaction, so an unfinished one is rolled back (SQLite's journal,
PostgreSQL's dropped session) and done again after the restart. SIGHUP, or an edit
of the config file, reloads the config at the next cycle (monitor/app/reload.py): a new schedule
reschedules the cycle job, a new `server:` reopens the HTTP port, a moved state waits for a restart. Wiring is in
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
from monitor.app.reload import ConfigWatch, plan_reload, reconcile_projects
from monitor.app.slack_actions import SlackActions
from monitor.app.wiring import Project, open_project
from monitor.config import Config, ServerConfig, load_config
from monitor.pacing import Pacing, next_poll_delay
from monitor.pipeline import CycleResult, DiscoveredRun, Monitor
from monitor.store import Leadership, StoreError
from monitor.store.retention import PRUNE_EVERY, prune_state

log = structlog.get_logger()
# APScheduler reports every coalesced or skipped slot at WARNING: with one cycle at a time that is normal.
logging.getLogger("apscheduler").setLevel(logging.ERROR)

PUSH_RECHECK_SECONDS = 10.0
# The exit code when work was abandoned (a stuck cycle, or the shutdown deadline passed): restart me.
EXIT_ABANDONED = 3


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
        self.stop_signal: str | None = None  # the signal that asked to stop (None: stopped from code)
        self._cycle_lock = threading.Lock()
        self._on_cycle = on_cycle
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._health_server: HealthServer | None = None
        # Set by the watchdog when it gave up on a cycle: the process then exits non-zero.
        self.abandoned = False
        self._serving = False  # start() ran: the HTTP port follows reloads

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
        new = self._watch.changed_config(self.cfg)
        if new is None:
            return
        plan = plan_reload(self.cfg, new)
        for key, why in plan.needs_restart:
            log.warning("config_reload_needs_restart", path=str(self.config_path), section=key, reason=why)
        old, changed = self.cfg, plan.changed(self.cfg)
        if not changed:
            return
        self.projects = reconcile_projects(self.projects, plan.cfg, self._open)
        self.cfg = plan.cfg
        if plan.schedule:
            self._apply_schedule()
        if plan.server:
            self._apply_server(old.server)
        log.info("config_reloaded", path=str(self.config_path), projects=len(self.projects), sections=changed)

    def _apply_schedule(self) -> None:
        """The cycle job on the new trigger (its next slot counted from now) and misfire grace."""
        if not self._scheduler.running or self._scheduler.get_job("cycle") is None:
            return  # not serving (a test driving cycles by hand): serve() reads self.cfg when it starts
        self._scheduler.reschedule_job("cycle", trigger=self._trigger())
        self._scheduler.modify_job("cycle", misfire_grace_time=self.cfg.schedule.misfire_grace_seconds)

    def _apply_server(self, old: ServerConfig) -> None:
        """Readiness takes the new bound at once; a new host, port or push token reopens the HTTP port. If
        the new port cannot be opened (taken), the old one is opened again and the error logged."""
        new = self.cfg.server
        self.health.ready_after_failure = new.ready_after_failure_seconds
        if not self._serving or (old.host, old.port, old.push_token) == (new.host, new.port, new.push_token):
            return
        if self._health_server is not None:
            self._health_server.shutdown()
            self._health_server.server_close()
            self._health_server = None
        try:
            self.start_health_server()
        except OSError as exc:
            log.error("config_reload_failed", section="server", host=new.host, port=new.port, error=str(exc))
            self.cfg = self.cfg.model_copy(update={"server": old})
            try:
                self.start_health_server()
            except OSError as again:
                log.error("health_server_failed", host=old.host, port=old.port, error=str(again))

    def _reload_between_cycles(self) -> None:
        """A reload asked between cycles applies within seconds, not at the next cycle (a daily cron
        would otherwise keep the old schedule for a day). A cycle in flight reloads at its own start."""
        if self._cycle_lock.acquire(blocking=False):
            try:
                self.maybe_reload()
            finally:
                self._cycle_lock.release()

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
                prune_state(p.monitor.store, p.cfg, p.monitor.clock(), p.leader)

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

    def watchdog(self) -> bool:
        """Abandon a cycle that made no progress for schedule.cycle_timeout_seconds (the measure /healthz
        uses): report it (log, metric), count it as a failure of the run in hand (a run that hangs the
        monitor every time becomes a poison run, quarantined after schedule.run_attempts restarts) and stop
        the daemon, which exits non-zero for its supervisor to restart it. True when it abandoned."""
        bound = self.cfg.schedule.cycle_timeout_seconds
        if bound is None or self.abandoned:
            return False
        stalled = self.health.stalled_for(self.health.clock())
        if stalled <= bound:
            return False
        self.abandoned = True
        telemetry.CYCLES_ABANDONED.inc()
        in_hand = [(p, p.monitor.in_hand) for p in self.projects if p.monitor.in_hand is not None]
        log.error("cycle_abandoned", stalled_s=round(stalled, 1), bound_s=bound,
                  run_ids=[d.run_id for _p, d in in_hand if d is not None])
        for p, d in in_hand:
            if d is not None:
                self._blame(p, d, stalled)
        self.stop_event.set()
        return True

    def _blame(self, p: Project, d: DiscoveredRun, stalled: float) -> None:
        """Record the stuck run's failure, in a thread of its own: the stuck cycle may hold the store's lock."""
        def record() -> None:
            try:
                prev = next((f for f in p.monitor.store.run_failures(quarantined=False) if f.run_id == d.run_id),
                            None)
                p.monitor.run_failed(d, TimeoutError(f"no progress for {stalled:.0f} s: the cycle was abandoned"),
                                     prev)
            except Exception:
                log.exception("abandoned_run_unrecorded", run_id=d.run_id)

        t = threading.Thread(target=record, name="blame", daemon=True)
        t.start()
        t.join(timeout=5.0)

    def _watch_cycles(self) -> None:
        bound = self.cfg.schedule.cycle_timeout_seconds
        every = min(max((bound or 60.0) / 10, 0.2), 10.0)
        while not self.stop_event.wait(every):
            try:
                self.watchdog()
            except Exception:  # a bug here must not end the watchdog for good
                log.exception("watchdog_crashed")

    def _keep_lease(self) -> None:
        every = min(self.cfg.state.leader_lease_seconds / 3, 10.0)
        while not self.stop_event.wait(every):
            try:
                self.heartbeat()
                self._reload_between_cycles()
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
            # No logging here: the handler runs on the main thread between two of its bytecodes, possibly
            # inside a log call that holds structlog's (non-reentrant) lock on stderr, and would wait for
            # it forever. serve() logs the request once it wakes.
            self.stop_signal = signal.Signals(signum).name
            self.stop_event.set()

        def reload(_signum: int, _frame: Any) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, reload)

    def start(self, *, run_first: bool = True) -> None:
        """The HTTP port, the scheduled jobs and the lease heartbeat, all in background threads."""
        self._serving = True
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
        threading.Thread(target=self._watch_cycles, name="watchdog", daemon=True).start()
        systemd.notify("READY=1")
        log.info("daemon_started", project_id=self.cfg.posthog.project_id, host=self.cfg.posthog.host,
                 projects=len(self.projects),
                 interval_s=self.cfg.schedule.interval_seconds, cron=self.cfg.schedule.cron,
                 state=self.cfg.state.describe())

    def serve(self, *, run_first: bool = True, shutdown_deadline: float | None = None) -> int:
        """Run until stopped; returns the process exit code: 0, or EXIT_ABANDONED when work was abandoned
        (the watchdog gave up on a cycle, or a cycle did not finish within the shutdown deadline; then a
        worker thread may still be stuck, and the caller must end the process with os._exit)."""
        deadline = self.cfg.schedule.shutdown_deadline_seconds if shutdown_deadline is None else shutdown_deadline
        self.start(run_first=run_first)
        self.stop_event.wait()
        if self.stop_signal is not None:
            log.info("shutdown_requested", signal=self.stop_signal)
        systemd.notify("STOPPING=1")
        self._scheduler.shutdown(wait=False)
        # Let a cycle in flight finish its current run; a run is one transaction, so stopping later is safe.
        finished = self._cycle_lock.acquire(timeout=deadline)
        if finished:
            self._cycle_lock.release()
        else:
            log.warning("shutdown_deadline_passed", seconds=deadline)
        if self._health_server is not None:
            self._health_server.shutdown()
        if finished:
            self.close()
        code = 0 if finished and not self.abandoned else EXIT_ABANDONED
        log.info("daemon_stopped", clean=finished, abandoned=self.abandoned, exit_code=code)
        return code
