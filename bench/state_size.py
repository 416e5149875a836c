"""State size after a simulated year: five daily jobs at the demo's size, with and without retention.

The runs are real: the demo's scenario (drift, scale 1) is processed by the monitor against the local
PostHog, and every ProcessedRun it commits (payload, cluster snapshots, run metrics, alert states,
outbox entries) is kept as a template. A year is then written through the store as the daemon would:
5 jobs x 365 days, each run a template under a new run id, job and date, its notifications marked sent
as delivery would; one store keeps everything (the baseline), the other prunes once a simulated day
with the default retention (90 days, and the newest runs each job's rules read). Sizes are the SQLite
file after a WAL checkpoint; the retention bound is the baseline's size after 90 days, the state that
retention is meant to hold.

    ./dev bench state_size [--days 365] [--jobs 5] [--retention-days 90] [--postgres]

With --postgres the same year also goes through PostgreSQL (a throw-away local server), sized with
pg_total_relation_size after a plain VACUUM each simulated week (what autovacuum does in production).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor import logs
from monitor.app.wiring import build_monitor
from monitor.config import parse_config
from monitor.local.posthog.generator import generate
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
from monitor.store import open_store
from monitor.store.base import ProcessedRun, Store
from monitor.store.retention import runs_to_keep

KEY = "phx_bench_key"
END = datetime(2026, 11, 1, tzinfo=UTC)
MB = 1024 * 1024


def _config(url: str, team: int, state: dict[str, Any], slack: str | None = None) -> str:
    return json.dumps({
        "posthog": {"host": url, "project_id": team, "api_key": KEY, "lookback_days": 60},
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "state": state,
        **({"slack": {"webhook_url": slack}} if slack else {}),
    })


def templates(days: int) -> list[ProcessedRun]:
    """Every run the monitor commits over the demo's scenario (drift, scale 1), in order."""
    ds = generate("drift", seed=7, days=days, team_id=1, end=END, scale=1.0)
    server = LocalPostHog(api_key=KEY)
    server.load(ds)
    server.start()
    slack = LocalSlack.start()  # a channel, so that alerts become outbox entries as in production
    seen: list[ProcessedRun] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = parse_config(_config(server.url, 1, {"path": str(Path(tmp) / "t.sqlite")}, slack.webhook_url),
                               "bench", env={})
            m = build_monitor(cfg, clock=lambda: END + timedelta(hours=1))
            commit = m.store.commit_run

            def keep(run: ProcessedRun) -> None:
                seen.append(run)
                commit(run)

            m.store.commit_run = keep  # type: ignore[method-assign]
            result = m.cycle()
            m.client.close()
            m.store.close()
            assert result.ok, result.error or result.failed
    finally:
        slack.stop()
        server.stop()
    return seen


def year(tpl: list[ProcessedRun], days: int, jobs: int, start: datetime) -> Iterator[tuple[int, ProcessedRun]]:
    """(day, run): each job's run of each day, a run of one of the scenario's jobs (in turn, over and over)
    under its own ids and date."""
    by_job: dict[str, list[ProcessedRun]] = {}
    for t in tpl:
        by_job.setdefault(t.job_key, []).append(t)
    groups = list(by_job.values())
    for day in range(days):
        for job in range(jobs):
            runs = groups[job % len(groups)]
            t = runs[day % len(runs)]
            rid, key, at = f"y{day:03d}-{job}", f"job{job}|{t.level}", start + timedelta(days=day, hours=3)
            yield day, replace(
                t, run_id=rid, job_key=key, window_end=at, emitted_at=at, processed_at=at, event_uuid=rid,
                snapshots=[replace(s, run_id=rid, job_key=key, window_end=at, lineage_id=f"{job}:{s.lineage_id}")
                           for s in t.snapshots],
                alert_states=[replace(a, fingerprint=f"{job}:{a.fingerprint}", job_key=key, last_run_id=rid,
                                      first_fired_at=at, last_fired_at=at,
                                      last_notified_at=at if a.last_notified_at else None)
                              for a in t.alert_states],
                outbox=[(f"run:{rid}", channel, payload) for _key, channel, payload in t.outbox])


def simulate(store: Store, tpl: list[ProcessedRun], *, days: int, jobs: int, retention: int | None, keep: int,
             size: Callable[[], int], at_day: int, weekly: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Writes the year; returns (size at `at_day`, size at the end)."""
    start = END - timedelta(days=days)
    sized_at = 0
    for day, run in year(tpl, days, jobs, start):
        store.commit_run(run)
        for entry in store.due_outbox(run.processed_at, limit=1000):
            store.mark_sent(entry.id, run.processed_at)
        if run.job_key.startswith(f"job{jobs - 1}|"):  # the day's last run: the daemon's prune, then sizes
            now = run.processed_at
            if retention is not None:
                store.prune(now - timedelta(days=retention), keep)
            if day % 7 == 6:
                weekly()
            if day + 1 == at_day:
                sized_at = size()
    return sized_at, size()


def _sqlite_size(path: Path) -> Callable[[], int]:
    def size() -> int:
        """The file and its WAL, after a checkpoint folds the WAL into the file (the store is idle here)."""
        import sqlite3

        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return size


@contextmanager
def _postgres() -> Iterator[Any]:
    from tests.support.postgres import PostgresServer

    pg = PostgresServer().start()
    try:
        yield pg
    finally:
        pg.stop()


def _pg_size(url: str) -> tuple[Callable[[], int], Callable[[], None]]:
    import psycopg

    def size() -> int:
        with psycopg.connect(url, autocommit=True) as db:
            row = db.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = 'public' AND c.relkind = 'r'").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def vacuum() -> None:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("VACUUM")

    return size, vacuum


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--retention-days", type=int, default=90)
    ap.add_argument("--template-days", type=int, default=7, help="days of the demo's scenario to take runs from")
    ap.add_argument("--postgres", action="store_true", help="also through PostgreSQL")
    args = ap.parse_args()
    logs.configure("warning")

    t0 = time.perf_counter()
    tpl = templates(args.template_days)
    per_run = sum(len(r.payload) for r in tpl) / len(tpl)
    print(f"{len(tpl)} template runs from the demo's scenario in {time.perf_counter() - t0:.0f}s: "
          f"{sum(len(r.snapshots) for r in tpl) / len(tpl):.0f} clusters and a {per_run / 1024:.0f} KB payload "
          f"per run, {sum(len(r.outbox) for r in tpl)} notifications")
    keep = runs_to_keep(parse_config(_config("http://127.0.0.1:9", 1, {"path": "x.sqlite"}), "bench", env={}))
    sim = {"days": args.days, "jobs": args.jobs, "keep": keep, "at_day": args.retention_days}
    rows: list[tuple[str, int, int, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, retention in (("none", None), (f"{args.retention_days} days", args.retention_days)):
            path = Path(tmp) / f"{label.split()[0]}.sqlite"
            store = open_store(parse_config(_config("http://127.0.0.1:9", 1, {"path": str(path)}),
                                            "bench", env={}).state)
            t = time.perf_counter()
            at, end = simulate(store, tpl, retention=retention, size=_sqlite_size(path), **sim)
            runs = len(store.processed_ids([f"y{d:03d}-{j}" for d in range(args.days) for j in range(args.jobs)]))
            store.close()
            rows.append((f"SQLite, retention {label}", at, end, runs, time.perf_counter() - t))
        if args.postgres:
            with _postgres() as pg:
                for label, retention in (("none", None), (f"{args.retention_days} days", args.retention_days)):
                    url = pg.new_database()
                    store = open_store(parse_config(_config("http://127.0.0.1:9", 1, {"url": url}),
                                                    "bench", env={}).state)
                    size, vacuum = _pg_size(url)
                    t = time.perf_counter()
                    at, end = simulate(store, tpl, retention=retention, size=size, weekly=vacuum, **sim)
                    runs = len(store.processed_ids([f"y{d:03d}-{j}" for d in range(args.days)
                                                    for j in range(args.jobs)]))
                    store.close()
                    rows.append((f"PostgreSQL, retention {label}", at, end, runs, time.perf_counter() - t))

    print(f"\n{args.jobs} daily jobs for {args.days} days through the store; pruned once a simulated day, "
          f"keeping the newest {keep} runs of each job")
    print(f"{'state':<32} {'after ' + str(args.retention_days) + ' d':>12} {'after ' + str(args.days) + ' d':>12} "
          f"{'runs kept':>10} {'written in':>11}")
    for name, at, end, runs, secs in rows:
        print(f"{name:<32} {at / MB:>10.1f}MB {end / MB:>10.1f}MB {runs:>10} {secs:>10.0f}s")
    for i in range(0, len(rows), 2):
        (base, b_at, b_end, _r, _s), (_p, _p_at, p_end, _r2, _s2) = rows[i], rows[i + 1]
        db = base.split(",")[0]
        print(f"{db}: with / without retention after {args.days} days {p_end / b_end:.2f}x; "
              f"after {args.days} days / the retention bound (the state of {args.retention_days} days) "
              f"{p_end / b_at:.2f}x; per run without retention {b_end / (args.days * args.jobs) / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
