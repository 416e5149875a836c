"""Cluster matching benchmark: hand-written run pairs with ground truth, scored for the monitor and baselines.

`./dev bench matching [--verbose] [--json]`; see README.md beside this file.
"""

from __future__ import annotations


def main() -> int:
    """bench.matching.score.main, imported on call so `python -m bench.matching.build` runs cleanly."""
    from bench.matching.score import main as score_main

    return score_main()


__all__ = ["main"]
