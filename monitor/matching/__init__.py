"""Matching clusters across runs: signals, assignment, splits and merges, lineages."""

from monitor.matching.assign import match_runs

__all__ = ["match_runs"]
