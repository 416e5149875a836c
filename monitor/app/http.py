"""The daemon's HTTP port: /healthz (alive: no cycle stuck), /readyz (a cycle succeeded lately), /metrics,
the push hook POST /hooks/posthog (a PostHog webhook saying a run landed; only a hint, never trusted) and
Slack's button clicks, POST /slack/actions (signed; monitor/app/slack_actions.py).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor import telemetry
from monitor.config import ServerConfig

log = structlog.get_logger()

MAX_PUSH_BYTES = 1_000_000
# POST /slack/actions: (body, headers) -> (status, body); monitor/app/slack_actions.py.
SlackActionHandler = Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]
PUSH_EVENTS = frozenset({"$ai_trace_clusters", "$ai_generation_clusters"})


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

    def stalled_for(self, now: float) -> float:
        """Seconds the cycle in flight has gone without progress (0 between cycles): /healthz and the
        daemon's watchdog (schedule.cycle_timeout_seconds) both judge a cycle by it."""
        if self.cycle_started is None:
            return 0.0
        return now - max(self.cycle_started, self.last_progress or 0.0)

    def alive(self, now: float) -> bool:
        """False while a cycle has made no progress for `stuck_after` seconds: only a restart helps then."""
        return self.stalled_for(now) <= self.stuck_after

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
    server: HealthServer

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
        if self.path.split("?", 1)[0] == "/slack/actions" and self.server.slack_actions is not None:
            self._slack_actions(self.server.slack_actions)
            return
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
        event = push_event(body)
        if event is not None and event not in PUSH_EVENTS:
            self._reply(202, b"ignored\n", "text/plain")
            return
        telemetry.PUSHES.inc()
        self.server.on_push()
        self._reply(202, b"accepted\n", "text/plain")

    def _slack_actions(self, handle: SlackActionHandler) -> None:
        """A button click from Slack (monitor/app/slack_actions.py verifies and acts)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PUSH_BYTES:
            self._reply(413, b"too large\n", "text/plain")
            return
        status, body = handle(self.rfile.read(length), dict(self.headers.items()))
        self._reply(status, body, "text/plain")

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def push_event(body: bytes) -> str | None:
    """The event name of a PostHog webhook body ({"event": {"event": ...}} or {"event": ...}), if any."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return None
    ev = doc.get("event") if isinstance(doc, dict) else None
    if isinstance(ev, dict):
        ev = ev.get("event")
    return ev if isinstance(ev, str) else None


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], health: Health, *, push_token: str | None = None,
                 on_push: Callable[[], None] | None = None, slack_actions: SlackActionHandler | None = None) -> None:
        self.slack_actions = slack_actions
        self.health = health
        self.push_token = push_token
        self.on_push = on_push
        super().__init__(addr, _HealthHandler)


def start_http_server(srv: ServerConfig, health: Health, on_push: Callable[[], None], *,
                      slack_actions: SlackActionHandler | None = None) -> HealthServer | None:
    """Serve the port in a daemon thread; None when no port is configured. The push hook is on only
    with a push token; POST /slack/actions only with a handler (it answers 404 itself while
    slack.actions is off)."""
    if srv.port is None:
        return None
    token = srv.push_token.get_secret_value() if srv.push_token else None
    server = HealthServer((srv.host, srv.port), health, push_token=token, on_push=on_push if token else None,
                          slack_actions=slack_actions)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health_server_started", host=srv.host, port=server.server_address[1])
    return server
