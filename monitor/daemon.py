"""The long-lived process: scheduler, signals, config reload, and the health and metrics port.

One cycle at a time (APScheduler: max one instance, coalesced, with a misfire grace), so a slow cycle
delays the next instead of stacking. SIGTERM/SIGINT stop it: a cycle in flight finishes (every run is
committed in one transaction, so abandoning one at the deadline corrupts nothing). SIGHUP, or an edit
of the config file, reloads the config at the next cycle; an invalid edit is reported and the last good
config stays in force.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor import systemd, telemetry
from monitor.config import Config, ConfigError, SlackConfig, load_config
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Deliverer, Notifier
from monitor.notify.render import Templates, template_env
from monitor.notify.slack import SlackNotifier
from monitor.pacing import Pacing, next_poll_delay
from monitor.pipeline import CycleResult, Monitor
from monitor.posthog.client import PostHogClient, RequestBudget
from monitor.store import Leadership, StoreError, open_leadership, open_store
from monitor.store.retention import PRUNE_EVERY, prune_state

log = structlog.get_logger()
# APScheduler reports every coalesced or skipped slot at WARNING: with one cycle at a time that is normal.
logging.getLogger("apscheduler").setLevel(logging.ERROR)

# One budget per API key for the whole process, whatever the number of projects that share it.
_BUDGETS: dict[str, RequestBudget] = {}


def budget_for(key: str) -> RequestBudget:
    return _BUDGETS.setdefault(key, RequestBudget())


TEMPLATES_ENV = "CLUSTER_MONITOR_TEMPLATES"


def load_templates(environ: Mapping[str, str] = os.environ) -> Templates:
    """The templates notifications render with: a user's folder (CLUSTER_MONITOR_TEMPLATES) in front of
    the shipped ones. Read here, by the wiring, and passed down: rendering itself reads no environment."""
    user = environ.get(TEMPLATES_ENV)
    return template_env(Path(user) if user else None)


def build_notifiers(cfg: Config, templates: Templates | None = None) -> dict[str, Notifier]:
    """`templates`: None reads CLUSTER_MONITOR_TEMPLATES once for all of this config's channels."""
    templates = templates if templates is not None else load_templates()
    notifiers: dict[str, Notifier] = {}
    if cfg.slack is not None:
        notifiers["slack"] = SlackNotifier.from_config(cfg.slack, timezone=cfg.timezone, templates=templates)
    if cfg.email is not None:
        notifiers["email"] = EmailNotifier.from_config(cfg.email, timezone=cfg.timezone, templates=templates)
    # Each route's own destinations, as channels "slack@<route>" and "email@<route>".
    for r in cfg.routes:
        if r.slack is not None and cfg.slack is not None and r.slack.channel:
            notifiers[f"slack@{r.name}"] = SlackNotifier.from_config(
                cfg.slack.model_copy(update={"channel": r.slack.channel, "webhook_url": None}), timezone=cfg.timezone,
                templates=templates)
        elif r.slack is not None and r.slack.webhook_url is not None:
            notifiers[f"slack@{r.name}"] = SlackNotifier.from_config(
                SlackConfig(webhook_url=r.slack.webhook_url, base_url=cfg.slack.base_url if cfg.slack else None),
                timezone=cfg.timezone, templates=templates)
        if r.email is not None and cfg.email is not None:
            notifiers[f"email@{r.name}"] = EmailNotifier.from_config(
                cfg.email.model_copy(update={"to": list(r.email.to)}), timezone=cfg.timezone, templates=templates)
    return notifiers


def build_monitor(cfg: Config, *, clock: Callable[[], datetime] | None = None,
                  sleep: Callable[[float], None] = time.sleep, budget: RequestBudget | None = None,
                  fence: Callable[[], bool] = lambda: True, claim: Callable[[int], bool] | None = None,
                  after_send: Callable[[], None] | None = None) -> Monitor:
    """`budget`: the request budget to draw from; by default the one this process shares per API key.
    `fence`: asked before delivering; `claim`: asked right before each send (see Deliverer); False when
    this replica lost the leader lock.
    `after_send`: the Deliverer's hook between a send and its "sent" mark (the crash test's; None here)."""
    key = cfg.posthog.resolved_api_key()
    client = PostHogClient(cfg.posthog.host, cfg.posthog.project_id, key,
                           timeout=cfg.posthog.timeout_seconds, max_retries=cfg.posthog.max_retries,
                           budget=budget or budget_for(key), sleep=sleep)
    store = open_store(cfg.state)
    deliverer = Deliverer(store, build_notifiers(cfg), max_backoff=cfg.delivery.max_backoff_seconds,
                          max_attempts=cfg.delivery.max_attempts, sleep=sleep, fence=fence, claim=claim,
                          after_send=after_send)
    return Monitor(cfg, client, store, deliverer, clock=clock or (lambda: datetime.now(UTC)))


PUSH_RECHECK_SECONDS = 10.0


@dataclass
class Health:
    started_at: float
    last_success: float | None = None
    last_failure: float | None = None
    ready_after_failure: float = 900.0
    clock: Callable[[], float] = time.time
    # Whether this replica leads, read live (the lock's state, not the last cycle's): a standby is healthy
    # and ready to take over, and says so on /readyz.
    leading: Callable[[], bool] = lambda: True
    # A cycle with no progress for this long is stuck (state.leader_lease_seconds): /healthz fails.
    stuck_after: float = 300.0
    cycle_started: float | None = None
    last_progress: float | None = None

    @property
    def standby(self) -> bool:
        return not self.leading()

    def progress(self) -> None:
        """The cycle moved on (a run done, a send, leadership proved): it is not stuck."""
        self.last_progress = self.clock()
        telemetry.LAST_PROGRESS.set(self.last_progress)

    def alive(self, now: float) -> bool:
        """False while a cycle has made no progress for `stuck_after` seconds: only a restart helps then."""
        if self.cycle_started is None:
            return True
        return now - max(self.cycle_started, self.last_progress or 0.0) <= self.stuck_after

    def ready(self, now: float) -> bool:
        """Ready once a cycle has succeeded and failures have not lasted longer than the bound; before
        that, ready while leading a first cycle that makes progress (a long backlog is work, not trouble)."""
        if not self.alive(now):
            return False
        if self.last_success is None:
            return self.last_failure is None and self.cycle_started is not None and self.leading()
        if self.last_failure is not None and self.last_failure > self.last_success:
            return now - self.last_success <= self.ready_after_failure
        return True


class _HealthHandler(BaseHTTPRequestHandler):
    server: _HealthServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        health = self.server.health
        if self.path == "/healthz":
            alive = health.alive(health.clock())
            self._reply(200 if alive else 503, b"ok\n" if alive else b"stuck\n", "text/plain")
        elif self.path == "/readyz":
            # A standby is ready (it can take over at its next cycle): marking it unready would stall
            # rolling updates and count it against PodDisruptionBudgets. Its role is in the body and in
            # the cluster_monitor_is_leader gauge.
            ok = health.ready(health.clock())
            body = (b"ready standby\n" if health.standby else b"ready\n") if ok else b"not ready\n"
            self._reply(200 if ok else 503, body, "text/plain")
        elif self.path == "/metrics":
            telemetry.IS_LEADER.set(0 if health.standby else 1)  # the lock's state now, not at the last cycle
            self._reply(200, generate_latest(telemetry.REGISTRY), CONTENT_TYPE_LATEST)
        else:
            self._reply(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        """The push path: a PostHog webhook says a run landed; the body is only a hint, never trusted."""
        if self.path.split("?", 1)[0] != "/hooks/posthog" or self.server.on_push is None:
            self._reply(404, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PUSH_BYTES:
            self._reply(413, b"too large\n", "text/plain")
            return
        body = self.rfile.read(length)
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not self.server.push_token or not hmac.compare_digest(token, self.server.push_token):
            log.warning("push_rejected", reason="bad token", client=self.client_address[0])
            self._reply(401, b"unauthorized\n", "text/plain")
            return
        event = _push_event(body)
        if event is not None and event not in PUSH_EVENTS:
            self._reply(202, b"ignored\n", "text/plain")
            return
        telemetry.PUSHES.inc()
        self.server.on_push()
        self._reply(202, b"accepted\n", "text/plain")

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


MAX_PUSH_BYTES = 1_000_000
PUSH_EVENTS = frozenset({"$ai_trace_clusters", "$ai_generation_clusters"})


def _push_event(body: bytes) -> str | None:
    """The event name of a PostHog webhook body ({"event": {"event": ...}} or {"event": ...}), if any."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return None
    ev = doc.get("event") if isinstance(doc, dict) else None
    if isinstance(ev, dict):
        ev = ev.get("event")
    return ev if isinstance(ev, str) else None


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], health: Health, *, push_token: str | None = None,
                 on_push: Callable[[], None] | None = None) -> None:
        self.health = health
        self.push_token = push_token
        self.on_push = on_push
        super().__init__(addr, _HealthHandler)


@dataclass
class _Project:
    """One watched PostHog project: its config, its leader lock and its monitor (own client and state)."""

    cfg: Config
    leader: Leadership
    monitor: Monitor
    standby_logged: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.cfg.posthog.host, self.cfg.posthog.project_id

    def close(self) -> None:
        self.monitor.client.close()
        self.monitor.store.close()


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
        self._mtime = self._config_mtime()
        self._clock = clock
        self._after_send = after_send
        # The top-level project first, then those of `projects:`, polled in turn in every cycle.
        self.projects = [self._open(c) for c in self.cfg.per_project()]
        self.health = Health(started_at=wall_clock(), clock=wall_clock,
                             ready_after_failure=self.cfg.server.ready_after_failure_seconds,
                             leading=self._leading, stuck_after=self.cfg.state.leader_lease_seconds)
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self._cycle_lock = threading.Lock()
        self._on_cycle = on_cycle
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._health_server: _HealthServer | None = None

    def close(self) -> None:
        for p in self.projects:
            p.close()
            # Closing the lock's session hands leadership over at the standby's next cycle.
            p.leader.release()

    def _open(self, cfg: Config, leader: Leadership | None = None) -> _Project:
        lead = leader or open_leadership(cfg.state, cfg.posthog.project_id)
        return _Project(cfg=cfg, leader=lead, monitor=build_monitor(
            cfg, clock=self._clock, fence=lambda: self._proved(lead.verify()),
            claim=lambda entry_id: self._proved(lead.claim(entry_id)), after_send=self._after_send))

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

    def _config_mtime(self) -> float | None:
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return None

    def maybe_reload(self) -> None:
        mtime = self._config_mtime()
        if not self._reload_requested.is_set() and mtime == self._mtime:
            return
        self._reload_requested.clear()
        self._mtime = mtime
        try:
            cfg = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_rejected", path=str(self.config_path), problems=exc.problems)
            return
        if cfg == self.cfg:
            return
        old = {p.key: p for p in self.projects}
        fresh: list[_Project] = []
        for c in cfg.per_project():
            prev = old.pop((c.posthog.host, c.posthog.project_id), None)
            keep_lock = prev is not None and prev.cfg.state.same_place(c.state)
            if prev is not None:
                prev.close()
                if not keep_lock:
                    prev.leader.release()
            project = self._open(c, prev.leader if prev is not None and keep_lock else None)
            if prev is not None and c.watch != prev.cfg.watch:
                # Newly watched jobs or levels have runs behind the cursor: look back over the whole window
                # once (runs already processed are skipped by id), so nothing of theirs is skipped.
                project.monitor.rewind_cursor()
            fresh.append(project)
        for gone in old.values():  # projects removed from the config
            gone.close()
            gone.leader.release()
        self.projects = fresh
        self.cfg = cfg
        log.info("config_reloaded", path=str(self.config_path), projects=len(fresh))

    def run_cycle(self) -> CycleResult | None:
        if not self._cycle_lock.acquire(blocking=False):
            return None
        try:
            self.health.cycle_started = self.health.clock()
            self.maybe_reload()
            results = [self._project_cycle(p) for p in self.projects]
            result = results[0] if len(results) == 1 else _combine(results)
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

    def _project_cycle(self, p: _Project) -> CycleResult:
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

    def _lead(self, p: _Project) -> CycleResult | None:
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

    def _should_stop(self, p: _Project) -> bool:
        """Asked between runs: stop on shutdown, and stop acting at once if the leader lock was lost."""
        return self.stop_event.is_set() or not self._proved(p.leader.verify())

    def _pace(self) -> None:
        """Adaptive polling: move the next scheduled cycle to the delay the landing history calls for."""
        sched = self.cfg.schedule
        if sched.idle_interval_seconds is None or sched.cron or not self._scheduler.running:
            return
        pacing = Pacing(interval=sched.interval_seconds, idle_interval=sched.idle_interval_seconds,
                        window=sched.landing_window_minutes * 60.0)
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
        srv = self.cfg.server
        if srv.port is None:
            return
        token = srv.push_token.get_secret_value() if srv.push_token else None
        self._health_server = _HealthServer((srv.host, srv.port), self.health, push_token=token,
                                            on_push=self.request_cycle if token else None)
        threading.Thread(target=self._health_server.serve_forever, name="health", daemon=True).start()
        log.info("health_server_started", host=srv.host, port=self._health_server.server_address[1])

    def install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            self.stop_event.set()

        def reload(_signum: int, _frame: Any) -> None:
            self._reload_requested.set()

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


def _combine(results: list[CycleResult]) -> CycleResult:
    """One cycle's outcome over every project: ok only when every project's was."""
    out = CycleResult(standby=all(r.standby for r in results))
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
