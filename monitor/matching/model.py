"""The result of comparing two runs of one job and level: plain data that rules and alerts read."""

from __future__ import annotations

import msgspec


class Match(msgspec.Struct, frozen=True):
    """A cluster of the previous run that survives as a cluster of the new run."""

    prev: int
    new: int
    score: float
    prev_size: int
    new_size: int
    prev_share: float
    new_share: float
    share_delta_pp: float
    prev_title: str = ""
    new_title: str = ""
    # Signal name -> score in [0, 1] behind the decision (for --explain and for tuning).
    signals: dict[str, float] = msgspec.field(default_factory=dict)

    @property
    def size_delta(self) -> int:
        return self.new_size - self.prev_size

    @property
    def share_delta_rel(self) -> float | None:
        """Relative share change (0.5 = +50%); None when the previous share was zero."""
        if self.prev_share <= 0:
            return None
        return (self.new_share - self.prev_share) / self.prev_share


class Split(msgspec.Struct, frozen=True):
    prev: int
    new: list[int]
    confidence: float


class Merge(msgspec.Struct, frozen=True):
    prev: list[int]
    new: int
    confidence: float


class RunDiff(msgspec.Struct, frozen=True):
    prev_run_id: str
    new_run_id: str
    matches: list[Match]
    new: list[int]
    disappeared: list[int]
    splits: list[Split] = msgspec.field(default_factory=list)
    merges: list[Merge] = msgspec.field(default_factory=list)
    prev_noise_share: float = 0.0
    new_noise_share: float = 0.0
    # Fraction of the new run's items that the previous run also sampled: tells how much the
    # item-overlap signal could say for this pair of runs.
    item_overlap: float = 0.0

    @property
    def noise_share_delta_pp(self) -> float:
        return (self.new_noise_share - self.prev_noise_share) * 100.0

    def match_for_new(self, cluster_id: int) -> Match | None:
        for m in self.matches:
            if m.new == cluster_id:
                return m
        return None
