"""`cluster-monitor diff` speed and memory on real-sized (1,500 items) and huge (200,000 items) runs.

For each size, two consecutive runs of one job are written to files as PostHog stores run events
(half the items shared, titles reworded), then, after start-up (imports done, one warm-up call):

- baseline: the stdlib's `json.loads` of both files, i.e. the bare cost of parsing the payloads;
- `diff`: what `cluster-monitor diff --json` does in-process: read both files, parse them into runs,
  match, and encode the result;
- peak memory of the diff (tracemalloc) against the payloads' size on disk;
- the whole command in a fresh process (`python -m monitor.cli diff --json`), start-up included.

    ./dev bench diff_speed [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from monitor.local.posthog.generator import make_run_event
from monitor.matching import match_runs
from monitor.runs import load_run_file

TOPICS = [
    ("Customer support refund requests", "Users ask for refunds on orders and subscriptions."),
    ("Python code generation", "Requests to write new Python functions and scripts."),
    ("Python code review", "Requests to review and critique existing Python code."),
    ("SQL query generation from questions", "Natural-language questions turned into SQL queries."),
    ("Document summarisation", "Long documents condensed into short summaries."),
    ("Translation between languages", "Text translated from one language into another."),
    ("RAG search over product docs", "Questions answered from retrieved product documentation."),
    ("Agent tool calls for calendar", "An agent booking and moving calendar events with tools."),
    ("Content moderation checks", "Messages classified as safe or unsafe."),
    ("Invoice data extraction", "Structured fields pulled from invoices and receipts."),
]
REWORD = {"requests": "questions", "generation": "writing", "from": "out of", "checks": "screening",
          "between": "across", "over": "across", "data": "field", "Document": "Report"}


def _title(i: int, reworded: bool) -> tuple[str, str]:
    base, desc = TOPICS[i % len(TOPICS)]
    title = f"{base} ({i // len(TOPICS) + 1})" if i >= len(TOPICS) else base
    if reworded:
        title = " ".join(REWORD.get(w, w) for w in title.split())
    return title, desc


def _runs(n_items: int, n_clusters: int, tmp: Path) -> tuple[Path, Path]:
    rng = random.Random(n_items)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(int(n_items * 1.5))]
    prev_items, new_items = ids[:n_items], ids[n_items // 2: n_items // 2 + n_items]
    end = datetime(2026, 11, 1, 3, tzinfo=UTC)
    paths = []
    for k, (items, reworded) in enumerate(((prev_items, False), (new_items, True))):
        # An item stays in its cluster from one run to the next (its id decides which).
        members: list[list[str]] = [[] for _ in range(n_clusters + 1)]
        for item in items:
            members[int(item[:8], 16) % (n_clusters + 1)].append(item)
        clusters: list[dict[str, Any]] = []
        for c in range(n_clusters):
            title, desc = _title(c, reworded)
            clusters.append({"cluster_id": c, "items": members[c], "title": title, "description": desc})
        clusters.append({"cluster_id": -1, "items": members[n_clusters]})
        props = make_run_event(team_id=1, level="trace", window_end=end + timedelta(days=k), clusters=clusters,
                               job_id="00000000-0000-0000-0000-0000000000aa", job_name="bench",
                               max_samples=n_items)
        p = tmp / f"run{k}_{n_items}.json"
        p.write_bytes(msgspec.json.encode(props))
        paths.append(p)
    return paths[0], paths[1]


def _diff(a: Path, b: Path) -> bytes:
    """Exactly what `cluster-monitor diff --json` runs after start-up."""
    d = match_runs(load_run_file(a.read_bytes()), load_run_file(b.read_bytes()))
    return msgspec.json.encode(d)


def _stdlib_parse(a: Path, b: Path) -> object:
    """The baseline: the bare parse of both payloads, nothing built from them."""
    return json.loads(a.read_bytes()), json.loads(b.read_bytes())


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: 2 cores, 24 GiB (see ../.library/env); Python {sys.version.split()[0]}")
    print(f"{'items':>8} {'clusters':>8} {'payload':>9} {'json.loads':>11} {'diff':>9} {'ratio':>6} "
          f"{'peak mem':>9} {'mem/payload':>11} {'cli, new process':>17} {'matches':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n_items, n_clusters in ((1500, 20), (200_000, 50)):
            a, b = _runs(n_items, n_clusters, Path(tmp))
            size = a.stat().st_size + b.stat().st_size
            base = _median_s(functools.partial(_stdlib_parse, a, b), args.repeats)
            ours = _median_s(functools.partial(_diff, a, b), args.repeats)
            peak = _peak_bytes(functools.partial(_diff, a, b))
            cli, matches = _cli(a, b)
            print(f"{n_items:>8,} {n_clusters:>8} {size / 1e6:>7.1f}MB {base * 1000:>9.1f}ms {ours * 1000:>7.1f}ms "
                  f"{ours / base:>5.2f}x {peak / 1e6:>7.1f}MB {peak / size:>10.2f}x {cli * 1000:>15.0f}ms "
                  f"{matches:>8}")
    return 0


def _cli(a: Path, b: Path) -> tuple[float, int]:
    """The whole command in a new process: (seconds, matches)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "monitor.cli", "diff", "--json", str(a), str(b)],
                         check=True, capture_output=True).stdout
    return time.perf_counter() - t, len(json.loads(out)["matches"])


if __name__ == "__main__":
    raise SystemExit(main())
