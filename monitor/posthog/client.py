"""PostHog's HTTP API as the monitor uses it: HogQL queries and the clustering-jobs endpoint.

The monitor is one of many API users of a team's key, and PostHog rate-limits per key, so every call
goes through a shared `RequestBudget`, retries are bounded and back off. Errors are sorted into the ones
worth retrying (5xx, timeouts, dropped connections, 429) and the ones that are not (a query PostHog
rejects, a bad key): `PostHogError.retryable` says which.

Throttling as PostHog answers it (posthog/rate_limit.py, drf-exceptions-hog): HTTP 429, type
`throttled_error`, and no Retry-After header; the wait is only in DRF's detail text ("Expected available
in N seconds"), and an hourly budget (2,400/h, 120/h on the legacy throttle) means minutes. So a 429
pauses the whole key's budget (every project sharing it waits, nothing is sent meanwhile): for the wait
the text gives, else until the next minute and then longer each time. A pause longer than
`max_throttle_wait` is not slept through inside a cycle: the call fails as retryable with `retry_at`, and
calls before then fail at once without spending the budget. Queries PostHog stops (504) or refuses as
too long (512) are retried with backoff, then fail with a message saying so; an answer 202 (async) is
polled until complete, a bounded number of times.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import msgspec
import structlog

from monitor import telemetry
from monitor.posthog.queries import time_value

log = structlog.get_logger()


class PostHogError(Exception):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 query_name: str | None = None, retry_in: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.query_name = query_name
        # Throttled: seconds until PostHog expects the key's budget back (None: not known or not throttled).
        self.retry_in = retry_in


# DRF's Throttled detail (rest_framework/exceptions.py), which PostHog's handler passes on as `detail`.
_EXPECTED_WAIT = re.compile(r"Expected available in (\d+(?:\.\d+)?) seconds?")
# Long queries (posthog/errors.py and the query API): worth a retry later, then said plainly.
_SLOW = {504: "stopped the query at its execution time limit (HTTP 504)",
         512: "refused the query as estimated too long to run (HTTP 512)"}
# Waits for a 429 that names none: the next minute (the 240/min budget), then as for an hourly one.
_THROTTLE_STEPS = (None, 300.0, 900.0, 1800.0, 3600.0)


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
                 sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()
        self._paused_until = 0.0  # on `clock`: PostHog answered 429; nothing is sent before then

    def pause(self, seconds: float) -> None:
        """PostHog said the key is over its budget: hold every call on this key for `seconds`."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def to_next_minute(self) -> float:
        """Seconds to the next wall-clock minute (+1 s): when a per-minute window has surely moved on."""
        now = self._wall()
        return 60.0 - (now % 60.0) + 1.0

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

    def acquire(self, max_pause: float | None = None) -> float:
        """Block until a call is allowed; return the seconds waited. A throttle pause longer than
        `max_pause` is not waited out: ThrottledError, and the budget stays unspent."""
        waited = 0.0
        with self._lock:
            paused = self._paused_until - self._clock()
            if paused > 0:
                if max_pause is not None and paused > max_pause:
                    raise PostHogError(
                        f"PostHog throttled this API key: its query budget is spent for another "
                        f"{math.ceil(paused)} s; no request is sent before then", status=429, retryable=True,
                        retry_in=paused)
                telemetry.RATE_LIMIT_WAITS.inc()
                self._sleep(paused)
                waited += paused
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
        max_throttle_wait: float = 90.0,
        max_throttled: int = 4,
        max_polls: int = 60,
    ) -> None:
        self.host = host.rstrip("/")
        self.project_id = project_id
        self.max_retries = max_retries
        self.max_throttle_wait = max_throttle_wait
        self.max_throttled = max_throttled
        self.max_polls = max_polls
        self.budget = budget or RequestBudget()
        self._sleep = sleep
        self._timezone: str | None = None
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
        throttled = 0
        while True:
            self.budget.acquire(self.max_throttle_wait)
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
                if resp.status_code == 429:
                    self._throttled(resp, name, throttled)
                    throttled += 1
                    continue
                err = PostHogError(
                    f"{name}: HTTP {resp.status_code}: {_error_text(resp)}",
                    status=resp.status_code,
                    retryable=resp.status_code >= 500,
                    query_name=name,
                )
                retry_after = _retry_after(resp)
            if not err.retryable or attempt >= self.max_retries:
                if err.status in _SLOW:
                    err = PostHogError(f"{name}: PostHog {_SLOW[err.status]} {attempt + 1} times: {err}",
                                       status=err.status, retryable=True, query_name=name)
                log.warning("posthog_request_failed", query=name, status=err.status, attempts=attempt + 1,
                            retryable=err.retryable, error=str(err))
                raise err
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            log.info("posthog_retry", query=name, status=err.status, attempt=attempt + 1,
                     delay_s=round(delay, 3), error=str(err))
            self._sleep(delay)
            attempt += 1

    def _throttled(self, resp: Reply, name: str, times: int) -> None:
        """A 429: wait PostHog's expected time (a Retry-After if a proxy sent one, else DRF's text, else the
        next minute and then longer), so the retry is not another refused call. A wait longer than
        `max_throttle_wait` pauses the key's budget and fails retryable at once: the daemon comes back
        later and sends nothing meanwhile. Gives up, retryable, after `max_throttled` in a row."""
        hint = _retry_after(resp)
        if hint is None:
            hint = _expected_wait(resp)
            hint = hint + 1.0 if hint is not None else None
        if hint is not None:
            wait = hint
        else:
            step = _THROTTLE_STEPS[min(times, len(_THROTTLE_STEPS) - 1)]
            wait = self.budget.to_next_minute() if step is None else step
        log.warning("posthog_throttled", query=name, wait_s=round(wait, 1), times=times + 1,
                    budget="hour" if wait > 120.0 else "minute", detail=_error_text(resp))
        if wait > self.max_throttle_wait:
            self.budget.pause(wait)
            raise PostHogError(f"{name}: PostHog throttled this API key (HTTP 429, throttled_error); its budget "
                               f"is back in about {math.ceil(wait)} s, nothing is sent before then",
                               status=429, retryable=True, query_name=name, retry_in=wait)
        if times + 1 >= self.max_throttled:
            raise PostHogError(f"{name}: PostHog kept answering 429 (throttled) {times + 1} times",
                               status=429, retryable=True, query_name=name, retry_in=wait)
        telemetry.RATE_LIMIT_WAITS.inc()
        self._sleep(wait)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: spreads retries of several monitors instead of synchronising them."""
        return self._rng.uniform(0, min(self._backoff_cap, self._backoff_base * (2**attempt)))

    # --- API ---------------------------------------------------------------------------------------
    def query(self, query: str, values: Mapping[str, Any] | None = None, *, name: str) -> QueryResult:
        """Run one HogQL query; every data value goes in `values`, bound by PostHog. A datetime value is
        sent with an explicit UTC offset (queries.time_value), so the project's timezone cannot shift it."""
        bound = {k: time_value(v) if isinstance(v, datetime) else v for k, v in (values or {}).items()}
        body = {
            "query": {"kind": "HogQLQuery", "query": query, "values": bound},
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
        for attempt in range(self.max_polls):
            self._sleep(min(0.2 * (attempt + 1), 2.0))
            r = self._request("GET", f"/api/projects/{self.project_id}/query/{qid}/", name=name)
            s = _answer_decoder.decode(r.content).query_status or {}
            if s.get("complete"):
                if s.get("error"):
                    raise PostHogError(f"{name}: {s.get('error_message') or 'query failed'}", status=400,
                                       query_name=name)
                results = s.get("results") or {}
                return Reply(200, r.headers, bytearray(msgspec.json.encode(results)))
        raise PostHogError(f"{name}: async query {qid} did not finish after {self.max_polls} polls",
                           retryable=True, query_name=name)

    def project_timezone(self) -> str:
        """The project's timezone setting (`timezone` of `GET /api/projects/{id}/`, an IANA name), in
        which PostHog shows and reads wall-clock times: what a time a user typed without an offset means.
        Asked once per client (one project) and kept: it changes only when a user edits the project."""
        if self._timezone is None:
            resp = self._request("GET", f"/api/projects/{self.project_id}/", name="project")
            try:
                doc = msgspec.json.decode(resp.content)
            except msgspec.DecodeError as exc:
                raise PostHogError(f"project: malformed answer: {exc}", retryable=True) from exc
            tz = doc.get("timezone") if isinstance(doc, dict) else None
            if not isinstance(tz, str) or not tz:
                raise PostHogError(f"project {self.project_id}: the answer has no timezone", query_name="project")
            self._timezone = tz
        return self._timezone

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


def _expected_wait(resp: Reply) -> float | None:
    """The wait DRF wrote into a 429's detail, if it did."""
    m = _EXPECTED_WAIT.search(_error_text(resp))
    return float(m.group(1)) if m else None


def _error_text(resp: Reply) -> str:
    try:
        doc = msgspec.json.decode(resp.content)
    except msgspec.DecodeError:
        return resp.text[:300]
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("error") or doc)[:500]
    return str(doc)[:300]
