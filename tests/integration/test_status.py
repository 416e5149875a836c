"""`cluster-monitor status` and the state gauges, read from a real store (SQLite and PostgreSQL) and from
the state a real cycle against the local PostHog leaves behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from monitor import telemetry
from monitor.alerts import Alert, Notification
from monitor.cli import app
from monitor.config import parse_config
from monitor.local.slack import LocalSlack
from monitor.runs import Run, encode_digest
from monitor.status import Status, collect, publish, to_json
from monitor.store import open_store
from monitor.store.base import AlertState, ProcessedRun, Store
from tests.conftest import API_KEY, PostHogEnv, make_config, monitor_for, new_project_id

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _state(fp: str, kind: str, status: str, first: datetime) -> AlertState:
    return AlertState(fingerprint=fp, status=status, kind=kind, first_fired_at=first, last_fired_at=first,
                      last_notified_at=first, last_run_id="r1", job_key="job-7|trace", lineage_id=None,
                      summary=f"{kind} summary")


def _notice(key: str, fp: str) -> bytes:
    alert = Alert(fingerprint=fp, rule="error_rate", kind="error_rate", severity="critical", summary="s",
                  run_id="r1", job_name="support", level="trace")
    return msgspec.json.encode(Notification(key=key, project_id=1, run_id="r1", job_name="support", level="trace",
                                            window_start=NOW, window_end=NOW, alerts=(alert,), run_url=""))


def _fill(store: Store) -> None:
    run = Run(run_id="r1", level="trace", job_id="job-7", job_name="support", window_start=NOW - timedelta(days=1),
              window_end=NOW - timedelta(hours=3), total_items=0, clusters=())
    store.commit_run(ProcessedRun(
        run_id="r1", job_key="job-7|trace", level="trace", window_end=run.window_end,
        emitted_at=NOW - timedelta(hours=2), event_uuid="u1", payload=encode_digest(run), snapshots=[],
        alert_states=[_state("fp-rate", "error_rate", "firing", NOW - timedelta(hours=2)),
                      _state("fp-split", "split", "firing", NOW - timedelta(hours=2)),  # news, not a condition
                      _state("fp-cost", "cluster_cost", "resolved", NOW - timedelta(days=2))],
        outbox=[("run:r1", "slack", _notice("run:r1", "fp-rate")), ("run:r1", "email", _notice("run:r1", "fp-rate")),
                ("run:r0", "slack", _notice("run:r0", "fp-cost"))],
        processed_at=NOW - timedelta(hours=2)))
    for e in store.outbox("pending"):
        if e.key == "run:r1":
            store.mark_sent(e.id, NOW - timedelta(hours=2))
        else:
            store.mark_failed(e.id, "channel_not_found")
    down = AlertState(fingerprint="fp-down", status="firing", kind="source_errors", first_fired_at=NOW,
                      last_fired_at=NOW, last_notified_at=NOW, last_run_id="check@x", job_key="posthog|1",
                      lineage_id=None, summary="PostHog has answered only errors for 30 min")
    store.commit_alerts([down], [("run:r2", "slack", _notice("run:r2", "fp-other"))], NOW - timedelta(minutes=30))
    # An acknowledgement of an earlier episode does not cover this one; a later one does.
    store.acknowledge("fp-rate", "old", NOW - timedelta(days=3))
    store.acknowledge("fp-rate", "ana", NOW - timedelta(hours=1), "looking at the refund prompts")
    store.acknowledge("fp-cost", "bob", NOW - timedelta(hours=1))
    store.add_silence({"kinds": ["split"], "until": (NOW + timedelta(hours=4)).isoformat()}, NOW)
    store.add_silence({"kinds": ["merge"], "until": (NOW - timedelta(hours=4)).isoformat()}, NOW)


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_status_reads_firing_acknowledged_silenced_jobs_and_outbox(state: str) -> None:
    key = "url" if state.startswith("postgresql://") else "path"
    # A project of its own: the firing gauge sums every project this process published.
    cfg = parse_config(json.dumps({"posthog": {"project_id": new_project_id(), "api_key": "phx_x"},
                                   "state": {key: state},
                                   "silences": [{"severities": ["info"], "comment": "quiet"}]}), "c.yaml")

    def sample(name: str, **labels: str) -> float | None:
        return telemetry.REGISTRY.get_sample_value(name, labels)

    firing_before = sample("cluster_monitor_alerts_firing", kind="error_rate", severity="critical") or 0.0
    store = open_store(cfg.state)
    try:
        _fill(store)
        p = collect(cfg, store, NOW)
        publish(cfg, store, NOW)
    finally:
        store.close()
    firing, down = p.firing
    assert (down.kind, down.severity, down.job, down.level, down.notices_sent) == (
        "source_errors", "critical", "PostHog", "project", 0)
    assert (firing.fingerprint, firing.kind, firing.severity, firing.job, firing.level) == (
        "fp-rate", "error_rate", "critical", "support", "trace")
    assert firing.since == NOW - timedelta(hours=2) and firing.notices_sent == 1  # two channels, one notice
    assert firing.acknowledged is not None and firing.acknowledged.by == "ana"
    assert [(s.source, s.active, s.kinds) for s in p.silences] == [
        ("store", True, ["split"]), ("store", False, ["merge"]), ("config", True, [])]
    (job,) = p.jobs
    assert (job.job, job.last_run_id, job.age_seconds) == ("support", "r1", 7200.0)
    assert p.quarantined == []  # none failed (tests/integration/test_poison_runs.py fills it)
    o = p.outbox
    assert (o.pending, o.failed, o.sent, o.oldest_pending_age_seconds) == (1, 1, 2, 1800.0)

    # The gauges publish() set from the same store.
    assert sample("cluster_monitor_alerts_firing", kind="error_rate", severity="critical") == firing_before + 1
    assert sample("cluster_monitor_job_last_run_timestamp_seconds", job="job-7", level="trace") == (
        NOW - timedelta(hours=2)).timestamp()
    assert sample("cluster_monitor_outbox_failed") == 1
    assert sample("cluster_monitor_outbox_oldest_pending_timestamp_seconds") == (
        NOW - timedelta(minutes=30)).timestamp()

    # Retention forgets an acknowledgement with its alert's state, and keeps those of alerts still known.
    store = open_store(cfg.state)
    try:
        store.prune(before=NOW - timedelta(days=1), keep_runs=1)
        assert [a.fingerprint for a in store.acknowledgements()] == ["fp-rate"]
    finally:
        store.close()

    # The JSON shape README.md documents.
    doc = json.loads(to_json(Status(version="x", generated_at=NOW, projects=[p])))
    assert set(doc) == {"version", "generated_at", "projects"}
    assert set(doc["projects"][0]) == {"project_id", "host", "state", "firing", "silences", "jobs", "quarantined",
                                       "outbox"}
    assert set(doc["projects"][0]["firing"][0]) == {
        "fingerprint", "kind", "severity", "job", "level", "job_key", "cluster_title", "summary", "since",
        "last_fired_at", "notices_sent", "acknowledged"}


def test_status_after_a_real_cycle_and_an_acknowledgement_from_the_cli(
        drift_posthog: PostHogEnv, slack: LocalSlack, tmp_path: Path) -> None:
    cfg = make_config(drift_posthog, slack, None, tmp_path / "state.sqlite")
    m = monitor_for(cfg)
    assert m.cycle().ok
    m.store.close()
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json", by_alias=True, exclude_none=True) | {
        "posthog": {"host": drift_posthog.url, "project_id": drift_posthog.project_id, "api_key": "${KEY}"},
        # model_dump masks secrets ("**********"), which the config check rightly refuses as a webhook URL.
        "slack": {"webhook_url": slack.webhook_url}}))
    path.chmod(0o600)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(app, [*args, "--config", str(path)], env={"KEY": API_KEY})
        assert result.exit_code == 0, result.stderr
        return result

    doc = json.loads(cli("status", "--json").stdout)
    (project,) = doc["projects"]
    job_keys = {f"{r['job_id']}|{r['level']}" for r in drift_posthog.dataset.runs}
    assert {j["job_key"] for j in project["jobs"]} == job_keys
    assert project["firing"], "the drift scenario leaves levels firing (cost, error rate)"
    assert all(a["notices_sent"] >= 1 for a in project["firing"] if a["kind"] != "stale_source")
    assert project["outbox"]["sent"] == len(slack.messages) and project["outbox"]["failed"] == 0
    target = project["firing"][0]
    assert "acknowledged by" not in cli("status").stdout
    cli("ack", target["fingerprint"], "--by", "ana", "--comment", "on it")
    text = cli("status").stdout
    assert "Acknowledged (1)" in text and f"{target['fingerprint']} {target['kind']}" in text and "on it" in text
    acked = json.loads(cli("status", "--json").stdout)["projects"][0]["firing"]
    assert [a["acknowledged"]["by"] for a in acked if a["acknowledged"]] == ["ana"]
    # history, outbox and silence list speak JSON too.
    assert isinstance(json.loads(cli("outbox", "--json").stdout), list)
    assert json.loads(cli("silence", "list", "--json").stdout) == []
    lineages = json.loads(cli("history", "--title", "", "--json").stdout)
    assert lineages and all(set(h) == {"lineage_id", "runs"} for h in lineages)
