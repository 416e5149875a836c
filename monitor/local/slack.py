"""A local Slack-compatible endpoint for tests and the demo: incoming webhooks and chat.postMessage.

It records what slack-sdk sends, checks the blocks against slack-sdk's own models, and can be told to
answer 429 (with Retry-After), 5xx or Slack's error codes, so delivery is tested through the real client.

It can also click a button of a recorded message as a person would in Slack: `click` posts the
block_actions payload Slack sends to an app's interactivity Request URL (form-encoded `payload=<JSON>`,
signed with the app's signing secret), with a response_url pointing back here, where the app's
confirmation is recorded in `responses`. Shape after Slack's reference pages "block_actions payload" and
"Handling user interaction" and its "Verifying requests from Slack" (the signature is computed here
from that page, independently of slack-sdk's verifier that the daemon uses).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block


@dataclass
class _Failure:
    remaining: int
    status: int
    error: str
    retry_after: float | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        slack = self.server.slack
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ctype = self.headers.get("Content-Type") or ""
        if "json" in ctype:
            payload: dict[str, Any] = json.loads(raw or b"{}")
        else:
            payload = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if isinstance(payload.get("blocks"), str):
                payload["blocks"] = json.loads(payload["blocks"])
        is_api = self.path.startswith("/api/")
        if self.path.startswith("/actions/"):  # a response_url: an app answering a click
            slack.record_response(self.path, payload)
            self._reply(200, b"ok", "text/html")
            return
        if self.path == "/api/auth.test":
            self._api(200, {"ok": True, "team": "local", "user": "cluster-monitor"})
            return
        fail = slack.take_failure()
        if fail is not None:
            headers = {"Retry-After": f"{fail.retry_after:g}"} if fail.retry_after is not None else None
            if is_api and fail.status == 200:
                self._api(200, {"ok": False, "error": fail.error})
            elif is_api:
                self._reply(fail.status, json.dumps({"ok": False, "error": fail.error}).encode(),
                            "application/json", headers)
            else:
                self._reply(fail.status, fail.error.encode(), "text/plain", headers)
            return
        if is_api:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if slack.token is not None and token != slack.token:
                self._api(200, {"ok": False, "error": "invalid_auth"})
                return
            if self.path != "/api/chat.postMessage":
                self._api(200, {"ok": False, "error": "unknown_method"})
                return
            if slack.channels is not None and payload.get("channel") not in slack.channels:
                self._api(200, {"ok": False, "error": "channel_not_found"})
                return
        elif not self.path.startswith("/services/"):
            self._reply(404, b"no_service", "text/plain")
            return
        ts = slack.record(self.path, payload, sender=_sender(self.headers.get("User-Agent") or ""))
        if is_api:
            self._api(200, {"ok": True, "channel": payload.get("channel"), "ts": ts,
                            "message": {"text": payload.get("text"), "ts": ts}})
        else:
            self._reply(200, b"ok", "text/html")

    def _api(self, status: int, doc: dict[str, Any]) -> None:
        self._reply(status, json.dumps(doc).encode(), "application/json; charset=utf-8")


def _sender(user_agent: str) -> str | None:
    """The replica (host:pid) a cluster-monitor names at the end of its User-Agent, if any."""
    last = user_agent.rsplit(" ", 1)[-1]
    return last.removeprefix("cluster-monitor/") if last.startswith("cluster-monitor/") else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], slack: LocalSlack) -> None:
        self.slack = slack
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (killed, timed out) is not an error of the server."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class LocalSlack:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 channels: set[str] | None = None) -> None:
        self.token = token
        self.channels = channels
        self.messages: list[dict[str, Any]] = []
        self.requests = 0
        self.block_errors: list[str] = []
        # What apps posted to the response_url of a click (`click`), and how many clicks were sent.
        self.responses: list[dict[str, Any]] = []
        self._clicks = 0
        self._failures: list[_Failure] = []
        # Asked as each message arrives, its answer kept with the message as "observed" (a test reads the
        # world at that instant: which replica held the leader lock). `gate`, an Event, holds every
        # message once recorded until the event is set (a send in flight, for a test to act in).
        self.observe: Callable[[], Any] | None = None
        self.gate: threading.Event | None = None
        self._cond = threading.Condition()
        self._httpd = _Server((host, port), self)
        # serve_forever notices shutdown() once per poll: 0.5 s by default, paid by every test's teardown.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="local-slack", daemon=True)

    @classmethod
    def start(cls, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> LocalSlack:
        s = cls(host, port, **kw)
        s._thread.start()
        return s

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T0LOCAL/B0LOCAL/localwebhooktoken"

    @property
    def api_base_url(self) -> str:
        return f"{self.url}/api/"

    def fail_next(self, n: int, status: int = 500, *, error: str = "internal_error",
                  retry_after: float | None = None) -> None:
        """The next n posts fail: an HTTP status, or (status=200) a Slack `ok: false` error code."""
        with self._cond:
            self._failures.append(_Failure(n, status, error, retry_after))

    def heal(self) -> None:
        """Forget every armed failure: the endpoint answers normally again."""
        with self._cond:
            self._failures.clear()

    def take_failure(self) -> _Failure | None:
        with self._cond:
            self.requests += 1
            while self._failures and self._failures[0].remaining <= 0:
                self._failures.pop(0)
            if not self._failures:
                return None
            self._failures[0].remaining -= 1
            return self._failures[0]

    def record(self, path: str, payload: dict[str, Any], *, sender: str | None = None) -> str:
        for b in payload.get("blocks") or []:
            try:
                block = Block.parse(b)
                if block is None:
                    raise SlackObjectFormationError(f"unknown block {b.get('type')!r}")
                block.validate_json()
            except SlackObjectFormationError as exc:
                self.block_errors.append(str(exc))
        observed = self.observe() if self.observe is not None else None
        with self._cond:
            ts = f"{time.time():.6f}"
            extra: dict[str, Any] = {"sender": sender} if sender else {}
            if self.observe is not None:
                extra["observed"] = observed
            self.messages.append({**payload, "path": path, "ts": ts, **extra})
            self._cond.notify_all()
        gate = self.gate
        if gate is not None:
            gate.wait(60)
        return ts

    def click(self, message: dict[str, Any], action_id: str, nth: int = 0, *, request_url: str,
              signing_secret: str, user: dict[str, str] | None = None, at: float | None = None) -> SignedRequest:
        """Press the `nth` button `action_id` of a recorded message, as Slack reports it to the app's
        Request URL; `at`: the click's time (Slack's X-Slack-Request-Timestamp). Returns the request sent,
        with the app's HTTP status."""
        return _click(self, message, action_id, nth, request_url=request_url, signing_secret=signing_secret,
                      user=user, at=at)

    def post(self, req: SignedRequest) -> SignedRequest:
        """Send a request to an app as Slack would (again, or altered by a test); its status filled in."""
        return _post(req)

    def record_response(self, path: str, payload: dict[str, Any]) -> None:
        with self._cond:
            self.responses.append({**payload, "path": path})
            self._cond.notify_all()

    def wait_for_responses(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least n answers reached a response_url; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.responses) >= n, timeout=timeout)

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least n messages arrived (no polling sleeps); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout=timeout)


@dataclass
class SignedRequest:
    """A request as Slack sent it to an app's Request URL: kept so a test can send it again (a replay)
    or changed (a forgery) with `LocalSlack.post`."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int = 0


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` under the secret."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _click(slack: LocalSlack, message: dict[str, Any], action_id: str, nth: int, *, request_url: str,
           signing_secret: str, user: dict[str, str] | None, at: float | None) -> SignedRequest:
    found = [(b, e) for b in message.get("blocks") or [] if b.get("type") == "actions"
             for e in b.get("elements") or [] if e.get("action_id") == action_id]
    if len(found) <= nth:
        raise LookupError(f"the message has {len(found)} buttons {action_id!r}, not {nth + 1}")
    block, button = found[nth]
    now = time.time() if at is None else at
    with slack._cond:
        slack._clicks += 1
        n = slack._clicks
    who = user or {"id": "U0LOCAL", "username": "ana", "name": "ana", "team_id": "T0LOCAL"}
    channel = message.get("channel") or "C0LOCAL"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": who,
        "api_app_id": "A0LOCAL",
        "token": "deprecated-verification-token",  # Slack still sends it; apps verify the signature instead
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{n}.local.trigger",
        "team": {"id": who.get("team_id", "T0LOCAL"), "domain": "local"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "alerts"},
        "message": {"type": "message", "ts": message["ts"], "text": message.get("text"),
                    "blocks": message.get("blocks")},
        "state": {"values": {}},
        "response_url": f"{slack.url}/actions/T0LOCAL/{n}/localresponsetoken",
        "actions": [{"action_id": action_id, "block_id": block.get("block_id") or f"local-block-{n}",
                     "text": button.get("text"), "value": button.get("value"), "type": "button",
                     "action_ts": f"{now:.6f}", **({"style": button["style"]} if "style" in button else {})}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(now))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": slack_signature(signing_secret, ts, body),
               "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
    return slack.post(SignedRequest(request_url, body, headers))


def _post(req: SignedRequest) -> SignedRequest:
    status = httpx.post(req.url, content=req.body, headers=req.headers, timeout=10).status_code
    return SignedRequest(req.url, req.body, dict(req.headers), status)
