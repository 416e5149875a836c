"""The evidence that a cluster of one run is the same as a cluster of the next, one signal at a time.

- text: titles and descriptions are rewritten by an LLM every run, so they are compared as bags of
  normalised, Snowball-stemmed words (no synonym list: one written for the cases at hand does not hold
  for the next team's vocabulary), weighted by how rare a word is among the clusters of the two runs: a
  shared "refund" says more than a shared "requests". rapidfuzz's token-set ratio catches reorderings
  and near-identical titles. Synonyms with no shared stem are the embedding signal's job
  (monitor/matching/embeddings.py: PostHog's own summary embeddings).
- items: when the two runs sampled some of the same items, where those items went is the strongest
  evidence there is. It is judged against what sampling allows: the fraction of a new cluster's shared
  items that came from a previous cluster, and only when enough items are shared to say anything.
- share: similar traffic share is a weak prior, used only to break near-ties.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]  # PyStemmer: Snowball's C stemmers, no type hints
from rapidfuzz import fuzz, process

from monitor.runs import Cluster

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an and or the of for to in on with by from about via into at as is are be this that these those their "
    "its it user users customer customers request requests question questions query queries help issue issues "
    "related general various other misc including include includes use using used handling flow flows task "
    "tasks conversation conversations interaction interactions asking ask asks people they them within across vs"
    .split()
)

_STEMMER = Stemmer.Stemmer("english")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """Snowball's English (Porter2) stem: connection, connecting and connectivity all become "connect",
    reimburse and reimbursements "reimburs", which a handful of suffix rules did not. PyStemmer (the C
    build) rather than the pure-Python snowballstemmer: 0.7 MB resident instead of ~2 MB (it loads
    every language) in a daemon whose idle budget is 120 MB."""
    return str(_STEMMER.stemWord(word))


def tokens(text: str) -> list[str]:
    """Normalised words: lowercase, markdown and punctuation gone, stopwords out, stems in."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS or len(w) < 2:
            continue
        out.append(_stem(w))
    return out


@dataclass(frozen=True)
class TextProfile:
    title: str
    title_tokens: Counter[str]
    desc_tokens: Counter[str]
    # title + description, made once per cluster rather than once per pair (a 50-cluster diff compares
    # 2,500 pairs: adding Counters per pair was a quarter of its CPU).
    all_tokens: Counter[str]


def profile(c: Cluster) -> TextProfile:
    title, desc = Counter(tokens(c.title)), Counter(tokens(c.description))
    return TextProfile(title=" ".join(tokens(c.title)), title_tokens=title, desc_tokens=desc,
                       all_tokens=title + desc)


def idf(profiles: Iterable[TextProfile]) -> dict[str, float]:
    """Inverse document frequency of each token over every cluster of both runs."""
    docs = list(profiles)
    df: Counter[str] = Counter()
    for p in docs:
        df.update(set(p.title_tokens) | set(p.desc_tokens))
    n = max(len(docs), 1)
    return {t: math.log(1 + n / c) for t, c in df.items()}


def _weighted_cosine(a: Counter[str], b: Counter[str], w: dict[str, float]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(a[t] * b[t] * w.get(t, 1.0) ** 2 for t in a.keys() & b.keys())
    na = math.sqrt(sum((v * w.get(t, 1.0)) ** 2 for t, v in a.items()))
    nb = math.sqrt(sum((v * w.get(t, 1.0)) ** 2 for t, v in b.items()))
    return dot / (na * nb) if na and nb else 0.0


def containment(part: TextProfile, whole: TextProfile, w: dict[str, float]) -> float:
    """How much of one cluster's title (IDF-weighted) the other's title and description contain, in the
    direction that is larger: a split part's or merge source's title usually names a piece of the whole
    ("VPN client setup" inside "Network connectivity: VPN and Wi-Fi")."""
    def one(a: Counter[str], b: Counter[str]) -> float:
        total = sum(w.get(t, 1.0) * v for t, v in a.items())
        return sum(w.get(t, 1.0) * a[t] for t in a.keys() & b.keys()) / total if total else 0.0

    return max(one(part.title_tokens, whole.all_tokens), one(whole.title_tokens, part.all_tokens))


def shared_meaning(a: TextProfile, b: TextProfile, w: dict[str, float]) -> float:
    """Whether the two clusters share any distinctive word at all (title, or title and description
    together), IDF-weighted. Character-level similarity is left out on purpose: two unrelated titles
    still score ~0.4 on token-set ratio, from letters alone."""
    return max(_weighted_cosine(a.title_tokens, b.title_tokens, w), _weighted_cosine(a.all_tokens, b.all_tokens, w))


def text_scores(a: TextProfile, b: TextProfile, w: dict[str, float]) -> tuple[float, float | None]:
    """(title score, description score or None when either description is empty), each in [0, 1]."""
    lexical = fuzz.token_set_ratio(a.title, b.title) / 100.0 if a.title and b.title else 0.0
    weighted = _weighted_cosine(a.title_tokens, b.title_tokens, w)
    both = _weighted_cosine(a.all_tokens, b.all_tokens, w)
    # Token-set ratio alone calls "python code generation" ~ "python code review" close; the IDF-weighted
    # views keep the distinctive words in charge, so lexical counts only as far as they agree.
    title = max(weighted, min(lexical, both + 0.15), 0.5 * lexical)
    desc = _weighted_cosine(a.desc_tokens, b.desc_tokens, w) if a.desc_tokens and b.desc_tokens else None
    return title, desc


@dataclass(frozen=True)
class TextMatrices:
    """text_scores, containment and shared_meaning for every (prev, new) pair at once: the same numbers,
    from a few matrix products over IDF-weighted count vectors, where 2,500 pairs of Python loops over
    Counters took most of a 50-cluster diff's CPU (bound: 100 ms)."""

    title: npt.NDArray[np.float64]
    desc: npt.NDArray[np.float64]  # NaN where either description is empty
    containment: npt.NDArray[np.float64]
    shared_meaning: npt.NDArray[np.float64]


def _weighted(counters: Sequence[Counter[str]], vocab: dict[str, int], w: dict[str, float]) -> npt.NDArray[np.float64]:
    m = np.zeros((len(counters), len(vocab)))
    for i, c in enumerate(counters):
        for t, v in c.items():
            m[i, vocab[t]] = v * w.get(t, 1.0)
    return m


def products(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """a @ b.T without BLAS: for matrices this small OpenBLAS's threads cost 100 times the arithmetic on a
    busy 2-core machine (10 ms of CPU for a 50 x 700 product that takes 0.1 ms on one thread); einsum's
    own loop takes 0.7 ms."""
    out: npt.NDArray[np.float64] = np.einsum("ik,jk->ij", a, b)
    return out


def _cosines(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = products(a, b) / (na * nb.T)
    res: npt.NDArray[np.float64] = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return res


def text_matrices(prev: Sequence[TextProfile], new: Sequence[TextProfile], w: dict[str, float]) -> TextMatrices:
    vocab: dict[str, int] = {}
    for p in (*prev, *new):
        for t in p.all_tokens:
            vocab.setdefault(t, len(vocab))
    pt, nt = _weighted([p.title_tokens for p in prev], vocab, w), _weighted([p.title_tokens for p in new], vocab, w)
    pd, nd = _weighted([p.desc_tokens for p in prev], vocab, w), _weighted([p.desc_tokens for p in new], vocab, w)
    pa, na = _weighted([p.all_tokens for p in prev], vocab, w), _weighted([p.all_tokens for p in new], vocab, w)
    weighted, both = _cosines(pt, nt), _cosines(pa, na)
    ptitles, ntitles = [p.title for p in prev], [p.title for p in new]
    lexical = np.zeros((len(prev), len(new)))
    if prev and new:
        lexical = process.cdist(ptitles, ntitles, scorer=fuzz.token_set_ratio, dtype=np.float64) / 100.0
        lexical[[i for i, t in enumerate(ptitles) if not t], :] = 0.0
        lexical[:, [j for j, t in enumerate(ntitles) if not t]] = 0.0
    title = np.maximum(np.maximum(weighted, np.minimum(lexical, both + 0.15)), 0.5 * lexical)
    desc = _cosines(pd, nd)
    desc[[i for i, p in enumerate(prev) if not p.desc_tokens], :] = np.nan
    desc[:, [j for j, p in enumerate(new) if not p.desc_tokens]] = np.nan

    def one(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        total = a.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = products(a, (b > 0).astype(np.float64)) / total
        out: npt.NDArray[np.float64] = np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
        return out

    cont = np.maximum(one(pt, na), one(nt, pa).T)
    return TextMatrices(title=title, desc=desc, containment=cont, shared_meaning=np.maximum(weighted, both))


@dataclass(frozen=True)
class Overlap:
    """Item overlap between two runs, cluster by cluster, and how much it can say at all."""

    counts: dict[tuple[int, int], int]  # (prev cluster, new cluster) -> shared items
    prev_shared: dict[int, int]  # prev cluster -> its items the new run also sampled
    new_shared: dict[int, int]  # new cluster -> its items the previous run also sampled
    shared_fraction: float  # shared items / new run's items
    prev_fraction: float = 0.0  # shared items / previous run's items
    prev_sampled: dict[int, int] | None = None  # prev cluster -> items listed in the payload
    new_sampled: dict[int, int] | None = None


def item_overlap(prev: Sequence[Cluster], new: Sequence[Cluster]) -> Overlap:
    """One dict lookup per item of the previous run: linear in items, whatever the number of clusters.

    The per-item work runs in C (dict.update over zip, Counter over map): at 200k items a Python loop
    with a tuple-keyed Counter per item took longer than parsing the run."""
    where: dict[str, int] = {}
    for c in new:
        where.update(zip(c.traces, repeat(c.cluster_id)))
    counts: dict[tuple[int, int], int] = {}
    prev_shared: Counter[int] = Counter()
    new_shared: Counter[int] = Counter()
    for c in prev:
        hits = Counter(map(where.get, c.traces))
        hits.pop(None, None)
        for n, k in hits.items():
            assert n is not None
            counts[(c.cluster_id, n)] = counts.get((c.cluster_id, n), 0) + k
            prev_shared[c.cluster_id] += k
            new_shared[n] += k
    total_new = len(where) or 1
    prev_sampled = {c.cluster_id: len(c.traces) for c in prev}
    shared = sum(counts.values())
    return Overlap(counts, dict(prev_shared), dict(new_shared), shared / total_new,
                   prev_fraction=shared / (sum(prev_sampled.values()) or 1), prev_sampled=prev_sampled,
                   new_sampled={c.cluster_id: len(c.traces) for c in new})


# Below this many shared items a cluster's overlap is sampling noise, not evidence.
MIN_SHARED_ITEMS = 3
# ...unless sampling says it should have shared at least this many: then the silence is evidence.
MIN_EXPECTED_SHARED = 16.0


def _absent(shared: int, sampled: int, fraction: float) -> bool:
    """A cluster whose items did not come back although the two runs share many items elsewhere: if two
    samples of the same traffic overlap by `fraction`, this cluster should have shared about
    `fraction * sampled` items. Seeing (almost) none means its traffic is gone, whatever its title says."""
    return shared < MIN_SHARED_ITEMS and fraction * sampled >= MIN_EXPECTED_SHARED


def item_score(ov: Overlap, p: int, n: int) -> float | None:
    """How much of the two clusters' shared items they share with each other (geometric mean of both
    directions); 0 when sampling says a side should have shared items and did not; None when too few
    items are shared to judge either way."""
    ps, ns = ov.prev_shared.get(p, 0), ov.new_shared.get(n, 0)
    if ps < MIN_SHARED_ITEMS or ns < MIN_SHARED_ITEMS:
        if _absent(ps, (ov.prev_sampled or {}).get(p, 0), ov.prev_fraction) or _absent(
                ns, (ov.new_sampled or {}).get(n, 0), ov.shared_fraction):
            return 0.0
        return None
    k = ov.counts.get((p, n), 0)
    return math.sqrt((k / ps) * (k / ns))


def share_score(a: float, b: float) -> float:
    hi = max(a, b)
    return 1.0 - abs(a - b) / hi if hi > 0 else 1.0
