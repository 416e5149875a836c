"""Clusters compared in PostHog's own embedding space: the mean summary embedding of each cluster.

PostHog clusters the embeddings of LLM-written item summaries (`raw_document_embeddings`); only the UMAP
step is refitted per run, the embedding space is the same for every run. So a cluster's mean embedding
is comparable from run to run even when the two runs share no item, and it says what titles cannot: a
heavy rewording keeps its direction, a near-namesake ("Python code generation" / "Python code review")
points elsewhere.

Vectors are plain float arrays of whatever dimension the table holds (3072 for trace and generation
summaries, 1536 for evaluations, less in the local stand-in): nothing here assumes one. A cluster without
a vector (its items' rows expired, or the table is unknown to an older PostHog) simply has no
embedding signal, and the lexical signals decide for it alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from monitor.matching.signals import products
from monitor.runs import Cluster, Run

Vector = npt.NDArray[np.float64]
ClusterVectors = dict[int, Vector]

# Cosine of two cluster means, mapped onto [0, 1]. Same-product usage patterns sit around 0.5 in PostHog's
# summary space (they share the product's vocabulary), rewordings of one pattern above 0.9 (their items
# are the same kind of traffic, only the labeller's title changed), split parts 0.75-0.9 from their whole.
EMB_FLOOR = 0.65
EMB_CEIL = 0.92
# A cluster mean made of fewer items than this is too noisy to be compared.
MIN_ITEMS = 3


def unit(v: Sequence[float] | Vector) -> Vector | None:
    a = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(a))
    return a / n if a.ndim == 1 and a.size and np.isfinite(n) and n > 0 else None


def vectors_from_rows(rows: Iterable[Sequence[object]]) -> ClusterVectors:
    """(cluster_id, items, mean) rows of the cluster-embeddings query -> unit vectors by cluster.
    Rows with too few items, an empty or non-numeric vector, or a dimension other than the run's
    majority are left out (partial coverage is normal: rows expire after about three months)."""
    out: ClusterVectors = {}
    for row in rows:
        try:
            cid, n, mean = int(row[0]), int(row[1]), row[2]  # type: ignore[call-overload]
        except (TypeError, ValueError, IndexError):
            continue
        if cid < 0 or n < MIN_ITEMS or not isinstance(mean, list) or not mean:
            continue
        try:
            u = unit([float(x) for x in mean])
        except (TypeError, ValueError):
            continue
        if u is not None:
            out[cid] = u
    return _one_dimension(out)


def _one_dimension(vecs: ClusterVectors) -> ClusterVectors:
    if not vecs:
        return vecs
    dims = [v.size for v in vecs.values()]
    common = max(set(dims), key=dims.count)
    return {k: v for k, v in vecs.items() if v.size == common}


def vectors_from_items(run: Run, embeddings: Mapping[str, Sequence[float]],
                       per_cluster: int | None = None) -> ClusterVectors:
    """Cluster means from item embeddings ({document_id: embedding}), as the query computes them in
    ClickHouse (over the `per_cluster` best-ranked items, or all): for `cluster-monitor diff --embeddings`
    and the benchmarks."""
    out: ClusterVectors = {}
    for c in run.clusters:
        if c.is_noise:
            continue
        keys = c.traces if per_cluster is None else c.top_items(per_cluster)
        rows = [embeddings[k] for k in keys if k in embeddings]
        if len(rows) < MIN_ITEMS:
            continue
        dims = [len(r) for r in rows]
        d = max(set(dims), key=dims.count)
        u = unit(np.mean(np.asarray([r for r in rows if len(r) == d], dtype=np.float64), axis=0))
        if u is not None:
            out[c.cluster_id] = u
    return _one_dimension(out)


class EmbeddingRowsError(ValueError):
    """A rows file that is not `{"document_id": ..., "embedding": [...]}` per line; names file and line."""


def read_rows(data: bytes, source: str) -> dict[str, list[float]]:
    """JSON lines `{"document_id": "...", "embedding": [floats]}`, as `raw_document_embeddings` returns
    them; an item listed twice (summarised by two jobs) keeps its last row."""
    import msgspec

    out: dict[str, list[float]] = {}
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise EmbeddingRowsError(f"{source}:{n}: not JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise EmbeddingRowsError(f"{source}:{n}: expected an object with document_id and embedding")
        doc, vec = row.get("document_id"), row.get("embedding")
        if not isinstance(doc, str) or not doc:
            raise EmbeddingRowsError(f"{source}:{n}: document_id must be a non-empty string")
        if not isinstance(vec, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                for x in vec):
            raise EmbeddingRowsError(f"{source}:{n}: embedding must be a list of numbers")
        if vec:
            out[doc] = [float(x) for x in vec]
    return out


def cosine_matrix(prev: Sequence[Cluster], new: Sequence[Cluster], pv: ClusterVectors | None,
                  nv: ClusterVectors | None) -> npt.NDArray[np.float64] | None:
    """Cosine of every (prev, new) pair of cluster means; NaN where either side has no vector; None when
    no pair can be compared at all (no vectors, or the two runs' vectors differ in dimension)."""
    if not pv or not nv:
        return None
    pi = [i for i, c in enumerate(prev) if c.cluster_id in pv]
    nj = [j for j, c in enumerate(new) if c.cluster_id in nv]
    if not pi or not nj:
        return None
    a = np.stack([pv[prev[i].cluster_id] for i in pi])
    b = np.stack([nv[new[j].cluster_id] for j in nj])
    if a.shape[1] != b.shape[1]:
        return None
    out = np.full((len(prev), len(new)), np.nan)
    out[np.ix_(pi, nj)] = products(a, b)
    return out


def calibrate(cos: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Cosine -> evidence in [0, 1] (NaN stays NaN: no evidence either way)."""
    out: npt.NDArray[np.float64] = np.clip((cos - EMB_FLOOR) / (EMB_CEIL - EMB_FLOOR), 0.0, 1.0)
    return out


def coverage(run: Run, vecs: ClusterVectors | None) -> float:
    """Share of the run's clustered items whose cluster has a vector (for logs and /metrics)."""
    total = sum(c.size for c in run.clusters if not c.is_noise)
    if not total or not vecs:
        return 0.0
    return sum(c.size for c in run.clusters if not c.is_noise and c.cluster_id in vecs) / total


def encode(vecs: ClusterVectors) -> dict[int, bytes]:
    """float32 bytes per cluster, for the state store (a 3072-d vector is 12 KB)."""
    return {k: v.astype("<f4").tobytes() for k, v in vecs.items()}


def decode(blobs: Mapping[int, bytes]) -> ClusterVectors:
    out: ClusterVectors = {}
    for k, b in blobs.items():
        if len(b) % 4:
            continue
        u = unit(np.frombuffer(b, dtype="<f4").astype(np.float64))
        if u is not None:
            out[int(k)] = u
    return _one_dimension(out)
