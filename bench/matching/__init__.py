"""Cluster matching benchmark: hand-written run pairs with ground truth, scored for the monitor and baselines.

`./dev bench matching [--verbose] [--json]`; see README.md beside this file.
"""

from __future__ import annotations


def main() -> int:
    """The scorer and the corpus live in tests/support/matching (the tests check the matcher's floors with them;
    tests never import bench), imported on call so `python -m tests.support.matching.build` runs cleanly."""
    from tests.support.matching.score import main as score_main

    return score_main()


__all__ = ["main"]
