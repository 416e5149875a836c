"""Traffic-mix shift (Jensen-Shannon over matched clusters) on the generator's scenarios: does the
default threshold separate a steady job from one whose traffic really moved?

For every consecutive pair of runs of every job, the measure the monitor computes (the matcher's diff,
then monitor.rules.drift.mix_shift), split by what the ground truth says happened between the two runs:
pairs with a scenario change (a new, disappeared, split or merged topic, or shares moved by a change)
and quiet pairs. Baseline in the same run: the same distance over cluster *titles* (what a monitor
without matching could compute), which reads every rewording as movement.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from bench.matching_generator import generator_runs
from monitor.config import ThresholdsConfig
from monitor.matching import match_runs
from monitor.rules.drift import js_distance, mix_shift
from monitor.runs import Run


def _title_js(a: Run, b: Run) -> float:
    """The baseline: bins are titles, as a monitor without cluster matching would see the mix."""
    pa = {c.title: c.size / (a.clustered_size or 1) for c in a.clusters if not c.is_noise}
    pb = {c.title: c.size / (b.clustered_size or 1) for c in b.clusters if not c.is_noise}
    return js_distance([(pa.get(t, 0.0), pb.get(t, 0.0)) for t in {*pa, *pb}])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=14)
    args = ap.parse_args()
    threshold = ThresholdsConfig().mix_shift or 0.0
    print(f"default threshold: {threshold}; seed {args.seed}, {args.days} days, scale 1 (1,500 items per run)")
    print(f"{'scenario':<12} {'pairs':>5} {'changed':>7}  {'measure':<14} {'quiet max':>9} {'quiet p50':>9} "
          f"{'changed max':>11} {'fires quiet':>11} {'fires changed':>13}")
    for scenario in ("steady", "reword", "drift", "new_cluster", "split", "merge"):
        runs, transitions = generator_runs(scenario, args.seed, args.days)
        values: dict[str, dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
        for t in transitions:
            a, b = runs[str(t["prev_run_id"])], runs[str(t["new_run_id"])]
            changed = bool(t["new"] or t["disappeared"] or t["splits"] or t["merges"])
            d = match_runs(a, b)
            values["monitor"][changed].append(mix_shift(a, b, d) or 0.0)
            values["title bins"][changed].append(_title_js(a, b))
        for name, v in values.items():
            quiet, moved = v[False], v[True]
            print(f"{scenario:<12} {len(quiet) + len(moved):>5} {len(moved):>7}  {name:<14} "
                  f"{max(quiet, default=0):>9.3f} {statistics.median(quiet) if quiet else 0:>9.3f} "
                  f"{max(moved, default=0):>11.3f} {sum(x >= threshold for x in quiet):>11} "
                  f"{sum(x >= threshold for x in moved):>13}")
    return 0
