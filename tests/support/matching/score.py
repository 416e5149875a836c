"""Scores cluster matching on the hand-written cases in cases/: the monitor's matcher and three baselines.

    ./dev bench matching [--set bench|heldout] [--verbose] [--json] [--case SUBSTRING ...] [--threshold T]
                         [--stored-items N]

Rows: `monitor` (monitor.matching.match_runs, default threshold unless --threshold), `exact-title`,
`posthog-substring` (the rule of PostHog's diff_runs.py skill script) and `lexical-only` (rapidfuzz
token-set ratio of titles, optimal assignment, 0.5 threshold). Columns are micro-averaged over all
cases; the counting rules are in README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz
from scipy.optimize import linear_sum_assignment

from monitor.matching import match_runs
from monitor.runs import Cluster, Run
from tests.support.matching.build import CASE_SETS, STORED_ITEMS, Case, Truth, build_runs, load_cases

Pair = tuple[int, int]


@dataclass(frozen=True)
class Prediction:
    links: frozenset[Pair]
    new: frozenset[int]
    disappeared: frozenset[int]
    # (prev, part) and (part, new) edges; None when the method does not look for splits and merges.
    splits: frozenset[Pair] | None = None
    merges: frozenset[Pair] | None = None


Method = Callable[[Run, Run, float | None], Prediction]


def _regular(run: Run) -> list[Cluster]:
    return [c for c in run.clusters if not c.is_noise]


def _from_links(prev: Run, new: Run, links: Iterable[Pair]) -> Prediction:
    links = frozenset(links)
    lp, ln = {p for p, _ in links}, {n for _, n in links}
    return Prediction(
        links=links,
        new=frozenset(c.cluster_id for c in _regular(new) if c.cluster_id not in ln),
        disappeared=frozenset(c.cluster_id for c in _regular(prev) if c.cluster_id not in lp),
    )


def monitor_method(prev: Run, new: Run, threshold: float | None) -> Prediction:
    """The monitor's matcher on the runs alone (bench/matching_embeddings.py adds PostHog's embeddings)."""
    d = match_runs(prev, new) if threshold is None else match_runs(prev, new, threshold=threshold)
    return Prediction(
        links=frozenset((m.prev, m.new) for m in d.matches),
        new=frozenset(d.new),
        disappeared=frozenset(d.disappeared),
        splits=frozenset((s.prev, p) for s in d.splits for p in s.new),
        merges=frozenset((p, m.new) for m in d.merges for p in m.prev),
    )


_PUNCT = re.compile(r"[^\w\s]+")


def normalise(title: str) -> str:
    """Lowercase, punctuation out, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", title.lower()).split())


def _greedy(prev: Run, new: Run, same: Callable[[str, str], bool]) -> Prediction:
    links: list[Pair] = []
    used: set[int] = set()
    for a in _regular(prev):
        ta = normalise(a.title)
        for b in _regular(new):
            if b.cluster_id not in used and ta and same(ta, normalise(b.title)):
                links.append((a.cluster_id, b.cluster_id))
                used.add(b.cluster_id)
                break
    return _from_links(prev, new, links)


def exact_title(prev: Run, new: Run, threshold: float | None) -> Prediction:
    return _greedy(prev, new, lambda a, b: a == b)


def posthog_substring(prev: Run, new: Run, threshold: float | None) -> Prediction:
    """Each previous cluster, in run order, takes the first unused new cluster whose normalised title is
    equal to its own, or else the first one whose title contains its title or is contained in it."""
    links: list[Pair] = []
    used: set[int] = set()
    regular_new = _regular(new)
    for a in _regular(prev):
        ta = normalise(a.title)
        free = [(b.cluster_id, normalise(b.title)) for b in regular_new if b.cluster_id not in used]
        hit = next((bid for bid, tb in free if tb == ta), None)
        if hit is None:
            hit = next((bid for bid, tb in free if ta and tb and (ta in tb or tb in ta)), None)
        if hit is not None:
            links.append((a.cluster_id, hit))
            used.add(hit)
    return _from_links(prev, new, links)


LEXICAL_THRESHOLD = 0.5


def lexical_only(prev: Run, new: Run, threshold: float | None) -> Prediction:
    pc, nc = _regular(prev), _regular(new)
    if not pc or not nc:
        return _from_links(prev, new, [])
    score = np.array([[fuzz.token_set_ratio(normalise(a.title), normalise(b.title)) / 100.0 for b in nc]
                      for a in pc])
    rows, cols = linear_sum_assignment(-score)
    links = [(pc[i].cluster_id, nc[j].cluster_id) for i, j in zip(rows.tolist(), cols.tolist(), strict=True)
             if score[i, j] >= LEXICAL_THRESHOLD]
    return _from_links(prev, new, links)


METHODS: dict[str, Method] = {
    "monitor": monitor_method,
    "exact-title": exact_title,
    "posthog-substring": posthog_substring,
    "lexical-only": lexical_only,
}


# ---------------------------------------------------------------------------------------------- counting


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else None

    @property
    def errors(self) -> int:
        return self.fp + self.fn


def _count(pred: Iterable[Any], truth: Iterable[Any], ignore: Iterable[Any] = ()) -> Counts:
    p, t, skip = set(pred), set(truth), set(ignore)
    return Counts(tp=len(p & t), fp=len(p - t - skip), fn=len(t - p))


CATEGORIES = ("links", "new", "disappeared", "splits", "merges")


@dataclass
class CaseScore:
    case: Case
    pred: Prediction
    counts: dict[str, Counts] = field(default_factory=dict)

    @property
    def perfect(self) -> bool:
        return all(c.errors == 0 for c in self.counts.values())


def score_case(case: Case, pred: Prediction) -> CaseScore:
    t: Truth = case.truth
    out = CaseScore(case, pred)
    out.counts["links"] = _count(pred.links, t.links, t.optional_links)
    out.counts["new"] = _count(pred.new, t.new)
    out.counts["disappeared"] = _count(pred.disappeared, t.disappeared)
    # A method that does not look for splits and merges scores zero there when the truth has any.
    out.counts["splits"] = _count(pred.splits or (), t.split_edges)
    out.counts["merges"] = _count(pred.merges or (), t.merge_edges)
    return out


@dataclass
class MethodResult:
    name: str
    detects_transitions: bool
    cases: list[CaseScore] = field(default_factory=list)

    def total(self, category: str) -> Counts:
        c = Counts()
        for s in self.cases:
            c.add(s.counts[category])
        return c

    def summary(self) -> dict[str, Any]:
        links = self.total("links")
        out: dict[str, Any] = {
            "link_precision": _round(links.precision), "link_recall": _round(links.recall),
            "link_f1": _round(links.f1), "new_f1": _round(self.total("new").f1),
            "disappeared_f1": _round(self.total("disappeared").f1),
            "split_f1": _round(self.total("splits").f1) if self.detects_transitions else None,
            "merge_f1": _round(self.total("merges").f1) if self.detects_transitions else None,
            "perfect_cases": sum(s.perfect for s in self.cases),
            "cases": len(self.cases),
        }
        out["counts"] = {k: {"tp": self.total(k).tp, "fp": self.total(k).fp, "fn": self.total(k).fn}
                         for k in CATEGORIES}
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# ---------------------------------------------------------------------------------------------- reporting


def _fate_prev(case: Case, pred: Prediction | None, cid: int) -> str:
    """What happened to a previous cluster, by the truth (pred None) or by a prediction."""
    n = case.new_cluster
    if pred is None:
        t = case.truth
        links = {p: b for p, b in t.links}
        if cid in links:
            return f"-> N{links[cid]} {n(links[cid]).title!r}"
        if cid in t.disappeared:
            return "disappeared"
        for s in t.splits:
            if s.prev == cid:
                return "split into " + ", ".join(f"N{x}" for x in s.new)
        for m in t.merges:
            if cid in m.prev:
                return f"merged into N{m.new} {n(m.new).title!r}"
        return "?"
    bits = [f"-> N{b} {n(b).title!r}" for p, b in sorted(pred.links) if p == cid]
    parts = sorted(x for p, x in pred.splits or () if p == cid)
    if parts:
        bits.append("split into " + ", ".join(f"N{x}" for x in parts))
    into = sorted(x for p, x in pred.merges or () if p == cid)
    if into:
        bits.append("merged into " + ", ".join(f"N{x}" for x in into))
    if cid in pred.disappeared:
        bits.append("disappeared")
    return "; ".join(bits) or "unaccounted"


def _fate_new(case: Case, pred: Prediction | None, cid: int) -> str:
    p = case.prev_cluster
    if pred is None:
        t = case.truth
        links = {b: a for a, b in t.links}
        if cid in links:
            return f"<- P{links[cid]} {p(links[cid]).title!r}"
        if cid in t.new:
            return "new"
        for s in t.splits:
            if cid in s.new:
                return f"split part of P{s.prev} {p(s.prev).title!r}"
        for m in t.merges:
            if m.new == cid:
                return "merge of " + ", ".join(f"P{x}" for x in m.prev)
        return "?"
    bits = [f"<- P{a} {p(a).title!r}" for a, b in sorted(pred.links) if b == cid]
    whole = sorted(a for a, x in pred.splits or () if x == cid)
    if whole:
        bits.append("split part of " + ", ".join(f"P{a}" for a in whole))
    sources = sorted(a for a, x in pred.merges or () if x == cid)
    if sources:
        bits.append("merge of " + ", ".join(f"P{a}" for a in sources))
    if cid in pred.new:
        bits.append("new")
    return "; ".join(bits) or "unaccounted"


def failures(s: CaseScore) -> list[dict[str, Any]]:
    """Every disagreement of one method with the truth on one case, each with both sides' view."""
    case, pred, t = s.case, s.pred, s.case.truth
    out: list[dict[str, Any]] = []

    def prev_item(kind: str, cid: int) -> None:
        out.append({"kind": kind, "cluster": f"P{cid}", "title": case.prev_cluster(cid).title,
                    "truth": _fate_prev(case, None, cid), "got": _fate_prev(case, pred, cid)})

    def new_item(kind: str, cid: int) -> None:
        out.append({"kind": kind, "cluster": f"N{cid}", "title": case.new_cluster(cid).title,
                    "truth": _fate_new(case, None, cid), "got": _fate_new(case, pred, cid)})

    for a, _b in sorted(t.links - pred.links):
        prev_item("missed link", a)
    for a, b in sorted(pred.links - t.links - t.optional_links):
        out.append({"kind": "wrong link", "cluster": f"P{a} -> N{b}",
                    "title": f"{case.prev_cluster(a).title} -> {case.new_cluster(b).title}",
                    "truth": f"P{a} {_fate_prev(case, None, a)}; N{b} {_fate_new(case, None, b)}", "got": "linked"})
    for b in sorted(pred.new - t.new):
        new_item("false new", b)
    for b in sorted(t.new - pred.new):
        new_item("missed new", b)
    for a in sorted(pred.disappeared - t.disappeared):
        prev_item("false disappeared", a)
    for a in sorted(t.disappeared - pred.disappeared):
        prev_item("missed disappeared", a)
    if pred.splits is not None:
        for sp in t.splits:
            got = {e for e in pred.splits if e[0] == sp.prev}
            if {(sp.prev, x) for x in sp.new} != got:
                prev_item("wrong split parts" if got else "missed split", sp.prev)
        for a in sorted({e[0] for e in pred.splits} - {sp.prev for sp in t.splits}):
            prev_item("false split", a)
    if pred.merges is not None:
        for m in t.merges:
            got = {e for e in pred.merges if e[1] == m.new}
            if {(x, m.new) for x in m.prev} != got:
                new_item("wrong merge parts" if got else "missed merge", m.new)
        for b in sorted({e[1] for e in pred.merges} - {m.new for m in t.merges}):
            new_item("false merge", b)
    return out


def _fmt(x: float | None) -> str:
    return "  —  " if x is None else f"{x:.3f}"


COLUMNS = [("link P", "link_precision"), ("link R", "link_recall"), ("link F1", "link_f1"), ("new F1", "new_f1"),
           ("gone F1", "disappeared_f1"), ("split F1", "split_f1"), ("merge F1", "merge_f1")]


def table(results: Sequence[MethodResult]) -> str:
    head = f"{'method':<18}" + "".join(f"{c:>9}" for c, _ in COLUMNS) + f"{'perfect':>10}"
    lines = [head, "-" * len(head)]
    for r in results:
        s = r.summary()
        lines.append(f"{r.name:<18}" + "".join(f"{_fmt(s[k]):>9}" for _, k in COLUMNS)
                     + f"{s['perfect_cases']:>5}/{s['cases']:<4}")
    return "\n".join(lines)


def corpus_stats(cases: Sequence[Case]) -> dict[str, Any]:
    t = [c.truth for c in cases]
    return {
        "cases": len(cases),
        "cases_with_shared_items": sum(c.shared_items for c in cases),
        "clusters_prev": sum(len(c.prev) for c in cases),
        "clusters_new": sum(len(c.new) for c in cases),
        "noise_clusters": sum(x.is_noise for c in cases for x in (*c.prev, *c.new)),
        "truth_links": sum(len(x.links) for x in t),
        "truth_new": sum(len(x.new) for x in t),
        "truth_disappeared": sum(len(x.disappeared) for x in t),
        "truth_splits": sum(len(x.splits) for x in t),
        "truth_merges": sum(len(x.merges) for x in t),
        "largest_case_clusters": max((sum(not x.is_noise for x in (*c.prev, *c.new)) + 1) // 2 for c in cases)
        if cases else 0,
    }


def matcher_state() -> str:
    """Which matcher was measured: the commit, and whether monitor/matching has uncommitted edits."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "monitor/matching"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    edited = sorted(line[3:] for line in dirty if line.strip())
    return f"commit {head}" + (f", uncommitted edits in {', '.join(edited)}" if edited else ", clean")


def run(cases: Sequence[Case], threshold: float | None, cap: int | None = STORED_ITEMS) -> list[MethodResult]:
    results = [MethodResult(name, name == "monitor") for name in METHODS]
    for case in cases:
        prev, new = build_runs(case, cap)
        for r in results:
            r.cases.append(score_case(case, METHODS[r.name](prev, new, threshold)))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbose", "-v", action="store_true", help="list the monitor's failures case by case")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--case", nargs="*", default=[], help="only cases whose name contains one of these")
    ap.add_argument("--set", choices=sorted(CASE_SETS), default="bench",
                    help="bench (default: cases/) or heldout (heldout/: measured, never tuned on)")
    ap.add_argument("--threshold", type=float, default=None, help="the monitor's match threshold (default: its own)")
    ap.add_argument("--stored-items", type=int, default=STORED_ITEMS,
                    help="list at most N items per cluster in the synthesised runs (default: all, like PostHog)")
    args = ap.parse_args()
    cases = load_cases(args.case, CASE_SETS[args.set])
    if not cases:
        print("no case matched", file=sys.stderr)
        return 2
    results = run(cases, args.threshold, args.stored_items)
    state = matcher_state()
    monitor = results[0]
    fails = {s.case.name: failures(s) for s in monitor.cases}
    if args.json:
        print(json.dumps({
            "set": args.set,
            "corpus": corpus_stats(cases),
            "threshold": args.threshold,
            "stored_items": args.stored_items,
            "matcher": state,
            "methods": {r.name: r.summary() for r in results},
            "monitor_failures": {k: v for k, v in fails.items() if v},
        }, indent=2))
        return 0
    st = corpus_stats(cases)
    print(f"{args.set} set: {st['cases']} cases ({st['cases_with_shared_items']} with shared items), "
          f"{st['clusters_prev']} + {st['clusters_new']} clusters ({st['noise_clusters']} noise, up to "
          f"{st['largest_case_clusters']} per run); truth: "
          f"{st['truth_links']} links, {st['truth_new']} new, {st['truth_disappeared']} disappeared, "
          f"{st['truth_splits']} splits, {st['truth_merges']} merges")
    print(f"matcher: monitor.matching at {state}; threshold "
          f"{'default' if args.threshold is None else args.threshold}; items listed per cluster: "
          f"{'all' if args.stored_items is None else 'at most ' + str(args.stored_items)}")
    print()
    print(table(results))
    print("  (micro-averaged over all cases; — = the method does not look for splits or merges; perfect = cases "
          "with no error)")
    if args.verbose:
        print()
        print("monitor, case by case:")
        for s in monitor.cases:
            c = s.case
            regime = f"items shared, overlap {c.overlap}" if c.shared_items else "text only"
            errs = fails[c.name]
            sizes = f"{sum(not x.is_noise for x in c.prev)} -> {sum(not x.is_noise for x in c.new)} clusters"
            print(f"\n{c.name}  ({sizes} besides noise, {regime}): "
                  f"{'ok' if not errs else str(len(errs)) + ' error(s)'}")
            for f in errs:
                print(f"  {f['kind']:<19} {f['cluster']} {f['title']!r}")
                print(f"  {'':<19} truth: {f['truth']}")
                print(f"  {'':<19} got:   {f['got']}")
        kinds: dict[str, int] = {}
        for errs in fails.values():
            for f in errs:
                kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        print(f"\nmonitor errors by kind ({sum(kinds.values())} in {sum(bool(e) for e in fails.values())} cases): "
              + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
