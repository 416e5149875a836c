"""The cycle's memory between polls: the discovery cursor, and the landing times adaptive polling
learns from (monitor/pacing.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from monitor.stages.discover import DiscoveredRun

# The landing times of each job's last runs that are kept.
LANDINGS_KEPT = 30


def next_cursor(todo: Iterable[DiscoveredRun], processed: Iterable[str], earliest_failed: datetime | None,
                current: datetime | None) -> datetime | None:
    """Where the cursor moves to (None: it stays). It never passes a run that is not processed: it stops
    just before the first failure, and it never moves back."""
    done = set(processed)
    candidates = [d.emitted_at for d in todo if d.run_id in done]
    if earliest_failed is not None:
        candidates = [t for t in candidates if t < earliest_failed]
    if not candidates:
        return None
    new = max(candidates)
    return new if current is None or new > current else None


def add_landings(doc: dict[str, list[datetime]], runs: Iterable[DiscoveredRun],
                 kept: int = LANDINGS_KEPT) -> dict[str, list[datetime]]:
    """Job key -> the `kept` latest landing times, with these runs' added once each."""
    out = {key: list(times) for key, times in doc.items()}
    for d in runs:
        times = out.setdefault(d.job_key, [])
        if d.emitted_at not in times:
            times.append(d.emitted_at)
    return {key: sorted(times)[-kept:] for key, times in out.items()}
