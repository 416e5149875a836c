"""Every HogQL text the monitor sends to PostHog, and nothing else: the only place SQL lives.

Rules for this file:
- every value that comes from data (run ids, times, cursors) is a `{placeholder}` bound through the
  query API's `values`, never formatted into the text;
- queries stay in the subset that is both valid HogQL (PostHog's parser) and plain ClickHouse, so the
  local PostHog-compatible server can run them on a real engine;
- property values arrive as the SDKs sent them (`0.0031` or `"0.0031"`, `true` or `"true"`), so numbers
  and booleans are read from the raw JSON with quotes stripped, never with JSONExtractFloat/Bool alone;
- every query is bounded in time on `timestamp`, as PostHog asks of API queries, by half-open windows
  (`>= start AND < end`, as PostHog's own clustering queries bound theirs);
- only HogQL function names public in old self-hosted releases and current ones (the local server's
  list, monitor/local/posthog/hogql_functions.py, says which): `toFloat`, `toInt`, `toString`,
  `toTimeZone`, never `toFloat64OrNull` (newer releases only) nor `toInt64` (never public);
- properties PostHog's own clustering reads by property access (`properties.$ai_trace_id`, the numbers
  and flags of AI events, the evaluation fields) are read so here too: PostHog prints it as a
  materialized column where the team has one. Property access gives the raw JSON text (escapes kept),
  so the run event's own strings (run id, job, level, window), which are matched against and shown
  exactly, stay `JSONExtractString`; so does `$ai_clusters` (no column, a JSON array);
- times never depend on the project's timezone, which HogQL renders and reads datetimes in: they are sent
  with an explicit offset (`time_value`, read by `parseDateTimeBestEffort`, whose offset wins over the
  project's zone) and read back converted to UTC explicitly and marked `Z`.
"""

from __future__ import annotations

from datetime import UTC, datetime

RUN_EVENTS = ("$ai_trace_clusters", "$ai_generation_clusters", "$ai_evaluation_clusters")
EVENT_FOR_LEVEL = {
    "trace": "$ai_trace_clusters",
    "generation": "$ai_generation_clusters",
    "evaluation": "$ai_evaluation_clusters",
}

# Discovery pages through runs with a keyset cursor; this many rows a page keeps an idle poll small.
DISCOVER_PAGE = 500


def time_value(dt: datetime) -> str:
    """A time bound as a placeholder: ISO with microseconds and an explicit UTC offset, so PostHog reads
    the same instant in any project timezone (a naive text would be read in the project's zone)."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: say its zone")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _num(prop: str) -> str:
    """A numeric property sent either as a JSON number or as a numeric string (or typed numeric by the
    team's property definitions): property access gives its text, `toFloat` parses it or gives NULL."""
    return f"toFloat(toString(properties.{prop}))"


def _flag(prop: str) -> str:
    """A boolean property sent as JSON true or as the string "true" (or typed Boolean by the team)."""
    return f"(toString(properties.{prop}) IN ('true', '1'))"


# When the event was emitted, in UTC whatever the project's timezone, marked so no reader takes it for local.
_EMITTED_AT = "concat(toString(toTimeZone(timestamp, 'UTC')), 'Z')"
# Old run events (before levels and jobs) counted `$ai_total_traces_analyzed`.
_TOTAL_ITEMS = "coalesce(properties.$ai_total_items_analyzed, properties.$ai_total_traces_analyzed)"

# What discovery and the payload query both read of a run event: its ids, window and size.
_RUN_HEADER = f"""\
    JSONExtractString(properties, '$ai_clustering_run_id') AS run_id,
    JSONExtractString(properties, '$ai_clustering_level') AS level,
    JSONExtractString(properties, '$ai_clustering_job_id') AS job_id,
    JSONExtractString(properties, '$ai_clustering_job_name') AS job_name,
    JSONExtractString(properties, '$ai_window_start') AS window_start,
    JSONExtractString(properties, '$ai_window_end') AS window_end,
    {_TOTAL_ITEMS} AS total_items,"""

# One light query per poll for every job and level of the project: ids and windows, never payloads.
DISCOVER_RUNS = f"""
SELECT
{_RUN_HEADER}
    event,
    toString(uuid) AS event_uuid,
    {_EMITTED_AT} AS emitted_at
FROM events
WHERE event IN ('$ai_trace_clusters', '$ai_generation_clusters', '$ai_evaluation_clusters')
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
GET_RUN = f"""
SELECT
{_RUN_HEADER}
    JSONExtractArrayRaw(properties, '$ai_clusters') AS clusters,
    JSONType(properties, '$ai_clusters') AS clusters_type,
    JSONExtractRaw(properties, '$ai_clustering_params') AS params,
    {_EMITTED_AT} AS emitted_at
FROM events
WHERE event = {{event}}
    AND timestamp >= parseDateTimeBestEffort({{emitted_from}})
    AND timestamp < parseDateTimeBestEffort({{emitted_to}})
    AND JSONExtractString(properties, '$ai_clustering_run_id') = {{run_id}}
ORDER BY timestamp DESC
LIMIT 1
"""

# One run's clusters, one row each (`c`, a cluster's JSON), found as GET_RUN finds the run.
_RUN_CLUSTERS = """
    FROM events
    ARRAY JOIN JSONExtractArrayRaw(properties, '$ai_clusters') AS c
    WHERE event = {event}
        AND timestamp >= parseDateTimeBestEffort({emitted_from})
        AND timestamp < parseDateTimeBestEffort({emitted_to})
        AND JSONExtractString(properties, '$ai_clustering_run_id') = {run_id}
"""

# Item -> cluster mapping of one run, unpacked inside the database so no id list is ever shipped.
_RUN_ITEMS = """
    SELECT
        JSONExtractInt(c, 'cluster_id') AS cluster_id,
        arrayJoin(JSONExtractKeys(c, 'traces')) AS item_key""" + _RUN_CLUSTERS

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
    countIf(t.errors > 0) AS items_with_errors{extra}
FROM ({run_items}) AS cm
INNER JOIN ({per_item}) AS t ON t.item_key = cm.item_key
GROUP BY cluster_id
ORDER BY cluster_id
"""

_PER_TRACE = f"""
    SELECT
        properties.$ai_trace_id AS item_key,
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
        AND timestamp < parseDateTimeBestEffort({{window_end}})
        AND properties.$ai_trace_id IN (SELECT item_key FROM ({_RUN_ITEMS}))
    GROUP BY item_key
"""

# One generation's operational values, as the generation level and the evaluation level (of the judged
# generation) read them.
_GENERATION_VALUES = f"""
        ifNull({_num('$ai_total_cost_usd')}, 0) AS cost,
        ifNull({_num('$ai_latency')}, 0) AS latency,
        ifNull({_num('$ai_input_tokens')}, 0) AS input_tokens,
        ifNull({_num('$ai_output_tokens')}, 0) AS output_tokens,
        if({_flag('$ai_is_error')}, 1, 0) AS errors"""

_PER_GENERATION = f"""
    SELECT
        toString(uuid) AS item_key,{_GENERATION_VALUES}
    FROM events
    WHERE event = '$ai_generation'
        AND timestamp >= parseDateTimeBestEffort({{window_start}})
        AND timestamp < parseDateTimeBestEffort({{window_end}})
        AND toString(uuid) IN (SELECT item_key FROM ({_RUN_ITEMS}))
"""

# Evaluation level (posthog/temporal/ai_observability/evaluation_clustering/aggregates.py): items are
# `$ai_evaluation` events; operational metrics come from the generation each one judged
# (`$ai_target_event_id`), looked for from a day before the window (a generation precedes its judgement);
# a verdict is "na" when `$ai_evaluation_applicable` is false, else pass/fail from `$ai_evaluation_result`;
# the judge's cost is the evaluation's own `$ai_total_cost_usd`. Names and runtimes come back one per item
# (at most max_samples per run, about 30 KB) so the dominant ones are counted exactly by the reader.
_PER_EVALUATION = f"""
    SELECT
        ev.item_key AS item_key,
        ifNull(g.cost, 0) AS cost,
        ifNull(g.latency, 0) AS latency,
        ifNull(g.input_tokens, 0) AS input_tokens,
        ifNull(g.output_tokens, 0) AS output_tokens,
        ifNull(g.errors, 0) AS errors,
        ev.verdict AS verdict,
        ev.name AS name,
        ev.runtime AS runtime,
        ev.judge_cost AS judge_cost
    FROM (
        SELECT
            toString(uuid) AS item_key,
            ifNull(properties.$ai_target_event_id, '') AS target,
            multiIf(toString(properties.$ai_evaluation_applicable) IN ('false', '0'), 'na',
                    toString(properties.$ai_evaluation_result) IN ('true', '1'), 'pass',
                    toString(properties.$ai_evaluation_result) IN ('false', '0'), 'fail', '') AS verdict,
            ifNull(properties.$ai_evaluation_name, '') AS name,
            ifNull(properties.$ai_evaluation_runtime, '') AS runtime,
            ifNull({_num('$ai_total_cost_usd')}, 0) AS judge_cost
        FROM events
        WHERE event = '$ai_evaluation'
            AND timestamp >= parseDateTimeBestEffort({{window_start}})
            AND timestamp < parseDateTimeBestEffort({{window_end}})
            AND toString(uuid) IN (SELECT item_key FROM ({_RUN_ITEMS}))
    ) AS ev
    LEFT JOIN (
        SELECT
            toString(uuid) AS target,{_GENERATION_VALUES}
        FROM events
        WHERE event = '$ai_generation'
            AND timestamp >= parseDateTimeBestEffort({{window_start}}) - toIntervalDay(1)
            AND timestamp < parseDateTimeBestEffort({{window_end}})
    ) AS g ON g.target = ev.target
"""

# What the evaluation level adds to the operational columns.
_EVALUATION_COLUMNS = """,
    countIf(t.verdict = 'pass') AS passes,
    countIf(t.verdict = 'na') AS not_applicable,
    countIf(t.verdict != '') AS verdicts,
    sumIf(t.judge_cost, t.judge_cost > 0) AS judge_cost,
    countIf(t.judge_cost > 0) AS items_with_judge_cost,
    groupArray(t.name) AS evaluation_names,
    groupArray(t.runtime) AS runtimes"""

CLUSTER_METRICS = {
    "trace": _CLUSTER_AGGREGATES.format(run_items=_RUN_ITEMS, per_item=_PER_TRACE, extra=""),
    "generation": _CLUSTER_AGGREGATES.format(run_items=_RUN_ITEMS, per_item=_PER_GENERATION, extra=""),
    "evaluation": _CLUSTER_AGGREGATES.format(run_items=_RUN_ITEMS, per_item=_PER_EVALUATION,
                                             extra=_EVALUATION_COLUMNS),
}

# --- explaining alerts (monitor/stages/explain.py): what drove a cost, latency or error alert -----------
# One query, only for runs whose message has such alerts: the items of the alerted clusters in this run
# and of their matches in the previous run, mapped to clusters inside the database as the metrics query
# does, each with what the explanation reads (models and providers of its generations, the error types,
# HTTP statuses and span names of its failed calls, its trace name, tokens, cost, latency) and the title
# of its LLM-written summary where PostHog wrote one (`$ai_trace_summary` / `$ai_generation_summary`,
# `$ai_summary_title`; absent summaries leave the title empty). Aggregation into sentences is the
# reader's (a pure function), so the answer is one row per item: at most two runs' sampled items.
# `groupArray` skips NULLs, so `if(cond, x, NULL)` collects x over the events that match only; the model
# and cost arrays use the same condition and stay aligned.
_EXPLAIN_RUN_ITEMS = """
    SELECT
        JSONExtractString(properties, '$ai_clustering_run_id') AS run_id,
        JSONExtractInt(c, 'cluster_id') AS cluster_id,
        arrayJoin(JSONExtractKeys(c, 'traces')) AS item_key
    FROM events
    ARRAY JOIN JSONExtractArrayRaw(properties, '$ai_clusters') AS c
    WHERE event = {event}
        AND ((timestamp >= parseDateTimeBestEffort({emitted_from})
              AND timestamp < parseDateTimeBestEffort({emitted_to})
              AND JSONExtractString(properties, '$ai_clustering_run_id') = {run_id}
              AND JSONExtractInt(c, 'cluster_id') IN {cluster_ids})
          OR (timestamp >= parseDateTimeBestEffort({prev_emitted_from})
              AND timestamp < parseDateTimeBestEffort({prev_emitted_to})
              AND JSONExtractString(properties, '$ai_clustering_run_id') = {prev_run_id}
              AND JSONExtractInt(c, 'cluster_id') IN {prev_cluster_ids}))
"""

_ERR = _flag("$ai_is_error")
_CALL = "event IN ('$ai_generation', '$ai_embedding')"
_EXPLAIN_PER_ITEM = f"""
    SELECT
        {{key}} AS item_key,
        any(properties.$ai_trace_id) AS trace_id,
        toUnixTimestamp(min(timestamp)) AS first_seen,
        sumIf(ifNull({_num('$ai_total_cost_usd')}, 0), {_CALL}) AS cost,
        sumIf(ifNull({_num('$ai_latency')}, 0), event = '$ai_generation') AS latency,
        sumIf(ifNull({_num('$ai_input_tokens')}, 0), {_CALL}) AS input_tokens,
        sumIf(ifNull({_num('$ai_output_tokens')}, 0), {_CALL}) AS output_tokens,
        countIf({_ERR} AND event != '$ai_trace') AS errors,
        groupArray(if(event = '$ai_generation', ifNull(toString(properties.$ai_model), ''), NULL)) AS models,
        groupArray(if(event = '$ai_generation', ifNull(toString(properties.$ai_provider), ''), NULL)) AS providers,
        groupArray(if(event = '$ai_generation', ifNull({_num('$ai_total_cost_usd')}, 0), NULL)) AS model_costs,
        groupArray(if({_ERR} AND event != '$ai_trace',
                      substring(ifNull(toString(properties.$ai_error), ''), 1, 300), NULL)) AS error_types,
        groupArray(if({_ERR} AND {_CALL}, ifNull(toString(properties.$ai_http_status), ''), NULL)) AS statuses,
        groupArray(if({_ERR} AND event != '$ai_trace', ifNull(toString(properties.$ai_span_name), ''), NULL))
            AS error_spans,
        groupArray(if(event = '$ai_trace', ifNull(toString(properties.$ai_trace_name), ''), NULL)) AS trace_names
    FROM events
    WHERE event IN {{events}}
        AND timestamp >= {{since}}
        AND timestamp < parseDateTimeBestEffort({{{{window_end}}}})
        AND {{key}} IN (SELECT item_key FROM ({{run_items}}))
    GROUP BY item_key
"""
_SINCE_WINDOW = "parseDateTimeBestEffort({window_start})"

_EXPLAIN_SUMMARIES = """
    SELECT {key} AS item_key, argMax({title}, timestamp) AS title
    FROM events
    WHERE event = '{event}'
        AND timestamp >= parseDateTimeBestEffort({{window_start}})
        AND timestamp < parseDateTimeBestEffort({{emitted_to}})
        AND {key} IN (SELECT item_key FROM ({run_items}))
    GROUP BY item_key
"""

# The values of an item, as _EXPLAIN_PER_ITEM computes them and monitor/attribution.py reads them.
_ITEM_VALUES = ("trace_id", "first_seen", "cost", "latency", "input_tokens", "output_tokens", "errors", "models",
                "providers", "model_costs", "error_types", "statuses", "error_spans", "trace_names")


def _item_values(alias: str, indent: str) -> str:
    return ",\n".join(f"{indent}{alias}.{c} AS {c}" for c in _ITEM_VALUES)


_EXPLAIN = f"""
SELECT
    cm.run_id AS run_id,
    cm.cluster_id AS cluster_id,
    cm.item_key AS item_key,
{_item_values('t', '    ')},
    s.title AS summary_title
FROM ({{run_items}}) AS cm
INNER JOIN ({{per_item}}) AS t ON t.item_key = cm.item_key
LEFT JOIN ({{summaries}}) AS s ON s.item_key = cm.item_key
LIMIT 50000
"""


_SUMMARY_TITLE = "toString(properties.$ai_summary_title)"


def _explain_query(key: str, events: str, summary_event: str, summary_key: str) -> str:
    per_item = _EXPLAIN_PER_ITEM.format(key=key, events=events, run_items=_EXPLAIN_RUN_ITEMS, since=_SINCE_WINDOW)
    summaries = _EXPLAIN_SUMMARIES.format(key=summary_key, event=summary_event, run_items=_EXPLAIN_RUN_ITEMS,
                                          title=_SUMMARY_TITLE)
    return _EXPLAIN.format(run_items=_EXPLAIN_RUN_ITEMS, per_item=per_item, summaries=summaries)


# The evaluation level: its items are `$ai_evaluation` events, and what they cost, how long they took and
# whether they failed is the evaluated generation's (`$ai_target_event_id`), as in PostHog's own metrics for
# this level and in CLUSTER_METRICS["evaluation"] above (generations up to a day before the window). So an
# item's row is its target generation's, under the evaluation's key; the title shown beside a
# representative item is the judge's reasoning, which says why it passed or failed.
_EVALUATION_TARGETS = f"""
    SELECT toString(uuid) AS item_key, ifNull(toString(properties.$ai_target_event_id), '') AS target
    FROM events
    WHERE event = '$ai_evaluation'
        AND timestamp >= parseDateTimeBestEffort({{window_start}})
        AND timestamp < parseDateTimeBestEffort({{window_end}})
        AND toString(uuid) IN (SELECT item_key FROM ({_EXPLAIN_RUN_ITEMS}))
"""
_EXPLAIN_EVALUATION_PER_ITEM = f"""
    SELECT
        ev.item_key AS item_key,
{_item_values('g', '        ')}
    FROM ({{targets}}) AS ev
    INNER JOIN ({{per_generation}}) AS g ON g.item_key = ev.target
"""


def _explain_evaluation_query() -> str:
    targets = f"SELECT target AS item_key FROM ({_EVALUATION_TARGETS})"
    per_generation = _EXPLAIN_PER_ITEM.format(key="toString(uuid)", events="('$ai_generation')", run_items=targets,
                                              since=f"{_SINCE_WINDOW} - toIntervalDay(1)")
    per_item = _EXPLAIN_EVALUATION_PER_ITEM.format(targets=_EVALUATION_TARGETS, per_generation=per_generation)
    summaries = _EXPLAIN_SUMMARIES.format(key="toString(uuid)", event="$ai_evaluation", run_items=_EXPLAIN_RUN_ITEMS,
                                          title="substring(ifNull(toString(properties.$ai_evaluation_reasoning), ''), "
                                                "1, 300)")
    return _EXPLAIN.format(run_items=_EXPLAIN_RUN_ITEMS, per_item=per_item, summaries=summaries)


# Per level: trace items are keyed by trace id (their generations, embeddings, spans and the trace event),
# generation items by the generation's event uuid, evaluation items by the evaluation's event uuid (with
# the values of the generation it judged).
ALERT_EXPLANATION = {
    "trace": _explain_query("properties.$ai_trace_id",
                            "('$ai_generation', '$ai_span', '$ai_embedding', '$ai_trace')",
                            "$ai_trace_summary", "properties.$ai_trace_id"),
    "generation": _explain_query("toString(uuid)", "('$ai_generation')",
                                 "$ai_generation_summary", "properties.$ai_generation_id"),
    "evaluation": _explain_evaluation_query(),
}

# Document types of the summaries each level clusters (posthog/temporal/llm_analytics/trace_clustering/
# constants.py and evaluation_clustering/constants.py); product is always `llm-analytics`.
EMBEDDING_PRODUCT = "llm-analytics"
DOCUMENT_TYPE_FOR_LEVEL = {
    "trace": "llm-trace-summary-detailed",
    "generation": "llm-generation-summary-detailed",
    "evaluation": "llm-evaluation-detailed",
}
# Items per cluster that make its mean: the best-ranked ones (nearest the centroid). 200 unit vectors
# average to a direction stable to about 0.01 of cosine, and the work stays bounded however big a run is.
EMBEDDING_ITEMS_PER_CLUSTER = 200

# The best-ranked items of each regular cluster of one run, unpacked inside the database.
_RANKED_ITEMS = """
    SELECT cluster_id, tupleElement(kv, 1) AS item_key
    FROM (
        SELECT
            JSONExtractInt(c, 'cluster_id') AS cluster_id,
            arrayJoin(JSONExtractKeysAndValuesRaw(c, 'traces')) AS kv""" + _RUN_CLUSTERS + """
    )
    WHERE cluster_id >= 0 AND JSONExtractInt(tupleElement(kv, 2), 'rank') < {max_rank}
"""

# The mean summary embedding of each cluster of one run (issue 15): the run's item -> cluster map joined
# with `raw_document_embeddings` (HogQL's RawDocumentEmbeddingsTable; PostHog's own clustering reads it
# with the same product / document_type / window / `length(embedding) > 0` conditions,
# trace_clustering/data.py), averaged per dimension in ClickHouse so one row per cluster comes back,
# never an item's vector. Only names public in old and current releases: the rows are exploded with
# ARRAY JOIN and arrayEnumerate, averaged per (cluster, dimension), and put back in order with
# arraySort over (dimension, value) tuples (sumForEach/avgForEach are public only in current releases).
# Rounded to 5 decimals: 50 clusters of 3072 floats answer in about 1.4 MB.
CLUSTER_EMBEDDINGS = f"""
SELECT
    cluster_id,
    max(items) AS items,
    arrayMap(x -> round(tupleElement(x, 2), 5), arraySort(groupArray(tuple(dim, v)))) AS mean
FROM (
    SELECT cm.cluster_id AS cluster_id, e.dim AS dim, avg(e.x) AS v, count() AS items
    FROM (
        SELECT document_id, x, dim
        FROM raw_document_embeddings
        ARRAY JOIN embedding AS x, arrayEnumerate(embedding) AS dim
        WHERE timestamp >= parseDateTimeBestEffort({{window_start}})
            AND timestamp < parseDateTimeBestEffort({{window_end}})
            AND product = {{product}}
            AND document_type = {{document_type}}
            AND length(embedding) > 0
            AND document_id IN (SELECT item_key FROM ({_RANKED_ITEMS}))
    ) AS e
    INNER JOIN ({_RANKED_ITEMS}) AS cm ON cm.item_key = e.document_id
    GROUP BY cluster_id, dim
)
GROUP BY cluster_id
ORDER BY cluster_id
"""

ALL_QUERIES: dict[str, str] = {
    "discover_runs": DISCOVER_RUNS,
    "get_run": GET_RUN,
    **{f"cluster_metrics_{level}": q for level, q in CLUSTER_METRICS.items()},
    **{f"alert_explanation_{level}": q for level, q in ALERT_EXPLANATION.items()},
    "cluster_embeddings": CLUSTER_EMBEDDINGS,
}


def cluster_embeddings_values(*, level: str, event: str, emitted_from: datetime, emitted_to: datetime,
                              run_id: str, window_start: datetime, window_end: datetime,
                              per_cluster: int = EMBEDDING_ITEMS_PER_CLUSTER) -> dict[str, object]:
    """The bound values of CLUSTER_EMBEDDINGS for one run (every value a placeholder; the client binds the
    times with their offset, see time_value)."""
    return {"event": event, "emitted_from": emitted_from, "emitted_to": emitted_to, "run_id": run_id,
            "window_start": window_start, "window_end": window_end, "product": EMBEDDING_PRODUCT,
            "document_type": DOCUMENT_TYPE_FOR_LEVEL.get(level, DOCUMENT_TYPE_FOR_LEVEL["trace"]),
            "max_rank": per_cluster}
