"""Fault injection for the local PostHog: the hook every reliability test and benchmark builds on.

A fault is armed for a number of matching requests (or for every one, count=None), optionally after
skipping some; the server asks `take(path, query_name)` before answering each request.

The kinds that stand for PostHog's own slow and busy answers (each a cell of bench/reliability.py):
- `throttle`: HTTP 429 as PostHog's exception handler renders DRF's Throttled: type `throttled_error`,
  the wait (`seconds`) only in the detail text, no Retry-After (monitor/local/posthog/throttle.py);
- `timeout`: HTTP 504, a query that ran past ClickHouse's execution limit;
- `too_long`: HTTP 512, a query ClickHouse estimated would run too long;
- `async`: HTTP 202 with `query_status` (complete: false); the answer is ready after `polls` polls of
  `GET /api/projects/{id}/query/{query_id}/` (posthog/api/query.py, QueryStatus in posthog/schema.py).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["latency", "status", "drop", "truncate", "malformed", "throttle", "timeout", "too_long", "async"]
_KINDS = ("latency", "status", "drop", "truncate", "malformed", "throttle", "timeout", "too_long", "async")


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    polls: int = 1
    # Which requests: a regex on the path, and/or on the query name ("cluster-monitor:get_run"...).
    path: str | None = None
    name: str | None = None
    count: int | None = 1
    skip: int = 0
    hits: int = field(default=0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fault:
        allowed = {"kind", "status", "retry_after", "seconds", "polls", "path", "name", "count", "skip"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if d.get("kind") not in _KINDS:
            raise ValueError(f"unknown fault kind: {d.get('kind')!r}")
        return cls(**d)

    def matches(self, path: str, name: str | None) -> bool:
        if self.path and not re.search(self.path, path):
            return False
        return not (self.name and not (name and re.search(self.name, name)))


class FaultPlan:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str, name: str | None) -> list[Fault]:
        """The faults that apply to this request; spent ones are removed."""
        out: list[Fault] = []
        with self._lock:
            keep: list[Fault] = []
            for f in self._faults:
                if not f.matches(path, name):
                    keep.append(f)
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    keep.append(f)
                    continue
                out.append(f)
                f.hits += 1
                if f.count is None or f.hits < f.count:
                    keep.append(f)
            self._faults = keep
        return out

    def pending(self) -> int:
        with self._lock:
            return len(self._faults)
