"""Matching with and without PostHog's summary embeddings (issue 15), scored on ground truth.

Three sets, each matched twice in the same run (the lexical matcher alone is the baseline):
- `cases` and `heldout`: the hand-written run pairs of tests/support/matching. They have no summaries,
  so their items get vectors from their ground truth, the way the local PostHog's generator draws them
  (monitor/local/posthog/embeddings.py): a linked pair shares a direction, split parts lie near their
  whole, a merge is the mean of its sources, new and disappeared clusters are new directions, all
  clusters of a case share a product component. This measures how the matcher uses the signal when the
  geometry is what PostHog's space is said to be, not that the space is so.
- the generator's traffic (7 scenarios x 2 jobs per level x 14 days) at full, partial (0.3) and zero item
  overlap between consecutive runs, with the embeddings the local PostHog serves.

Also the diff's CPU per run at 50 clusters, with and without vectors (bound: 100 ms in the daemon).

    ./dev bench matching_embeddings [--days N] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable, Sequence

from bench.matching_generator import runs_of
from monitor.local.posthog.generator import generate
from monitor.matching import embeddings as emb
from monitor.matching import match_runs
from monitor.runs import Run
from tests.support.matching.build import CASE_SETS, build_runs, load_cases
from tests.support.matching.embed import case_vectors
from tests.support.matching.score import Prediction, score_case

SCENARIOS = ("steady", "reword", "drift", "new_cluster", "disappear", "split", "merge")
OVERLAPS = {"full": 1.0, "partial": 0.3, "zero": 0.0}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def _pred(prev: Run, new: Run, vectors: tuple[emb.ClusterVectors, emb.ClusterVectors] | None) -> Prediction:
    d = match_runs(prev, new, prev_vectors=vectors[0] if vectors else None,
                   new_vectors=vectors[1] if vectors else None)
    return Prediction(links=frozenset((m.prev, m.new) for m in d.matches), new=frozenset(d.new),
                      disappeared=frozenset(d.disappeared),
                      splits=frozenset((s.prev, p) for s in d.splits for p in s.new),
                      merges=frozenset((p, m.new) for m in d.merges for p in m.prev))


def score_set(name: str, with_vectors: bool) -> Counter[str]:
    c: Counter[str] = Counter()
    for case in load_cases(folder=CASE_SETS[name]):
        prev, new = build_runs(case)
        s = score_case(case, _pred(prev, new, case_vectors(case, prev, new) if with_vectors else None))
        for k, v in s.counts.items():
            c[k + "_tp"] += v.tp
            c[k + "_fp"] += v.fp
            c[k + "_fn"] += v.fn
    return c


def _generator_pairs(scenario: str, seed: int, days: int, overlap: float | None
                     ) -> Iterable[tuple[Run, Run, dict[str, object], tuple[emb.ClusterVectors, emb.ClusterVectors]]]:
    ds = generate(scenario, seed=seed, days=days, item_overlap=overlap)
    assert ds.embeddings is not None
    vec = {d: v for d, v in zip(ds.embeddings.document_id, ds.embeddings.vectors, strict=True)}
    runs = runs_of(ds)
    means = {rid: emb.vectors_from_items(r, vec, per_cluster=200) for rid, r in runs.items()}  # type: ignore[arg-type]
    for t in ds.truth["transitions"]:
        a, b = str(t["prev_run_id"]), str(t["new_run_id"])
        yield runs[a], runs[b], t, (means[a], means[b])


def score_generator(overlap: float | None, seed: int, days: int) -> dict[str, Counter[str]]:
    out = {"lexical": Counter[str](), "embeddings": Counter[str]()}
    for scenario in SCENARIOS:
        for a, b, t, vecs in _generator_pairs(scenario, seed, days, overlap):
            want = {(int(x[0]), int(x[1])) for x in t["links"]}  # type: ignore[attr-defined]
            want_new = {int(x) for x in t["new"]}  # type: ignore[attr-defined]
            want_gone = {int(x) for x in t["disappeared"]}  # type: ignore[attr-defined]
            optional = {(int(s["prev"]), int(p)) for s in t["splits"] for p in s["new"]}  # type: ignore[attr-defined,index]
            optional |= {(int(p), int(m["new"])) for m in t["merges"] for p in m["prev"]}  # type: ignore[attr-defined,index]
            for name, v in (("lexical", None), ("embeddings", vecs)):
                p = _pred(a, b, v)
                c = out[name]
                c["links_tp"] += len(p.links & want)
                c["links_fp"] += len(p.links - want - optional)
                c["links_fn"] += len(want - p.links)
                c["new_tp"] += len(p.new & want_new)
                c["new_fp"] += len(p.new - want_new)
                c["new_fn"] += len(want_new - p.new)
                c["disappeared_tp"] += len(p.disappeared & want_gone)
                c["disappeared_fp"] += len(p.disappeared - want_gone)
                c["disappeared_fn"] += len(want_gone - p.disappeared)
    return out


def _cells(c: Counter[str]) -> list[str]:
    return [f"{_f1(c[k + '_tp'], c[k + '_fp'], c[k + '_fn']):.3f}" for k in ("links", "new", "disappeared")] + [
        f"{c['new_fp'] + c['disappeared_fp']}"]


def diff_cpu(n_clusters: int = 50, repeats: int = 5) -> tuple[float, float]:
    """CPU seconds of one diff of the 50-cluster hand-written case, without and with vectors (median)."""
    case = next(c for c in load_cases(folder=CASE_SETS["bench"]) if c.name.startswith(f"big_{n_clusters}"))
    prev, new = build_runs(case)
    vecs = case_vectors(case, prev, new)
    out = []
    for v in (None, vecs):
        times = []
        for _ in range(repeats):
            t = time.process_time()
            _pred(prev, new, v)
            times.append(time.process_time() - t)
        out.append(sorted(times)[len(times) // 2])
    return out[0], out[1]


def answer_cost(n_clusters: int = 50, dim: int = 3072, repeats: int = 5) -> tuple[int, float]:
    """Bytes of the cluster-embeddings answer at PostHog's dimension (values rounded to 5 decimals, as the
    query rounds them) and the daemon's CPU to decode it into vectors (median seconds)."""
    import msgspec
    import numpy as np

    rng = np.random.default_rng(1)
    means = rng.standard_normal((n_clusters, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    body = msgspec.json.encode({"results": [[i, 200, [round(float(x), 5) for x in m]] for i, m in enumerate(means)],
                                "columns": ["cluster_id", "items", "mean"]})
    times = []
    for _ in range(repeats):
        t = time.process_time()
        doc = msgspec.json.decode(body)
        emb.vectors_from_rows(doc["results"])
        times.append(time.process_time() - t)
    return len(body), sorted(times)[len(times) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--quick", action="store_true", help="hand-written sets and zero overlap only")
    args = ap.parse_args(argv)
    print(f"{'set':<28} {'matcher':<11} {'link F1':>7} {'new F1':>7} {'gone F1':>7} {'false new+gone':>14}")
    for name in ("bench", "heldout"):
        for label, flag in (("lexical", False), ("embeddings", True)):
            print(f"{'hand-written ' + name:<28} {label:<11} " + " ".join(
                f"{x:>7}" for x in _cells(score_set(name, flag))[:3]) + f" {_cells(score_set(name, flag))[3]:>14}")
    overlaps = {"zero": 0.0} if args.quick else {"as sampled": None, **OVERLAPS}
    for label, ov in overlaps.items():
        res = score_generator(ov, args.seed, args.days)
        for name, c in res.items():
            cells = _cells(c)
            print(f"{'generator, overlap ' + label:<28} {name:<11} " + " ".join(f"{x:>7}" for x in cells[:3])
                  + f" {cells[3]:>14}")
    base, with_v = diff_cpu()
    print(f"\ndiff CPU per run, 50 clusters: lexical {base * 1000:.1f} ms, with embeddings {with_v * 1000:.1f} ms "
          f"({with_v / base:.2f}x; bound 100 ms)")
    size, decode = answer_cost()
    print(f"cluster-embeddings answer, 50 clusters x 3072 floats: {size / 1e6:.2f} MB (bound ~2 MB), decoded into "
          f"vectors in {decode * 1000:.1f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
