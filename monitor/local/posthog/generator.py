"""A deterministic generator of LLM traffic and of the clustering runs PostHog would write about it.

The local PostHog loads what `generate` returns: `$ai_trace` / `$ai_generation` / `$ai_span` /
`$ai_embedding` events shaped like PostHog's SDKs send them (including numbers and booleans sent as
strings), the daily `$ai_trace_clusters` / `$ai_generation_clusters` events shaped like PostHog's
clustering workflow writes them, the clustering jobs, and a ground truth telling which cluster is which
topic and what each run pair should show. The monitor can then be tested end to end against data whose
right answers are known.

The clustering itself is simulated, not computed: a cluster *is* a topic of the scenario catalogue
(`scenarios.py`), sampled items are assigned by topic, topics below HDBSCAN's minimum size and a few
random items go to noise, titles are reworded per run from each topic's bank, coordinates are random
(UMAP's are not comparable across runs either). The cluster metrics, though, are computed from the
generated events exactly as PostHog computes them, so a query over the events must find the same numbers
(checked against ClickHouse itself, reading the raw property text as HogQL's `toFloat` does).

Speed matters (the demo and the tests generate on start): events are built as JSON text with f-strings
from numpy-drawn columns, with no per-event objects, and the drift scenario at scale 1 (about 335,000
events and 56 runs) takes about two seconds.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.local.posthog import embeddings as emb
from monitor.local.posthog.evaluations import JUDGES, Evaluations, cluster_titles, evaluation_metrics, make_evaluations
from monitor.local.posthog.scenarios import (
    APPS,
    EMBEDDING_MODEL,
    EXPECTED_ALERTS,
    MODELS,
    SCENARIOS,
    TOPICS,
    App,
    Change,
    EvalChange,
    Scenario,
    Topic,
)

__all__ = [
    "SCENARIOS",
    "Dataset",
    "EventRow",
    "Job",
    "compute_metrics",
    "generate",
    "iter_ai_events",
    "legacy_run_properties",
    "make_run_event",
    "run_event_row",
]

EventRow = tuple[str, str, str, str, str, int]
IntArr = npt.NDArray[np.int64]
FloatArr = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]

LOOKBACK_DAYS = 7  # PostHog's `lookback_days`
US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
STRING_SHARE = 0.2  # share of events whose SDK sends numbers and booleans as strings
CENTROID_DIMS = 10  # PostHog writes 100 floats; 10 keep run events small and nothing reads them
RUN_HOUR = (3, 10)  # runs close their windows between 03:10 and 03:19 UTC
CHANGE_HOUR = (3, 20)  # ... and scenario changes take effect at 03:20, after every run of the day
MIN_CLUSTER_FRACTION = 0.02  # HDBSCAN min_cluster_size = max(5, 2% of items)
NOISE_TITLE = "Outliers"
NOISE_DESCRIPTION = "Items that did not fit into any cluster"
# The monitor's default thresholds (monitor.config), used to say in the truth when an alert is due.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "avg_cost_increase": 1.0,
    "error_rate": 0.10,
    "error_rate_increase_pp": 5.0,
    "new_cluster_min_share": 0.02,
    "disappeared_min_share": 0.02,
    "share_shift_pp": 5.0,
    "pass_rate_min": 0.5,
}
CLUSTERING_PARAMS_BASE: dict[str, Any] = {
    "clustering_method": "hdbscan",
    "clustering_method_params": {},
    "embedding_normalization": "l2",
    "dimensionality_reduction_method": "umap",
    "dimensionality_reduction_ndims": 100,
    "visualization_method": "umap",
}
_EVAL_ONLY_METRICS: dict[str, Any] = {
    "pass_rate": None, "na_rate": None, "dominant_evaluation_name": None, "dominant_runtime": None,
    "avg_judge_cost": None,
}

TOPIC_IDS: tuple[str, ...] = tuple(TOPICS)
TOPIC_INDEX: dict[str, int] = {t: i for i, t in enumerate(TOPIC_IDS)}
APP_IDS: tuple[str, ...] = tuple(APPS)
MODEL_IDS: tuple[str, ...] = tuple(MODELS)
MODEL_INDEX: dict[str, int] = {m: i for i, m in enumerate(MODEL_IDS)}
_PRICE_IN = np.array([MODELS[m].input_price for m in MODEL_IDS])
_PRICE_OUT = np.array([MODELS[m].output_price for m in MODEL_IDS])
_TPS = np.array([MODELS[m].tokens_per_second for m in MODEL_IDS])
_OVERHEAD = np.array([MODELS[m].overhead_s for m in MODEL_IDS])

# Failures as providers report them: (HTTP status, SDK error text, latency range in seconds, weight).
_GEN_ERRORS: tuple[tuple[int, str, float, float, float], ...] = (
    (429, "RateLimitError: Rate limit reached for requests per minute", 0.1, 0.6, 0.3),
    (500, "InternalServerError: The server had an error while processing your request", 0.5, 2.5, 0.25),
    (503, "APIError: Service Unavailable - the model is overloaded", 0.3, 1.5, 0.2),
    (504, "APITimeoutError: Request timed out", 20.0, 60.0, 0.1),
    (400, "BadRequestError: maximum context length exceeded", 0.15, 0.5, 0.15),
)
_SPAN_ERRORS = ("ToolError: upstream returned 502", "TimeoutError: tool call exceeded 10s",
                "ToolError: record not found")


# --------------------------------------------------------------------------------------------------
# Public data shapes
# --------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """A clustering job as PostHog's API serves it (`ClusteringJobSerializer` fields)."""

    id: str
    name: str
    analysis_level: str
    event_filters: list[dict[str, Any]]
    enabled: bool
    created_at: str
    updated_at: str

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "analysis_level": self.analysis_level,
            "event_filters": [dict(f) for f in self.event_filters], "enabled": self.enabled,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }

    def apps(self) -> frozenset[str]:
        """The apps whose traffic passes this job's filters (the generator only filters on `app`)."""
        allowed = set(APPS)
        for f in self.event_filters:
            if f.get("key") != "app":
                raise ValueError(f"job {self.name!r}: the generator only filters on 'app', not {f!r}")
            raw = f.get("value")
            values = {str(v) for v in raw} if isinstance(raw, list) else {str(raw)}
            op = f.get("operator", "exact")
            if op == "exact":
                allowed &= values
            elif op == "is_not":
                allowed -= values
            elif op == "icontains":
                allowed = {a for a in allowed if any(v.lower() in a.lower() for v in values)}
            else:
                raise ValueError(f"job {self.name!r}: unsupported operator {op!r}")
        return frozenset(allowed)


@dataclass
class EmbeddingTable:
    """Rows of PostHog's `raw_document_embeddings` for the items the runs clustered, as columns
    (product is always llm-analytics, metadata a JSON text, the vectors one float32 matrix)."""

    document_id: list[str]
    document_type: list[str]
    rendering: list[str]
    timestamp: list[str]  # the item's time ('YYYY-MM-DD HH:MM:SS.ffffff' UTC)
    inserted_at: list[str]
    content: list[str]
    metadata: list[str]
    vectors: npt.NDArray[np.float32]
    model_name: str = emb.MODEL_NAME
    product: str = emb.PRODUCT

    def __len__(self) -> int:
        return len(self.document_id)

    def rows(self) -> list[dict[str, Any]]:
        """`{"document_id": ..., "embedding": [...]}` per row, as `cluster-monitor diff --embeddings` reads them."""
        return [{"document_id": d, "embedding": v} for d, v in zip(self.document_id, self.vectors.tolist(),
                                                                   strict=True)]


@dataclass
class Dataset:
    """Everything the local PostHog serves for one team, plus the answers the monitor should find."""

    team_id: int
    jobs: list[Job]
    # (uuid, event, distinct_id, properties JSON, 'YYYY-MM-DD HH:MM:SS.ffffff' UTC, team_id)
    events: list[EventRow]
    # One per run: run_id, job_id, job_name, level, window_start, window_end, emitted_at (datetimes),
    # event_uuid, items, day (run index).
    runs: list[dict[str, Any]]
    # Ground truth; JSON-serialisable (cluster ids are string keys). See `generate`.
    truth: dict[str, Any]
    scenario: str = ""
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    embeddings: EmbeddingTable | None = None

    def write_truth(self, path: Path) -> None:
        path.write_bytes(msgspec.json.format(msgspec.json.encode(self.truth), indent=1))


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _uuid4s(rng: np.random.Generator, n: int) -> list[str]:
    """UUIDv4 strings from the given generator: deterministic, and ~10x faster than uuid.UUID()."""
    if n <= 0:
        return []
    a = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    a[:, 6] = (a[:, 6] & 0x0F) | 0x40
    a[:, 8] = (a[:, 8] & 0x3F) | 0x80
    h = a.tobytes().hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * n, 32)]


def _uuid7(ms: int, rng: np.random.Generator) -> str:
    """PostHog model ids are UUIDv7: the creation time in the first 48 bits."""
    rand_a = int(rng.integers(0, 1 << 12))
    rand_b = int(rng.integers(0, 1 << 62, dtype=np.int64))
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _us(dt: datetime) -> int:
    return int(dt.replace(microsecond=0).timestamp()) * US + dt.microsecond


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // US, UTC).replace(microsecond=us % US)


def _ts_strings(us: IntArr) -> list[str]:
    """'YYYY-MM-DD HH:MM:SS.ffffff' for many instants at once (numpy's C formatter, then T -> space)."""
    if len(us) == 0:
        return []
    s = np.datetime_as_string(us.astype("datetime64[us]"), unit="us").astype("S26")
    v = s.view(np.uint8).reshape(-1, 26)
    v[:, 10] = 32
    out: list[str] = s.astype("U26").tolist()
    return out


def _iso_from_ts(ts: str) -> str:
    """PostHog's `isoformat()` of a stored timestamp (no fraction when it is zero)."""
    base = ts.replace(" ", "T")
    if base.endswith(".000000"):
        base = base[:-7]
    return base + "+00:00"


def _drf_time(dt: datetime) -> str:
    """Django REST framework renders aware UTC datetimes with a trailing Z."""
    return dt.isoformat().replace("+00:00", "Z")


def _scaled_day(day: int, days: int) -> int:
    """Scenario days are written for 14 runs; shorter or longer runs keep the same proportions."""
    if days == 14:
        return day
    return min(days - 1, max(1, round(day * days / 14)))


def compute_metrics(cost: FloatArr, latency: FloatArr, tokens: FloatArr, errors: IntArr) -> dict[str, Any]:
    """One cluster's `metrics`, the way PostHog's `_aggregate_operational_metrics` computes them.

    Per item (trace level: summed over the trace's events in the window, cost and tokens over
    `$ai_generation` and `$ai_embedding`, latency over `$ai_generation` only, errors counted over
    generation, embedding and span events; generation level: the generation's own values): averages are
    over the items whose value is > 0, the error rate over all items with data.
    """
    n = len(cost)
    cpos = cost > 0
    lpos = latency > 0
    tpos = tokens > 0
    cc, lc, tc = int(cpos.sum()), int(lpos.sum()), int(tpos.sum())
    total_cost = float(cost[cpos].sum())
    err = int((errors > 0).sum())
    return {
        "avg_cost": total_cost / cc if cc else None,
        "avg_latency": float(latency[lpos].sum()) / lc if lc else None,
        "avg_tokens": float(tokens[tpos].sum()) / tc if tc else None,
        "total_cost": total_cost if cc else None,
        "error_rate": err / n if n else None,
        "error_count": err,
        "item_count": n,
        **_EVAL_ONLY_METRICS,
    }


# --------------------------------------------------------------------------------------------------
# Hand-made runs (public: tests inject their own runs with these)
# --------------------------------------------------------------------------------------------------


def make_run_event(
    *,
    team_id: int,
    level: str,
    window_end: datetime,
    clusters: Sequence[Mapping[str, Any]],
    job_id: str = "",
    job_name: str = "",
    window_start: datetime | None = None,
    max_samples: int = 1500,
    run_label: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """The properties of one run event, in the shape PostHog's `emit_cluster_events` writes.

    For tests that need a run the scenarios do not produce (odd titles, a missing cluster, hostile
    metrics...). Each cluster mapping has `cluster_id` and `items`, and optionally `title`,
    `description`, `timestamps` (ISO strings, one per item) and `metrics` (a dict or None; leave the key
    out for a run written before PostHog attached metrics). Items are item keys: trace ids at trace
    level; at generation level `(generation_uuid, trace_id)` pairs (or bare generation ids, when the
    trace does not matter). Ranks, distances and plot coordinates are filled in deterministically from
    `seed`; clusters are ordered as PostHog orders them (regular ids ascending, noise last).
    Wrap the result with `run_event_row` to insert it.
    """
    rng = np.random.default_rng([seed, 97])
    end = window_end.astimezone(UTC)
    start = (window_start or end - timedelta(days=LOOKBACK_DAYS)).astimezone(UTC)
    built: list[dict[str, Any]] = []
    for spec in sorted(clusters, key=lambda c: (int(c["cluster_id"]) < 0, int(c["cluster_id"]))):
        cid = int(spec["cluster_id"])
        keys: list[str] = []
        trace_ids: list[str] = []
        gen_ids: list[str | None] = []
        for it in spec.get("items", ()):
            if isinstance(it, (tuple, list)):
                keys.append(str(it[0]))
                gen_ids.append(str(it[0]))
                trace_ids.append(str(it[1]))
            elif level == "generation":
                keys.append(str(it))
                gen_ids.append(str(it))
                trace_ids.append("")
            else:
                keys.append(str(it))
                gen_ids.append(None)
                trace_ids.append(str(it))
        stamps = list(spec.get("timestamps") or [end.isoformat()] * len(keys))
        built.append(_cluster_dict(
            rng, cid, spec.get("title") or (NOISE_TITLE if cid < 0 else f"Cluster {cid}"),
            spec.get("description", NOISE_DESCRIPTION if cid < 0 else ""), keys, trace_ids, gen_ids, stamps,
            spec.get("metrics"), "metrics" in spec))
    job_part = f"_{job_id}" if job_id else ""
    label_part = f"_{run_label}" if run_label else ""
    run_id = f"{team_id}_{level}_{end:%Y%m%d_%H%M%S}{job_part}{label_part}"
    return _run_properties(run_id, level, job_id, job_name, start, end, built, max_samples)


def legacy_run_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    """The same run as PostHog's clustering wrote it before levels, jobs and metrics existed: no
    `$ai_clustering_level`, job id or name (the run id loses its job part), `$ai_total_traces_analyzed`
    in place of `$ai_total_items_analyzed`, every cluster's `metrics` null, and the noise cluster last
    with its ranks the other way round (rank 0 the item nearest the centroid, as for other clusters).
    For the fault matrix and tests: the monitor must read old events as well as new ones."""
    out = {k: v for k, v in props.items() if k not in ("$ai_clustering_level", "$ai_clustering_job_id",
                                                       "$ai_clustering_job_name", "$ai_total_items_analyzed")}
    job = str(props.get("$ai_clustering_job_id") or "")
    run_id = str(props["$ai_clustering_run_id"])
    out["$ai_clustering_run_id"] = run_id[: -len(job) - 1] if job and run_id.endswith("_" + job) else run_id
    out["$ai_total_traces_analyzed"] = props.get("$ai_total_items_analyzed")
    clusters: list[dict[str, Any]] = []
    for c in props["$ai_clusters"]:
        c = {**c, "metrics": None}
        if int(c["cluster_id"]) < 0:
            items = sorted(c["traces"].items(), key=lambda kv: kv[1]["distance_to_centroid"])
            c["traces"] = {k: {**v, "rank": r} for r, (k, v) in enumerate(items)}
        clusters.append(c)
    out["$ai_clusters"] = sorted(clusters, key=lambda c: (int(c["cluster_id"]) < 0, int(c["cluster_id"])))
    return out


def run_event_row(props: Mapping[str, Any], *, team_id: int, emitted_at: datetime,
                  event_uuid: str | None = None) -> EventRow:
    """A run event as a row for the local PostHog's `events` table."""
    parts = str(props.get("$ai_clustering_run_id") or "").split("_")
    named = parts[1] if len(parts) > 1 and parts[1] in ("trace", "generation", "evaluation") else "trace"
    level = str(props.get("$ai_clustering_level") or named)  # old events say it only in the run id
    uid = event_uuid or _uuid4s(np.random.default_rng([team_id, _us(emitted_at)]), 1)[0]
    stamp = _ts_strings(np.array([_us(emitted_at.astimezone(UTC))], dtype=np.int64))[0]
    return (uid, f"$ai_{level}_clusters", f"clustering_{level}_{team_id}",
            msgspec.json.encode(props).decode(), stamp, team_id)


def _cluster_dict(rng: np.random.Generator, cid: int, title: str, description: str, keys: Sequence[str],
                  trace_ids: Sequence[str], gen_ids: Sequence[str | None], stamps: Sequence[str],
                  metrics: dict[str, Any] | None, with_metrics: bool) -> dict[str, Any]:
    """One `$ai_clusters` entry. Distances order the ranks: ascending for clusters, descending for noise."""
    n = len(keys)
    noise = cid < 0
    if noise:
        dist = np.round(0.45 + rng.gamma(2.0, 0.08, n), 6)
        order = np.argsort(-dist, kind="stable")
        xs = np.round(rng.uniform(-10, 10, n), 4)
        ys = np.round(rng.uniform(-10, 10, n), 4)
    else:
        dist = np.round(0.06 + rng.gamma(2.0, 0.06, n), 6)
        order = np.argsort(dist, kind="stable")
        cx, cy = rng.uniform(-8, 8, 2)
        xs = np.round(cx + rng.normal(0, 0.9, n), 4)
        ys = np.round(cy + rng.normal(0, 0.9, n), 4)
    dl, xl, yl = dist.tolist(), xs.tolist(), ys.tolist()
    traces: dict[str, Any] = {}
    for rank, i in enumerate(order.tolist()):
        traces[keys[i]] = {
            "distance_to_centroid": dl[i], "rank": rank, "x": xl[i], "y": yl[i], "timestamp": stamps[i],
            "trace_id": trace_ids[i], "generation_id": gen_ids[i],
        }
    out: dict[str, Any] = {
        "cluster_id": cid, "size": n, "title": title, "description": description, "traces": traces,
        "centroid": [] if noise else np.round(rng.uniform(-1, 1, CENTROID_DIMS), 5).tolist(),
        "centroid_x": round(float(xs.mean()), 4) if n else 0.0,
        "centroid_y": round(float(ys.mean()), 4) if n else 0.0,
    }
    if with_metrics:
        out["metrics"] = metrics
    return out


def _run_properties(run_id: str, level: str, job_id: str, job_name: str, start: datetime, end: datetime,
                    clusters: list[dict[str, Any]], max_samples: int) -> dict[str, Any]:
    return {
        "$ai_clustering_run_id": run_id,
        "$ai_clustering_level": level,
        "$ai_clustering_job_id": job_id,
        "$ai_clustering_job_name": job_name,
        "$ai_window_start": start.isoformat(),
        "$ai_window_end": end.isoformat(),
        "$ai_total_items_analyzed": sum(int(c["size"]) for c in clusters),
        "$ai_clusters": clusters,
        "$ai_clustering_params": {**CLUSTERING_PARAMS_BASE, "max_samples": max_samples},
    }


# --------------------------------------------------------------------------------------------------
# The scenario, resolved against a time frame
# --------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """A scenario turned into instants and per-topic switches for one generation."""

    scenario: Scenario
    days: int
    start_us: int  # traffic starts here (days + 7 days before `end`)
    end_us: int
    first_run_day_us: int  # midnight of the first run's day
    changes: list[tuple[Change, int, int]]  # (change, effective day, effective instant)
    traffic: dict[str, tuple[int, int]]  # topic -> [from, to) of its traffic
    model_switch: dict[str, tuple[int, str]]
    # topic -> (instant, error rate from then on, (HTTP status, `$ai_error`) of the surge's failures or None)
    error_switch: dict[str, tuple[int, float, tuple[int, str] | None]]
    # topic -> (instant, trace name before it): split sub-topics keep the parent's trace name until then.
    trace_name_switch: dict[str, tuple[int, str]]
    # (first run index, end run index (exclusive), {topic: cluster topic}): how the simulated
    # clustering groups topics in the runs of that range.
    cluster_maps: list[tuple[int, int, dict[str, str]]]

    def run_day_us(self, d: int) -> int:
        return self.first_run_day_us + d * DAY_US

    def cluster_map(self, run_index: int) -> npt.NDArray[np.int64]:
        """topic index -> cluster-topic index for one run."""
        m = np.arange(len(TOPIC_IDS), dtype=np.int64)
        for first, stop, mapping in self.cluster_maps:
            if first <= run_index < stop:
                for src, dst in mapping.items():
                    m[TOPIC_INDEX[src]] = TOPIC_INDEX[dst]
        return m


def _plan(scenario: Scenario, days: int, end: datetime) -> _Plan:
    end_us = _us(end)
    start_us = end_us - (days + LOOKBACK_DAYS) * DAY_US
    first_run_day = end_us - days * DAY_US
    traffic = {t.id: (start_us, end_us) for t in TOPICS.values() if not t.latent}
    plan = _Plan(scenario, days, start_us, end_us, first_run_day, [], traffic, {}, {}, {}, [])
    for ch in scenario.changes:
        day = _scaled_day(ch.day, days)
        if day < 1 or day >= days:
            continue
        eff = first_run_day + (day - 1) * DAY_US + CHANGE_HOUR[0] * HOUR_US + CHANGE_HOUR[1] * 60 * US
        plan.changes.append((ch, day, eff))
        if ch.kind == "cost_spike":
            assert ch.model is not None
            plan.model_switch[ch.topic] = (eff, ch.model)
        elif ch.kind == "error_surge":
            assert ch.error_rate is not None
            plan.error_switch[ch.topic] = (eff, ch.error_rate, ch.error)
        elif ch.kind == "new_cluster":
            traffic[ch.topic] = (eff, end_us)
        elif ch.kind == "disappear":
            traffic[ch.topic] = (start_us, eff)
        elif ch.kind == "split":
            traffic.pop(ch.topic, None)
            parent = TOPICS[ch.topic]
            for sub in ch.topics:
                traffic[sub] = (start_us, end_us)
                plan.trace_name_switch[sub] = (eff, parent.trace_name or APPS[parent.app].trace_name)
            # Before the split day both halves are clustered as the parent.
            plan.cluster_maps.append((0, day, dict.fromkeys(ch.topics, ch.topic)))
        elif ch.kind == "merge":
            for src in ch.topics:
                traffic.setdefault(src, (start_us, end_us))
            plan.cluster_maps.append((day, days, dict.fromkeys(ch.topics, ch.topic)))
    return plan


# --------------------------------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------------------------------


@dataclass
class _Items:
    """Column store of clusterable items (traces or generations) with their PostHog metrics."""

    t: IntArr  # first event instant (trace level: trace start; generation level: the generation)
    t_last: IntArr  # last event instant of the item
    topic: IntArr
    app: IntArr
    key: list[str]
    trace_id: list[str]
    ev: IntArr  # index of the item's own event in the events list (for its timestamp)
    cost: FloatArr
    latency: FloatArr
    tokens: FloatArr
    errors: IntArr

    @staticmethod
    def concat(parts: Sequence[_Items]) -> _Items:
        def cat(name: str) -> Any:
            return np.concatenate([getattr(p, name) for p in parts])

        keys = [k for p in parts for k in p.key]
        tids = [k for p in parts for k in p.trace_id]
        it = _Items(cat("t"), cat("t_last"), cat("topic"), cat("app"), keys, tids, cat("ev"), cat("cost"),
                    cat("latency"), cat("tokens"), cat("errors"))
        order = np.argsort(it.t, kind="stable")
        ol = order.tolist()
        return _Items(it.t[order], it.t_last[order], it.topic[order], it.app[order], [it.key[i] for i in ol],
                      [it.trace_id[i] for i in ol], it.ev[order], it.cost[order], it.latency[order],
                      it.tokens[order], it.errors[order])


class _EventSink:
    """Events as parallel columns; the timestamp strings are made in one vectorised pass at the end."""

    def __init__(self) -> None:
        self.uuid: list[str] = []
        self.event: list[str] = []
        self.distinct: list[str] = []
        self.props: list[str] = []
        self.ts: list[int] = []

    def __len__(self) -> int:
        return len(self.uuid)


def _diurnal(app: App) -> FloatArr:
    """Hour-of-day weights: busiest mid-afternoon UTC (Europe + US overlap), never zero."""
    amp = 0.35 if app.id == "agent" else 0.6
    h = np.arange(24)
    w = 1 + amp * np.cos(2 * np.pi * (h - 15) / 24)
    out: FloatArr = w / w.sum()
    return out


def _topic_traffic(plan: _Plan, topic: Topic, seed: int, scale: float, sink: _EventSink,
                   ) -> tuple[_Items, _Items] | None:
    """All traces of one topic: events into the sink, and its trace and generation items.

    Each topic draws from its own random stream (seeded by its catalogue position), and every draw is
    made whatever the scenario does to the topic, so two scenarios with the same seed share their traffic
    up to the day a change happens.
    """
    app = APPS[topic.app]
    ti = TOPIC_INDEX[topic.id]
    ai = APP_IDS.index(app.id)
    rng = np.random.default_rng([seed, 1000 + ti])
    n_days = plan.days + LOOKBACK_DAYS
    day_start = plan.start_us + np.arange(n_days, dtype=np.int64) * DAY_US
    weekday = np.array([_dt(int(d)).weekday() for d in day_start])
    weekly = np.ones(7) if topic.flat_week else np.array(app.weekly)
    lo, hi = plan.traffic[topic.id]
    boost = topic.launch_boost if lo > plan.start_us else 1.0
    lam = topic.volume * scale * weekly[weekday] * boost
    counts = rng.poisson(lam)
    total = int(counts.sum())
    day_idx = np.repeat(np.arange(n_days), counts)
    hour = rng.choice(24, size=total, p=_diurnal(app))
    t0_all = day_start[day_idx] + hour.astype(np.int64) * HOUR_US + rng.integers(0, HOUR_US, total)
    t0_all.sort()
    # Thin back to the plain volume outside the first 24 hours of a launch.
    keep = rng.random(total) * boost < np.where((t0_all >= lo) & (t0_all < lo + DAY_US), boost, 1.0)
    t0: IntArr = t0_all[keep & (t0_all >= lo) & (t0_all < hi)]
    n = len(t0)
    if n == 0:
        return None

    # --- per trace ---------------------------------------------------------------------------------
    has_router = (rng.random(n) < app.router_prob) & (app.router_model is not None)
    n_router = has_router.astype(np.int64)
    main_p = topic.main_gens or app.main_gens
    n_main = 1 + rng.choice(len(main_p), size=n, p=main_p)
    n_spans = rng.choice(len(app.spans), size=n, p=app.spans)
    has_emb = rng.random(n) < app.embedding_prob
    u_err = rng.random(n)
    users = rng.integers(0, app.users, n)
    trace_ids = _uuid4s(rng, n)
    sess_prefix = _uuid4s(rng, 1)[0][:24]
    err_rate = np.full(n, topic.error_rate)
    surge_error: tuple[int, str] | None = None
    if topic.id in plan.error_switch:
        eff, rate, surge_error = plan.error_switch[topic.id]
        err_rate[t0 >= eff] = rate
    err = u_err < err_rate
    # The traces that fail because of the surge (beyond the topic's usual rate): with a surge error, their
    # failed generations say so (status and message only: no draw, timing and latency stay the same).
    surged = err & (u_err >= topic.error_rate) if surge_error is not None else np.zeros(n, dtype=bool)

    # --- per generation ------------------------------------------------------------------------------
    n_gen_t = n_main + n_router
    G = int(n_gen_t.sum())
    gen_trace = np.repeat(np.arange(n), n_gen_t)
    gen_off = np.concatenate([[0], np.cumsum(n_gen_t)[:-1]]).astype(np.int64)
    pos = np.arange(G) - gen_off[gen_trace]
    is_router = pos < n_router[gen_trace]
    router_topic = TOPICS[app.router_topic] if app.router_topic else topic
    mean_in = np.where(is_router, router_topic.input_tokens, topic.input_tokens)
    mean_out = np.where(is_router, router_topic.output_tokens, topic.output_tokens)
    # Later turns of a conversation carry the history: input grows with the position.
    mean_in = mean_in * (1 + 0.35 * np.maximum(pos - n_router[gen_trace], 0))
    in_tok = np.maximum(20, rng.lognormal(np.log(mean_in) - 0.1, 0.45)).astype(np.int64)
    out_tok = np.maximum(1, rng.lognormal(np.log(mean_out) - 0.125, 0.5)).astype(np.int64)
    u_fail = rng.random(G)
    err_kind = rng.choice(len(_GEN_ERRORS), size=G, p=[e[4] for e in _GEN_ERRORS])
    lat_noise = rng.lognormal(0, 0.25, G)
    u_err_lat = rng.random(G)
    is_false_shown = rng.random(G) < 0.5
    main_model = np.full(G, MODEL_INDEX[topic.model])
    if topic.id in plan.model_switch:
        eff, new_model = plan.model_switch[topic.id]
        main_model[t0[gen_trace] >= eff] = MODEL_INDEX[new_model]
    model = np.where(is_router, MODEL_INDEX[app.router_model or topic.model], main_model)

    # --- spans and embeddings ---------------------------------------------------------------------------
    S = int(n_spans.sum())
    span_trace = np.repeat(np.arange(n), n_spans)
    span_name = rng.integers(0, len(app.span_names), S)
    span_lat = np.round(np.maximum(0.005, rng.lognormal(np.log(0.35), 0.8, S)), 3)
    u_span_fail = rng.random(S)
    span_err_msg = rng.integers(0, len(_SPAN_ERRORS), S)
    span_false_shown = rng.random(S) < 0.3
    emb_tok = rng.integers(8, 160, n)
    emb_lat = np.round(rng.uniform(0.04, 0.35, n), 3)
    u_emb_fail = rng.random(n)
    n_events = n + G + S + int(has_emb.sum())
    stringy = (rng.random(n + G + S + n) < STRING_SHARE).tolist()
    ev_uuids = _uuid4s(rng, n + G + S + n)

    # --- failures: a failing trace has at least one failed generation, span or embedding ------------------
    gen_fail = err[gen_trace] & (u_fail < 0.6)
    span_fail = err[span_trace] & (u_span_fail < 0.35)
    emb_fail = err & has_emb & (u_emb_fail < 0.15)
    failed = (np.bincount(gen_trace, gen_fail, n) + np.bincount(span_trace, span_fail, n) + emb_fail) > 0
    need = err & ~failed
    gen_fail[gen_off[need] + n_router[need]] = True

    # --- values, rounded the way they are written so sums match what a query reads -------------------------
    in_tok = np.where(gen_fail, 0, in_tok)
    out_tok = np.where(gen_fail, 0, out_tok)
    in_cost = np.round(in_tok * _PRICE_IN[model], 10)
    out_cost = np.round(out_tok * _PRICE_OUT[model], 10)
    tot_cost = np.round(in_cost + out_cost, 10)
    ok_lat = (_OVERHEAD[model] + out_tok / _TPS[model]) * lat_noise
    lo_l = np.array([e[2] for e in _GEN_ERRORS])[err_kind]
    hi_l = np.array([e[3] for e in _GEN_ERRORS])[err_kind]
    gen_lat = np.round(np.maximum(0.001, np.where(gen_fail, lo_l + (hi_l - lo_l) * u_err_lat, ok_lat)), 3)
    emb_tok = np.where(emb_fail, 0, emb_tok)
    emb_cost = np.round(emb_tok * MODELS[EMBEDDING_MODEL].input_price, 10)

    # --- per-item metrics as PostHog computes them --------------------------------------------------------
    t_cost = np.bincount(gen_trace, tot_cost, n) + np.where(has_emb, emb_cost, 0.0)
    t_lat = np.bincount(gen_trace, gen_lat, n)
    t_tok = np.bincount(gen_trace, in_tok + out_tok, n) + np.where(has_emb, emb_tok, 0)
    t_err = (np.bincount(gen_trace, gen_fail, n) + np.bincount(span_trace, span_fail, n)
             + (has_emb & emb_fail)).astype(np.int64)

    # --- events ------------------------------------------------------------------------------------------
    gap = 3000  # µs between consecutive calls of a trace
    ev_base = len(sink)
    t_last = np.empty(n, dtype=np.int64)
    trace_ev = np.empty(n, dtype=np.int64)
    gen_ev = np.empty(G, dtype=np.int64)
    gen_ts = np.empty(G, dtype=np.int64)
    gen_uuid: list[str] = [""] * G
    gen_tid: list[str] = [""] * G

    models = [(m, MODELS[m].provider) for m in MODEL_IDS]
    emb_model, emb_provider = EMBEDDING_MODEL, MODELS[EMBEDDING_MODEL].provider
    app_id, lib = app.id, app.lib
    own_name = topic.trace_name or app.trace_name
    switch = plan.trace_name_switch.get(topic.id)
    span_names = app.span_names
    tail = f'"app":"{app_id}","$lib":"{lib}"}}'
    uid_off = ai * 1_000_000

    t0l = t0.tolist()
    userl = users.tolist()
    nml = n_main.tolist()
    nrl = n_router.tolist()
    nsl = n_spans.tolist()
    embl = has_emb.tolist()
    errl = err.tolist()
    day0 = plan.start_us
    g_in, g_out = in_tok.tolist(), out_tok.tolist()
    g_ic, g_oc, g_tc = in_cost.tolist(), out_cost.tolist(), tot_cost.tolist()
    g_lat, g_fail, g_model = gen_lat.tolist(), gen_fail.tolist(), model.tolist()
    g_kind, g_false = err_kind.tolist(), is_false_shown.tolist()
    g_surged = surged[gen_trace].tolist()
    g_lat_us = (gen_lat * US).astype(np.int64).tolist()
    s_name, s_lat, s_fail = span_name.tolist(), span_lat.tolist(), span_fail.tolist()
    s_msg, s_false = span_err_msg.tolist(), span_false_shown.tolist()
    s_lat_us = (span_lat * US).astype(np.int64).tolist()
    e_tok, e_lat, e_cost, e_fail = emb_tok.tolist(), emb_lat.tolist(), emb_cost.tolist(), emb_fail.tolist()

    U, E, D, P, TS = sink.uuid, sink.event, sink.distinct, sink.props, sink.ts
    k = 0  # event slot (uuid / stringy draw)

    def gen(gi: int, ts: int, role: str, head: str, tid: str, distinct: str) -> None:
        nonlocal k
        q = '"' if stringy[k] else ""
        mname, prov = models[g_model[gi]]
        if g_fail[gi]:
            code, msg = _GEN_ERRORS[g_kind[gi]][0], _GEN_ERRORS[g_kind[gi]][1]
            if g_surged[gi] and surge_error is not None:
                code, msg = surge_error
            errp = f',"$ai_is_error":{q}true{q},"$ai_error":"{msg}"'
        else:
            code = 200
            errp = f',"$ai_is_error":{q}false{q}' if g_false[gi] else ""
        u = ev_uuids[k]
        U.append(u)
        E.append("$ai_generation")
        D.append(distinct)
        P.append(
            f'{head}"$ai_span_id":"{u}","$ai_parent_id":"{tid}","$ai_span_name":"{role}",'
            f'"$ai_model":"{mname}","$ai_provider":"{prov}","$ai_input_tokens":{q}{g_in[gi]}{q},'
            f'"$ai_output_tokens":{q}{g_out[gi]}{q},"$ai_input_cost_usd":{q}{g_ic[gi]}{q},'
            f'"$ai_output_cost_usd":{q}{g_oc[gi]}{q},"$ai_total_cost_usd":{q}{g_tc[gi]}{q},'
            f'"$ai_latency":{q}{g_lat[gi]}{q},"$ai_http_status":{q}{code}{q}{errp},{tail}')
        TS.append(ts)
        gen_ev[gi] = len(U) - 1
        gen_ts[gi] = ts
        gen_uuid[gi] = u
        gen_tid[gi] = tid
        k += 1

    g = 0
    s = 0
    for i in range(n):
        tid = trace_ids[i]
        t = t0l[i]
        user = userl[i]
        distinct = f"user_{uid_off + user}"
        sess = f"{sess_prefix}{user:06x}{(t - day0) // DAY_US:06x}"
        head = f'{{"$ai_trace_id":"{tid}","$ai_session_id":"{sess}",'

        # The trace event comes first (it is the trace's first timestamp); its latency is known at the end.
        trace_slot = len(U)
        trace_k = k
        U.append(ev_uuids[k])
        E.append("$ai_trace")
        D.append(distinct)
        P.append("")
        TS.append(t)
        k += 1
        cur = t + gap
        last = t
        for _ in range(nrl[i]):
            gen(g, cur, "route", head, tid, distinct)
            last = cur
            cur += g_lat_us[g] + gap
            g += 1
        if embl[i]:
            q = '"' if stringy[k] else ""
            u = ev_uuids[k]
            errp = (f',"$ai_is_error":{q}true{q},"$ai_error":"{_GEN_ERRORS[0][1]}"' if e_fail[i] else "")
            U.append(u)
            E.append("$ai_embedding")
            D.append(distinct)
            P.append(
                f'{head}"$ai_span_id":"{u}","$ai_parent_id":"{tid}","$ai_model":"{emb_model}",'
                f'"$ai_provider":"{emb_provider}","$ai_input_tokens":{q}{e_tok[i]}{q},'
                f'"$ai_input_cost_usd":{q}{e_cost[i]}{q},"$ai_total_cost_usd":{q}{e_cost[i]}{q},'
                f'"$ai_latency":{q}{e_lat[i]}{q},"$ai_http_status":{q}{429 if e_fail[i] else 200}{q}'
                f'{errp},{tail}')
            TS.append(cur)
            last = cur
            cur += int(e_lat[i] * US) + gap
            k += 1
        ns, nm = nsl[i], nml[i]
        for j in range(max(ns, nm)):
            if j < ns:
                q = '"' if stringy[k] else ""
                u = ev_uuids[k]
                if s_fail[s]:
                    errp = f',"$ai_is_error":{q}true{q},"$ai_error":"{_SPAN_ERRORS[s_msg[s]]}"'
                else:
                    errp = f',"$ai_is_error":{q}false{q}' if s_false[s] else ""
                U.append(u)
                E.append("$ai_span")
                D.append(distinct)
                P.append(f'{head}"$ai_span_id":"{u}","$ai_parent_id":"{tid}",'
                         f'"$ai_span_name":"{span_names[s_name[s]]}","$ai_latency":{q}{s_lat[s]}{q}{errp},{tail}')
                TS.append(cur)
                last = cur
                cur += s_lat_us[s] + gap
                s += 1
                k += 1
            if j < nm:
                gen(g, cur, "answer" if j == nm - 1 else "draft", head, tid, distinct)
                last = cur
                cur += g_lat_us[g] + gap
                g += 1
        name = own_name if switch is None or t >= switch[0] else switch[1]
        q = '"' if stringy[trace_k] else ""
        errp = f',"$ai_is_error":{q}true{q}' if errl[i] else ""
        P[trace_slot] = (f'{head}"$ai_trace_name":"{name}","$ai_latency":{q}{round((cur - t) / US, 3)}{q}'
                         f'{errp},{tail}')
        t_last[i] = last
        trace_ev[i] = trace_slot
    assert len(sink) - ev_base == n_events

    topics = np.full(n, ti, dtype=np.int64)
    apps = np.full(n, ai, dtype=np.int64)
    traces = _Items(t0.copy(), t_last, topics, apps, trace_ids, trace_ids, trace_ev, t_cost, t_lat,
                    t_tok.astype(np.float64), t_err)
    gen_topic = np.where(is_router, TOPIC_INDEX[app.router_topic] if app.router_topic else ti, ti)
    gens = _Items(gen_ts, gen_ts, gen_topic.astype(np.int64), np.full(G, ai, dtype=np.int64), gen_uuid,
                  gen_tid, gen_ev, tot_cost, gen_lat, (in_tok + out_tok).astype(np.float64),
                  gen_fail.astype(np.int64))
    return traces, gens


# --------------------------------------------------------------------------------------------------
# Jobs and runs
# --------------------------------------------------------------------------------------------------

_JOB_SPECS: tuple[tuple[str, str, list[dict[str, Any]], bool], ...] = (
    ("Default - traces", "trace", [], True),
    ("Support bot traces", "trace",
     [{"key": "app", "value": "support_bot", "operator": "exact", "type": "event"}], True),
    ("Default - generations", "generation", [], True),
    ("Coding assistant generations", "generation",
     [{"key": "app", "value": "coding_assistant", "operator": "exact", "type": "event"}], True),
    # Paused by its owner: listed by the API, never run. The monitor must cope with that.
    ("RAG search generations", "generation",
     [{"key": "app", "value": ["rag_search"], "operator": "exact", "type": "event"}], False),
)


def _jobs(seed: int, start_us: int) -> list[Job]:
    rng = np.random.default_rng([seed, 3])
    jobs: list[Job] = []
    for j, (name, level, filters, enabled) in enumerate(_JOB_SPECS):
        created_us = start_us - (40 - 4 * j) * DAY_US + int(rng.integers(9 * HOUR_US, 18 * HOUR_US))
        updated_us = created_us + int(rng.integers(0, 5 * DAY_US))
        created, updated = _dt(created_us), _dt(updated_us)
        jobs.append(Job(_uuid7(created_us // 1000, rng), name, level, filters, enabled, _drf_time(created),
                        _drf_time(updated)))
    return jobs


def _choose_title(rng: np.random.Generator, topic: Topic, heavy_share: float) -> tuple[str, str, bool]:
    heavy = bool(rng.random() < heavy_share)
    bank = topic.heavy if heavy else topic.light
    title = bank[int(rng.integers(0, len(bank)))]
    nb = min(len(topic.bullets), int(rng.integers(2, 4)))
    picks = rng.choice(len(topic.bullets), size=nb, replace=False)
    desc = "\n".join(topic.bullets[int(b)] for b in sorted(picks.tolist()))
    return title, desc, heavy


@dataclass
class _RunResult:
    props: dict[str, Any]
    summary: dict[str, Any]
    truth: dict[str, Any]
    ctopic_of_cluster: dict[int, int]
    shares: dict[int, float]  # cluster-topic index -> share of the run's items
    metrics: dict[int, dict[str, Any]]  # cluster-topic index -> metrics
    sample: IntArr = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # item rows in the run
    label: IntArr = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # their cluster ids


def _metrics_mode(rng: np.random.Generator) -> str:
    """Whether a run's clusters carry `metrics`: PostHog computes them best-effort (one attempt), so some
    runs have them null, and runs written before they existed have none."""
    u = rng.random()
    return "absent" if u < 0.05 else "null" if u < 0.20 else "present"


def _run_records(run_id: str, job: Job, d: int, ws: datetime, we: datetime, emitted: datetime, ev_uuid: str,
                 n: int, metrics_mode: str, cluster_truth: dict[str, str], titles: dict[str, str],
                 clusters: list[dict[str, Any]], true_metrics: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                        dict[str, Any]]:
    """A run's summary (Dataset.runs) and ground truth (truth["runs"])."""
    summary = {"run_id": run_id, "job_id": job.id, "job_name": job.name, "level": job.analysis_level,
               "window_start": ws, "window_end": we, "emitted_at": emitted, "event_uuid": ev_uuid, "items": n,
               "day": d}
    truth = {"run_id": run_id, "job_id": job.id, "job_name": job.name, "level": job.analysis_level, "day": d,
             "window_start": ws.isoformat(), "window_end": we.isoformat(), "emitted_at": emitted.isoformat(),
             "event_uuid": ev_uuid, "items": n, "metrics_in_event": metrics_mode, "clusters": cluster_truth,
             "titles": titles, "sizes": {str(c["cluster_id"]): c["size"] for c in clusters},
             "metrics": true_metrics}
    return summary, truth


def _draw_sample(rng: np.random.Generator, idx: IntArr, n: int, prev: IntArr | None,
                 overlap: float | None) -> IntArr:
    """The run's items. By default a uniform sample of the window (PostHog's `ORDER BY rand() LIMIT
    max_samples`), which shares with the previous run what chance gives: most items for a small team,
    almost none for a busy one. With `overlap`, that fraction of the run comes from the previous run's
    sample (as far as it is still in the window) and the rest from items it did not take: 0 = a busy
    team whose runs share nothing."""
    if overlap is None or prev is None:
        return np.sort(rng.choice(idx, size=n, replace=False))
    carried = np.intersect1d(idx, prev, assume_unique=True)
    fresh = np.setdiff1d(idx, prev, assume_unique=True)
    k = max(min(len(carried), round(overlap * n)), n - len(fresh))
    parts = [rng.choice(carried, size=k, replace=False), rng.choice(fresh, size=n - k, replace=False)]
    return np.sort(np.concatenate(parts))


def _make_run(plan: _Plan, job: Job, j: int, d: int, items: _Items, app_ok: BoolArr, ts: list[str],
              team_id: int, seed: int, max_samples: int, min_items: int, prev_sample: IntArr | None = None,
              overlap: float | None = None) -> _RunResult | None:
    rng = np.random.default_rng([seed, 11, j, d])
    base = plan.run_day_us(d) + RUN_HOUR[0] * HOUR_US + RUN_HOUR[1] * 60 * US
    we_us = base + j * 90 * US + int(rng.integers(0, 60 * US))
    ws_us = we_us - LOOKBACK_DAYS * DAY_US
    lo, hi = np.searchsorted(items.t, [ws_us, we_us], side="left").tolist()
    idx = np.arange(lo, hi)
    idx = idx[(items.t_last[lo:hi] < we_us) & app_ok[items.app[lo:hi]]]
    if len(idx) < min_items:
        return None
    n = min(max_samples, len(idx))
    sample = _draw_sample(rng, idx, n, prev_sample, overlap)
    ctopic = plan.cluster_map(d)[items.topic[sample]]
    noise = rng.random(n) < rng.uniform(0.015, 0.045)
    counts = np.bincount(ctopic[~noise], minlength=len(TOPIC_IDS))
    min_size = max(5, int(MIN_CLUSTER_FRACTION * n))
    small = counts < min_size
    noise |= small[ctopic]
    counts[small] = 0
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    label = np.full(n, -1, dtype=np.int64)
    cid_of_ctopic: dict[int, int] = {}
    for cid, c in enumerate(present):
        cid_of_ctopic[c] = cid
        label[(ctopic == c) & ~noise] = cid

    metrics_mode = _metrics_mode(rng)
    gen_level = job.analysis_level == "generation"
    clusters: list[dict[str, Any]] = []
    cluster_truth: dict[str, str] = {}
    titles: dict[str, str] = {}
    rewording: dict[str, str] = {}
    true_metrics: dict[str, Any] = {}
    by_ctopic_metrics: dict[int, dict[str, Any]] = {}
    shares: dict[int, float] = {}
    sl = sample.tolist()
    for cid in [*range(len(present)), -1]:
        members = np.flatnonzero(label == cid)
        if cid == -1 and len(members) == 0:
            continue
        rows = sample[members]
        m = compute_metrics(items.cost[rows], items.latency[rows], items.tokens[rows], items.errors[rows])
        if cid >= 0:
            topic = TOPICS[TOPIC_IDS[present[cid]]]
            title, desc, heavy = _choose_title(rng, topic, plan.scenario.heavy_rewording)
            rewording[str(cid)] = "heavy" if heavy else "light"
            cluster_truth[str(cid)] = topic.id
            by_ctopic_metrics[present[cid]] = m
            shares[present[cid]] = len(members) / n
        else:
            title, desc = NOISE_TITLE, NOISE_DESCRIPTION
        titles[str(cid)] = title
        true_metrics[str(cid)] = m
        ml = members.tolist()
        keys = [items.key[sl[i]] for i in ml]
        tids = [items.trace_id[sl[i]] for i in ml]
        gids: list[str | None] = list(keys) if gen_level else [None] * len(keys)
        stamps = [_iso_from_ts(ts[int(items.ev[sl[i]])]) for i in ml]
        clusters.append(_cluster_dict(rng, cid, title, desc, keys, tids, gids, stamps,
                                      m if metrics_mode == "present" else None, metrics_mode != "absent"))

    we, ws = _dt(we_us), _dt(ws_us)
    run_id = f"{team_id}_{job.analysis_level}_{we:%Y%m%d_%H%M%S}_{job.id}"
    props = _run_properties(run_id, job.analysis_level, job.id, job.name, ws, we, clusters, max_samples)
    emitted = we + timedelta(seconds=int(rng.integers(180, 540)), microseconds=int(rng.integers(0, US)))
    ev_uuid = _uuid4s(rng, 1)[0]
    summary, truth = _run_records(run_id, job, d, ws, we, emitted, ev_uuid, n, metrics_mode, cluster_truth,
                                  titles, clusters, true_metrics)
    truth["rewording"] = rewording
    return _RunResult(props, summary, truth, {v: k for k, v in cid_of_ctopic.items()}, shares,
                      by_ctopic_metrics, sample, label)


_EVAL_JOB = ("Default - evaluations", "evaluation")


def _eval_job(seed: int, start_us: int) -> Job:
    """The evaluation-level job PostHog creates by default (own random stream: other jobs keep their ids)."""
    rng = np.random.default_rng([seed, 4])
    created_us = start_us - 12 * DAY_US + int(rng.integers(9 * HOUR_US, 18 * HOUR_US))
    updated_us = created_us + int(rng.integers(0, 5 * DAY_US))
    return Job(_uuid7(created_us // 1000, rng), _EVAL_JOB[0], _EVAL_JOB[1], [], True, _drf_time(_dt(created_us)),
               _drf_time(_dt(updated_us)))


def _make_eval_run(plan: _Plan, job: Job, j: int, d: int, ev: Evaluations, ts: list[str], team_id: int,
                   seed: int, max_samples: int, min_items: int) -> tuple[dict[str, Any], dict[str, Any],
                                                                        dict[str, Any]] | None:
    """One `$ai_evaluation_clusters` run: (properties, summary, truth), or None below the minimum."""
    rng = np.random.default_rng([seed, 12, j, d])
    base = plan.run_day_us(d) + RUN_HOUR[0] * HOUR_US + RUN_HOUR[1] * 60 * US
    we_us = base + j * 90 * US + int(rng.integers(0, 60 * US))
    ws_us = we_us - LOOKBACK_DAYS * DAY_US
    lo, hi = np.searchsorted(ev.t, [ws_us, we_us], side="left").tolist()
    if hi - lo < min_items:
        return None
    n = min(max_samples, hi - lo)
    sample = np.sort(rng.choice(np.arange(lo, hi), size=n, replace=False))
    keys = [ev.cluster_key[i] for i in sample.tolist()]
    counts = Counter(keys)
    min_size = max(5, int(MIN_CLUSTER_FRACTION * n))
    noise = (rng.random(n) < rng.uniform(0.015, 0.045)) | np.array([counts[k] < min_size for k in keys])
    present = [k for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_size]
    cid_of = {k: i for i, k in enumerate(present)}
    label = np.array([-1 if noise[i] else cid_of[k] for i, k in enumerate(keys)], dtype=np.int64)
    metrics_mode = _metrics_mode(rng)
    clusters: list[dict[str, Any]] = []
    truth_clusters: dict[str, str] = {}
    titles: dict[str, str] = {}
    true_metrics: dict[str, Any] = {}
    sl = sample.tolist()
    for cid in [*range(len(present)), -1]:
        members = np.flatnonzero(label == cid)
        if cid == -1 and len(members) == 0:
            continue
        rows = sample[members]
        m = evaluation_metrics(ev, rows)
        if cid >= 0:
            title, desc = cluster_titles(present[cid])
            truth_clusters[str(cid)] = present[cid]
        else:
            title, desc = NOISE_TITLE, NOISE_DESCRIPTION
        titles[str(cid)] = title
        true_metrics[str(cid)] = m
        ml = members.tolist()
        item_keys = [ev.key[sl[i]] for i in ml]
        stamps = [_iso_from_ts(ts[sl[i]]) for i in ml]
        clusters.append(_cluster_dict(rng, cid, title, desc, item_keys, [ev.trace_id[sl[i]] for i in ml],
                                      [ev.target[sl[i]] for i in ml], stamps,
                                      m if metrics_mode == "present" else None, metrics_mode != "absent"))
    we, ws = _dt(we_us), _dt(ws_us)
    run_id = f"{team_id}_evaluation_{we:%Y%m%d_%H%M%S}_{job.id}"
    props = _run_properties(run_id, "evaluation", job.id, job.name, ws, we, clusters, max_samples)
    emitted = we + timedelta(seconds=int(rng.integers(180, 540)), microseconds=int(rng.integers(0, US)))
    ev_uuid = _uuid4s(rng, 1)[0]
    summary, truth = _run_records(run_id, job, d, ws, we, emitted, ev_uuid, n, metrics_mode, truth_clusters,
                                  titles, clusters, true_metrics)
    return props, summary, truth


def _eval_change_truth(plan: _Plan, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per evaluation change: when it takes effect, the cluster it is about, and that cluster's pass rate
    run by run (the drop builds up as the seven-day window fills with judged-after-the-change items)."""
    out: list[dict[str, Any]] = []
    for ch, day, eff in _eval_changes(plan):
        key = (f"{ch.judge}|{ch.app}" if ch.kind == "pass_rate_drop" else f"failure:{ch.judge}:{ch.title}")
        series: dict[str, float | None] = {}
        appears = None
        below = None  # the first run from the change on where the monitor's default pass-rate limit is crossed
        for r in runs:
            cid = next((c for c, k in r["clusters"].items() if k == key), None)
            m = r["metrics"][cid] if cid is not None else None
            series[r["run_id"]] = m["pass_rate"] if m is not None else None
            if cid is not None and appears is None and r["day"] >= day:
                appears = r["run_id"]
            if (m is not None and below is None and r["day"] >= day and m["item_count"] >= 20
                    and m["pass_rate"] is not None and m["pass_rate"] < DEFAULT_THRESHOLDS["pass_rate_min"]):
                below = r["run_id"]
        firsts = [r["run_id"] for r in runs if r["day"] >= day]
        out.append({"kind": ch.kind, "judge": ch.judge, "app": ch.app, "topic": ch.topic, "day": day,
                    "effective_at": _dt(eff).isoformat(), "cluster_key": key, "note": ch.note,
                    "first_run_id": firsts[0] if firsts else None, "pass_rate_by_run": series,
                    "pass_rate_alert_run_id": below,
                    **({"cluster_title": ch.title, "appears_run_id": appears} if ch.kind == "failure_mode" else {}),
                    **({"pass_rate": ch.pass_rate} if ch.kind == "pass_rate_drop" else {})})
    return out


def _eval_changes(plan: _Plan) -> list[tuple[EvalChange, int, int]]:
    out = []
    for ch in plan.scenario.eval_changes:
        day = _scaled_day(ch.day, plan.days)
        if 1 <= day < plan.days:
            eff = plan.first_run_day_us + (day - 1) * DAY_US + CHANGE_HOUR[0] * HOUR_US + CHANGE_HOUR[1] * 60 * US
            out.append((ch, day, eff))
    return out


def _lineage(plan: _Plan) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Split parent -> children and merge source -> target, for telling transitions apart."""
    splits: dict[str, list[str]] = {}
    merges: dict[str, str] = {}
    for ch, _, _ in plan.changes:
        if ch.kind == "split":
            splits[ch.topic] = list(ch.topics)
        elif ch.kind == "merge":
            for src in ch.topics:
                merges[src] = ch.topic
    return splits, merges


def _transition(prev: _RunResult, new: _RunResult, splits: dict[str, list[str]],
                merges: dict[str, str]) -> dict[str, Any]:
    """What the diff of two consecutive runs should find, from the topics behind their clusters."""
    p = {TOPIC_IDS[c]: cid for cid, c in prev.ctopic_of_cluster.items()}
    q = {TOPIC_IDS[c]: cid for cid, c in new.ctopic_of_cluster.items()}
    links: list[list[int]] = []
    split_out: list[dict[str, Any]] = []
    merge_out: list[dict[str, Any]] = []
    used_p: set[str] = set()
    used_q: set[str] = set()
    for topic, pc in p.items():
        if topic in q:
            links.append([pc, q[topic]])
            used_p.add(topic)
            used_q.add(topic)
    for parent, children in splits.items():
        if parent in p and parent not in q:
            kids = [c for c in children if c in q and c not in used_q]
            if len(kids) >= 2:
                split_out.append({"prev": p[parent], "new": sorted(q[c] for c in kids)})
            elif len(kids) == 1:
                links.append([p[parent], q[kids[0]]])
            if kids:
                used_p.add(parent)
                used_q.update(kids)
    targets = set(merges.values())
    for target in targets:
        if target in q and target not in p:
            srcs = [s for s, t in merges.items() if t == target and s in p and s not in used_p]
            if len(srcs) >= 2:
                merge_out.append({"prev": sorted(p[s] for s in srcs), "new": q[target]})
            elif len(srcs) == 1:
                links.append([p[srcs[0]], q[target]])
            if srcs:
                used_q.add(target)
                used_p.update(srcs)
    return {
        "job_id": new.truth["job_id"], "level": new.truth["level"],
        "prev_run_id": prev.truth["run_id"], "new_run_id": new.truth["run_id"],
        "links": sorted(links),
        "new": sorted(cid for t, cid in q.items() if t not in used_q),
        "disappeared": sorted(cid for t, cid in p.items() if t not in used_p),
        "splits": split_out, "merges": merge_out,
    }


def _crossings(prev: _RunResult, new: _RunResult, tr: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the monitor's default thresholds are crossed between two runs, judged on the true metrics.

    Follows monitor.rules.thresholds: rates and averages only for clusters of 20+ items; cost and error
    rises and share shifts against the linked cluster of the previous run; new and disappeared clusters
    from 2% of the run. Listed for every run pair, so a test can tell an expected alert from noise.
    """
    th = DEFAULT_THRESHOLDS
    out: list[dict[str, Any]] = []
    ptopic = prev.truth["clusters"]
    ntopic = new.truth["clusters"]
    pmet, nmet = prev.truth["metrics"], new.truth["metrics"]
    psize, nsize = prev.truth["sizes"], new.truth["sizes"]
    pn, nn = prev.truth["items"], new.truth["items"]
    run_id = new.truth["run_id"]

    def add(kind: str, cid: int | None, topic: str, value: float | None, previous: float | None) -> None:
        out.append({"run_id": run_id, "job_id": new.truth["job_id"], "level": new.truth["level"],
                    "day": new.truth["day"], "kind": kind, "cluster_id": cid, "topic": topic,
                    "value": value, "previous": previous})

    linked = {n: p for p, n in tr["links"]}
    for key, topic in ntopic.items():
        cid = int(key)
        m = nmet[key]
        pm = pmet.get(str(linked[cid])) if cid in linked else None
        big = m["item_count"] >= 20
        if big and pm and m["avg_cost"] and pm["avg_cost"] and m["avg_cost"] > pm["avg_cost"] * (
                1 + th["avg_cost_increase"]):
            add("cost_spike", cid, topic, m["avg_cost"], pm["avg_cost"])
        if big and m["error_rate"] is not None and m["error_rate"] >= th["error_rate"]:
            add("error_rate", cid, topic, m["error_rate"], pm["error_rate"] if pm else None)
        elif (big and pm and m["error_rate"] is not None and pm["error_rate"] is not None
              and (m["error_rate"] - pm["error_rate"]) * 100 >= th["error_rate_increase_pp"]):
            add("error_spike", cid, topic, m["error_rate"], pm["error_rate"])
        if cid in linked:
            share, pshare = nsize[key] / nn, psize[str(linked[cid])] / pn
            if abs(share - pshare) * 100 >= th["share_shift_pp"]:
                add("share_shift", cid, topic, share, pshare)
    for cid in tr["new"]:
        share = nsize[str(cid)] / nn
        if share >= th["new_cluster_min_share"]:
            add("new_cluster", cid, ntopic[str(cid)], share, None)
    for cid in tr["disappeared"]:
        share = psize[str(cid)] / pn
        if share >= th["disappeared_min_share"]:
            add("disappeared", None, ptopic[str(cid)], 0.0, share)
    for sp in tr["splits"]:
        add("split", int(sp["new"][0]), ptopic[str(sp["prev"])], None, None)
    for mg in tr["merges"]:
        add("merge", int(mg["new"]), ntopic[str(mg["new"])], None, None)
    return out


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def generate(scenario: str = "drift", *, seed: int = 7, days: int = 14, team_id: int = 1,
             end: datetime | None = None, max_samples: int = 1500, scale: float = 1.0,
             evaluations: bool | None = None, item_overlap: float | None = None,
             embeddings: bool = True) -> Dataset:
    """Generate one team's traffic and clustering runs for a scenario (see scenarios.SCENARIOS).

    Traffic covers `days + 7` days before `end` (default: today's midnight UTC), so the first of the
    `days` daily runs has a full seven-day window. `scale` multiplies the volume; the minimum number of
    items for a run scales with it (1000 at scale 1, never below 20), as PostHog's per-team override
    would. The same arguments always give the same dataset. `evaluations`: also `$ai_evaluation` events and
    the evaluation job's runs; None (default) turns them on for scenarios with evaluation changes (drift).

    `truth` holds: the scenario and its parameters; `runs` (per run: its clusters as {cluster_id: topic},
    sizes, titles, and the true metrics of every cluster even where the event's metrics are null);
    `transitions` (per consecutive pair of runs of one job: links [prev, new] of the same topic, new and
    disappeared cluster ids, splits {prev, new: [...]}, merges {prev: [...], new}); and `events`, one
    per scenario change: kind, topic, day, effective_at, first_run_ids (the first run of each job that
    sees it), expect_alert / expect_alerts (the alert kinds) and alert_run_ids (per job, the first run
    where the monitor's default thresholds are crossed for it, from the true metrics; None if never);
    and `crossings`, every default-threshold crossing of every run pair, including the incidental ones
    sampling noise causes (small clusters going from 0 to 5% errors), so a test can tell a missed alert
    from an expected false positive.
    """
    try:
        scen = SCENARIOS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}") from None
    if days < 1:
        raise ValueError("days must be at least 1")
    if scale <= 0:
        raise ValueError("scale must be positive")
    import time

    t_start = time.perf_counter()
    if end is None:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = end.astimezone(UTC) if end.tzinfo else end.replace(tzinfo=UTC)
    plan = _plan(scen, days, end)

    sink = _EventSink()
    trace_parts: list[_Items] = []
    gen_parts: list[_Items] = []
    for topic_id in TOPIC_IDS:
        if topic_id not in plan.traffic:
            continue
        got = _topic_traffic(plan, TOPICS[topic_id], seed, scale, sink)
        if got is not None:
            trace_parts.append(got[0])
            gen_parts.append(got[1])
    traces = _Items.concat(trace_parts)
    gens = _Items.concat(gen_parts)
    ts = _ts_strings(np.array(sink.ts, dtype=np.int64))
    t_traffic = time.perf_counter()

    jobs = _jobs(seed, plan.start_us)
    min_items = max(20, min(1000, int(1000 * scale)))
    run_events: list[EventRow] = []
    summaries: list[dict[str, Any]] = []
    run_truth: list[dict[str, Any]] = []
    transitions: list[dict[str, Any]] = []
    crossings: list[dict[str, Any]] = []
    splits, merges = _lineage(plan)
    series_by_job: dict[str, list[_RunResult]] = {}
    clustered: list[tuple[Job, _RunResult]] = []
    for j, job in enumerate(jobs):
        if not job.enabled:
            continue
        apps = job.apps()
        app_ok = np.array([a in apps for a in APP_IDS])
        items = traces if job.analysis_level == "trace" else gens
        series: list[_RunResult] = []
        for d in range(days):
            res = _make_run(plan, job, j, d, items, app_ok, ts, team_id, seed, max_samples, min_items,
                            series[-1].sample if series else None, item_overlap)
            if res is None:
                continue
            if series:
                tr = _transition(series[-1], res, splits, merges)
                transitions.append(tr)
                crossings.extend(_crossings(series[-1], res, tr))
            series.append(res)
            clustered.append((job, res))
            s = res.summary
            run_events.append(run_event_row(res.props, team_id=team_id, emitted_at=s["emitted_at"],
                                            event_uuid=s["event_uuid"]))
            summaries.append(s)
            run_truth.append(res.truth)
        series_by_job[job.id] = series

    table = None
    if embeddings:
        table, summary_events = _embeddings(clustered, traces, gens, ts, seed, team_id)
        run_events.extend(summary_events)

    change_truth: list[dict[str, Any]] = []
    for ch, day, eff in plan.changes:
        kinds = EXPECTED_ALERTS[ch.kind]
        first_ids: list[str] = []
        alert_ids: list[str | None] = []
        for job in jobs:
            if not job.enabled or TOPICS[ch.topic].app not in job.apps():
                continue
            firsts = [r for r in series_by_job[job.id] if r.truth["day"] >= day]
            if not firsts:
                continue
            first_ids.append(str(firsts[0].truth["run_id"]))
            hits = [c for c in crossings if c["job_id"] == job.id and c["day"] >= day
                    and c["kind"] in kinds and c["topic"] == ch.topic]
            alert_ids.append(str(hits[0]["run_id"]) if hits else None)
        change_truth.append({
            "kind": ch.kind, "topic": ch.topic, "topics": list(ch.topics), "day": day,
            "effective_at": _dt(eff).isoformat(), "note": ch.note, "first_run_ids": first_ids,
            "expect_alert": kinds[0], "expect_alerts": list(kinds), "alert_run_ids": alert_ids,
            **({"model": ch.model} if ch.model else {}),
            **({"error_rate": ch.error_rate} if ch.error_rate is not None else {}),
        })

    eval_truth: list[dict[str, Any]] = []
    if evaluations is None:
        evaluations = bool(scen.eval_changes)
    if evaluations:
        ev = make_evaluations(
            seed=seed, team_id=team_id, gen_t=gens.t, gen_topic=gens.topic, gen_app=gens.app, gen_key=gens.key,
            gen_trace=gens.trace_id, gen_cost=gens.cost, gen_latency=gens.latency, gen_tokens=gens.tokens,
            gen_errors=gens.errors, topic_ids=TOPIC_IDS, changes=[(c, e) for c, _, e in _eval_changes(plan)],
            string_share=STRING_SHARE, uuid4s=_uuid4s, uuid7=_uuid7,
            evaluation_ids={jd.name: _uuid7(plan.start_us // 1000 - i, np.random.default_rng([seed, 5, i]))
                            for i, jd in enumerate(JUDGES)})
        ev_ts = _ts_strings(np.array([e[4] for e in ev.events], dtype=np.int64))
        eval_job = _eval_job(seed, plan.start_us)
        jobs.append(eval_job)
        eval_runs: list[dict[str, Any]] = []
        for d in range(days):
            made = _make_eval_run(plan, eval_job, len(jobs) - 1, d, ev, ev_ts, team_id, seed, max_samples,
                                 min_items)
            if made is None:
                continue
            props, summ, rtruth = made
            run_events.append(run_event_row(props, team_id=team_id, emitted_at=summ["emitted_at"],
                                            event_uuid=summ["event_uuid"]))
            summaries.append(summ)
            run_truth.append(rtruth)
            eval_runs.append(rtruth)
        eval_truth = _eval_change_truth(plan, eval_runs)
        sink.uuid.extend(e[0] for e in ev.events)
        sink.event.extend(e[1] for e in ev.events)
        sink.distinct.extend(e[2] for e in ev.events)
        sink.props.extend(e[3] for e in ev.events)
        ts = ts + ev_ts

    events: list[EventRow] = list(zip(sink.uuid, sink.event, sink.distinct, sink.props, ts,
                                      [team_id] * len(ts), strict=True))
    events.extend(run_events)
    truth: dict[str, Any] = {
        "scenario": scen.name, "description": scen.description, "seed": seed, "team_id": team_id,
        "days": days, "scale": scale, "max_samples": max_samples, "min_items": min_items,
        "end": end.isoformat(), "quiet": scen.quiet, "heavy_rewording": scen.heavy_rewording,
        "thresholds": dict(DEFAULT_THRESHOLDS),
        "jobs": [{"id": jb.id, "name": jb.name, "level": jb.analysis_level, "enabled": jb.enabled,
                  "apps": sorted(jb.apps())} for jb in jobs],
        "topics": {t.id: {"title": t.title, "app": t.app} for t in TOPICS.values()},
        "runs": run_truth,
        "transitions": transitions,
        "events": change_truth,
        "evaluation_events": eval_truth,
        "crossings": crossings,
        "counts": {"events": len(events), "traces": len(traces.t), "generations": len(gens.t),
                   "runs": len(summaries)},
    }
    t_done = time.perf_counter()
    return Dataset(team_id=team_id, jobs=jobs, events=events, runs=summaries, truth=truth, scenario=scen.name,
                   seed=seed, embeddings=table, timings={"traffic_s": t_traffic - t_start, "runs_s": t_done - t_traffic,
                                       "total_s": t_done - t_start})


def with_embedded_metrics(ds: Dataset, present: bool) -> Dataset:
    """The same dataset with every run's clusters carrying PostHog's `metrics` (`present`, from the truth:
    none null or absent) or none at all (as PostHog's best-effort activity can leave them): for comparing
    the monitor with and without them on the same runs."""
    truth = {r["run_id"]: r["metrics"] for r in ds.truth["runs"]}
    events: list[EventRow] = []
    for e in ds.events:
        if e[1].endswith("_clusters"):
            props = json.loads(e[3])
            for c in props["$ai_clusters"]:
                if present:
                    c["metrics"] = truth[props["$ai_clustering_run_id"]][str(c["cluster_id"])]
                else:
                    c.pop("metrics", None)
            e = (e[0], e[1], e[2], json.dumps(props), e[4], e[5])
        events.append(e)
    return dataclasses.replace(ds, events=events)


def _catalogue_directions() -> dict[str, Any]:
    """Every topic's direction: splits and merges are read from all scenarios, so a topic points the same
    way whatever scenario is generated (py_data and py_web near py_codegen, account_access between
    password_login and account_lockout)."""
    splits: dict[str, list[str]] = {}
    merges: dict[str, list[str]] = {}
    for sc in SCENARIOS.values():
        for ch in sc.changes:
            if ch.kind == "split":
                splits[ch.topic] = list(ch.topics)
            elif ch.kind == "merge":
                merges[ch.topic] = list(ch.topics)
    return emb.topic_directions({t.id: t.app for t in TOPICS.values()}, splits, merges)


def _embeddings(clustered: Sequence[tuple[Job, _RunResult]], traces: _Items, gens: _Items, ts: list[str],
                seed: int, team_id: int) -> tuple[EmbeddingTable, list[EventRow]]:
    """One `raw_document_embeddings` row and one summary event per (job, clustered item), as PostHog's
    summarisation writes them before clustering: rendering is the batch run id `{team}_{time}_{job_id}`
    (trace_clustering/data.py filters on its `_{job_id}` suffix), the row's timestamp the item's own."""
    dirs = _catalogue_directions()
    dmat = np.stack([dirs[t] for t in TOPIC_IDS])
    vec_of: dict[tuple[str, int], int] = {}
    cols: dict[str, list[str]] = {k: [] for k in ("document_id", "document_type", "rendering", "timestamp",
                                                  "inserted_at", "content", "metadata")}
    rows: list[tuple[str, int]] = []  # (level, item row) per table row
    events: list[EventRow] = []
    seen: set[tuple[str, str]] = set()
    for job, res in clustered:
        level = job.analysis_level
        items = traces if level == "trace" else gens
        we = datetime.fromisoformat(str(res.truth["window_end"]))
        batch = f"{team_id}_{we:%Y-%m-%dT%H:%M:%S}_{job.id}"
        inserted = res.summary["emitted_at"] - timedelta(minutes=2)
        ins = _ts_strings(np.array([_us(inserted)], dtype=np.int64))[0]
        dtype = emb.DOCUMENT_TYPES[level]
        for i in res.sample.tolist():
            key = items.key[i]
            if (job.id, key) in seen:
                continue
            seen.add((job.id, key))
            topic = TOPICS[TOPIC_IDS[int(items.topic[i])]]
            vec_of.setdefault((level, i), len(vec_of))
            rows.append((level, i))
            cols["document_id"].append(key)
            cols["document_type"].append(dtype)
            cols["rendering"].append(batch)
            cols["timestamp"].append(ts[int(items.ev[i])])
            cols["inserted_at"].append(ins)
            cols["content"].append(f"{topic.title}\n{topic.bullets[0]}")
            meta = {"trace_id": items.trace_id[i], "batch_run_id": batch}
            cols["metadata"].append(msgspec.json.encode(meta).decode())
            ids = (f'"$ai_generation_id":"{key}","$ai_trace_id":"{items.trace_id[i]}"' if level == "generation"
                   else f'"$ai_trace_id":"{key}"')
            props = msgspec.json.encode({
                "$ai_summary_title": topic.title, "$ai_summary_bullets": "\n".join(topic.bullets[:2]),
                "$ai_summary_flow_diagram": "", "$ai_summary_interesting_notes": "",
                "$ai_clustering_job_id": job.id, "$ai_batch_run_id": batch}).decode()
            events.append(("", f"$ai_{level}_summary", f"llma_summary_{team_id}", "{" + ids + "," + props[1:], ins,
                           team_id))
    # One vector per item (a trace clustered by two jobs was summarised twice, alike): drawn in a fixed
    # order from one stream, so the same arguments give the same vectors.
    rng = np.random.default_rng([seed, 31])
    order = sorted(vec_of, key=vec_of.__getitem__)
    topic_rows = np.array([int((traces if lv == "trace" else gens).topic[i]) for lv, i in order], dtype=np.int64)
    vecs = emb.item_vectors(dmat[topic_rows] if len(order) else np.zeros((0, emb.DIM)), rng)
    vectors = vecs[[vec_of[r] for r in rows]] if rows else np.zeros((0, emb.DIM), dtype=np.float32)
    uuids = _uuid4s(np.random.default_rng([seed, 32]), len(events))
    events = [(u, *e[1:]) for u, e in zip(uuids, events, strict=True)]
    return EmbeddingTable(cols["document_id"], cols["document_type"], cols["rendering"], cols["timestamp"],
                          cols["inserted_at"], cols["content"], cols["metadata"], vectors), events


def iter_ai_events(ds: Dataset) -> Iterable[EventRow]:
    """The dataset's AI events (everything but the run events), e.g. for tests that recompute metrics."""
    return (e for e in ds.events if not e[1].endswith("_clusters"))
