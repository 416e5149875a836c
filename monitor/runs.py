"""Typed clustering runs, and parsing PostHog's run payloads into them.

The run payload is the largest thing the monitor reads (up to 45 MB for a 200k-item backfill), so it is
decoded with msgspec straight into the few fields the monitor uses: decoding into dicts first costs 2-3x the
time and 3-4x the memory (../shared/reference/performance.md). Everything here is pure: bytes or dicts in,
frozen values out, and a bad payload raises `RunParseError` naming the run and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import msgspec

NOISE_CLUSTER_ID = -1
# The largest count or id a run may carry: exact as a float and as a 64-bit integer in the state store. A
# larger one is no count PostHog could have written (a size of 10^30): the run is malformed.
MAX_COUNT = 2**53


class RunParseError(ValueError):
    """A run payload the monitor cannot use; the message names the run id and the field."""

    def __init__(self, run_id: str, field: str, problem: str) -> None:
        super().__init__(f"run {run_id!r}: field {field!r}: {problem}")
        self.run_id = run_id
        self.field = field
        self.problem = problem


class Item(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One clustered item (a trace, or a generation at generation level).

    Only what the monitor reads is kept (the payload also carries distance_to_centroid, x, y, timestamp
    and generation_id): a 200k-item run is 200k of these, and each dropped field is 30-80 bytes an item
    and its parse. Not tracked by the garbage collector (gc=False): it holds only an int and a string, so
    it can be in no reference cycle, and 200k tracked objects made every collection during a big run's
    processing scan them all.
    """

    rank: int = 0
    trace_id: str | None = None


# The items of a previous run read back from the store: keys only (the diff's item overlap needs nothing
# else), all pointing at this one placeholder.
KEY_ONLY = Item()


class PayloadMetrics(msgspec.Struct, frozen=True, omit_defaults=True):
    """The `metrics` PostHog itself attaches to a cluster (absent or null on older runs). Best effort: the
    monitor uses them where they suffice and measures the rest itself (monitor/stages/measure.py), so a
    value of the wrong kind ("NaN", Infinity, a string for a number) is read as missing rather than failing
    the run (`payload_metrics`)."""

    avg_cost: float | None = None
    avg_latency: float | None = None
    avg_tokens: float | None = None
    total_cost: float | None = None
    error_rate: float | None = None
    error_count: int | None = None
    item_count: int | None = None
    # Evaluation level only (evaluation_clustering/aggregates.py): null elsewhere.
    pass_rate: float | None = None
    na_rate: float | None = None
    dominant_evaluation_name: str | None = None
    dominant_runtime: str | None = None
    avg_judge_cost: float | None = None


class Cluster(msgspec.Struct, frozen=True, omit_defaults=True):
    """One cluster of a run. `traces` maps item key -> item, as PostHog stores it."""

    cluster_id: int
    size: int = 0
    title: str = ""
    description: str = ""
    traces: dict[str, Item] = msgspec.field(default_factory=dict)
    centroid_x: float | None = None
    centroid_y: float | None = None
    metrics: PayloadMetrics | None = None

    @property
    def is_noise(self) -> bool:
        return self.cluster_id == NOISE_CLUSTER_ID

    def top_items(self, n: int = 5) -> list[str]:
        """Item keys by rank (rank 0 first): the most central items, or the most anomalous for noise."""
        return [k for k, _ in sorted(self.traces.items(), key=lambda kv: kv[1].rank)[:n]]

    def top_trace_ids(self, n: int = 5) -> list[str]:
        """Trace ids of the top items; at generation level the key is the generation, not the trace."""
        out: list[str] = []
        # Distinct: at generation level several generations of one trace are often among the top items.
        for key, item in sorted(self.traces.items(), key=lambda kv: kv[1].rank):
            tid = item.trace_id or key
            if tid not in out:
                out.append(tid)
                if len(out) >= n:
                    break
        return out


class _WireCluster(msgspec.Struct, omit_defaults=True):
    """Lenient wire shape: LLM-written fields can be null, and sizes can be missing."""

    cluster_id: int
    size: int | None = None
    title: str | None = None
    description: str | None = None
    traces: dict[str, Item] | None = None
    centroid_x: float | None = None
    centroid_y: float | None = None
    metrics: dict[str, Any] | None = None


_METRIC_INTS = frozenset({"error_count", "item_count"})


# The evaluation level's names (the dominant evaluation and its runtime): text, not numbers.
_METRIC_TEXTS = frozenset({"dominant_evaluation_name", "dominant_runtime"})


def payload_metrics(raw: Mapping[str, Any] | None) -> PayloadMetrics | None:
    """A cluster's `metrics` with every value that is not a finite number dropped (read as missing)."""
    if raw is None:
        return None
    kept: dict[str, Any] = {}
    for name in PayloadMetrics.__struct_fields__:
        v = raw.get(name)
        if name in _METRIC_TEXTS:
            if isinstance(v, str) and v:
                kept[name] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        if name in _METRIC_INTS:
            if v != int(v) or abs(v) > 2**63 - 1:
                continue
            v = int(v)
        kept[name] = v
    return PayloadMetrics(**kept)


_clusters_decoder = msgspec.json.Decoder(list[_WireCluster])
_cluster_decoder = msgspec.json.Decoder(_WireCluster)


class Run(msgspec.Struct, frozen=True):
    """One clustering run: the unit the monitor discovers, diffs, measures and alerts on."""

    run_id: str
    level: str
    job_id: str
    job_name: str
    window_start: datetime
    window_end: datetime
    total_items: int
    clusters: tuple[Cluster, ...]
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: datetime | None = None

    @property
    def job_key(self) -> tuple[str, str]:
        """Runs are compared only within one job and level. Legacy runs have no job id: key on the name."""
        return (self.job_id or f"name:{self.job_name}", self.level)

    @property
    def clustered_size(self) -> int:
        return sum(c.size for c in self.clusters)

    def cluster(self, cluster_id: int) -> Cluster | None:
        for c in self.clusters:
            if c.cluster_id == cluster_id:
                return c
        return None

    def share(self, cluster_id: int) -> float:
        """Share of the run's items in one cluster, in [0, 1]."""
        total = self.clustered_size
        c = self.cluster(cluster_id)
        if c is None or total <= 0:
            return 0.0
        return c.size / total

    @property
    def noise_share(self) -> float:
        return self.share(NOISE_CLUSTER_ID)


def parse_time(run_id: str, field: str, value: Any, *, naive: tzinfo | None = UTC) -> datetime:
    """An aware datetime from an ISO text ('Z', an offset, or none).

    `naive` is the contract for text without an offset: UTC (the default) where the writer is Python in
    UTC (PostHog's window ends, written with isoformat() of UTC datetimes, and run files); None where the
    value must carry its zone, because HogQL renders a bare `timestamp` in the project's timezone: the
    times the monitor's own queries return are converted to UTC and marked `Z` (queries._EMITTED_AT), and
    a naive one there means a query that lost it, an error rather than a shift by the project's offset."""
    if isinstance(value, datetime):
        if value.tzinfo is None and naive is None:
            raise RunParseError(run_id, field, f"no timezone offset in {value!r}")
        return value if value.tzinfo else value.replace(tzinfo=naive)
    if value is None or value == "":
        raise RunParseError(run_id, field, "missing")
    if not isinstance(value, str):
        raise RunParseError(run_id, field, f"expected an ISO timestamp, got {value!r}")
    text = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise RunParseError(run_id, field, f"not a timestamp: {value!r}") from exc
    if dt.tzinfo is None and naive is None:
        raise RunParseError(run_id, field, f"no timezone offset in {value!r}: expected UTC marked 'Z'")
    return dt if dt.tzinfo else dt.replace(tzinfo=naive)


def parse_clusters(run_id: str, raw: bytes | str | list[Any] | None) -> tuple[Cluster, ...]:
    """`$ai_clusters` as JSON text of the array, as a list of one JSON text per cluster (the run query's
    JSONExtractArrayRaw), or as a native array (event export)."""
    if raw is None:
        raise RunParseError(run_id, "$ai_clusters", "missing")
    try:
        if isinstance(raw, (bytes, str)):
            wire = _clusters_decoder.decode(raw)
        else:
            wire = [_cluster_decoder.decode(c) if isinstance(c, (bytes, str)) else msgspec.convert(c, _WireCluster)
                    for c in raw]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise RunParseError(run_id, "$ai_clusters", str(exc)) from exc
    out: list[Cluster] = []
    seen: set[int] = set()
    for i, w in enumerate(wire):
        for name, value in (("cluster_id", w.cluster_id), ("size", w.size)):
            if value is not None and abs(value) > MAX_COUNT:
                raise RunParseError(run_id, "$ai_clusters", f"{name} {value:.3g} is out of range - at `$[{i}].{name}`")
        if w.cluster_id in seen:
            raise RunParseError(run_id, "$ai_clusters", f"cluster_id {w.cluster_id} appears twice")
        seen.add(w.cluster_id)
        traces = w.traces or {}
        size = w.size if w.size is not None and w.size >= 0 else len(traces)
        title = (w.title or "").strip() or (
            "Outliers" if w.cluster_id == NOISE_CLUSTER_ID else f"Cluster {w.cluster_id}"
        )
        out.append(
            Cluster(
                cluster_id=w.cluster_id,
                size=size,
                title=title,
                description=w.description or "",
                traces=traces,
                centroid_x=w.centroid_x,
                centroid_y=w.centroid_y,
                metrics=payload_metrics(w.metrics),
            )
        )
    return tuple(out)


def _int(run_id: str, field: str, value: Any, default: int | None = None) -> int:
    if value is None or value == "":
        if default is not None:
            return default
        raise RunParseError(run_id, field, "missing")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise RunParseError(run_id, field, f"expected an integer, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RunParseError(run_id, field, f"expected an integer, got {str(value)[:80]!r}") from exc
    if abs(n) > MAX_COUNT:
        raise RunParseError(run_id, field, f"{n:.3g} is out of range")
    return n


def _params(run_id: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, (str, bytes)):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            raise RunParseError(run_id, "$ai_clustering_params", str(exc)) from exc
    if value is None:  # JSON null: no parameters recorded
        return {}
    if not isinstance(value, dict):
        raise RunParseError(run_id, "$ai_clustering_params", f"expected an object, got {type(value).__name__}")
    return value


def run_from_properties(props: Mapping[str, Any], timestamp: Any = None) -> Run:
    """Build a Run from a run event's properties as PostHog stores them: the one parser of a run event
    (the daemon's run query, `diff` and `replay` files and the local server's tests all come through
    here). Bad input raises `RunParseError` naming the run id and the field; nothing is guessed."""
    run_id = props.get("$ai_clustering_run_id")
    if not isinstance(run_id, str) or not run_id:
        raise RunParseError(str(run_id), "$ai_clustering_run_id", "missing or not a string")
    level = props.get("$ai_clustering_level") or _level_from_run_id(run_id)
    clusters = parse_clusters(run_id, props.get("$ai_clusters"))
    return Run(
        run_id=run_id,
        level=str(level),
        job_id=str(props.get("$ai_clustering_job_id") or ""),
        job_name=str(props.get("$ai_clustering_job_name") or ""),
        window_start=parse_time(run_id, "$ai_window_start", props.get("$ai_window_start")),
        window_end=parse_time(run_id, "$ai_window_end", props.get("$ai_window_end")),
        total_items=_int(
            run_id, "$ai_total_items_analyzed", props.get("$ai_total_items_analyzed"),
            default=sum(c.size for c in clusters),
        ),
        clusters=clusters,
        params=_params(run_id, props.get("$ai_clustering_params")),
        timestamp=parse_time(run_id, "timestamp", timestamp) if timestamp else None,
    )


def _level_from_run_id(run_id: str) -> str:
    parts = run_id.split("_")
    if len(parts) >= 2 and parts[1] in ("trace", "generation", "evaluation"):
        return parts[1]
    raise RunParseError(run_id, "$ai_clustering_level", "missing, and the run id does not name a level")


class _Envelope(msgspec.Struct):
    # msgspec.Raw cannot sit in a union with None: an empty Raw stands for "absent".
    properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    timestamp: Any = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_raw_props_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def load_run_file(data: bytes) -> Run:
    """A file for `cluster-monitor diff`: a run event's properties, or a whole event holding them.

    Decoded lazily (each property kept as raw JSON until needed) so that a 200k-item `$ai_clusters`
    array is parsed once, straight into typed clusters, instead of into dicts first: half the time
    and a third of the memory of a generic decode.
    """
    try:
        env = _envelope_decoder.decode(data)
        wrapped = len(env.properties) > 0
        raw = _raw_props_decoder.decode(env.properties if wrapped else data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RunParseError("?", "(file)", f"expected a JSON object: {exc}") from exc
    props: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "$ai_clusters":
            continue
        props[key] = msgspec.json.decode(value)
    clusters_raw = raw.get("$ai_clusters")
    if clusters_raw is not None:
        text = bytes(clusters_raw)
        # Stored as a JSON string holding the array (HogQL's JSONExtractRaw of a string cell), or as the array.
        props["$ai_clusters"] = msgspec.json.decode(text) if text[:1] == b'"' else text
    timestamp = env.timestamp if wrapped else props.get("timestamp")
    return run_from_properties(props, timestamp)


# --- the stored form of a processed run ------------------------------------------------------------------
# What the next run of the job diffs against, without fetching this one again: per cluster its id, size,
# title, description and item keys. Only the keys of the items: their ranks and trace ids serve alerts on
# the run's own clusters, never on the previous run's. At 200k items this is a sixth of the full run
# encoded, and decodes into a third of the memory.

DIGEST_FORMAT = "run-digest/1"
# Payloads written before the digest are a whole `Run` encoded (they start with '{"run_id"'): still read.
_DIGEST_PREFIX = b'{"format":"' + DIGEST_FORMAT.encode() + b'"'


class _DigestCluster(msgspec.Struct, array_like=True, gc=False):
    cluster_id: int
    size: int
    title: str
    description: str
    items: list[str]


class _Digest(msgspec.Struct, tag_field="format", tag=DIGEST_FORMAT):
    run_id: str
    level: str
    job_id: str
    job_name: str
    window_start: datetime
    window_end: datetime
    total_items: int
    clusters: list[_DigestCluster]
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: datetime | None = None


_digest_encoder = msgspec.json.Encoder()
_digest_decoder = msgspec.json.Decoder(_Digest)
_run_decoder = msgspec.json.Decoder(Run)


def encode_digest(run: Run) -> bytes:
    """The run as the store keeps it for the next diff (see above)."""
    return _digest_encoder.encode(_Digest(
        run_id=run.run_id, level=run.level, job_id=run.job_id, job_name=run.job_name,
        window_start=run.window_start, window_end=run.window_end, total_items=run.total_items,
        clusters=[_DigestCluster(c.cluster_id, c.size, c.title, c.description, list(c.traces)) for c in run.clusters],
        params=run.params, timestamp=run.timestamp))


def decode_stored_run(data: bytes) -> Run:
    """A stored run back as a `Run` the diff and rules read: from a digest its items are keys only
    (`KEY_ONLY`); a payload written before digests existed is the whole run and decodes as it was."""
    if not data.startswith(_DIGEST_PREFIX):
        return _run_decoder.decode(data)
    d = _digest_decoder.decode(data)
    return Run(
        run_id=d.run_id, level=d.level, job_id=d.job_id, job_name=d.job_name, window_start=d.window_start,
        window_end=d.window_end, total_items=d.total_items, params=d.params, timestamp=d.timestamp,
        clusters=tuple(Cluster(cluster_id=c.cluster_id, size=c.size, title=c.title, description=c.description,
                               traces=dict.fromkeys(c.items, KEY_ONLY)) for c in d.clusters))
