"""Local PostHog: start time with the drift scenario, and latency of the one-query cluster-metrics pattern.

Prints the time from nothing to serving (generate 14 days of traffic, load into chdb, listen), then
the latency over HTTP of the monitor's per-run metrics query for a real-sized run (1,500 items) and a
large one (50,000 items), beside the baseline the issue names: the naive per-cluster `IN (...)` query
workflow, run on the same server in the same process.

    ./dev bench localposthog [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from monitor.local.posthog.generator import generate, make_run_event, run_event_row
from monitor.local.posthog.server import LocalPostHog
from monitor.posthog import queries
from monitor.posthog.client import PostHogClient

KEY = "phx_bench_key"


def _median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _big_run(ds: Any, n_items: int, team_id: int, emitted: datetime) -> tuple[dict[str, Any], Any]:
    """A run clustering `n_items` real traces of the dataset into 50 clusters."""
    traces: list[str] = []
    seen: set[str] = set()
    import msgspec

    for row in ds.events:
        if row[1] != "$ai_generation":
            continue
        tid = msgspec.json.decode(row[3]).get("$ai_trace_id")
        if tid and tid not in seen:
            seen.add(tid)
            traces.append(tid)
            if len(traces) >= n_items:
                break
    clusters = [{"cluster_id": i, "items": traces[i::50], "title": f"Cluster {i}"} for i in range(50)]
    start = emitted - timedelta(days=30)
    props = make_run_event(team_id=team_id, level="trace", job_id="00000000-0000-0000-0000-00000000beef",
                           job_name="bench", window_start=start, window_end=emitted - timedelta(minutes=5),
                           clusters=clusters)
    return props, run_event_row(props, team_id=team_id, emitted_at=emitted)


def _cli_start_seconds() -> float:
    """Wall time from spawning `cluster-monitor local-posthog --scenario drift` to its first answer."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "local-posthog", "--scenario", "drift",
                             "--port", str(port), "--api-key", KEY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/projects/1/llm_analytics/clustering_jobs/",
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=1.0)
                if r.status_code in (200, 404):
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"local-posthog exited with {proc.returncode}")
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    ds = generate("drift", days=14, team_id=1, end=datetime(2026, 11, 1, tzinfo=UTC))
    t_gen = time.perf_counter() - t0
    server = LocalPostHog(api_key=KEY)
    server.load(ds)
    server.start()
    httpx.get(server.url + "/api/projects/1/llm_analytics/clustering_jobs/",
              headers={"Authorization": f"Bearer {KEY}"}).raise_for_status()
    t_start = time.perf_counter() - t0
    print("machine: 2 cores, 24 GiB (see ../.library/env); Python", __import__("sys").version.split()[0])
    print(f"start: generate {t_gen:.2f} s, serving after {t_start:.2f} s; {len(ds.events):,} events, "
          f"{len(ds.runs)} runs")
    print(f"start of the CLI (`cluster-monitor local-posthog --scenario drift`, new process): "
          f"serving after {_cli_start_seconds():.2f} s")

    client = PostHogClient(server.url, 1, KEY)
    emitted = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    print(f"\n{'items':>7} {'one query (ms)':>15} {'naive IN-lists (ms)':>20} {'naive calls':>12} {'ratio':>7}")
    for n in (1500, 50_000):
        emitted += timedelta(minutes=1)
        props, row = _big_run(ds, n, 1, emitted)
        server.engine.insert([row])
        run_id = props["$ai_clustering_run_id"]
        values = {"event": "$ai_trace_clusters", "run_id": run_id,
                  "emitted_from": emitted - timedelta(seconds=1), "emitted_to": emitted + timedelta(seconds=1),
                  "window_start": datetime(2026, 9, 1, tzinfo=UTC), "window_end": datetime(2026, 11, 1, 3, tzinfo=UTC)}
        ours = _median_ms(lambda v=values: client.query(queries.CLUSTER_METRICS["trace"], v, name="m"),
                          args.repeats)
        clusters = props["$ai_clusters"]
        naive_q = (
            "SELECT JSONExtractString(properties, '$ai_trace_id') AS item_id, "
            "sum(toFloat(properties.$ai_total_cost_usd)) AS cost, max(toFloat(properties.$ai_latency)) AS lat "
            "FROM events WHERE event = '$ai_generation' AND timestamp >= parseDateTimeBestEffort({ws}) "
            "AND timestamp <= parseDateTimeBestEffort({we}) "
            "AND JSONExtractString(properties, '$ai_trace_id') IN {ids} GROUP BY item_id LIMIT 50000")

        def naive(cl: list[dict[str, Any]] = clusters, q: str = naive_q) -> None:
            for c in cl:
                client.query(q, {"ws": "2026-09-01 00:00:00", "we": "2026-11-01 03:00:00",
                                       "ids": list(c["traces"])}, name="naive")

        theirs = _median_ms(naive, max(1, args.repeats // 2))
        print(f"{n:>7} {ours:>15.1f} {theirs:>20.1f} {len(clusters):>12} {theirs / ours:>6.1f}x")
    client.close()
    server.stop()
    return 0
