"""High availability on PostgreSQL: what the shared store costs, and how fast a standby takes over.

Store: one cycle over a backlog (the drift scenario, 14 days) processed from an empty store, on SQLite
(the baseline) and on PostgreSQL (a throw-away local server), alternating, `--rounds` times each; the
time spent in store calls (and in `commit_run` among them) is measured apart from the whole cycle, which
is mostly PostHog queries answered by the local ClickHouse and varies with the machine's load.

Failover: two `cluster-monitor run` replicas on one database; once one leads and the other stands by,
the leader is SIGKILLed at a random point of the standby's polling period and the time until the standby
holds the lock is measured from outside (pg_locks), beside the cycle interval, the bound the design
promises.

    ./dev bench ha [--rounds 3] [--trials 5] [--intervals 1 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from monitor import logs
from monitor.config import parse_config
from monitor.daemon import build_monitor
from monitor.local.posthog.generator import generate
from monitor.local.posthog.server import LocalPostHog
from monitor.store.leader import lock_key
from tests.support.postgres import PostgresServer

KEY = "phx_bench_key"
END = datetime(2026, 11, 1, tzinfo=UTC)


def _config(server: LocalPostHog, team: int, state: dict[str, Any], interval: float = 300) -> str:
    return json.dumps({
        "posthog": {"host": server.url, "project_id": team, "api_key": KEY, "lookback_days": 60},
        "schedule": {"interval_seconds": interval},
        "alerting": {"stale_after_hours": 0},
        "state": state,
    })


def _cycle(server: LocalPostHog, team: int, state: dict[str, Any]) -> tuple[float, float, float, int]:
    """(cycle seconds, seconds in the store, seconds in commit_run, runs processed) from an empty store."""
    m = build_monitor(parse_config(_config(server, team, state), "bench", env={}),
                      clock=lambda: END + timedelta(hours=1))
    spent: dict[str, float] = {}
    for name in STORE_CALLS:
        call: Callable[..., Any] = getattr(m.store, name)

        def timed(*args: Any, _call: Callable[..., Any] = call, _name: str = name, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return _call(*args, **kw)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - t

        setattr(m.store, name, timed)
    t0 = time.perf_counter()
    result = m.cycle()
    wall = time.perf_counter() - t0
    m.client.close()
    m.store.close()
    assert result.ok, result.error or result.failed
    return wall, sum(spent.values()), spent.get("commit_run", 0.0), len(result.processed)


STORE_CALLS = ("is_processed", "processed_ids", "previous_run", "lineages", "run_snapshots", "history",
               "lineage_history", "alert_states", "commit_run", "commit_alerts", "last_runs", "cursor",
               "set_cursor", "due_outbox", "outbox", "silences", "kv_get", "kv_set", "thread_for")


def store_cost(pg: PostgresServer, rounds: int) -> None:
    team = 1
    ds = generate("drift", seed=7, days=14, team_id=team, end=END, scale=0.3)
    server = LocalPostHog(api_key=KEY)
    server.load(ds)
    server.start()
    out: dict[str, list[tuple[float, float, float, int]]] = {"sqlite": [], "postgres": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _cycle(server, team, {"path": str(Path(tmp) / "warm.sqlite")})  # warm ClickHouse and imports
            for i in range(rounds):
                out["sqlite"].append(_cycle(server, team, {"path": str(Path(tmp) / f"s{i}.sqlite")}))
                out["postgres"].append(_cycle(server, team, {"url": pg.new_database()}))
    finally:
        server.stop()
    runs = out["sqlite"][0][3]
    print(f"\nstore: one cycle over a backlog of {runs} runs from an empty store, median of {rounds} "
          "(the cycle is mostly PostHog queries on the local ClickHouse)")
    print(f"{'store':<10} {'cycle':>8} {'in the store':>13} {'per run':>9} {'commit_run / run':>17}")
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in out.items()}
    for k, (wall, store, commit) in med.items():
        print(f"{k:<10} {wall:>7.2f}s {store * 1000:>11.0f}ms {store / runs * 1000:>7.1f}ms "
              f"{commit / runs * 1000:>15.1f}ms")
    on_pg, lite = med["postgres"], med["sqlite"]
    # The whole cycle's ratio is left out: ClickHouse's answers dominate it and swing with the machine's load.
    print(f"postgres / sqlite: time in the store {on_pg[1] / lite[1]:.2f}x, commit_run {on_pg[2] / lite[2]:.2f}x")


def _holder(url: str, key: int) -> int | None:
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
    return int(str(row[0]).rsplit(":", 1)[1]) if row else None


def _new_holder(url: str, key: int, old: int) -> int | None:
    h = _holder(url, key)
    return h if h not in (None, old) else None


def _standing_by(files: list[Path]) -> bool:
    return any("leader_standby" in f.read_text() for f in files)


def _until(cond: Callable[[], Any], timeout: float, step: float = 0.01) -> Any:
    """Poll (a benchmark measuring from outside may): the first truthy value, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def failover(pg: PostgresServer, trials: int, intervals: list[float]) -> None:
    team = 2
    server = LocalPostHog(api_key=KEY)
    server.load(generate("steady", seed=7, days=2, team_id=team, end=END, scale=0.05))
    server.start()
    key = lock_key(team)
    print(f"\nfailover: SIGKILL of the leader of two replicas, time until the standby holds the lock "
          f"({trials} trials each)")
    print(f"{'interval':>9} {'median':>8} {'max':>8} {'median / interval':>18} {'max / interval':>15}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for interval in intervals:
                took: list[float] = []
                for t in range(trials):
                    url = pg.new_database()
                    cfg = Path(tmp) / f"c{interval}-{t}.yaml"
                    cfg.write_text(_config(server, team, {"url": url}, interval))
                    files = [Path(tmp) / f"r{interval}-{t}-{i}.log" for i in range(2)]
                    procs = {}
                    for log in files:
                        p = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)],
                                             stdout=log.open("wb"), stderr=subprocess.STDOUT, env=dict(os.environ))
                        procs[p.pid] = p
                    try:
                        leader = _until(functools.partial(_holder, url, key), 60)
                        assert leader in procs, f"no leader: {[f.read_text()[-1000:] for f in files]}"
                        assert _until(functools.partial(_standing_by, files), 60)
                        # Kill at a random point of the standby's polling period, as a crash would.
                        time.sleep(random.uniform(0, interval))
                        t0 = time.monotonic()
                        os.kill(leader, signal.SIGKILL)
                        new = _until(functools.partial(_new_holder, url, key, leader), interval * 5 + 10, step=0.005)
                        took.append(time.monotonic() - t0)
                        assert new in procs and new != leader
                    finally:
                        for p in procs.values():
                            p.kill()
                            p.wait(10)
                print(f"{interval:>8g}s {statistics.median(took):>7.2f}s {max(took):>7.2f}s "
                      f"{statistics.median(took) / interval:>17.2f}x {max(took) / interval:>14.2f}x")
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(prog="./dev bench ha")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--intervals", type=float, nargs="+", default=[1.0, 3.0])
    args = ap.parse_args()
    logs.configure("warning")
    pg = PostgresServer().start()
    try:
        store_cost(pg, args.rounds)
        failover(pg, args.trials, args.intervals)
    finally:
        pg.stop()
    return 0
