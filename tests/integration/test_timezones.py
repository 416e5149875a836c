"""The monitor is correct in any project timezone (issue 14).

PostHog renders `timestamp` in the project's timezone and reads datetime text and placeholders in it
(reference/posthog.md, "The project's timezone"); the local PostHog does the same per project. The same
drift scenario (with its evaluation level), served from one ClickHouse by four servers that differ only
in the project's timezone, must give the monitor the same Slack messages, the same landing times
(adaptive polling) and the same cursor: through `Daemon.run_cycle`, the path of `once`. The window
crosses the end of daylight saving time in Los Angeles (2026-11-01 09:00 UTC), and Chatham's +13:45
puts local midnight on another date than UTC's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.daemon import Daemon
from monitor.local.posthog.generator import Dataset, generate
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
from tests.conftest import API_KEY, new_project_id

ZONES = ("UTC", "Asia/Kolkata", "America/Los_Angeles", "Pacific/Chatham")
# Five daily runs ending here: their seven-day windows span 2026-10-24 .. 2026-11-04, across LA's DST end.
END = datetime(2026, 11, 4, tzinfo=UTC)
DST_END_LA = datetime(2026, 11, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Dataset, dict[str, LocalPostHog]]]:
    """One dataset in the shared engine, four projects' views of it (one per timezone)."""
    team = new_project_id()
    ds = generate("drift", seed=11, days=5, team_id=team, end=END, scale=0.05, evaluations=True)
    assert min(r["window_start"] for r in ds.runs) < DST_END_LA < max(r["window_end"] for r in ds.runs)
    servers = {tz: LocalPostHog(api_key=API_KEY, timezone=tz) for tz in ZONES}
    servers["UTC"].load(ds)
    for s in servers.values():
        s.team(team).jobs = [j.to_api() for j in ds.jobs]
        s.team(team).truth = ds.truth
        s.start()
    yield ds, servers
    for s in servers.values():
        s.stop()


def _config(path: Path, server: LocalPostHog, team: int, slack: LocalSlack, alerting: dict[str, Any],
            levels: tuple[str, ...] = ("trace", "generation", "evaluation")) -> Path:
    doc = {
        "posthog": {"host": server.url, "project_id": team, "api_key": API_KEY, "lookback_days": 60,
                    "max_retries": 0},
        "watch": {"levels": list(levels)},
        "alerting": alerting,
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"path": str(path.with_suffix(".sqlite"))},
        "delivery": {"max_backoff_seconds": 1},
    }
    path.write_text(json.dumps(doc))
    return path


def _once(tmp: Path, server: LocalPostHog, team: int, now: datetime, alerting: dict[str, Any],
          levels: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """`once` against one server: the Slack messages (host normalised) and what the cycle left behind."""
    slack = LocalSlack.start()
    try:
        daemon = Daemon(_config(tmp / "cfg.json", server, team, slack, alerting, levels), clock=lambda: now)
        for p in daemon.projects:
            assert p.monitor.deliverer is not None
            p.monitor.deliverer.min_interval = 0.0  # no pacing against the local endpoint
        try:
            result = daemon.run_cycle()
            monitor = daemon.monitor
            left = {"landings": monitor.landings(), "cursor": monitor.store.cursor(),
                    "processed": sorted(result.processed) if result else None,
                    "failed": result.failed if result else None}
        finally:
            daemon.close()
        assert result is not None and result.ok, (server.timezone, result and result.failed)
        texts = [re.sub(re.escape(server.url), "HOST", json.dumps(
            {k: m.get(k) for k in ("text", "blocks", "attachments")}, sort_keys=True)) for m in slack.messages]
        return texts, left
    finally:
        slack.stop()


def _last_emitted(ds: Dataset, levels: tuple[str, ...]) -> datetime:
    last: datetime = max(r["emitted_at"] for r in ds.runs if r["level"] in levels)
    return last


@pytest.mark.parametrize("case", ["every_run", "late"])
def test_once_sends_the_same_slack_messages_in_every_project_timezone(
        world: tuple[Dataset, dict[str, LocalPostHog]], tmp_path: Path, case: str) -> None:
    """every_run: each run told on its own (windows, emitted times, the metrics window of every run).
    late: the monitor comes back 23 hours after the last run landed: older runs are held and summarised
    (catch-up), the jobs are stale after 20 hours; a time shifted by the project's offset (5:30 to 13:45)
    would move the last run across one bound or the other."""
    ds, servers = world
    team = ds.team_id
    if case == "every_run":
        now, alerting = END + timedelta(hours=1), {"catch_up_after_hours": 0, "stale_after_hours": 0}
        levels: tuple[str, ...] = ("trace", "generation", "evaluation")
    else:  # one level is enough to see the bounds (and keeps the test short)
        levels = ("trace",)
        now = _last_emitted(ds, levels) + timedelta(hours=23)
        alerting = {"catch_up_after_hours": 24, "stale_after_hours": 20, "stale_learned": False}
    got = {}
    for tz, server in servers.items():
        d = tmp_path / tz.replace("/", "_")
        d.mkdir()
        got[tz] = _once(d, server, team, now, alerting, levels)
    texts, left = got["UTC"]
    assert len(left["processed"]) == sum(r["level"] in levels for r in ds.runs), "every run processed in UTC"
    assert len(texts) >= (3 if case == "late" else 10), texts
    if case == "late":
        blob = "\n".join(texts)
        assert "catch-up of" in blob and "No clustering run for 23 h" in blob, blob[:2000]
    for tz in ZONES[1:]:
        assert got[tz][1] == left, tz
        assert got[tz][0] == texts, tz


def test_replay_reads_naive_since_until_in_the_projects_timezone(
        world: tuple[Dataset, dict[str, LocalPostHog]], tmp_path: Path) -> None:
    """`replay --since/--until` without an offset mean the project's wall clock (as PostHog shows times);
    with an offset, that instant. Kolkata's --since 05:30 local is midnight UTC."""
    from typer.testing import CliRunner

    from monitor.cli import app

    ds, servers = world
    server = servers["Asia/Kolkata"]
    slack = LocalSlack.start()
    try:
        cfg = _config(tmp_path / "cfg.json", server, ds.team_id, slack, {"catch_up_after_hours": 0}, ("trace",))
    finally:
        slack.stop()
    emitted = sorted(r["emitted_at"] for r in ds.runs if r["level"] == "trace")
    lo, hi = emitted[-3], emitted[-2]
    ist = timedelta(hours=5, minutes=30)
    # Whole seconds around the runs' instants (lo's second started before it, hi's next one after it).
    naive = [(lo + ist).replace(tzinfo=None, microsecond=0).isoformat(),
             (hi + ist + timedelta(seconds=1)).replace(tzinfo=None, microsecond=0).isoformat()]
    runner = CliRunner()
    project = f"/api/projects/{ds.team_id}/"
    asked = sum(r.get("path") == project for r in server.requests)
    by_offset = runner.invoke(app, ["replay", "-c", str(cfg), "--json", "--since", lo.isoformat(),
                                    "--until", hi.isoformat(), "--at", (END + timedelta(hours=1)).isoformat()])
    by_local = runner.invoke(app, ["replay", "-c", str(cfg), "--json", "--since", naive[0],
                                   "--until", naive[1],
                                   "--at", (END + timedelta(hours=1)).isoformat()])
    assert by_offset.exit_code == 0, by_offset.output
    assert by_local.exit_code == 0, by_local.output
    assert by_local.stdout == by_offset.stdout and by_local.stdout.strip()
    assert "--since" in by_local.stderr and "read in the project's timezone Asia/Kolkata" in by_local.stderr
    # Asked once for both bounds, and not at all when every bound had its offset.
    assert sum(r.get("path") == project for r in server.requests) == asked + 1
