"""A run fetched from the local PostHog parses like its properties."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.local.posthog.generator import run_event_row
from monitor.pipeline import DiscoveredRun
from monitor.runs import RunParseError, run_from_properties
from tests.conftest import make_config, monitor_for
from tests.support.payloads import END, JOB, run_props


def _land(env: Any, props: dict[str, Any], emitted: datetime) -> DiscoveredRun:
    row = run_event_row(props, team_id=env.project_id, emitted_at=emitted)
    env.server.engine.insert([row])
    return DiscoveredRun(run_id=props["$ai_clustering_run_id"], level="trace", job_id=JOB, job_name="Payload job",
                         event="$ai_trace_clusters", event_uuid=row[0], emitted_at=emitted,
                         window_end=datetime.fromisoformat(props["$ai_window_end"]))


def test_a_run_fetched_from_posthog_parses_like_its_properties(posthog_factory: Any, tmp_path: Path) -> None:
    env = posthog_factory("steady", scale=0.05, days=2)
    m = monitor_for(make_config(env, None, None, tmp_path / "state.sqlite"))
    props = run_props(0, [f"t{i}" for i in range(300)], False, team_id=env.project_id)
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
