"""Detection latency: from a run event landing in PostHog to its Slack message arriving.

A local PostHog (2 days of steady traffic), the local Slack endpoint and the daemon (in this process, on
its real scheduler and wall clock) at several poll intervals. Each sample lands a new run for one job,
with a brand-new cluster holding a fifth of the items, at a random moment between polls, and times the
Slack message that announces it. The bound the issue sets is one poll interval plus 2 s: the interval is
the baseline each latency is printed against.

    ./dev bench latency [--intervals 1 10 300] [--samples 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from monitor.daemon import Daemon
from monitor.local.posthog.generator import generate
from monitor.local.posthog.server import LocalPostHog
from monitor.local.slack import LocalSlack
from tests.support.landing import NextRun

KEY = "phx_bench_key"
END = datetime(2026, 11, 1, tzinfo=UTC)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--intervals", type=float, nargs="*", default=[1.0, 10.0, 300.0])
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--push", action="store_true",
                    help="also measure the push path (webhook to /hooks/posthog) on the default 300 s schedule")
    args = ap.parse_args()
    rng = random.Random(7)
    print(f"machine: 2 cores, 24 GiB (see ../.library/env); Python {sys.version.split()[0]}")
    print(f"{'interval':>9} {'samples':>7} {'median':>8} {'max':>8} {'bound (interval+2s)':>20} {'max - interval':>15}")
    modes = [(interval, False) for interval in args.intervals] + ([(300.0, True)] if args.push else [])
    for team, (interval, push) in enumerate(modes, start=1):
        ds = generate("steady", days=2, team_id=team, end=END, scale=0.05)
        server = LocalPostHog(api_key=KEY)
        server.load(ds)
        server.start()
        slack = LocalSlack.start()
        runs = NextRun(ds, team)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.yaml"
            cfg.write_text(json.dumps({
                "posthog": {"host": server.url, "project_id": team, "api_key": KEY, "lookback_days": 60},
                "schedule": {"interval_seconds": interval},
                "alerting": {"stale_after_hours": 0},
                "slack": {"webhook_url": slack.webhook_url},
                "state": {"path": str(Path(tmp) / "state.sqlite")},
                "server": {"host": "127.0.0.1", "port": 0, "push_token": "bench-push"},
            }))
            daemon = Daemon(cfg)
            thread = threading.Thread(target=daemon.serve, daemon=True)
            thread.start()
            if not server.wait_for_requests(2 * len(ds.runs) + 1, timeout=300):
                raise RuntimeError("the daemon did not catch up with the backlog")
            n_samples = args.samples if interval <= 60 or push else min(args.samples, 2)
            assert daemon._health_server is not None
            hook = f"http://127.0.0.1:{daemon._health_server.server_address[1]}/hooks/posthog"
            latencies = []
            for _ in range(n_samples):
                time.sleep(rng.uniform(0, min(interval, 10.0) if push else interval))  # a random phase
                seen = len(slack.messages)
                server.engine.insert([runs.next_row()])
                t0 = time.monotonic()
                if push:
                    httpx.post(hook, json={"event": {"event": "$ai_trace_clusters"}},
                               headers={"Authorization": "Bearer bench-push"}).raise_for_status()
                if not slack.wait_for(seen + 1, timeout=interval + 60):
                    raise RuntimeError("no Slack message for the new run")
                latencies.append(time.monotonic() - t0)
            daemon.stop_event.set()
            thread.join(60)
        slack.stop()
        server.stop()
        worst = max(latencies)
        label = "push" if push else f"{interval:g}s"
        print(f"{label:>9} {len(latencies):>7} {statistics.median(latencies):>7.2f}s {worst:>7.2f}s "
              f"{(2 if push else interval + 2):>19g}s {worst - (0 if push else interval):>14.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
