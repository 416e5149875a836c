"""Adaptive polling as a pure function: landing history and an injected time in, the next delay out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import ConfigError, parse_config
from monitor.pacing import Pacing, expected_landing, next_poll_delay

P = Pacing(interval=300, idle_interval=1800, window=1800)
DAY0 = datetime(2026, 10, 20, tzinfo=UTC)


def _daily(hour: int, minute: int, days: int = 5, jitter: tuple[int, ...] = (0, 3, -2, 5, 1)) -> list[datetime]:
    return [DAY0 + timedelta(days=d, hours=hour, minutes=minute + jitter[d % len(jitter)]) for d in range(days)]


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def test_fast_inside_the_window_slow_outside_and_waking_up_in_time() -> None:
    jobs = {"a|trace": _daily(3, 15)}
    landing = expected_landing(jobs["a|trace"])
    assert landing is not None and abs(landing.time_of_day - (3 * 3600 + 16.4 * 60)) < 1
    assert landing.spread == pytest.approx(3.6 * 60, abs=1)
    assert next_poll_delay(jobs, _at(5, 3, 20), P) == 300  # at the expected landing
    assert next_poll_delay(jobs, _at(5, 2, 45), P) == 300  # window opened (30 min + how far landings wander)
    assert next_poll_delay(jobs, _at(5, 12), P) == 1800  # far from it: the slow interval
    # 20 min before the window opens: wake up when it opens, not a whole idle interval later.
    opens = landing.time_of_day - 1800 - landing.spread
    now = _at(5, 0) + timedelta(seconds=opens - 1200)
    assert next_poll_delay(jobs, now, P) == pytest.approx(1200, abs=0.01)
    # Never faster than the interval, even just before the window.
    assert next_poll_delay(jobs, now + timedelta(seconds=1150), P) == 300


def test_any_job_in_its_window_keeps_the_fast_interval() -> None:
    jobs = {"a|trace": _daily(3, 15), "b|generation": _daily(15, 0)}
    assert next_poll_delay(jobs, _at(5, 15, 10), P) == 300
    assert next_poll_delay(jobs, _at(5, 3, 10), P) == 300
    assert next_poll_delay(jobs, _at(5, 9), P) == 1800


def test_landings_around_midnight_average_to_midnight_not_noon() -> None:
    times = [_at(d, 23, 55) if d % 2 else _at(d, 0, 5) for d in range(6)]
    landing = expected_landing(times)
    assert landing is not None and min(landing.time_of_day, 86400 - landing.time_of_day) < 60
    assert next_poll_delay({"j": times}, _at(7, 0, 20), P) == 300
    assert next_poll_delay({"j": times}, _at(7, 12), P) == 1800


def test_unknown_young_and_irregular_jobs_keep_the_fast_interval() -> None:
    assert next_poll_delay({}, _at(5, 12), P) == 300
    assert next_poll_delay({"new": _daily(3, 15, days=2)}, _at(5, 12), P) == 300  # still learning
    # Every six hours: no time of day to wait for.
    four_a_day = [DAY0 + timedelta(hours=6 * k, minutes=k % 3) for k in range(12)]
    assert next_poll_delay({"j": four_a_day}, _at(3, 12, 40), P) == 300
    # A well-known job does not idle while another is still being learned.
    assert next_poll_delay({"a": _daily(3, 15), "new": _daily(9, 0, days=1)}, _at(5, 12), P) == 300


def test_landings_older_than_two_weeks_are_forgotten() -> None:
    # The job moved from 03:15 to 15:00 three weeks ago: its old time no longer counts.
    old = [DAY0 - timedelta(days=30 - d, hours=-3, minutes=-15) for d in range(10)]
    jobs = {"j": old + _daily(15, 0)}
    assert next_poll_delay(jobs, _at(5, 3, 15), P) == 1800
    assert next_poll_delay(jobs, _at(5, 15, 0), P) == 300


def test_the_delay_stays_between_the_interval_and_the_idle_interval() -> None:
    jobs = {"a": _daily(3, 15), "b": _daily(20, 40)}
    for minutes in range(0, 2 * 24 * 60, 7):
        delay = next_poll_delay(jobs, _at(5, 0) + timedelta(minutes=minutes), P)
        assert P.interval <= delay <= P.idle_interval


def test_the_config_refuses_an_idle_interval_that_would_poll_faster_or_beside_cron() -> None:
    base = {"posthog": {"project_id": 1, "api_key": "k"}}
    ok = parse_config('{"posthog": {"project_id": 1, "api_key": "k"}, '
                      '"schedule": {"interval_seconds": 300, "idle_interval_seconds": 1800}}', "c.yaml", env={})
    assert ok.schedule.idle_interval_seconds == 1800 and ok.schedule.landing_window_minutes == 60
    assert parse_config(str(base).replace("'", '"'), "c.yaml", env={}).schedule.idle_interval_seconds is None
    for schedule in ('{"interval_seconds": 300, "idle_interval_seconds": 60}',
                     '{"cron": "*/5 * * * *", "idle_interval_seconds": 1800}'):
        with pytest.raises(ConfigError) as err:
            parse_config('{"posthog": {"project_id": 1, "api_key": "k"}, "schedule": ' + schedule + "}",
                         "c.yaml", env={})
        assert "idle_interval_seconds" in str(err.value)
