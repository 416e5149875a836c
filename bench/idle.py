"""The idle daemon's resident memory and CPU, over N minutes, beside a bare Python process.

Starts a local PostHog (2 days of steady traffic), runs `cluster-monitor run` on it as a real process with
the default schedule (every 300 s), waits for the first cycle to catch up with the backlog, then samples
the process's RSS and CPU time from /proc for `--minutes` minutes. The baseline is a bare interpreter
(`python -c "import time; time.sleep(...)"`) sampled the same way in the same run.

    ./dev bench idle [--minutes 10] [--interval 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from monitor.local.posthog.generator import generate
from monitor.local.posthog.server import LocalPostHog

KEY = "phx_bench_key"
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sample(pid: int, seconds: float) -> tuple[float, float, float]:
    """(max RSS MB, last RSS MB, CPU % of one core) over `seconds`."""
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    peak = last = _rss_mb(pid)
    while time.monotonic() - t0 < seconds:
        time.sleep(min(5.0, max(0.0, seconds - (time.monotonic() - t0))))
        last = _rss_mb(pid)
        peak = max(peak, last)
    cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
    return peak, last, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=300.0)
    args = ap.parse_args()
    seconds = args.minutes * 60
    ds = generate("steady", days=2, team_id=1, end=datetime(2026, 11, 1, tzinfo=UTC), scale=0.1)
    server = LocalPostHog(api_key=KEY)
    server.load(ds)
    server.start()
    print(f"machine: 2 cores, 24 GiB (see ../.library/env); Python {sys.version.split()[0]}; "
          f"{args.minutes:g} min, poll every {args.interval:g} s")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(json.dumps({
            "posthog": {"host": server.url, "project_id": 1, "api_key": KEY, "lookback_days": 60},
            "schedule": {"interval_seconds": args.interval},
            "alerting": {"stale_after_hours": 0},
            "state": {"path": str(Path(tmp) / "state.sqlite")},
        }))
        daemon = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds + 120})"])
        try:
            # Caught up once every run has been fetched and measured (two queries a run).
            if not server.wait_for_requests(2 * len(ds.runs) + 1, timeout=300):
                raise RuntimeError("the daemon did not catch up with the backlog")
            time.sleep(2)
            calls_before = len(server.requests)
            peak, last, cpu = _sample(daemon.pid, seconds)
            calls = len(server.requests) - calls_before
            b_peak, b_last, b_cpu = _sample(bare.pid, 10)
        finally:
            daemon.terminate()
            bare.kill()
            code = daemon.wait(30)
    server.stop()
    print(f"{'process':<22} {'peak RSS':>9} {'RSS':>8} {'CPU':>7} {'API calls':>10}")
    print(f"{'cluster-monitor run':<22} {peak:>7.1f}MB {last:>6.1f}MB {cpu:>6.2f}% {calls:>10}")
    print(f"{'bare python (floor)':<22} {b_peak:>7.1f}MB {b_last:>6.1f}MB {b_cpu:>6.2f}% {'-':>10}")
    print(f"ratio to the floor: RSS {last / b_last:.1f}x; daemon exit code on SIGTERM: {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
