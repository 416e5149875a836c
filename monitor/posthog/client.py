"""PostHog's HTTP API as the monitor uses it: HogQL queries and the clustering-jobs endpoint.

The monitor is one of many API users of a team's key, and PostHog rate-limits per key, so every call
goes through a shared `RequestBudget`, retries are bounded and back off, and a 429's Retry-After is
obeyed. Errors are sorted into the ones worth retrying (5xx, timeouts, dropped connections, 429) and
the ones that are not (a query PostHog rejects, a bad key): `PostHogError.retryable` says which.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import structlog

from monitor import telemetry

log = structlog.get_logger()


class PostHogError(Exception):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 query_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.query_name = query_name


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    results: list[list[Any]]
    has_more: bool
    bytes: int

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=False)) for r in self.results]


class RequestBudget:
    """Sliding-window limits shared by every project that uses one API key.

    PostHog's query endpoint allows 240 calls a minute and 2,400 an hour per key (older teams 120 an
    hour). Waiting here, before the call, is cheaper than being answered 429 and backing off.
    """

    def __init__(self, limits: tuple[tuple[int, float], ...] = ((240, 60.0), (2400, 3600.0)), *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def wait_time(self) -> float:
        now = self._clock()
        longest = max(w for _, w in self.limits)
        while self._calls and self._calls[0] <= now - longest:
            self._calls.popleft()
        wait = 0.0
        for count, window in self.limits:
            inside = [t for t in self._calls if t > now - window]
            if len(inside) >= count:
                wait = max(wait, inside[len(inside) - count] + window - now)
        return wait

    def acquire(self) -> float:
        """Block until a call is allowed; return the seconds waited."""
        waited = 0.0
        with self._lock:
            while (w := self.wait_time()) > 0:
                telemetry.RATE_LIMIT_WAITS.inc()
                self._sleep(w)
                waited += w
            self._calls.append(self._clock())
        return waited


class _QueryAnswer(msgspec.Struct):
    results: list[list[Any]] | None = None
    columns: list[str] | None = None
    hasMore: bool | None = None
    error: str | None = None
    detail: str | None = None
    query_status: dict[str, Any] | None = None


_answer_decoder = msgspec.json.Decoder(_QueryAnswer)


@dataclass(frozen=True)
class Reply:
    """An answer read whole. Its body is a buffer of the monitor's own, not httpx's: an httpx.Response
    sits in reference cycles, so a run's 45 MB answer lived on until the next garbage collection, beside
    the run decoded from it; and `Response.read()` joins its chunks, holding the body twice."""

    status_code: int
    headers: httpx.Headers
    content: bytearray

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def _read(resp: httpx.Response) -> Reply:
    body = bytearray()
    for chunk in resp.iter_bytes():
        body += chunk
    return Reply(resp.status_code, resp.headers, body)


class PostHogClient:
    """One project on one PostHog host."""

    def __init__(
        self,
        host: str,
        project_id: int,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        budget: RequestBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.host = host.rstrip("/")
        self.project_id = project_id
        self.max_retries = max_retries
        self.budget = budget or RequestBudget()
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = random.Random()
        self._http = httpx.Client(
            base_url=self.host,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "cluster-monitor/0.1"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PostHogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport with retries -------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json: Any = None, name: str) -> Reply:
        attempt = 0
        while True:
            self.budget.acquire()
            started = time.monotonic()
            try:
                # Read the body inside the try: a connection dropped mid-body is a transport error.
                with self._http.stream(method, path, json=json) as streamed:
                    resp = _read(streamed)
            except httpx.TransportError as exc:
                telemetry.API_CALLS.labels(status="transport_error").inc()
                err: PostHogError = PostHogError(
                    f"{name}: {type(exc).__name__}: {exc}", retryable=True, query_name=name)
                retry_after = None
            else:
                telemetry.API_CALLS.labels(status=str(resp.status_code)).inc()
                telemetry.API_SECONDS.observe(time.monotonic() - started)
                if resp.status_code < 400:
                    return resp
                err = PostHogError(
                    f"{name}: HTTP {resp.status_code}: {_error_text(resp)}",
                    status=resp.status_code,
                    retryable=resp.status_code == 429 or resp.status_code >= 500,
                    query_name=name,
                )
                retry_after = _retry_after(resp)
            if not err.retryable or attempt >= self.max_retries:
                log.warning("posthog_request_failed", query=name, status=err.status, attempts=attempt + 1,
                            retryable=err.retryable, error=str(err))
                raise err
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            log.info("posthog_retry", query=name, status=err.status, attempt=attempt + 1,
                     delay_s=round(delay, 3), error=str(err))
            self._sleep(delay)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        """Full jitter: spreads retries of several monitors instead of synchronising them."""
        return self._rng.uniform(0, min(self._backoff_cap, self._backoff_base * (2**attempt)))

    # --- API ---------------------------------------------------------------------------------------
    def query(self, query: str, values: Mapping[str, Any] | None = None, *, name: str) -> QueryResult:
        """Run one HogQL query; every data value goes in `values`, bound by PostHog."""
        body = {
            "query": {"kind": "HogQLQuery", "query": query, "values": dict(values or {})},
            "refresh": "blocking",
            "name": f"cluster-monitor:{name}",
        }
        resp = self._request("POST", f"/api/projects/{self.project_id}/query/", json=body, name=name)
        if resp.status_code == 202:
            resp = self._poll_async(resp, name)
        try:
            ans = _answer_decoder.decode(resp.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # A truncated or malformed body is a transport fault: worth one more try at the caller.
            raise PostHogError(f"{name}: malformed answer ({len(resp.content)} bytes): {exc}",
                               status=resp.status_code, retryable=True, query_name=name) from exc
        if ans.results is None or ans.columns is None:
            raise PostHogError(f"{name}: answer has no results/columns", status=resp.status_code,
                               retryable=True, query_name=name)
        return QueryResult(columns=ans.columns, results=ans.results, has_more=bool(ans.hasMore),
                           bytes=len(resp.content))

    def _poll_async(self, resp: Reply, name: str) -> Reply:
        """An answer 202 means PostHog is still computing: poll its status until it is done."""
        ans = _answer_decoder.decode(resp.content)
        status = ans.query_status or {}
        qid = status.get("id")
        if not qid:
            raise PostHogError(f"{name}: 202 without a query id", status=202, retryable=True, query_name=name)
        for attempt in range(60):
            self._sleep(min(0.2 * (attempt + 1), 2.0))
            r = self._request("GET", f"/api/projects/{self.project_id}/query/{qid}/", name=name)
            s = _answer_decoder.decode(r.content).query_status or {}
            if s.get("complete"):
                if s.get("error"):
                    raise PostHogError(f"{name}: {s.get('error_message') or 'query failed'}", status=400,
                                       query_name=name)
                results = s.get("results") or {}
                return Reply(200, r.headers, bytearray(msgspec.json.encode(results)))
        raise PostHogError(f"{name}: async query did not finish", retryable=True, query_name=name)

    def clustering_jobs(self) -> list[dict[str, Any]]:
        """Every clustering job of the project, following PostHog's pagination."""
        out: list[dict[str, Any]] = []
        path: str | None = f"/api/projects/{self.project_id}/llm_analytics/clustering_jobs/?limit=100"
        pages = 0
        while path and pages < 50:
            resp = self._request("GET", path, name="clustering_jobs")
            try:
                page = msgspec.json.decode(resp.content)
            except msgspec.DecodeError as exc:
                raise PostHogError(f"clustering_jobs: malformed answer: {exc}", retryable=True) from exc
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise PostHogError("clustering_jobs: answer has no results list", retryable=True)
            out.extend(r for r in page["results"] if isinstance(r, dict))
            nxt = page.get("next")
            path = _relative(nxt, self.host) if isinstance(nxt, str) and nxt else None
            pages += 1
        return out


def _relative(url: str, host: str) -> str:
    """PostHog's `next` is absolute; keep requests on the configured host whatever it says."""
    parsed = httpx.URL(url)
    return parsed.raw_path.decode() if parsed.host else url


def _retry_after(resp: Reply) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None


def _error_text(resp: Reply) -> str:
    try:
        doc = msgspec.json.decode(resp.content)
    except msgspec.DecodeError:
        return resp.text[:300]
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("error") or doc)[:500]
    return str(doc)[:300]
