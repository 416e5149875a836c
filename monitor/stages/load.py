"""Load: the run itself from PostHog, and the job's previous run from the store (what it is diffed against).

A run event is parsed by one parser, `monitor.runs.run_from_properties` (also behind `diff`, `replay` and
the local server's tests); the run query's row only renames its columns to the event's property names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import msgspec

from monitor.posthog import queries
from monitor.posthog.client import PostHogClient, PostHogError
from monitor.runs import Run, RunParseError, decode_stored_run, run_from_properties
from monitor.stages.discover import DiscoveredRun
from monitor.store.base import Store


def properties_from_row(row: Mapping[str, Any], d: DiscoveredRun) -> dict[str, Any]:
    """The run event's properties from a `GET_RUN` row (JSONExtract* columns; raw JSON text where the
    property is not a string)."""
    run_id = d.run_id
    kind = row.get("clusters_type", "Array")
    if kind != "Array":
        raise RunParseError(run_id, "$ai_clusters", "missing" if kind in ("Null", "", None)
                            else f"expected an array of clusters, got a JSON {kind}")
    return {
        "$ai_clustering_run_id": run_id,
        "$ai_clustering_level": d.level,
        "$ai_clustering_job_id": row.get("job_id") or d.job_id,
        "$ai_clustering_job_name": row.get("job_name") or d.job_name,
        "$ai_window_start": row.get("window_start"),
        "$ai_window_end": row.get("window_end"),
        "$ai_total_items_analyzed": _raw_json(run_id, "$ai_total_items_analyzed", row.get("total_items")),
        "$ai_clusters": row.get("clusters"),
        "$ai_clustering_params": _raw_json(run_id, "$ai_clustering_params", row.get("params")),
    }


def _raw_json(run_id: str, field: str, value: Any) -> Any:
    """A JSONExtractRaw cell ('' when the property is absent) decoded to its value."""
    if not isinstance(value, (str, bytes)) or value in ("", b""):
        return value
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise RunParseError(run_id, field, f"not JSON: {value[:80]!r}") from exc


def run_from_row(row: Mapping[str, Any], d: DiscoveredRun) -> Run:
    return run_from_properties(properties_from_row(row, d), d.emitted_at)


def fetch_run(client: PostHogClient, d: DiscoveredRun) -> Run:
    res = client.query(queries.GET_RUN, {
        "event": d.event,
        "emitted_from": d.emitted_at - timedelta(seconds=1),
        "emitted_to": d.emitted_at + timedelta(seconds=1),
        "run_id": d.run_id,
    }, name="get_run")
    rows = res.rows()
    if not rows:
        raise PostHogError(f"get_run: run {d.run_id!r} not found", retryable=True, query_name="get_run")
    return run_from_row(rows[0], d)


def previous_run(store: Store, job_key: str, run: Run) -> Run | None:
    """The job's last processed run before this one's window, as stored (items as keys only)."""
    rec = store.previous_run(job_key, before=run.window_end)
    if rec is None:
        return None
    try:
        return decode_stored_run(rec[1])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RunParseError(rec[0], "(stored payload)", f"unreadable: {exc}") from exc
