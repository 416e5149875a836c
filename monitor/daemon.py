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
import signal
import threading
import time
from collections.abc import Callable
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

from monitor import telemetry
from monitor.config import Config, ConfigError, load_config
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Deliverer, Notifier
from monitor.notify.slack import SlackNotifier
from monitor.pacing import Pacing, next_poll_delay
from monitor.pipeline import CycleResult, Monitor
from monitor.posthog.client import PostHogClient, RequestBudget
from monitor.store.sqlite import SQLiteStore

log = structlog.get_logger()
# APScheduler reports every coalesced or skipped slot at WARNING: with one cycle at a time that is normal.
logging.getLogger("apscheduler").setLevel(logging.ERROR)

# One budget per API key for the whole process, whatever the number of projects that share it.
_BUDGETS: dict[str, RequestBudget] = {}


def budget_for(key: str) -> RequestBudget:
    return _BUDGETS.setdefault(key, RequestBudget())


def build_notifiers(cfg: Config) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    if cfg.slack is not None:
        notifiers["slack"] = SlackNotifier.from_config(cfg.slack, timezone=cfg.timezone)
    if cfg.email is not None:
        notifiers["email"] = EmailNotifier.from_config(cfg.email, timezone=cfg.timezone)
    return notifiers


def build_monitor(cfg: Config, *, clock: Callable[[], datetime] | None = None,
                  sleep: Callable[[float], None] = time.sleep, budget: RequestBudget | None = None) -> Monitor:
    """`budget`: the request budget to draw from; by default the one this process shares per API key."""
    key = cfg.posthog.resolved_api_key()
    client = PostHogClient(cfg.posthog.host, cfg.posthog.project_id, key,
                           timeout=cfg.posthog.timeout_seconds, max_retries=cfg.posthog.max_retries,
                           budget=budget or budget_for(key), sleep=sleep)
    store = SQLiteStore(cfg.state.path)
    deliverer = Deliverer(store, build_notifiers(cfg), max_backoff=cfg.delivery.max_backoff_seconds,
                          max_attempts=cfg.delivery.max_attempts, sleep=sleep)
    return Monitor(cfg, client, store, deliverer, clock=clock or (lambda: datetime.now(UTC)))


PUSH_RECHECK_SECONDS = 10.0


@dataclass
class Health:
    started_at: float
    last_success: float | None = None
    last_failure: float | None = None
    ready_after_failure: float = 900.0
    clock: Callable[[], float] = time.time

    def ready(self, now: float) -> bool:
        """Ready once a cycle has succeeded and failures have not lasted longer than the bound."""
        if self.last_success is None:
            return False
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
            self._reply(200, b"ok\n", "text/plain")
        elif self.path == "/readyz":
            ok = health.ready(health.clock())
            self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
        elif self.path == "/metrics":
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


class Daemon:
    def __init__(self, config_path: str | Path, *, cfg: Config | None = None,
                 on_cycle: Callable[[CycleResult], None] | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], datetime] | None = None) -> None:
        # `clock` is the monitor's idea of now (the demo runs on its local PostHog's virtual clock);
        # `wall_clock` times health and readiness.
        self.config_path = Path(config_path)
        self.cfg = cfg or load_config(self.config_path)
        self._mtime = self._config_mtime()
        self._clock = clock
        self.monitor = build_monitor(self.cfg, clock=clock)
        self.health = Health(started_at=wall_clock(), clock=wall_clock,
                             ready_after_failure=self.cfg.server.ready_after_failure_seconds)
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self._cycle_lock = threading.Lock()
        self._on_cycle = on_cycle
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._health_server: _HealthServer | None = None

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
        old = self.monitor
        self.monitor = build_monitor(cfg, clock=self._clock)
        old.client.close()
        old.store.close()
        self.cfg = cfg
        log.info("config_reloaded", path=str(self.config_path))

    def run_cycle(self) -> CycleResult | None:
        if not self._cycle_lock.acquire(blocking=False):
            return None
        try:
            self.maybe_reload()
            try:
                result = self.monitor.cycle(stop=self.stop_event.is_set)
            except Exception as exc:  # the daemon outlives any bug in one cycle; the next one retries
                log.exception("cycle_crashed")
                result = CycleResult(error=f"{type(exc).__name__}: {exc}")
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
            self._cycle_lock.release()

    def _pace(self) -> None:
        """Adaptive polling: move the next scheduled cycle to the delay the landing history calls for."""
        sched = self.cfg.schedule
        if sched.idle_interval_seconds is None or sched.cron or not self._scheduler.running:
            return
        pacing = Pacing(interval=sched.interval_seconds, idle_interval=sched.idle_interval_seconds,
                        window=sched.landing_window_minutes * 60.0)
        delay = next_poll_delay(self.monitor.landings(), self.monitor.clock(), pacing)
        job = self._scheduler.get_job("cycle")
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        log.debug("next_poll", delay_s=round(delay, 1))

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
        self._scheduler.start()
        log.info("daemon_started", project_id=self.cfg.posthog.project_id, host=self.cfg.posthog.host,
                 interval_s=self.cfg.schedule.interval_seconds, cron=self.cfg.schedule.cron,
                 state=str(self.cfg.state.path))
        self.stop_event.wait()
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
            self.monitor.client.close()
            self.monitor.store.close()
        log.info("daemon_stopped", clean=finished)
        return 0
