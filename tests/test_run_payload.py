"""How a run travels: fetched from PostHog one JSON text per cluster, and kept in the store as a digest
that the next run of the job diffs against (payloads written before the digest are still read)."""

from __future__ import annotations

import json
import sqlite3
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from monitor.local.posthog.generator import make_run_event, run_event_row
from monitor.matching import match_runs
from monitor.pipeline import DiscoveredRun
from monitor.runs import DIGEST_FORMAT, Run, RunParseError, decode_stored_run, encode_digest, run_from_properties
from monitor.store.base import ProcessedRun
from monitor.store.sqlite import SQLiteStore
from tests.conftest import make_config, monitor_for

END = datetime(2026, 10, 20, 3, tzinfo=UTC)
JOB = "00000000-0000-0000-0000-0000000000cc"


def _props(day: int, items: list[str], reworded: bool, team_id: int = 1) -> dict[str, Any]:
    titles = ["Refund requests", "Python code generation", "SQL query generation", "Calendar agent"]
    members: list[list[str]] = [[] for _ in range(len(titles) + 1)]
    for it in items:
        members[int(it[1:]) % len(members)].append(it)
    clusters: list[dict[str, Any]] = []
    for c, title in enumerate(titles):
        t = title.replace("generation", "writing") if reworded else title
        clusters.append({"cluster_id": c, "items": members[c], "title": t, "description": f"About {t.lower()}."})
    clusters.append({"cluster_id": -1, "items": members[-1]})
    return make_run_event(team_id=team_id, level="trace", window_end=END + timedelta(days=day), clusters=clusters,
                          job_id=JOB, job_name="Payload job", max_samples=len(items))


def _runs() -> tuple[Run, Run]:
    pool = [f"t{i}" for i in range(600)]
    prev = run_from_properties(_props(0, pool[:400], False))
    new = run_from_properties(_props(1, pool[200:], True))
    return prev, new


def test_the_digest_keeps_everything_the_diff_reads() -> None:
    prev, new = _runs()
    digest = encode_digest(prev)
    back = decode_stored_run(digest)
    assert json.loads(digest)["format"] == DIGEST_FORMAT
    assert [(c.cluster_id, c.size, c.title, c.description, list(c.traces)) for c in back.clusters] == [
        (c.cluster_id, c.size, c.title, c.description, list(c.traces)) for c in prev.clusters]
    assert (back.run_id, back.job_key, back.window_end, back.total_items) == (
        prev.run_id, prev.job_key, prev.window_end, prev.total_items)
    assert match_runs(back, new, explain=True) == match_runs(prev, new, explain=True)
    # Only the keys of the items: a fraction of the whole run encoded.
    assert len(digest) < len(msgspec.json.encode(prev)) / 2


def test_payloads_written_before_the_digest_are_still_read(tmp_path: Path) -> None:
    prev, new = _runs()
    store = SQLiteStore(tmp_path / "state.sqlite")
    store.commit_run(ProcessedRun(
        run_id=prev.run_id, job_key="j|trace", level="trace", window_end=prev.window_end,
        emitted_at=prev.window_end, event_uuid="u0", payload=encode_digest(prev), snapshots=[], alert_states=[],
        outbox=[], processed_at=prev.window_end))
    rec = store.previous_run("j|trace", before=new.window_end)
    assert rec is not None and decode_stored_run(rec[1]).clusters[0].traces.keys() == prev.clusters[0].traces.keys()
    store.close()
    # What an older version wrote: the whole run encoded, zlib-compressed.
    with sqlite3.connect(tmp_path / "state.sqlite") as conn:
        conn.execute("UPDATE runs SET payload = ? WHERE run_id = ?",
                     (zlib.compress(msgspec.json.encode(prev), 1), prev.run_id))
    store = SQLiteStore(tmp_path / "state.sqlite")
    rec = store.previous_run("j|trace", before=new.window_end)
    assert rec is not None
    old = decode_stored_run(rec[1])
    assert old == prev  # the full run, items with their ranks and trace ids
    assert match_runs(old, new) == match_runs(decode_stored_run(encode_digest(prev)), new)
    store.close()


def _land(env: Any, props: dict[str, Any], emitted: datetime) -> DiscoveredRun:
    row = run_event_row(props, team_id=env.project_id, emitted_at=emitted)
    env.server.engine.insert([row])
    return DiscoveredRun(run_id=props["$ai_clustering_run_id"], level="trace", job_id=JOB, job_name="Payload job",
                         event="$ai_trace_clusters", event_uuid=row[0], emitted_at=emitted,
                         window_end=datetime.fromisoformat(props["$ai_window_end"]))


def test_a_run_fetched_from_posthog_parses_like_its_properties(posthog_factory: Any, tmp_path: Path) -> None:
    env = posthog_factory("steady", scale=0.05, days=2)
    m = monitor_for(make_config(env, None, None, tmp_path / "state.sqlite"))
    props = _props(0, [f"t{i}" for i in range(300)], False, team_id=env.project_id)
    d = _land(env, props, END + timedelta(minutes=5))
    assert m.fetch_run(d).clusters == run_from_properties(props).clusters
    # A missing `$ai_clusters`, or one that is not an array, names the run and the field: it is not read
    # as a run without clusters.
    for value, problem in ((None, "missing"), ("this is not JSON", "got a JSON String"),
                           ({"cluster_id": 0}, "got a JSON Object")):
        bad = dict(props, **{"$ai_clustering_run_id": f"{props['$ai_clustering_run_id']}_{problem[-6:]}"})
        if value is None:
            del bad["$ai_clusters"]
        else:
            bad["$ai_clusters"] = value
        with pytest.raises(RunParseError) as err:
            m.fetch_run(_land(env, bad, END + timedelta(minutes=6)))
        assert err.value.field == "$ai_clusters" and problem in err.value.problem
        assert bad["$ai_clustering_run_id"] in str(err.value)
    m.store.close()
    m.client.close()
