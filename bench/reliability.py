"""Reliability: the fault matrix and the SIGKILL crash test in full (100 kills), as a report.

The harness is tests/support/reliability.py (the tests run its short form; tests never import bench).

    ./dev bench reliability [--kills 100] [--seed 7] [--failpoint-every 10] [--cells NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from monitor.local.posthog.server import LocalPostHog
from tests.support.reliability import CELLS, KEY, SCENARIO, control_headers, kill_test, run_cell


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--failpoint-every", type=int, default=10,
                    help="every Nth kill at the failpoint between send and record (0: random moments only)")
    ap.add_argument("--cells", nargs="*", default=None, help="substrings of cell names to run (default: all)")
    args = ap.parse_args()
    print(f"machine: 2 cores, 24 GiB (see ../.library/env); Python {sys.version.split()[0]}; scenario {SCENARIO}")
    server = LocalPostHog(api_key=KEY)
    server.start()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        expected = control_headers(server, tmp)
        print(f"control: {len(expected)} notifications per pass\n")
        print(f"{'cell':<52} {'result':<6} {'runs lost':>9} {'alerts lost':>11} {'dupes':>6} {'kept':>5} "
              f"{'seconds':>7}  notes")
        passed = 0
        cells = [c for c in CELLS if not args.cells or any(s in c.name for s in args.cells)]
        for cell in cells:
            t = time.monotonic()
            r = run_cell(cell, server, tmp, expected)
            passed += r.passed
            print(f"{r.name:<52} {'pass' if r.passed else 'FAIL':<6} {r.runs_lost:>9} {r.alerts_lost:>11} "
                  f"{r.duplicates:>6} {r.kept_failed:>5} {time.monotonic() - t:>7.1f}  {'; '.join(r.problems)}",
                  flush=True)
        print(f"\n{passed}/{len(cells)} cells passed")
        if args.kills:
            print(f"\nkill test: {args.kills} SIGKILLs (seed {args.seed}), every {args.failpoint_every}th at the "
                  "failpoint between send and record, the others at random moments")
            k = kill_test(server, tmp, expected, kills=args.kills, seed=args.seed,
                          failpoint_every=args.failpoint_every)
            bound = "within" if k["duplicates"] <= k["between_kills"] else "ABOVE"
            print(f"kills survived {k['kills']} ({k['failpoint_kills']} at the failpoint; "
                  f"{k['between_kills'] - k['failpoint_kills']} random ones also landed between send and "
                  f"record), runs {k['runs']}, runs lost {k['runs_lost']}, alerts lost {k['alerts_lost']}, "
                  f"duplicates {k['duplicates']} ({bound} the bound of one per kill between send and record: "
                  f"{k['between_kills']}); {k['messages']} Slack messages for {k['expected']} expected, "
                  f"{k['emails']} emails; {k['seconds']} s")
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
