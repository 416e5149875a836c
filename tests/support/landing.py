"""Runs made to land on the local PostHog during a test or a benchmark: a job's next run with a new cluster
(detection latency, push), and pairs of large runs (processing, the 50,000-item reliability cells).

Shared by tests and bench/ (bench imports from here; tests never import bench)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from monitor.local.posthog.generator import make_run_event, run_event_row
from monitor.local.posthog.server import LocalPostHog
from monitor.pipeline import DiscoveredRun

END = datetime(2026, 11, 1, tzinfo=UTC)
# Each sample's new cluster must be unlike the previous sample's, or it would match it.
WORKLOADS = ["Medical billing code lookup", "Legal contract clause extraction", "Recipe nutrition estimates",
             "Satellite image captioning", "Chess move explanations", "Tax form field filling",
             "Poetry meter analysis", "Warehouse robot path plans", "Wine pairing suggestions",
             "Astronomy observation logs"]


class NextRun:
    """Makes the next run of one job: the job's last run one day later, plus a new cluster."""

    def __init__(self, ds: Any, team_id: int) -> None:
        last = max((r for r in ds.runs if r["level"] == "trace"), key=lambda r: r["emitted_at"])
        row = next(e for e in ds.events if e[0] == last["event_uuid"])
        self.props: dict[str, Any] = json.loads(row[3])
        self.job_id = last["job_id"]
        self.team_id = team_id
        self.emitted = last["emitted_at"]
        self.n = 0

    def next_row(self) -> Any:
        self.n += 1
        p = json.loads(json.dumps(self.props))
        end = datetime.fromisoformat(p["$ai_window_end"]) + timedelta(days=self.n)
        p["$ai_window_start"] = (end - timedelta(days=7)).isoformat()
        p["$ai_window_end"] = end.isoformat()
        p["$ai_clustering_run_id"] = f"{self.team_id}_trace_{end:%Y%m%d_%H%M%S}_{self.job_id}"
        size = max(50, sum(c["size"] for c in p["$ai_clusters"]) // 4)
        p["$ai_clusters"].insert(0, {
            "cluster_id": 900 + self.n, "size": size, "title": WORKLOADS[(self.n - 1) % len(WORKLOADS)],
            "description": f"{WORKLOADS[(self.n - 1) % len(WORKLOADS)]}: a kind of traffic new to this job.",
            "traces": {f"new-{self.n}-{i}": {"rank": i, "trace_id": f"new-{self.n}-{i}"} for i in range(size)},
            "centroid_x": 0.0, "centroid_y": 0.0})
        return run_event_row(p, team_id=self.team_id, emitted_at=self.emitted + timedelta(days=self.n))


JOB = "00000000-0000-0000-0000-0000000000bb"
TITLES = ["Customer support refund requests", "Python code generation", "Python code review",
          "SQL query generation from questions", "Document summarisation", "Translation between languages",
          "RAG search over product docs", "Agent tool calls for calendar", "Content moderation checks",
          "Invoice data extraction"]


def trace_ids(ds: Any) -> list[str]:
    seen: dict[str, None] = {}
    for row in ds.events:
        if row[1] == "$ai_generation":
            tid = msgspec.json.decode(row[3]).get("$ai_trace_id")
            if tid:
                seen.setdefault(tid, None)
    return list(seen)


def land_runs(server: LocalPostHog, team: int, n_items: int, real: list[str],
              k: int) -> list[tuple[DiscoveredRun, int]]:
    """Two runs of n_items; returns how to discover each, and the new run's payload size."""
    rng = random.Random(n_items)
    pool = real + [f"{rng.getrandbits(128):032x}" for _ in range(max(0, int(n_items * 1.5) - len(real)))]
    rng.shuffle(pool)
    n_clusters = 20 if n_items <= 1500 else 50
    out = []
    for day, items in enumerate((pool[:n_items], pool[n_items // 2: n_items // 2 + n_items])):
        members: list[list[str]] = [[] for _ in range(n_clusters + 1)]
        for it in items:
            members[hash(it) % (n_clusters + 1)].append(it)
        clusters: list[dict[str, Any]] = []
        for c in range(n_clusters):
            title = TITLES[c % len(TITLES)] + (f" ({c // len(TITLES) + 1})" if c >= len(TITLES) else "")
            if day:
                title = title.replace("generation", "writing").replace("requests", "questions")
            clusters.append({"cluster_id": c, "items": members[c], "title": title, "description": title + "."})
        clusters.append({"cluster_id": -1, "items": members[n_clusters]})
        window_end = END - timedelta(days=1 - day, hours=-k)
        props = make_run_event(team_id=team, level="trace", window_end=window_end, clusters=clusters,
                               job_id=JOB, job_name=f"bench {n_items}", window_start=END - timedelta(days=15),
                               max_samples=n_items)
        emitted = window_end + timedelta(minutes=3)
        row = run_event_row(props, team_id=team, emitted_at=emitted)
        server.engine.insert([row])
        out.append((DiscoveredRun(run_id=props["$ai_clustering_run_id"], level="trace", job_id=JOB,
                                  job_name=f"bench {n_items}", event="$ai_trace_clusters", event_uuid=row[0],
                                  emitted_at=emitted, window_end=window_end), len(row[3])))
    return out
