"""API calls and bytes: per idle poll and per new run, the monitor beside the naive skill workflow.

Both talk HTTP to the local PostHog server; calls and response bytes are counted from its query log.
The naive workflow is PostHog's exploring-llm-clusters skill done on a schedule: list recent runs, fetch
each new run, then one `IN (...)` metrics query per cluster. The monitor is measured on the same runs three
ways: every cluster carrying the `metrics` PostHog computes (the run alone suffices: 1 call), as generated
(PostHog's best effort leaves some runs' metrics null or absent: those take the metrics query too), and
with none (every run: the run and the metrics query).

    ./dev bench api_budget [--projects 1 10 100]
    ./dev bench api_budget --adaptive [--days 7]
    ./dev bench api_budget --explain [--days 14]

`--explain`: what explaining alerts costs (monitor/stages/explain.py): the drift scenario's runs processed
once, calls counted by query name from the server's log: one more call only for runs whose message has
firing cost, latency or error alerts, beside the two every run makes (payload, metrics).

`--adaptive`: calls per day and detection latency of fixed polling (schedule.interval_seconds, 300 s)
against adaptive polling (monitor/pacing.py: 300 s around each job's learned landing time, the idle
interval elsewhere). The real Monitor polls a local PostHog whose clock is moved from poll to poll, as
the daemon's scheduler would after each cycle (Daemon._pace asks the same function); calls are counted
from the server's log, latency is a run's processing time minus its landing time, from the state store.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.app.wiring import build_monitor
from monitor.config import parse_config
from monitor.local.posthog.generator import Dataset, generate, with_embedded_metrics
from monitor.local.posthog.server import LocalPostHog
from monitor.pacing import Pacing, next_poll_delay
from monitor.posthog.client import PostHogClient, RequestBudget

KEY = "phx_bench_key"
END = datetime(2026, 11, 1, tzinfo=UTC)

NAIVE_LIST = """
SELECT JSONExtractString(properties, '$ai_clustering_run_id') AS run_id, timestamp
FROM events WHERE event IN ('$ai_trace_clusters', '$ai_generation_clusters', '$ai_evaluation_clusters')
  AND timestamp >= parseDateTimeBestEffort({since}) ORDER BY timestamp DESC LIMIT 100
"""
NAIVE_GET = """
SELECT JSONExtractRaw(properties, '$ai_clusters') AS clusters, JSONExtractString(properties, '$ai_window_start'),
       JSONExtractString(properties, '$ai_window_end')
FROM events WHERE event IN ('$ai_trace_clusters', '$ai_generation_clusters', '$ai_evaluation_clusters')
  AND JSONExtractString(properties, '$ai_clustering_run_id') = {run_id} LIMIT 1
"""
NAIVE_METRICS = """
SELECT JSONExtractString(properties, '$ai_trace_id') AS item_id, sum(toFloat(properties.$ai_total_cost_usd)) AS cost,
       max(toFloat(properties.$ai_latency)) AS latency, countIf(properties.$ai_is_error = 'true') AS errors
FROM events WHERE event = '$ai_generation'
  AND timestamp >= parseDateTimeBestEffort({ws}) AND timestamp <= parseDateTimeBestEffort({we})
  AND JSONExtractString(properties, '$ai_trace_id') IN {ids}
GROUP BY item_id LIMIT 50000
"""


def _unpaced() -> RequestBudget:
    """A request budget without limits, for benches that count calls rather than wait them out."""
    return RequestBudget(limits=((10**9, 1.0),))


def _count(server: LocalPostHog, since: int) -> tuple[int, int]:
    reqs = server.requests[since:]
    return len(reqs), sum(int(r.get("bytes") or 0) for r in reqs)


def naive_poll(client: PostHogClient, seen: set[str]) -> None:
    import msgspec

    # The skill says "the last 30 days" (now() - INTERVAL 30 DAY); bound here to the generated data's end,
    # since the local server's now() is the wall clock, not its virtual one.
    since = (END - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
    rows = client.query(NAIVE_LIST, {"since": since}, name="naive_list").rows()
    for r in rows:
        if r["run_id"] in seen:
            continue
        seen.add(r["run_id"])
        got = client.query(NAIVE_GET, {"run_id": r["run_id"]}, name="naive_get").results
        if not got:
            continue
        clusters, ws, we = got[0]
        for c in msgspec.json.decode(clusters):
            client.query(NAIVE_METRICS, {"ws": ws[:19].replace("T", " "), "we": we[:19].replace("T", " "),
                                         "ids": list(c.get("traces", {}))}, name="naive_metrics")


def _simulate(server: LocalPostHog, team: int, start: datetime, end: datetime, tmp: Path, name: str,
              idle: float | None, learned_from: datetime) -> tuple[float, float, float, int]:
    """Poll from `start` to `end` on the virtual clock; returns (calls a day, median and max latency in
    seconds, runs) counted from `learned_from` on."""
    now = [start]
    cfg = parse_config(json.dumps({
        "posthog": {"host": server.url, "project_id": team, "api_key": KEY, "lookback_days": 30},
        "schedule": {"interval_seconds": 300, "idle_interval_seconds": idle},
        "alerting": {"stale_after_hours": 0},
        "state": {"path": str(tmp / f"{name}.sqlite")}}), "bench", env={})
    # Days of polls in minutes of real time: PostHog's per-key rate limit (the shared budget) would pace
    # them to real time, so this client gets a budget of its own without limits.
    m = build_monitor(cfg, clock=lambda: now[0], budget=_unpaced())
    sched = cfg.schedule
    pacing = Pacing(interval=sched.interval_seconds, idle_interval=sched.idle_interval_seconds or 0.0,
                    window=sched.landing_window_minutes * 60.0)
    mark: int | None = None
    while now[0] < end:
        if mark is None and now[0] >= learned_from:
            mark = len(server.requests)
        server.clock.set(now[0])
        m.cycle()
        delay = sched.interval_seconds if idle is None else next_poll_delay(m.landings(), now[0], pacing)
        now[0] += timedelta(seconds=delay)
    calls = len(server.requests) - (mark or 0)
    m.client.close()
    m.store.close()
    with sqlite3.connect(tmp / f"{name}.sqlite") as db:
        rows = db.execute("SELECT emitted_at, processed_at FROM runs").fetchall()
    lat = [(datetime.fromisoformat(p) - datetime.fromisoformat(e)).total_seconds() for e, p in rows
           if datetime.fromisoformat(e) >= learned_from]
    days = (end - learned_from).total_seconds() / 86400
    return calls / days, statistics.median(lat), max(lat), len(lat)


def adaptive(days: int) -> int:
    team = 7000
    ds = generate("drift", days=days, team_id=team, end=END, scale=0.05)
    server = LocalPostHog(api_key=KEY)
    server.load(ds)
    server.start()
    start = END - timedelta(days=days)
    learned_from = start + timedelta(days=3)  # three landings per job before it may idle
    times = sorted(r["emitted_at"] for r in ds.runs)
    print(f"drift scenario, {days} days, {len(ds.runs)} runs landing between {times[0]:%H:%M} and "
          f"{times[-1]:%H:%M} UTC; figures from day 4 on (after learning)")
    print(f"{'polling':<34} {'calls/day':>10} {'latency median':>15} {'latency max':>12} {'runs':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, idle in (("fixed, every 300 s", None), ("adaptive, 300 s / idle 1800 s", 1800.0),
                            ("adaptive, 300 s / idle 3600 s", 3600.0)):
            per_day, med, worst, n = _simulate(server, team, start, END + timedelta(hours=12), Path(tmp),
                                               f"s{int(idle or 0)}", idle, learned_from)
            print(f"{label:<34} {per_day:>10.1f} {med:>13.0f} s {worst:>10.0f} s {n:>5}")
    server.stop()
    return 0


def explain_cost(days: int) -> int:
    from monitor.stages.explain import QUERY_NAME

    team = 7100
    ds = generate("drift", days=days, team_id=team, end=END, scale=0.1)
    server = LocalPostHog(api_key=KEY)
    server.load(ds)
    server.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(json.dumps({
            "posthog": {"host": server.url, "project_id": team, "api_key": KEY, "lookback_days": 60},
            "alerting": {"catch_up_after_hours": 0}, "watch": {"levels": ["trace", "generation", "evaluation"]},
            "state": {"path": str(Path(tmp) / "s.sqlite")}}), "bench", env={})
        # Counted, not timed: no pacing to PostHog's per-key rate limit.
        m = build_monitor(cfg, clock=lambda: END + timedelta(hours=1), budget=_unpaced())
        mark = len(server.requests)
        result = m.cycle()
        m.client.close()
        m.store.close()
    reqs = server.requests[mark:]
    server.stop()
    by_name: dict[str, list[int]] = {}
    for r in reqs:
        name = str(r.get("name") or "").removeprefix("cluster-monitor:")
        name = "cluster_metrics" if name.startswith("cluster_metrics") else name
        by_name.setdefault(name, []).append(int(r.get("bytes") or 0))
    runs = len(result.processed)
    explained = {n.run_id for n in result.notices if any(a.explanation for a in n.alerts)}
    asked = by_name.get(QUERY_NAME, [])
    base = len(by_name.get("get_run", [])) + len(by_name.get("cluster_metrics", []))
    print(f"drift scenario, {days} days: {runs} runs, {len(explained)} with firing cost/latency/error alerts")
    print(f"{'query':<22} {'calls':>6} {'bytes median':>13}")
    for name, sizes in sorted(by_name.items()):
        print(f"{name:<22} {len(sizes):>6} {statistics.median(sizes):>13,.0f}")
    print(f"calls per run: {(base + len(asked)) / runs:.3f} (baseline without explanations {base / runs:.3f}); "
          f"explanation calls {len(asked)} = runs explained {len(explained)}")
    return 0 if len(asked) == len(explained) else 1


def _projects(base: int, n: int) -> list[Dataset]:
    return [generate("steady", days=2, team_id=base + i, end=END, scale=0.05 if n > 1 else 0.1, seed=i,
                     evaluations=True) for i in range(n)]


def _monitor_budget(datasets: list[Dataset], base: int, first_day: datetime, last_runs: datetime,
                    new_runs: int) -> tuple[int, int, float, float]:
    """The monitor over one local PostHog holding `datasets`: (idle poll calls, idle bytes, calls and bytes
    per new run). New-run cost excludes the discovery call every poll makes anyway."""
    n_projects = len(datasets)
    server = LocalPostHog(api_key=KEY)
    for ds in datasets:
        server.load(ds)
    server.clock.set(first_day)
    server.start()
    with tempfile.TemporaryDirectory() as tmp:
        monitors = []
        for i in range(n_projects):
            cfg = parse_config(json.dumps({
                "posthog": {"host": server.url, "project_id": base + i, "api_key": KEY, "lookback_days": 30},
                "watch": {"levels": ["trace", "generation", "evaluation"]},
                "state": {"path": str(Path(tmp) / f"s{i}.sqlite")}}), "bench", env={})
            monitors.append(build_monitor(cfg, clock=lambda: END + timedelta(hours=12)))
        for m in monitors:  # catch up with the backlog, and fetch the jobs list once
            m.cycle()
        mark = len(server.requests)
        for m in monitors:
            m.cycle()
        idle_calls, idle_bytes = _count(server, mark)
        server.clock.set(last_runs + timedelta(minutes=5))
        mark = len(server.requests)
        for m in monitors:
            m.cycle()
        run_calls, run_bytes = _count(server, mark)
        for m in monitors:
            m.client.close()
            m.store.close()
    server.stop()
    return (idle_calls, idle_bytes, (run_calls - n_projects) / max(new_runs, 1),
            (run_bytes - idle_bytes) / max(new_runs, 1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--projects", type=int, nargs="*", default=[1, 10, 100])
    ap.add_argument("--adaptive", action="store_true", help="fixed against adaptive polling (see above)")
    ap.add_argument("--explain", action="store_true", help="the cost of explaining alerts (see above)")
    ap.add_argument("--days", type=int, default=None)
    args = ap.parse_args()
    if args.adaptive:
        return adaptive(args.days or 7)
    if args.explain:
        return explain_cost(args.days or 14)
    print(f"{'projects':>8} {'who':<34} {'idle calls':>10} {'idle bytes':>11} {'calls/new run':>14} "
          f"{'bytes/new run':>14}")
    for n_projects in args.projects:
        # 2 jobs x 2 levels per project (and the evaluation job), 2 days of runs each: the first day is the
        # backlog, the second day's runs are "new" when the clock moves. The local PostHog keeps one
        # ClickHouse per process, so each pass loads the same runs under project ids of its own.
        datasets = _projects(1000 * n_projects, n_projects)
        last_runs = max(r["emitted_at"] for ds in datasets for r in ds.runs)
        first_day = last_runs - timedelta(hours=12)
        new_runs = sum(1 for ds in datasets for r in ds.runs if r["emitted_at"] > first_day)
        # The same runs three ways: PostHog's metrics in every cluster, as generated (PostHog's best effort:
        # some runs null or absent), and none at all.
        with_share = sum(r["metrics_in_event"] == "present" for ds in datasets for r in ds.truth["runs"]
                         if datetime.fromisoformat(r["emitted_at"]) > first_day) / max(new_runs, 1)
        for k, (label, present) in enumerate((("monitor, PostHog's metrics in run", True),
                                              (f"monitor, as generated ({with_share:.0%} with)", None),
                                              ("monitor, no metrics in run", False))):
            base = 1000 * n_projects + 100_000 * (k + 1)
            variant = [d if present is None else with_embedded_metrics(d, present) for d in _projects(base, n_projects)]
            idle_calls, idle_bytes, per_run_calls, per_run_bytes = _monitor_budget(variant, base, first_day,
                                                                                   last_runs, new_runs)
            print(f"{n_projects:>8} {label:<34} {idle_calls:>10} {idle_bytes:>11,} {per_run_calls:>14.2f} "
                  f"{per_run_bytes:>14,.0f}")
        base = 1000 * n_projects

        # The naive workflow on the same data, same clock moves.
        server = LocalPostHog(api_key=KEY)
        for ds in datasets:
            server.load(ds)
        server.clock.set(first_day)
        server.start()
        clients = [PostHogClient(server.url, base + i, KEY) for i in range(n_projects)]
        seen: list[set[str]] = [set() for _ in range(n_projects)]
        for c, s in zip(clients, seen, strict=True):
            naive_poll(c, s)
        mark = len(server.requests)
        for c, s in zip(clients, seen, strict=True):
            naive_poll(c, s)
        n_idle, b_idle = _count(server, mark)
        server.clock.set(last_runs + timedelta(minutes=5))
        mark = len(server.requests)
        for c, s in zip(clients, seen, strict=True):
            naive_poll(c, s)
        n_run, b_run = _count(server, mark)
        per_call = (n_run - n_projects) / max(new_runs, 1)
        print(f"{n_projects:>8} {'naive':<34} {n_idle:>10} {b_idle:>11,} {per_call:>14.2f} "
              f"{(b_run - b_idle) / max(new_runs, 1):>14,.0f}")
        for c in clients:
            c.close()
        server.stop()
    return 0
