"""Matching scored on the local PostHog generator's ground truth: a third set beside bench/matching's
hand-written pairs and its held-out pairs, with traffic that moves like real traffic (sampled 7-day
windows, near-namesake topics, light and heavy LLM rewordings) and 52 run pairs per scenario.

Prints link precision/recall/F1 and new/disappeared F1 (with their false positives, the alerts nobody
wants) per scenario and overall, beside the exact-title baseline, in the same run.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import UTC, datetime

from monitor.local.posthog.generator import Dataset, generate
from monitor.matching import match_runs
from monitor.runs import Run, parse_clusters


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def generator_runs(scenario: str, seed: int, days: int) -> tuple[dict[str, Run], list[dict[str, object]]]:
    """The scenario's runs by id (parsed as the monitor parses them) and its ground-truth transitions."""
    ds = generate(scenario, seed=seed, days=days)
    return runs_of(ds), ds.truth["transitions"]


def runs_of(ds: Dataset) -> dict[str, Run]:
    """A generated dataset's trace and generation runs by id, parsed as the monitor parses them."""
    now = datetime.now(UTC)
    runs: dict[str, Run] = {}
    for e in ds.events:
        if e[1] not in ("$ai_trace_clusters", "$ai_generation_clusters"):
            continue
        p = json.loads(e[3])
        rid = p["$ai_clustering_run_id"]
        runs[rid] = Run(run_id=rid, level=p["$ai_clustering_level"], job_id="", job_name="", window_start=now,
                        window_end=now, total_items=p["$ai_total_items_analyzed"],
                        clusters=parse_clusters(rid, p["$ai_clusters"]), params={}, timestamp=now)
    return runs


def _exact(a: Run, b: Run) -> tuple[set[tuple[int, int]], set[int], set[int]]:
    by_title = {c.title.strip().lower(): c.cluster_id for c in a.clusters if not c.is_noise}
    links = {(by_title[c.title.strip().lower()], c.cluster_id) for c in b.clusters
             if not c.is_noise and c.title.strip().lower() in by_title}
    new = {c.cluster_id for c in b.clusters if not c.is_noise} - {n for _, n in links}
    gone = {c.cluster_id for c in a.clusters if not c.is_noise} - {p for p, _ in links}
    return links, new, gone


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=14)
    args = ap.parse_args()
    scenarios = ("steady", "reword", "drift", "new_cluster", "disappear", "split", "merge")
    print(f"{'scenario':<12} {'method':<12} {'link P':>7} {'link R':>7} {'link F1':>7} {'new F1':>7} {'new FP':>6} "
          f"{'gone F1':>7} {'gone FP':>7}")
    total: dict[str, Counter[str]] = {"monitor": Counter(), "exact-title": Counter()}
    for scenario in scenarios:
        runs, transitions = generator_runs(scenario, args.seed, args.days)
        per: dict[str, Counter[str]] = {"monitor": Counter(), "exact-title": Counter()}
        for t in transitions:
            a, b = runs[str(t["prev_run_id"])], runs[str(t["new_run_id"])]
            want = {(int(x[0]), int(x[1])) for x in t["links"]}  # type: ignore[attr-defined]
            want_new = {int(x) for x in t["new"]}  # type: ignore[attr-defined]
            want_gone = {int(x) for x in t["disappeared"]}  # type: ignore[attr-defined]
            d = match_runs(a, b)
            outcomes = {"monitor": ({(m.prev, m.new) for m in d.matches}, set(d.new), set(d.disappeared)),
                        "exact-title": _exact(a, b)}
            for name, (links, new, gone) in outcomes.items():
                c = per[name]
                c["ltp"] += len(links & want)
                c["lfp"] += len(links - want)
                c["lfn"] += len(want - links)
                c["ntp"] += len(new & want_new)
                c["nfp"] += len(new - want_new)
                c["nfn"] += len(want_new - new)
                c["gtp"] += len(gone & want_gone)
                c["gfp"] += len(gone - want_gone)
                c["gfn"] += len(want_gone - gone)
        for name, c in per.items():
            total[name].update(c)
            _row(scenario, name, c)
    for name, c in total.items():
        _row("all", name, c)
    return 0


def _row(scenario: str, name: str, c: Counter[str]) -> None:
    p = c["ltp"] / (c["ltp"] + c["lfp"]) if c["ltp"] + c["lfp"] else 1.0
    r = c["ltp"] / (c["ltp"] + c["lfn"]) if c["ltp"] + c["lfn"] else 1.0
    print(f"{scenario:<12} {name:<12} {p:>7.3f} {r:>7.3f} {_f1(c['ltp'], c['lfp'], c['lfn']):>7.3f} "
          f"{_f1(c['ntp'], c['nfp'], c['nfn']):>7.3f} {c['nfp']:>6} {_f1(c['gtp'], c['gfp'], c['gfn']):>7.3f} "
          f"{c['gfp']:>7}")
