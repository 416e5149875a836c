"""Catch-up after downtime: the notifications of runs that were already old when processed, told as one
message per channel instead of a flood. Pure.

A monitor that was down for a weekend still processes every run in order (lineages, alert states and
baselines need them all), but nobody wants forty messages about last Saturday. The runs' notifications
are held in the outbox (crash-safe, like any other), then folded into one summary: the firing alerts,
most important first, each prefixed with the run it came from, and the count of what was resolved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime

import msgspec

from monitor.alerts import Alert, Notification

HELD_PREFIX = "held:"


def summary_key(entry_ids: Sequence[int]) -> str:
    """The same held entries always give the same key, so a summary redone after a crash is not sent twice."""
    digest = hashlib.sha256(",".join(map(str, sorted(entry_ids))).encode()).hexdigest()[:16]
    return f"catchup:{digest}"


def summarise(held: Sequence[Notification], *, key: str, run_url: str, now: datetime,
              importance: Callable[[Alert], tuple[int, int, float]]) -> Notification:
    firing: list[Alert] = []
    resolved = 0
    for n in held:
        when = f"{n.job_name} ({n.level}), run of {n.window_end:%b %d %H:%M}"
        for a in n.alerts:
            if a.status == "resolved":
                resolved += 1
                continue
            firing.append(msgspec.structs.replace(a, summary=f"[{when}] {a.summary}"))
    firing.sort(key=importance)
    jobs = sorted({n.job_name for n in held})
    levels = sorted({n.level for n in held if n.level})
    note = f" ({resolved} resolved since)" if resolved else ""
    first = held[0]
    return Notification(
        key=key, project_id=first.project_id, run_id="",
        job_name=f"catch-up of {len(held)} run{'s' if len(held) != 1 else ''} of {', '.join(jobs)}{note}",
        level=", ".join(levels), window_start=min(n.window_start for n in held),
        window_end=max(n.window_end for n in held), alerts=tuple(firing), run_url=run_url, host=first.host,
        created_at=now)
