"""PostHog's per-key rate limits on the local server: what a client over its budget is answered.

Read from posthog/rate_limit.py (PostHog/posthog) and Django REST framework, which it builds on:
- the query endpoint is limited per personal API key by APIQueriesBurstThrottle (240/minute) and
  APIQueriesSustainedThrottle (2400/hour); teams on the legacy HogQLQueryThrottle get 120/hour; other
  endpoints by BurstRateThrottle (480/minute) and SustainedRateThrottle (4800/hour);
- each is a DRF SimpleRateThrottle: a history of request times per key, a request allowed while fewer than
  N lie inside the window, and recorded when allowed. DRF asks every throttle of the view, so a request
  refused by the hourly one still counts against the minute (APIView.check_throttles);
- the refusal is DRF's Throttled(wait) with wait = the longest of the throttles' waits
  (SimpleRateThrottle.wait: remaining window / requests available), rendered by PostHog's exception
  handler (drf-exceptions-hog, exceptions_hog/handler.py) as HTTP 429
  `{"type": "throttled_error", "code": "throttled", "detail": "Request was throttled. Expected available in
  N seconds.", "attr": null}` and, unlike DRF's own handler, with no Retry-After header.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# (requests, seconds) per scope, as posthog/rate_limit.py sets them.
QUERY_LIMITS: tuple[tuple[int, float], ...] = ((240, 60.0), (2400, 3600.0))
LEGACY_QUERY_LIMITS: tuple[tuple[int, float], ...] = ((120, 3600.0),)
OTHER_LIMITS: tuple[tuple[int, float], ...] = ((480, 60.0), (4800, 3600.0))


@dataclass(frozen=True)
class Refusal:
    wait: float

    def detail(self) -> str:
        """DRF's Throttled message (rest_framework/exceptions.py): the wait rounded up, singular or plural."""
        n = math.ceil(self.wait)
        return f"Request was throttled. Expected available in {n} second{'' if n == 1 else 's'}."


class KeyThrottle:
    """Every scope's sliding windows, per API key. `clock` is injectable so tests can pass an hour."""

    def __init__(self, query_limits: tuple[tuple[int, float], ...] = QUERY_LIMITS,
                 other_limits: tuple[tuple[int, float], ...] = OTHER_LIMITS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"query": query_limits, "other": other_limits}
        self.clock = clock
        self._history: dict[tuple[str, str, int], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, scope: str) -> Refusal | None:
        """Record the request if every window allows it; else the refusal (DRF records allowed windows)."""
        now = self.clock()
        waits: list[float] = []
        with self._lock:
            for i, (count, window) in enumerate(self.limits[scope]):
                hist = self._history.setdefault((key, scope, i), deque())
                while hist and hist[-1] <= now - window:
                    hist.pop()
                if len(hist) >= count:
                    remaining = window - (now - hist[-1]) if hist else window
                    available = count - len(hist) + 1
                    waits.append(remaining / available if available > 0 else remaining)
                    continue
                hist.appendleft(now)
        return Refusal(max(waits)) if waits else None
