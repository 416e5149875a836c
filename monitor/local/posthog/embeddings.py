"""The geometry of the local PostHog's summary embeddings: where each item's vector points.

PostHog embeds an LLM-written summary of every clustered item (`raw_document_embeddings`, 3072 floats
from text-embedding-3-large for traces and generations) and clusters those vectors. The stand-in cannot
run that model, so it draws vectors whose geometry follows the scenario instead:

- each usage pattern (topic) is a direction; topics of one product (app) share a product component, so
  they sit closer to each other (cosine about 0.5) than to other products' topics (about 0);
- items scatter around their pattern (cosine about 0.7 to it: summaries of one pattern differ);
- titles are reworded per run by the labeller, vectors are not: a rewording keeps its direction;
- split parts lie near their parent (cosine about 0.85), a merge is the mean of its sources, a new
  pattern is a new direction.

Directions come from a hash of their names, so every run, dataset and process agrees on them. DIM is
smaller than PostHog's 3072 to keep test data small (64 floats a row: 1,500 items a run make 0.4 MB);
the monitor never assumes a dimension.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

DIM = 64
MODEL_NAME = "text-embedding-3-large"
PRODUCT = "llm-analytics"
# posthog/temporal/llm_analytics/trace_clustering/constants.py (LLMA_TRACE_DOCUMENT_TYPE and the
# generation one) and evaluation_clustering/constants.py (LLMA_EVALUATION_DOCUMENT_TYPE).
DOCUMENT_TYPES = {"trace": "llm-trace-summary-detailed", "generation": "llm-generation-summary-detailed",
                  "evaluation": "llm-evaluation-detailed"}
PRODUCT_WEIGHT = 0.7  # topics of one product: cosine ~ PRODUCT_WEIGHT**2
PART_CLOSENESS = 0.85  # a split part's cosine to its parent
ITEM_COSINE = 0.7  # an item's typical cosine to its pattern

Matrix = npt.NDArray[np.float32]
Vec = npt.NDArray[np.float64]


def direction(name: str, dim: int = DIM) -> Vec:
    """A unit vector fixed by a name (blake2b of it seeds the generator)."""
    seed = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    out: Vec = v / np.linalg.norm(v)
    return out


def _mix(a: Vec, b: Vec, wa: float) -> Vec:
    v = wa * a + np.sqrt(max(0.0, 1 - wa * wa)) * b
    out: Vec = v / np.linalg.norm(v)
    return out


def pattern_direction(product: str, pattern: str, dim: int = DIM) -> Vec:
    """A usage pattern of a product: the product's direction plus the pattern's own."""
    return _mix(direction(f"product:{product}", dim), direction(f"pattern:{product}:{pattern}", dim),
                PRODUCT_WEIGHT)


def part_direction(parent: Vec, part: str) -> Vec:
    """A split part: near its parent, with a component of its own."""
    return _mix(parent, direction(f"part:{part}", parent.size), PART_CLOSENESS)


def merged_direction(sources: Sequence[Vec]) -> Vec:
    v = np.sum(sources, axis=0)
    out: Vec = v / np.linalg.norm(v)
    return out


def item_vectors(directions: npt.NDArray[np.float64], rng: np.random.Generator) -> Matrix:
    """One vector per row of `directions`: the pattern plus isotropic noise, so an item's cosine to its
    pattern is about ITEM_COSINE whatever the dimension; unit length, float32 as the table stores them."""
    n, dim = directions.shape
    sigma = np.sqrt((1 / ITEM_COSINE**2 - 1) / dim)
    v = directions + rng.standard_normal((n, dim)) * sigma
    out: Matrix = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def topic_directions(topics: Mapping[str, str], splits: Mapping[str, Sequence[str]],
                     merges: Mapping[str, Sequence[str]], dim: int = DIM) -> dict[str, Vec]:
    """Directions of the scenario catalogue's topics ({topic: app}): split children near their parent,
    merge targets the mean of their sources."""
    out = {t: pattern_direction(app, t, dim) for t, app in topics.items()}
    for parent, kids in splits.items():
        for k in kids:
            out[k] = part_direction(out[parent], k)
    for target, sources in merges.items():
        out[target] = merged_direction([out[s] for s in sources])
    return out
