"""A PostHog-compatible HTTP API on loopback, backed by real ClickHouse: what tests, demo and benchmarks
talk to instead of PostHog.

It answers the two endpoints the monitor uses, in PostHog's shapes and status codes:
- `POST /api/projects/{id}/query/` (and the `/api/environments/{id}/` twin): HogQL parsed with PostHog's
  parser, placeholders bound, run on chdb; PostHog's row rules (100 by default, 50,000 at most,
  truthful `hasMore`);
- `GET /api/projects/{id}/llm_analytics/clustering_jobs/[{uuid}/]`, paginated with limit/offset.
Plus `/_admin/*` for tests and the demo (never part of PostHog): move the virtual clock, insert events,
arm faults, read the scenario's ground truth.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import structlog

from monitor.local.posthog.engine import Engine, EventRow, VirtualClock
from monitor.local.posthog.faults import Fault, FaultPlan
from monitor.local.posthog.hogql import HogQLError
from monitor.local.posthog.hogql_functions import Release
from monitor.local.posthog.throttle import KeyThrottle, Refusal

log = structlog.get_logger()

_QUERY = re.compile(r"^/api/(?:projects|environments)/(\d+)/query/?$")
_QUERY_STATUS = re.compile(r"^/api/(?:projects|environments)/(\d+)/query/([0-9a-zA-Z_-]+)/?$")
_PROJECT = re.compile(r"^/api/(?:projects|environments)/(\d+)/?$")
_JOBS = re.compile(r"^/api/(?:projects|environments)/(\d+)/llm_analytics/clustering_jobs/?(?:([0-9a-fA-F-]{36})/?)?$")


@dataclass
class Team:
    team_id: int
    jobs: list[dict[str, Any]] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)
    # The project's timezone setting (Team.timezone in PostHog, "UTC" by default): HogQL renders and reads
    # datetimes in it.
    timezone: str = "UTC"

    def to_api(self) -> dict[str, Any]:
        """`GET /api/projects/{id}/`: the basic fields of PostHog's project serializer the monitor may read."""
        return {"id": self.team_id, "uuid": str(uuid.UUID(int=self.team_id)), "name": f"Local project {self.team_id}",
                "timezone": self.timezone, "week_start_day": None, "is_demo": False,
                "access_control": False, "has_completed_onboarding_for": {}}


def check_timezone(name: str) -> str:
    """A project timezone must be an IANA name, as PostHog's Team.timezone choices are (pytz's list)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}: use an IANA name such as Asia/Kolkata") from exc
    return name


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _pending: dict[str, Any] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        return  # the query log and structlog say what happened

    # --- plumbing ------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> int:
        body = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
        self._flush_log(status, len(body))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        return len(body)

    def _error(self, status: int, type_: str, code: str, detail: str,
               headers: dict[str, str] | None = None) -> int:
        return self._send(status, {"type": type_, "code": code, "detail": detail, "attr": None}, headers)

    def _authorized(self) -> int | None:
        """PostHog's answers for a missing and a wrong personal API key; None when the key is good."""
        auth = self.headers.get("Authorization") or ""
        if not auth:
            return self._error(401, "authentication_error", "not_authenticated",
                               "Authentication credentials were not provided.")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if token != self.server.app.api_key:
            return self._error(401, "authentication_error", "authentication_failed",
                               "Personal API key found in request Authorization header is invalid.")
        return None

    def _apply_faults(self, path: str, name: str | None, reply: Callable[[], tuple[int, bytes]]) -> tuple[int, int]:
        """Answer the request, bent by whatever fault is armed for it. Returns (status, bytes sent)."""
        faults = self.server.app.faults.take(path, name)
        for f in faults:
            if f.kind == "latency":
                time.sleep(f.seconds)
        for f in faults:
            if f.kind == "status":
                headers = {"Retry-After": f"{f.retry_after:g}"} if f.retry_after is not None else None
                n = self._error(f.status, "server_error" if f.status >= 500 else
                                "throttled_error" if f.status == 429 else "validation_error",
                                "injected", f"injected fault: HTTP {f.status}", headers)
                return f.status, n
            if f.kind == "throttle":
                return 429, self._throttled(Refusal(f.seconds))
            if f.kind == "timeout":
                return 504, self._error(504, "server_error", "timeout",
                                        "injected fault: the query ran past its execution time limit")
            if f.kind == "too_long":
                return 512, self._error(512, "server_error", "estimated_query_execution_time_too_long",
                                        "injected fault: the query is estimated to run too long")
            if f.kind == "drop":
                self._flush_log(0, 0)
                self.close_connection = True
                self.connection.close()
                return 0, 0
        status, body = reply()
        for f in faults:
            if f.kind == "truncate":
                self._flush_log(status, len(body) // 2)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: max(1, len(body) // 2)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return status, len(body) // 2
            if f.kind == "malformed":
                bad = b'{"results": [["not closed"'
                return 200, self._send(200, bad)
            if f.kind == "async" and status == 200:
                return 202, self._send(202, self.server.app.start_async(body, f.polls))
        return status, self._send(status, body)

    def _throttled(self, refusal: Refusal) -> int:
        """DRF's Throttled as PostHog renders it: no Retry-After, the wait only in the text."""
        return self._error(429, "throttled_error", "throttled", refusal.detail())

    def _rate_limited(self, scope: str) -> bool:
        """Apply the per-key budgets when the server has them; True when the request was answered 429."""
        throttle = self.server.app.throttle
        if throttle is None:
            return False
        refusal = throttle.check(self.server.app.api_key, scope)
        if refusal is None:
            return False
        self._throttled(refusal)
        return True

    def _log(self, **fields: Any) -> None:
        """Describe the request; the line is written just before the answer leaves, so a client that
        got its answer can rely on the log holding it."""
        self._pending = fields

    def _flush_log(self, status: int, nbytes: int) -> None:
        fields = getattr(self, "_pending", None)
        if fields is not None:
            self._pending = None
            self.server.app.log_request({**fields, "status": status, "bytes": nbytes,
                                         "ms": _ms(fields.pop("_started"))})

    # --- routes ----------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        body = self._body()
        if path.startswith("/_admin/"):
            self._admin("POST", path, body)
            return
        self._log(method="POST", path=path, _started=started)
        m = _QUERY.match(path)
        if not m:
            self._error(404, "invalid_request", "not_found", "Not found.")
            return
        if self._authorized() is not None:
            return
        team_id = int(m.group(1))
        if self._rate_limited("query"):
            return
        try:
            req = json.loads(body or b"{}")
            query = req.get("query") or {}
            if not isinstance(query, dict):
                raise ValueError("query must be an object")
        except (ValueError, AttributeError) as exc:
            self._error(400, "validation_error", "parse_error", f"Malformed request: {exc}")
            return
        name = req.get("name")
        self._log(method="POST", path=path, name=name, query=query.get("query"), values=query.get("values") or {},
                  _started=started)
        self._apply_faults(path, name, lambda: self.server.app.answer_query(team_id, query))

    def do_GET(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/_admin/"):
            self._admin("GET", path, b"")
            return
        self._log(method="GET", path=path, _started=started)
        app = self.server.app
        for pattern, scope in ((_PROJECT, "other"), (_QUERY_STATUS, "query")):
            pm = pattern.match(path)
            if pm:
                if self._authorized() is not None or self._rate_limited(scope):
                    return
                pid, qid = int(pm.group(1)), pm.group(2) if pattern is _QUERY_STATUS else ""
                if pattern is _PROJECT:
                    self._apply_faults(path, "project", lambda pid=pid: app.answer_project(pid))  # type: ignore[misc]
                else:
                    self._apply_faults(path, "query_status",
                                       lambda pid=pid, qid=qid: app.answer_query_status(pid, qid))  # type: ignore[misc]
                return
        m = _JOBS.match(path)
        if not m:
            self._error(404, "invalid_request", "not_found", "Not found.")
            return
        if self._authorized() is not None or self._rate_limited("other"):
            return
        team_id, job_id = int(m.group(1)), m.group(2)
        qs = parse_qs(parts.query)
        self._apply_faults(
            path, "clustering_jobs",
            lambda: self.server.app.answer_jobs(team_id, job_id, qs, self.headers.get("Host") or ""))

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_admin/"):
            self._admin("DELETE", path, b"")
            return
        self._error(404, "invalid_request", "not_found", "Not found.")

    def _admin(self, method: str, path: str, body: bytes) -> None:
        if (self._authorized()) is not None:
            return
        app = self.server.app
        try:
            doc = json.loads(body) if body else {}
            if method == "POST" and path == "/_admin/clock":
                if doc.get("now") is None and "advance_seconds" not in doc:
                    app.clock.set(None)
                elif "advance_seconds" in doc:
                    cur = app.clock.now() or datetime.now(UTC)
                    app.clock.set(cur + timedelta(seconds=float(doc["advance_seconds"])))
                else:
                    app.clock.set(datetime.fromisoformat(str(doc["now"])))
                now = app.clock.now()
                self._send(200, {"now": now.isoformat() if now else None})
            elif method == "POST" and path == "/_admin/events":
                rows: list[EventRow] = [tuple(r) for r in doc["rows"]]  # type: ignore[misc]
                app.engine.insert(rows)
                self._send(200, {"inserted": len(rows)})
            elif method == "POST" and path == "/_admin/faults":
                for f in doc if isinstance(doc, list) else [doc]:
                    app.faults.add(Fault.from_dict(f))
                self._send(200, {"pending": app.faults.pending()})
            elif method == "DELETE" and path == "/_admin/faults":
                app.faults.clear()
                self._send(200, {"pending": 0})
            elif method == "POST" and path == "/_admin/project":
                app.team(int(doc["team_id"])).timezone = check_timezone(str(doc["timezone"]))
                self._send(200, app.team(int(doc["team_id"])).to_api())
            elif method == "POST" and path == "/_admin/jobs":
                app.team(int(doc["team_id"])).jobs = list(doc["jobs"])
                self._send(200, {"jobs": len(doc["jobs"])})
            elif method == "GET" and path == "/_admin/truth":
                self._send(200, {str(t.team_id): t.truth for t in app.teams.values()})
            elif method == "GET" and path == "/_admin/status":
                now = app.clock.now()
                self._send(200, {"events": app.engine.count(), "now": now.isoformat() if now else None,
                                 "teams": sorted(app.teams)})
            else:
                self._error(404, "invalid_request", "not_found", "Not found.")
        except (ValueError, KeyError, TypeError) as exc:
            self._error(400, "validation_error", "invalid_input", f"{type(exc).__name__}: {exc}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], app: LocalPostHog) -> None:
        self.app = app
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (killed, timed out) is not an error of the server."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


class LocalPostHog:
    """The server: an engine, teams with jobs and ground truth, a clock, faults and a query log."""

    def __init__(self, *, api_key: str = "phx_local_key", host: str = "127.0.0.1", port: int = 0,
                 query_log: str | Path | None = None, clock: VirtualClock | None = None,
                 engine: Engine | None = None, timezone: str = "UTC", release: Release = "current",
                 throttle: KeyThrottle | None = None, embeddings_table: bool | None = None) -> None:
        """`timezone`: the default of new projects (each may have its own: `team(id).timezone`).
        `release`: "old" accepts only the HogQL functions of older self-hosted releases.
        `embeddings_table`: whether HogQL knows `raw_document_embeddings` (default: current releases do,
        old ones answer 400 "Unknown table").
        `throttle`: PostHog's per-key budgets (off by default: benchmarks would trip them)."""
        self.api_key = api_key
        self.timezone = check_timezone(timezone)
        self.release: Release = release
        self.embeddings_table = release == "current" if embeddings_table is None else embeddings_table
        self.throttle = throttle
        self._async: dict[str, list[Any]] = {}
        self._async_lock = threading.Lock()
        self.engine = engine or Engine.shared()
        self.clock = clock or VirtualClock()
        self.faults = FaultPlan()
        self.teams: dict[int, Team] = {}
        self._log_path = Path(query_log) if query_log else None
        self._log_lock = threading.Lock()
        self._log_cond = threading.Condition(self._log_lock)
        self.requests: list[dict[str, Any]] = []
        self._httpd = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def team(self, team_id: int) -> Team:
        return self.teams.setdefault(team_id, Team(team_id, timezone=self.timezone))

    def load(self, dataset: Any) -> None:
        """Load a generated dataset (monitor.local.posthog.generator.Dataset): events, jobs, truth.

        The engine is shared by every server in the process, so loading into a project that already
        holds events would silently mix two datasets; that is refused instead.
        """
        if self.engine.count(dataset.team_id):
            raise ValueError(f"project {dataset.team_id} already holds events in this process; use another id")
        t = self.team(dataset.team_id)
        t.jobs = [j.to_api() for j in dataset.jobs]
        t.truth = dataset.truth
        self.engine.insert(dataset.events)
        if getattr(dataset, "embeddings", None) is not None:
            self.engine.insert_embeddings(dataset.team_id, dataset.embeddings)

    def start(self) -> LocalPostHog:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-posthog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LocalPostHog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_request(self, fields: dict[str, Any]) -> None:
        fields = {"ts": datetime.now(UTC).isoformat(), **fields}
        with self._log_cond:
            self.requests.append(fields)
            if self._log_path is not None:
                with self._log_path.open("a") as f:
                    f.write(json.dumps(fields, default=str) + "\n")
            self._log_cond.notify_all()

    def wait_for_requests(self, n: int, timeout: float = 30.0, **match: Any) -> bool:
        """Block until n requests matching `match` (e.g. name="get_run") were answered; False on timeout."""
        def enough() -> bool:
            return sum(1 for r in self.requests if all(r.get(k) == v for k, v in match.items())) >= n

        with self._log_cond:
            return self._log_cond.wait_for(enough, timeout=timeout)

    # --- answers ---------------------------------------------------------------------------------------
    def answer_query(self, team_id: int, query: dict[str, Any]) -> tuple[int, bytes]:
        if team_id not in self.teams:
            return 404, msgspec.json.encode({"type": "invalid_request", "code": "not_found",
                                             "detail": "Project not found.", "attr": None})
        if query.get("kind") != "HogQLQuery":
            return 400, msgspec.json.encode({"type": "validation_error", "code": "invalid_input",
                                             "detail": f"Unsupported query kind: {query.get('kind')!r}",
                                             "attr": "query"})
        text = query.get("query")
        values = query.get("values") or {}
        if not isinstance(text, str) or not isinstance(values, dict):
            return 400, msgspec.json.encode({"type": "validation_error", "code": "invalid_input",
                                             "detail": "query.query must be a string and query.values an object",
                                             "attr": "query"})
        started = time.monotonic()
        try:
            ans = self.engine.run_hogql(text, values, team_id=team_id, now=self.clock.now(),
                                        timezone=self.teams[team_id].timezone, release=self.release,
                                        embeddings=self.embeddings_table)
        except HogQLError as exc:
            return 400, msgspec.json.encode({"type": "validation_error", "code": "query_error",
                                             "detail": exc.message, "attr": None})
        return 200, msgspec.json.encode({
            "results": ans.results, "columns": ans.columns, "types": ans.types, "hasMore": ans.has_more,
            "limit": ans.limit, "offset": 0, "hogql": text, "clickhouse": ans.sql,
            "timings": [{"k": "./total", "t": round(time.monotonic() - started, 4)}],
            "is_cached": False, "last_refresh": datetime.now(UTC).isoformat(), "error": None,
            "query_status": None, "modifiers": {},
        })

    def answer_project(self, team_id: int) -> tuple[int, bytes]:
        team = self.teams.get(team_id)
        if team is None:
            return 404, msgspec.json.encode({"type": "invalid_request", "code": "not_found",
                                             "detail": "Not found.", "attr": None})
        return 200, msgspec.json.encode(team.to_api())

    def start_async(self, answer: bytes, polls: int) -> dict[str, Any]:
        """Keep a computed answer behind a query id, as PostHog's async queries do; 202's body."""
        qid = uuid.uuid4().hex
        with self._async_lock:
            self._async[qid] = [max(1, polls), msgspec.json.decode(answer)]
        return {"query_status": self._status(qid, complete=False, results=None)}

    def answer_query_status(self, team_id: int, qid: str) -> tuple[int, bytes]:
        """`GET .../query/{id}/`: incomplete until the fault's number of polls, then the answer."""
        with self._async_lock:
            entry = self._async.get(qid)
            if entry is None or team_id not in self.teams:
                return 404, msgspec.json.encode({"type": "invalid_request", "code": "not_found",
                                                 "detail": "Query not found.", "attr": None})
            entry[0] -= 1
            done = entry[0] <= 0
            if done:
                del self._async[qid]
        return 200, msgspec.json.encode(
            {"query_status": self._status(qid, complete=done, results=entry[1] if done else None)})

    @staticmethod
    def _status(qid: str, *, complete: bool, results: Any) -> dict[str, Any]:
        """The QueryStatus fields the monitor reads (posthog/schema.py QueryStatus)."""
        return {"id": qid, "query_async": True, "complete": complete, "error": False, "error_message": None,
                "results": results, "start_time": datetime.now(UTC).isoformat(),
                "end_time": datetime.now(UTC).isoformat() if complete else None}

    def answer_jobs(self, team_id: int, job_id: str | None, qs: dict[str, list[str]],
                    host: str) -> tuple[int, bytes]:
        team = self.teams.get(team_id)
        if team is None:
            return 404, msgspec.json.encode({"type": "invalid_request", "code": "not_found",
                                             "detail": "Not found.", "attr": None})
        if job_id:
            for j in team.jobs:
                if j.get("id") == job_id:
                    return 200, msgspec.json.encode(j)
            return 404, msgspec.json.encode({"type": "invalid_request", "code": "not_found",
                                             "detail": "Not found.", "attr": None})
        try:
            limit = max(1, min(int((qs.get("limit") or ["100"])[0]), 1000))
            offset = max(0, int((qs.get("offset") or ["0"])[0]))
        except ValueError:
            return 400, msgspec.json.encode({"type": "validation_error", "code": "invalid_input",
                                             "detail": "limit and offset must be integers", "attr": "limit"})
        page = team.jobs[offset : offset + limit]
        base = f"http://{host}/api/projects/{team_id}/llm_analytics/clustering_jobs/"
        nxt = base + "?" + urlencode({"limit": limit, "offset": offset + limit}) \
            if offset + limit < len(team.jobs) else None
        prev = base + "?" + urlencode({"limit": limit, "offset": max(0, offset - limit)}) if offset > 0 else None
        return 200, msgspec.json.encode({"count": len(team.jobs), "next": nxt, "previous": prev, "results": page})
