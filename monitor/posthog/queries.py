"""Every HogQL text the monitor sends to PostHog, and nothing else: the only place SQL lives.

Rules for this file:
- every value that comes from data (run ids, times, cursors) is a `{placeholder}` bound through the
  query API's `values`, never formatted into the text;
- queries stay in the subset that is both valid HogQL (PostHog's parser) and plain ClickHouse, so the
  local PostHog-compatible server can run them on a real engine;
- property values arrive as the SDKs sent them (`0.0031` or `"0.0031"`, `true` or `"true"`), so numbers
  and booleans are read from the raw JSON with quotes stripped, never with JSONExtractFloat/Bool alone;
- every query is bounded in time on `timestamp`, as PostHog asks of API queries.
"""

from __future__ import annotations

RUN_EVENTS = ("$ai_trace_clusters", "$ai_generation_clusters")
EVENT_FOR_LEVEL = {
    "trace": "$ai_trace_clusters",
    "generation": "$ai_generation_clusters",
    "evaluation": "$ai_evaluation_clusters",
}

# Discovery pages through runs with a keyset cursor; this many rows a page keeps an idle poll small.
DISCOVER_PAGE = 500


def _num(prop: str, source: str = "properties") -> str:
    """A numeric property sent either as a JSON number or as a numeric string."""
    return f"toFloat64OrNull(replaceRegexpAll(JSONExtractRaw({source}, '{prop}'), '^\"|\"$', ''))"


def _flag(prop: str, source: str = "properties") -> str:
    """A boolean property sent as JSON true or as the string "true"."""
    return f"(JSONExtractRaw({source}, '{prop}') IN ('true', '\"true\"', '1', '\"1\"'))"


# One light query per poll for every job and level of the project: ids and windows, never payloads.
DISCOVER_RUNS = f"""
SELECT
    JSONExtractString(properties, '$ai_clustering_run_id') AS run_id,
    JSONExtractString(properties, '$ai_clustering_level') AS level,
    JSONExtractString(properties, '$ai_clustering_job_id') AS job_id,
    JSONExtractString(properties, '$ai_clustering_job_name') AS job_name,
    JSONExtractString(properties, '$ai_window_start') AS window_start,
    JSONExtractString(properties, '$ai_window_end') AS window_end,
    JSONExtractRaw(properties, '$ai_total_items_analyzed') AS total_items,
    event,
    toString(uuid) AS event_uuid,
    toString(timestamp) AS emitted_at
FROM events
WHERE event IN ('$ai_trace_clusters', '$ai_generation_clusters')
    AND timestamp >= parseDateTimeBestEffort({{since}})
    AND (timestamp > parseDateTimeBestEffort({{after_ts}})
         OR (timestamp = parseDateTimeBestEffort({{after_ts}}) AND toString(uuid) > {{after_uuid}}))
ORDER BY timestamp ASC, event_uuid ASC
LIMIT {DISCOVER_PAGE}
"""

# The whole payload of one run, found by its event uuid and bounded to the second it was emitted.
# `$ai_clusters` comes as one JSON text per cluster (JSONExtractArrayRaw) rather than one for the whole
# array: a string cell of the answer is escaped JSON, and unescaping a 42 MB one took a 42 MB scratch
# copy beside the body and the result; per cluster the scratch is one cluster's size. Its JSON type
# tells a missing or mistyped property (which extracts as no clusters) from a run with none.
GET_RUN = """
SELECT
    JSONExtractString(properties, '$ai_clustering_run_id') AS run_id,
    JSONExtractString(properties, '$ai_clustering_level') AS level,
    JSONExtractString(properties, '$ai_clustering_job_id') AS job_id,
    JSONExtractString(properties, '$ai_clustering_job_name') AS job_name,
    JSONExtractString(properties, '$ai_window_start') AS window_start,
    JSONExtractString(properties, '$ai_window_end') AS window_end,
    JSONExtractRaw(properties, '$ai_total_items_analyzed') AS total_items,
    JSONExtractArrayRaw(properties, '$ai_clusters') AS clusters,
    JSONType(properties, '$ai_clusters') AS clusters_type,
    JSONExtractRaw(properties, '$ai_clustering_params') AS params,
    toString(timestamp) AS emitted_at
FROM events
WHERE event = {event}
    AND timestamp >= parseDateTimeBestEffort({emitted_from})
    AND timestamp <= parseDateTimeBestEffort({emitted_to})
    AND JSONExtractString(properties, '$ai_clustering_run_id') = {run_id}
ORDER BY timestamp DESC
LIMIT 1
"""

# Item -> cluster mapping of one run, unpacked inside the database so no id list is ever shipped.
_RUN_ITEMS = """
    SELECT
        JSONExtractInt(c, 'cluster_id') AS cluster_id,
        arrayJoin(JSONExtractKeys(c, 'traces')) AS item_key
    FROM events
    ARRAY JOIN JSONExtractArrayRaw(properties, '$ai_clusters') AS c
    WHERE event = {event}
        AND timestamp >= parseDateTimeBestEffort({emitted_from})
        AND timestamp <= parseDateTimeBestEffort({emitted_to})
        AND JSONExtractString(properties, '$ai_clustering_run_id') = {run_id}
"""

# Per-cluster aggregates as PostHog defines them (aggregates.py in its clustering workflow): an item's
# cost and tokens sum its $ai_generation and $ai_embedding events, its latency sums its generations'
# latencies, and it counts as errored when any generation, embedding or span failed. Averages are over
# items that have the value (> 0), the error rate over items that have any event.
_CLUSTER_AGGREGATES = """
SELECT
    cm.cluster_id AS cluster_id,
    count() AS items,
    sumIf(t.cost, t.cost > 0) AS total_cost,
    countIf(t.cost > 0) AS items_with_cost,
    quantileIf(0.5)(t.latency, t.latency > 0) AS p50_latency,
    quantileIf(0.95)(t.latency, t.latency > 0) AS p95_latency,
    avgIf(t.latency, t.latency > 0) AS avg_latency,
    sum(t.input_tokens) AS input_tokens,
    sum(t.output_tokens) AS output_tokens,
    countIf(t.input_tokens + t.output_tokens > 0) AS items_with_tokens,
    countIf(t.errors > 0) AS items_with_errors
FROM ({run_items}) AS cm
INNER JOIN ({per_item}) AS t ON t.item_key = cm.item_key
GROUP BY cluster_id
ORDER BY cluster_id
"""

_PER_TRACE = f"""
    SELECT
        JSONExtractString(properties, '$ai_trace_id') AS item_key,
        sumIf(ifNull({_num('$ai_total_cost_usd')}, 0), event IN ('$ai_generation', '$ai_embedding')) AS cost,
        sumIf(ifNull({_num('$ai_latency')}, 0), event = '$ai_generation') AS latency,
        sumIf(ifNull({_num('$ai_input_tokens')}, 0), event IN ('$ai_generation', '$ai_embedding'))
            AS input_tokens,
        sumIf(ifNull({_num('$ai_output_tokens')}, 0), event IN ('$ai_generation', '$ai_embedding'))
            AS output_tokens,
        countIf({_flag('$ai_is_error')}) AS errors
    FROM events
    WHERE event IN ('$ai_generation', '$ai_span', '$ai_embedding')
        AND timestamp >= parseDateTimeBestEffort({{window_start}})
        AND timestamp <= parseDateTimeBestEffort({{window_end}})
        AND JSONExtractString(properties, '$ai_trace_id') IN (SELECT item_key FROM ({_RUN_ITEMS}))
    GROUP BY item_key
"""

_PER_GENERATION = f"""
    SELECT
        toString(uuid) AS item_key,
        ifNull({_num('$ai_total_cost_usd')}, 0) AS cost,
        ifNull({_num('$ai_latency')}, 0) AS latency,
        ifNull({_num('$ai_input_tokens')}, 0) AS input_tokens,
        ifNull({_num('$ai_output_tokens')}, 0) AS output_tokens,
        if({_flag('$ai_is_error')}, 1, 0) AS errors
    FROM events
    WHERE event = '$ai_generation'
        AND timestamp >= parseDateTimeBestEffort({{window_start}})
        AND timestamp <= parseDateTimeBestEffort({{window_end}})
        AND toString(uuid) IN (SELECT item_key FROM ({_RUN_ITEMS}))
"""

CLUSTER_METRICS = {
    "trace": _CLUSTER_AGGREGATES.format(run_items=_RUN_ITEMS, per_item=_PER_TRACE),
    "generation": _CLUSTER_AGGREGATES.format(run_items=_RUN_ITEMS, per_item=_PER_GENERATION),
}
# Evaluation-level items are keyed like generations (event uuids).
CLUSTER_METRICS["evaluation"] = CLUSTER_METRICS["generation"]

ALL_QUERIES: dict[str, str] = {
    "discover_runs": DISCOVER_RUNS,
    "get_run": GET_RUN,
    **{f"cluster_metrics_{level}": q for level, q in CLUSTER_METRICS.items()},
}
