"""Adaptive polling: poll often around the time of day a job's runs usually land, rarely otherwise.

PostHog's clustering jobs run on a schedule, so each job's runs land at about the same time each day.
From the landing times (emitted_at) of a job's processed runs this learns that time of day and how much
it wanders; inside a window around it the monitor polls every `interval`, outside every window every
`idle_interval`, never slower: the slow poll is the safety net for a run that lands off its pattern (a
manual re-run, a backfill, a moved schedule), which is then seen at most `idle_interval` late, or at
once through the push hook when PostHog calls it.

Pure: the history and the time in, the delay before the next poll out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.config import ScheduleConfig

DAY = 86_400.0
# A job whose landings wander more than this around their mean is no daily job (several runs a day,
# or none at a fixed time): it keeps the fast interval.
MAX_SPREAD = 4 * 3600.0
# Landings further back than this many days no longer describe the job's schedule.
HISTORY_DAYS = 14


@dataclass(frozen=True)
class Pacing:
    interval: float  # seconds between polls inside a landing window (schedule.interval_seconds)
    idle_interval: float  # seconds between polls outside every window: the longest delay there is
    window: float  # seconds either side of a job's expected landing, beyond how much its landings wander
    min_landings: int = 3  # below this many landings a job is still being learned: fast interval

    @classmethod
    def from_schedule(cls, sched: ScheduleConfig) -> Pacing | None:
        """The pacing a `schedule:` asks for; None when polling is not adaptive (no idle interval, or cron)."""
        if sched.idle_interval_seconds is None or sched.cron:
            return None
        return cls(interval=sched.interval_seconds, idle_interval=sched.idle_interval_seconds,
                   window=sched.landing_window_minutes * 60.0)


@dataclass(frozen=True)
class Landing:
    """When a job's runs usually land: seconds after midnight UTC, and how far they wander from it."""

    time_of_day: float
    spread: float


def _tod(t: datetime) -> float:
    t = t.astimezone(UTC)
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


def _circular_gap(a: float, b: float) -> float:
    """Signed seconds from time of day `b` to `a`, in (-12h, 12h]: landings around midnight stay close."""
    d = (a - b) % DAY
    return d - DAY if d > DAY / 2 else d


def expected_landing(times: Sequence[datetime]) -> Landing | None:
    """The mean time of day of the landings on the 24-hour circle (23:50 and 00:10 average to midnight,
    not noon), and the largest distance of one landing from it."""
    if not times:
        return None
    angles = [2 * math.pi * _tod(t) / DAY for t in times]
    x = sum(math.cos(a) for a in angles)
    y = sum(math.sin(a) for a in angles)
    if math.hypot(x, y) < 1e-9 * len(angles):
        return Landing(time_of_day=0.0, spread=DAY / 2)  # spread evenly round the clock
    mean = (math.atan2(y, x) / (2 * math.pi) * DAY) % DAY
    spread = max(abs(_circular_gap(_tod(t), mean)) for t in times)
    return Landing(time_of_day=mean, spread=spread)


def next_poll_delay(landings: Mapping[str, Sequence[datetime]], now: datetime, pacing: Pacing) -> float:
    """Seconds until the next poll: `interval` while any job is inside its landing window (or is still
    being learned, or lands at no fixed time), else until the first window opens, at most `idle_interval`.

    `landings`: job key -> emitted_at of its processed runs, any order.
    """
    if not landings:
        return pacing.interval
    tod = _tod(now)
    until_window = math.inf
    for times in landings.values():
        recent = [t for t in times if (now - t).total_seconds() <= HISTORY_DAYS * DAY]
        if len(recent) < pacing.min_landings:
            return pacing.interval
        landing = expected_landing(recent)
        if landing is None or landing.spread > MAX_SPREAD:
            return pacing.interval
        half = pacing.window + landing.spread
        gap = _circular_gap(tod, landing.time_of_day)  # > 0: past the expected landing
        if abs(gap) <= half:
            return pacing.interval
        until_window = min(until_window, (landing.time_of_day - half - tod) % DAY)
    return max(pacing.interval, min(pacing.idle_interval, until_window))
