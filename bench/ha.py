"""High availability on PostgreSQL: what the shared store costs, and how fast a standby takes over.

Store: one cycle over a backlog (the drift scenario, 14 days) processed from an empty store, on SQLite
(the baseline) and on PostgreSQL (a throw-away local server), alternating, `--rounds` times each; the
time spent in store calls (and in `commit_run` among them) is measured apart from the whole cycle, which
is mostly PostHog queries answered by the local ClickHouse and varies with the machine's load.

Failover: two `cluster-monitor run` replicas on one database; once one leads and the other stands by,
the leader is SIGKILLed at a random point of the standby's polling period and the time until the standby
holds the lock is measured from outside (pg_locks), beside the cycle interval, the bound the design
promises.

Fencing (issue 18), each against the same SIGKILL figures: the leader paused (SIGSTOP) between two
paced sends while its lock session is ended and the standby takes over, then resumed; PostgreSQL
restarted while a send is in flight (held at the local Slack until the restart is done); a hung leader
(SIGSTOP, session left open) deposed by the standby once its lease runs out. The local Slack records
which replica sent each message and which one held the lock at that instant (pg_locks): "unfenced" counts
messages from a replica that did not hold it, "duplicates" messages sent twice.

    ./dev bench ha [--rounds 3] [--trials 5] [--intervals 1 3] [--fence-trials 3] [--lease 2]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from monitor import logs
from monitor.app.wiring import build_monitor
from monitor.config import parse_config
from monitor.local.posthog.generator import generate
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
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


class _Pair:
    """Two `cluster-monitor run` replicas on a fresh database, Slack recording sender and lock holder."""

    def __init__(self, pg: PostgresServer, server: LocalPostHog, team: int, tmp: Path, name: str,
                 lease: float) -> None:
        self.url = pg.new_database()
        self.key = lock_key(team)
        self.lease = lease
        self.slack = LocalSlack.start()
        self.slack.observe = lambda: self.holder()
        cfg = Path(tmp) / f"{name}.yaml"
        doc = json.loads(_config(server, team, {"url": self.url, "leader_lease_seconds": lease}, 1))
        doc["slack"] = {"webhook_url": self.slack.webhook_url}
        doc["alerting"]["catch_up_after_hours"] = 0
        cfg.write_text(json.dumps(doc))
        self.files = [Path(tmp) / f"{name}-{i}.log" for i in range(2)]
        self.procs = {}
        for log in self.files:
            p = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)],
                                 stdout=log.open("wb"), stderr=subprocess.STDOUT, env=dict(os.environ))
            self.procs[p.pid] = p

    def holder(self) -> int | None:
        try:
            return _holder(self.url, self.key)
        except psycopg.Error:
            return None

    def logs(self) -> str:
        return "\n".join(f.read_text()[-1500:] for f in self.files)

    def pending(self) -> int:
        try:
            with psycopg.connect(self.url, autocommit=True) as db:
                row = db.execute("SELECT count(*) FROM outbox WHERE status <> 'sent'").fetchone()
            return int(row[0]) if row else -1
        except psycopg.Error:
            return -1

    def first_sender(self) -> int:
        msg = _until(lambda: self.slack.messages[:1], 120)
        assert msg, f"no message: {self.logs()}"
        return int(str(msg[0]["sender"]).rsplit(":", 1)[1])

    def tally(self) -> tuple[int, int, int]:
        """(messages, unfenced, duplicates) once the outbox is drained."""
        assert _until(lambda: self.pending() == 0 and self.slack.messages, 120), f"not drained: {self.logs()}"
        msgs = list(self.slack.messages)
        unfenced = sum(1 for m in msgs if m.get("observed") != int(str(m["sender"]).rsplit(":", 1)[1]))
        blocks: dict[str, int] = {}
        for m in msgs:
            k = json.dumps(m["blocks"], sort_keys=True)
            blocks[k] = blocks.get(k, 0) + 1
        return len(msgs), unfenced, sum(n - 1 for n in blocks.values())

    def close(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.wait(10)
        self.slack.stop()


def _paused(pg: PostgresServer, pair: _Pair, *, at_send: bool = False) -> float:
    """Paused at a random point of the pacing second between two sends (or, `at_send`, as a message
    reaches Slack: before its "sent" mark, the window the duplicate bound is about), its lock session
    ended, resumed after the takeover."""
    leader = pair.first_sender()
    other = next(p for p in pair.procs if p != leader)
    if not at_send:
        time.sleep(random.uniform(0, 1))
    os.kill(leader, signal.SIGSTOP)
    t0 = time.monotonic()
    with psycopg.connect(pair.url, autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
                   "AND l.granted AND l.classid = %s AND l.objid = %s",
                   ((pair.key >> 32) & 0xFFFFFFFF, pair.key & 0xFFFFFFFF))
    assert _until(lambda: pair.holder() == other, 30, step=0.005), pair.logs()
    took = time.monotonic() - t0
    assert _until(lambda: any(str(m["sender"]).endswith(f":{other}") for m in pair.slack.messages), 30), pair.logs()
    os.kill(leader, signal.SIGCONT)
    return took


def _restart(pg: PostgresServer, pair: _Pair) -> float:
    """PostgreSQL restarted while the first send waits at Slack."""
    gate = pair.slack.gate = threading.Event()
    pair.first_sender()
    t0 = time.monotonic()
    pg.restart()
    gate.set()
    assert _until(lambda: pair.holder() is not None, 60, step=0.005), pair.logs()
    return time.monotonic() - t0


def _hung(pg: PostgresServer, pair: _Pair) -> float:
    """Stopped with its session (and the lock) left open: the standby deposes it once the lease runs out."""
    leader = _until(pair.holder, 60)
    other = next(p for p in pair.procs if p != leader)
    assert _until(functools.partial(_standing_by, pair.files), 60)
    time.sleep(random.uniform(0, 1))  # a random point of the standby's polling period (1 s)
    os.kill(leader, signal.SIGSTOP)
    t0 = time.monotonic()
    assert _until(lambda: pair.holder() == other, pair.lease * 5 + 10, step=0.005), pair.logs()
    took = time.monotonic() - t0
    os.kill(leader, signal.SIGCONT)
    return took


def fencing(pg: PostgresServer, trials: int, lease: float) -> None:
    team = 3
    server = LocalPostHog(api_key=KEY)
    server.load(generate("drift", seed=7, days=5, team_id=team, end=END, scale=0.05))
    server.start()
    cases: dict[str, tuple[Callable[[PostgresServer, _Pair], float], float]] = {
        # A long lease where the session is ended from outside, so only that ending moves the lock.
        "paused": (_paused, 60.0), "paused@send": (functools.partial(_paused, at_send=True), 60.0),
        "restart": (_restart, 60.0), "hung": (_hung, lease)}
    rows: dict[str, list[tuple[float, int, int, int]]] = {case: [] for case in cases}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for t in range(trials):
                for case, (run, case_lease) in cases.items():
                    pair = _Pair(pg, server, team, Path(tmp), f"{case}{t}", lease=case_lease)
                    try:
                        rows[case].append((run(pg, pair), *pair.tally()))
                    finally:
                        pair.close()
    finally:
        server.stop()
    # Takeover bounds: one cycle interval once the lock is free; lease + interval for a hung leader. The
    # restart's time includes the restart itself, so it has none.
    bounds: dict[str, float | None] = {"paused": 1.0, "paused@send": 1.0, "restart": None, "hung": lease + 1.0}
    print(f"\nfencing: {trials} trials each, two replicas, cycle interval 1 s; takeover seen from pg_locks")
    print(f"{'case':<11} {'takeover median':>16} {'max':>7} {'bound':>7} {'max / bound':>12} "
          f"{'messages':>9} {'unfenced':>9} {'duplicates':>11} {'most in a trial':>16}")
    for case, got in rows.items():
        took = [r[0] for r in got]
        bound = bounds[case]
        ratio = f"{max(took) / bound:.2f}x" if bound else "-"
        print(f"{case:<11} {statistics.median(took):>15.2f}s {max(took):>6.2f}s {bound or '-':>7} {ratio:>12} "
              f"{sum(r[1] for r in got):>9} {sum(r[2] for r in got):>9} {sum(r[3] for r in got):>11} "
              f"{max(r[3] for r in got):>16}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="./dev bench ha")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--intervals", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--fence-trials", type=int, default=3)
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument("--only", choices=["store", "failover", "fencing"], nargs="+",
                    default=["store", "failover", "fencing"])
    args = ap.parse_args()
    logs.configure("warning")
    pg = PostgresServer().start()
    try:
        if "store" in args.only:
            store_cost(pg, args.rounds)
        if "failover" in args.only:
            failover(pg, args.trials, args.intervals)
        if "fencing" in args.only:
            fencing(pg, args.fence_trials, args.lease)
    finally:
        pg.stop()
    return 0
