"""Hand-written matching cases (cases/*.yaml) -> the two runs each describes, as PostHog stores them.

A case lists the clusters of a previous and a new run (id, size, title, description) and the truth
(links, new, disappeared, splits, merges). Items are synthesised here, deterministically (seeded by the
case name):

- every cluster lists its `size` items in `traces`, as PostHog's payload does (`cap` lists at most that
  many per cluster, keeping `size`; see README.md for why the default lists them all);
- with `shared_items: true`, a fraction `overlap` of a previous cluster's stored items is sampled again
  by the new run and lands where the truth says the traffic went: in the linked cluster, spread over a
  split's parts in proportion to their sizes, or in a merged cluster from each of its parts. A disappeared
  cluster's re-sampled items, and the previous noise's, land in the new noise (the cluster fell under
  HDBSCAN's minimum size); a fraction `churn` of every carried set lands in the new noise too (border
  points). A new cluster may draw a fraction `from_noise` of its items from the previous noise (traffic
  that was too thin to form a cluster the day before); otherwise its items are all new;
- with `shared_items: false` (busy teams: each run samples 1,500 of many thousands) no id is shared.

    python -m tests.support.matching.build [CASE ...] # print each case's truth with titles, to review it
    python -m tests.support.matching.build CASE --write DIR # <case>.prev.json, .new.json for `cluster-monitor diff`
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from monitor.runs import NOISE_CLUSTER_ID, Run, run_from_properties

CASES_DIR = Path(__file__).parent / "cases"
# Held-out pairs (README.md): written before a round of matcher changes and never tuned on, to tell
# whether a change helps the problem or only the set above.
HELDOUT_DIR = Path(__file__).parent / "heldout"
CASE_SETS = {"bench": CASES_DIR, "heldout": HELDOUT_DIR}
# Items listed in `traces` per cluster; None = all of them, like PostHog. A per-cluster cap keeps written
# files small but skews the overlap evidence between clusters of different sizes (README.md).
STORED_ITEMS: int | None = None
DEFAULT_OVERLAP = 0.4
DEFAULT_CHURN = 0.1
NOISE_TITLE = "Outliers"
NOISE_DESCRIPTION = "Items that did not fit into any cluster"
PREV_END = datetime(2026, 10, 20, 3, 12, 7, tzinfo=UTC)
NEW_END = datetime(2026, 10, 21, 3, 11, 42, tzinfo=UTC)
LEVELS = ("trace", "generation", "evaluation")

_CASE_KEYS = {"name", "about", "level", "shared_items", "overlap", "churn", "prev", "new", "truth"}
_CLUSTER_KEYS = {"id", "size", "title", "description", "from_noise"}
_TRUTH_KEYS = {"links", "new", "disappeared", "splits", "merges"}


class CaseError(ValueError):
    """A case file that does not hold together; the message names the file."""


@dataclass(frozen=True)
class ClusterSpec:
    id: int
    size: int
    title: str
    description: str
    from_noise: float = 0.0

    @property
    def is_noise(self) -> bool:
        return self.id == NOISE_CLUSTER_ID


@dataclass(frozen=True)
class SplitTruth:
    prev: int
    new: tuple[int, ...]


@dataclass(frozen=True)
class MergeTruth:
    prev: tuple[int, ...]
    new: int


@dataclass(frozen=True)
class Truth:
    links: frozenset[tuple[int, int]]
    new: frozenset[int]
    disappeared: frozenset[int]
    splits: tuple[SplitTruth, ...]
    merges: tuple[MergeTruth, ...]

    @property
    def optional_links(self) -> frozenset[tuple[int, int]]:
        """Links a matcher may report without gain or penalty: a split's whole to any of its parts (its
        continuation), any merge part to the merged cluster."""
        out = {(s.prev, p) for s in self.splits for p in s.new}
        out |= {(p, m.new) for m in self.merges for p in m.prev}
        return frozenset(out)

    @property
    def split_edges(self) -> frozenset[tuple[int, int]]:
        return frozenset((s.prev, p) for s in self.splits for p in s.new)

    @property
    def merge_edges(self) -> frozenset[tuple[int, int]]:
        return frozenset((p, m.new) for m in self.merges for p in m.prev)


@dataclass(frozen=True)
class Case:
    name: str
    about: str
    level: str
    shared_items: bool
    overlap: float
    churn: float
    prev: tuple[ClusterSpec, ...]
    new: tuple[ClusterSpec, ...]
    truth: Truth
    path: Path

    def prev_cluster(self, cid: int) -> ClusterSpec:
        return next(c for c in self.prev if c.id == cid)

    def new_cluster(self, cid: int) -> ClusterSpec:
        return next(c for c in self.new if c.id == cid)


# ---------------------------------------------------------------------------------------------- loading


def _err(path: Path, msg: str) -> CaseError:
    return CaseError(f"{path.name}: {msg}")


def _int(path: Path, where: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(path, f"{where}: expected an integer, got {v!r}")
    return v


def _fraction(path: Path, where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise _err(path, f"{where}: expected a number in [0, 1], got {v!r}")
    return float(v)


def _ids(path: Path, where: str, v: Any) -> tuple[int, ...]:
    if not isinstance(v, list):
        raise _err(path, f"{where}: expected a list of cluster ids, got {v!r}")
    return tuple(_int(path, where, x) for x in v)


def _clusters(path: Path, side: str, raw: Any) -> tuple[ClusterSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise _err(path, f"{side}: expected a non-empty list of clusters")
    out: list[ClusterSpec] = []
    for i, c in enumerate(raw):
        where = f"{side}[{i}]"
        if not isinstance(c, dict):
            raise _err(path, f"{where}: expected a mapping")
        unknown = set(c) - _CLUSTER_KEYS
        if unknown:
            raise _err(path, f"{where}: unknown keys {sorted(unknown)}")
        cid = _int(path, f"{where}.id", c.get("id"))
        size = _int(path, f"{where}.size", c.get("size"))
        if size <= 0:
            raise _err(path, f"{where}.size: must be positive")
        title = c.get("title", NOISE_TITLE if cid == NOISE_CLUSTER_ID else None)
        desc = c.get("description", NOISE_DESCRIPTION if cid == NOISE_CLUSTER_ID else None)
        if not isinstance(title, str) or not title.strip():
            raise _err(path, f"{where}.title: missing")
        if not isinstance(desc, str) or (cid != NOISE_CLUSTER_ID and not desc.strip()):
            raise _err(path, f"{where}.description: missing")
        from_noise = _fraction(path, f"{where}.from_noise", c.get("from_noise", 0.0))
        out.append(ClusterSpec(cid, size, title.strip(), desc.strip(), from_noise))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise _err(path, f"{side}: duplicate cluster ids")
    return tuple(out)


def _truth(path: Path, raw: Any) -> Truth:
    if not isinstance(raw, dict):
        raise _err(path, "truth: expected a mapping")
    unknown = set(raw) - _TRUTH_KEYS
    if unknown:
        raise _err(path, f"truth: unknown keys {sorted(unknown)}")
    links: list[tuple[int, int]] = []
    for pair in raw.get("links") or []:
        ids = _ids(path, "truth.links", pair)
        if len(ids) != 2:
            raise _err(path, f"truth.links: expected [prev, new], got {pair!r}")
        links.append((ids[0], ids[1]))
    splits: list[SplitTruth] = []
    for s in raw.get("splits") or []:
        if not isinstance(s, dict) or set(s) != {"prev", "new"}:
            raise _err(path, f"truth.splits: expected {{prev: id, new: [ids]}}, got {s!r}")
        splits.append(SplitTruth(_int(path, "truth.splits.prev", s["prev"]), _ids(path, "truth.splits.new", s["new"])))
    merges: list[MergeTruth] = []
    for m in raw.get("merges") or []:
        if not isinstance(m, dict) or set(m) != {"prev", "new"}:
            raise _err(path, f"truth.merges: expected {{prev: [ids], new: id}}, got {m!r}")
        merges.append(MergeTruth(_ids(path, "truth.merges.prev", m["prev"]), _int(path, "truth.merges.new", m["new"])))
    return Truth(
        links=frozenset(links),
        new=frozenset(_ids(path, "truth.new", raw.get("new") or [])),
        disappeared=frozenset(_ids(path, "truth.disappeared", raw.get("disappeared") or [])),
        splits=tuple(splits),
        merges=tuple(merges),
    )


def _check(path: Path, prev: Sequence[ClusterSpec], new: Sequence[ClusterSpec], t: Truth) -> None:
    """Every regular cluster has exactly one fate in the truth; noise has none."""
    prev_roles: dict[int, list[str]] = {c.id: [] for c in prev if not c.is_noise}
    new_roles: dict[int, list[str]] = {c.id: [] for c in new if not c.is_noise}

    def role(table: dict[int, list[str]], side: str, cid: int, what: str) -> None:
        if cid not in table:
            raise _err(path, f"truth ({what}): {side} cluster {cid} does not exist or is noise")
        table[cid].append(what)

    for p, n in sorted(t.links):
        role(prev_roles, "prev", p, "link")
        role(new_roles, "new", n, "link")
    for n in t.new:
        role(new_roles, "new", n, "new")
    for p in t.disappeared:
        role(prev_roles, "prev", p, "disappeared")
    for s in t.splits:
        if len(s.new) < 2:
            raise _err(path, f"truth.splits: {s.prev} needs two or more parts")
        role(prev_roles, "prev", s.prev, "split")
        for n in s.new:
            role(new_roles, "new", n, "split part")
    for m in t.merges:
        if len(m.prev) < 2:
            raise _err(path, f"truth.merges: {m.new} needs two or more parts")
        role(new_roles, "new", m.new, "merge")
        for p in m.prev:
            role(prev_roles, "prev", p, "merge part")
    for side, table in (("prev", prev_roles), ("new", new_roles)):
        for cid, roles in table.items():
            if len(roles) != 1:
                raise _err(path, f"truth: {side} cluster {cid} has {len(roles)} fates {roles}, needs exactly one")


def load_case(path: Path) -> Case:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise _err(path, "expected a mapping")
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise _err(path, f"unknown keys {sorted(unknown)}")
    name = raw.get("name")
    if name != path.stem:
        raise _err(path, f"name {name!r} must equal the file name {path.stem!r}")
    level = raw.get("level", "trace")
    if level not in LEVELS:
        raise _err(path, f"level: one of {LEVELS}")
    shared = raw.get("shared_items")
    if not isinstance(shared, bool):
        raise _err(path, "shared_items: expected true or false")
    prev = _clusters(path, "prev", raw.get("prev"))
    new = _clusters(path, "new", raw.get("new"))
    truth = _truth(path, raw.get("truth"))
    _check(path, prev, new, truth)
    return Case(
        name=str(name), about=str(raw.get("about") or "").strip(), level=str(level), shared_items=shared,
        overlap=_fraction(path, "overlap", raw.get("overlap", DEFAULT_OVERLAP if shared else 0.0)),
        churn=_fraction(path, "churn", raw.get("churn", DEFAULT_CHURN)),
        prev=prev, new=new, truth=truth, path=path,
    )


def load_cases(names: Iterable[str] = (), folder: Path = CASES_DIR) -> list[Case]:
    """All cases of a folder (the bench set by default), sorted by name; `names` keeps those whose name
    contains one of them."""
    wanted = list(names)
    paths = sorted(folder.glob("*.yaml"))
    return [load_case(p) for p in paths if not wanted or any(w in p.stem for w in wanted)]


# ---------------------------------------------------------------------------------------------- building


def _apportion(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, largest remainders first (sums exactly to total)."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)[: total - sum(out)]:
        out[i] += 1
    return out


def _stored(c: ClusterSpec, cap: int | None) -> int:
    return c.size if cap is None else min(c.size, cap)


def assign_items(case: Case, cap: int | None = STORED_ITEMS) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Item keys per cluster of the previous and the new run (see the module docstring); `cap` None
    lists every item, as PostHog's payload does."""
    rng = random.Random(f"bench.matching:{case.name}")

    def fresh() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    prev_items = {c.id: [fresh() for _ in range(_stored(c, cap))] for c in case.prev}
    pool = {cid: rng.sample(items, len(items)) for cid, items in prev_items.items()}  # not yet re-sampled
    inherited: dict[int, list[str]] = {c.id: [] for c in case.new}
    new_noise = NOISE_CLUSTER_ID if NOISE_CLUSTER_ID in inherited else None
    prev_noise = NOISE_CLUSTER_ID if NOISE_CLUSTER_ID in pool else None
    t = case.truth
    # (source prev cluster, destination new cluster or None = not sampled again, count, churn applies)
    plan: list[tuple[int, int | None, int, bool]] = []
    if case.shared_items:
        share = case.overlap

        def k(cid: int) -> int:
            return round(share * len(prev_items[cid]))

        for c in case.new:
            if c.from_noise and prev_noise is not None:
                plan.append((prev_noise, c.id, round(c.from_noise * _stored(c, cap)), False))
        for p, n in sorted(t.links):
            plan.append((p, n, k(p), True))
        for s in t.splits:
            sizes = [case.new_cluster(n).size for n in s.new]
            for n, kn in zip(s.new, _apportion(k(s.prev), sizes), strict=True):
                plan.append((s.prev, n, kn, True))
        for m in t.merges:
            for p in m.prev:
                plan.append((p, m.new, k(p), True))
        for p in sorted(t.disappeared):
            plan.append((p, new_noise, k(p), False))
        if prev_noise is not None:
            plan.append((prev_noise, new_noise, k(prev_noise), False))
    # A destination cannot hold more than it stores: scale its sources down together.
    wanted: dict[int, int] = {}
    for _, dst, n, _ in plan:
        if dst is not None and dst != NOISE_CLUSTER_ID:
            wanted[dst] = wanted.get(dst, 0) + n
    for src, dst, n, churn in plan:
        if dst is not None and dst != NOISE_CLUSTER_ID and wanted[dst] > _stored(case.new_cluster(dst), cap):
            n = int(n * _stored(case.new_cluster(dst), cap) / wanted[dst])
        take, pool[src] = pool[src][:n], pool[src][n:]
        if churn and new_noise is not None:
            lost = round(case.churn * len(take))
            inherited[new_noise] += take[:lost]
            take = take[lost:]
        if dst is not None:
            inherited[dst] += take
    new_items: dict[int, list[str]] = {}
    for c in case.new:
        have = inherited[c.id]
        room = max(_stored(c, cap), len(have)) if c.is_noise else _stored(c, cap)
        items = have[:room] + [fresh() for _ in range(room - len(have[:room]))]
        rng.shuffle(items)
        new_items[c.id] = items
    return prev_items, new_items


def _properties(case: Case, clusters: Sequence[ClusterSpec], items: Mapping[int, list[str]], end: datetime,
                seed: str) -> dict[str, Any]:
    rng = random.Random(seed)
    start = end - timedelta(days=7)
    job_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench.matching/{case.name}"))
    out: list[dict[str, Any]] = []
    for c in sorted(clusters, key=lambda c: (c.is_noise, c.id)):
        cx, cy = rng.uniform(-8, 8), rng.uniform(-8, 8)
        traces: dict[str, dict[str, Any]] = {}
        dists = sorted(rng.uniform(0.05, 0.9) for _ in items[c.id])
        if c.is_noise:
            dists.reverse()  # in the noise cluster rank 0 is the most anomalous item
        for rank, (key, dist) in enumerate(zip(items[c.id], dists, strict=True)):
            when = start + timedelta(seconds=rng.uniform(0, 7 * 86400))
            gen = case.level == "generation"
            traces[key] = {
                "rank": rank, "distance_to_centroid": round(dist, 4),
                "x": round(cx + rng.gauss(0, 0.6), 3), "y": round(cy + rng.gauss(0, 0.6), 3),
                "timestamp": when.isoformat(),
                "trace_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if gen else key,
                "generation_id": key if gen else None,
            }
        out.append({
            "cluster_id": c.id, "size": c.size, "title": c.title, "description": c.description,
            "traces": traces, "centroid_x": None if c.is_noise else round(cx, 3),
            "centroid_y": None if c.is_noise else round(cy, 3),
        })
    return {
        "$ai_clustering_run_id": f"2_{case.level}_{end:%Y%m%d_%H%M%S}_{job_id}",
        "$ai_clustering_level": case.level,
        "$ai_window_start": start.isoformat(),
        "$ai_window_end": end.isoformat(),
        "$ai_total_items_analyzed": sum(c.size for c in clusters),
        "$ai_clustering_job_id": job_id,
        "$ai_clustering_job_name": f"bench {case.name}",
        "$ai_clustering_params": {
            "clustering_method": "hdbscan", "clustering_method_params": {"min_cluster_size_fraction": 0.02},
            "embedding_normalization": "l2", "dimensionality_reduction_method": "umap",
            "dimensionality_reduction_ndims": 100, "visualization_method": "umap", "max_samples": 1500,
        },
        "$ai_clusters": out,
    }


def build_properties(case: Case, cap: int | None = STORED_ITEMS) -> tuple[dict[str, Any], dict[str, Any]]:
    prev_items, new_items = assign_items(case, cap)
    return (_properties(case, case.prev, prev_items, PREV_END, f"{case.name}:prev"),
            _properties(case, case.new, new_items, NEW_END, f"{case.name}:new"))


def build_runs(case: Case, cap: int | None = STORED_ITEMS) -> tuple[Run, Run]:
    a, b = build_properties(case, cap)
    return run_from_properties(a), run_from_properties(b)


# ---------------------------------------------------------------------------------------------- review


def describe(case: Case) -> str:
    """The truth spelled out with titles, for reviewing a case by eye."""
    t = case.truth
    p, n = case.prev_cluster, case.new_cluster
    lines = [f"{case.name}: {len(case.prev)} prev / {len(case.new)} new clusters, "
             f"{'items shared (overlap ' + str(case.overlap) + ')' if case.shared_items else 'no items shared'}",
             f"  {case.about}"]
    for a, b in sorted(t.links):
        lines.append(f"  link   P{a} {p(a).title!r} ({p(a).size}) -> N{b} {n(b).title!r} ({n(b).size})")
    for s in t.splits:
        parts = ", ".join(f"N{x} {n(x).title!r} ({n(x).size})" for x in s.new)
        lines.append(f"  split  P{s.prev} {p(s.prev).title!r} ({p(s.prev).size}) -> {parts}")
    for m in t.merges:
        parts = ", ".join(f"P{x} {p(x).title!r} ({p(x).size})" for x in m.prev)
        lines.append(f"  merge  {parts} -> N{m.new} {n(m.new).title!r} ({n(m.new).size})")
    for x in sorted(t.disappeared):
        lines.append(f"  gone   P{x} {p(x).title!r} ({p(x).size})")
    for x in sorted(t.new):
        lines.append(f"  new    N{x} {n(x).title!r} ({n(x).size})")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="substrings of case names (default: all)")
    ap.add_argument("--write", type=Path, help="write <case>.prev.json and <case>.new.json into this folder")
    ap.add_argument("--stored-items", type=int, default=STORED_ITEMS, help="list at most N items per cluster")
    ap.add_argument("--set", choices=sorted(CASE_SETS), default="bench", help="which cases: bench (default) or heldout")
    args = ap.parse_args()
    for case in load_cases(args.cases, CASE_SETS[args.set]):
        print(describe(case))
        if args.write:
            args.write.mkdir(parents=True, exist_ok=True)
            for label, props in zip(("prev", "new"), build_properties(case, args.stored_items), strict=True):
                (args.write / f"{case.name}.{label}.json").write_text(json.dumps(props, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
