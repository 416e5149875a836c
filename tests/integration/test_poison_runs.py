"""Poison runs through the pipeline against the local PostHog: a malformed run is retried, then quarantined with
one alert naming the run, the job and the field, and its job's later runs go on; odd runs are processed;
`runs retry` gives a quarantined run another go; staleness is judged from the runs PostHog has; a send that
hangs is abandoned after delivery.timeout_seconds."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor import telemetry
from monitor.local.slack import LocalSlack
from monitor.notify.slack import SlackNotifier
from monitor.stages.failures import KIND
from monitor.status import collect
from monitor.store.sqlite import SQLiteStore
from tests.conftest import END, PostHogEnv, make_config, monitor_for
from tests.integration.test_notify import NOW, _deliverer, _enqueue, _notification, _slack_notifier
from tests.support.hostile_runs import CASES, land


def _quarantine_messages(slack: LocalSlack) -> list[str]:
    return [json.dumps(m["blocks"]) for m in slack.messages if "Run quarantined" in json.dumps(m["blocks"])]


def test_malformed_runs_are_quarantined_once_and_their_jobs_go_on(
        posthog_factory: Any, slack: LocalSlack, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    landed = land(env.server, env.project_id, END)
    now = [END + timedelta(hours=1)]
    cfg = make_config(env, slack, None, tmp_path / "s.sqlite", alerting={"stale_after_hours": 0},
                      schedule={"interval_seconds": 1, "run_attempts": 3, "run_retry_seconds": 60})
    m = monitor_for(cfg, clock=lambda: now[0])
    malformed = {x.crafted for x in landed if x.case.malformed}
    odd = {x.crafted for x in landed if not x.case.malformed}

    first = m.cycle()
    assert malformed <= set(first.failed) and not (odd & set(first.failed)), first.failed
    # While a malformed run waits for its next try, the later run of its job waits too (diffs stay in order).
    later = {x.good[1] for x in landed if x.case.malformed}
    assert not later & set(first.processed)
    assert not _quarantine_messages(slack)
    # Within its backoff a failing run is not tried again.
    assert not m.cycle().failed
    for _ in range(2):
        now[0] += timedelta(minutes=10)
        m.cycle()
    done = m.store.processed_ids([r for x in landed for r in (*x.good, x.crafted)])
    assert done == {r for x in landed for r in x.good} | odd, "every well-formed and odd run is processed"
    quarantined = {f.run_id: f for f in m.store.run_failures(quarantined=True)}
    assert set(quarantined) == malformed
    messages = _quarantine_messages(slack)
    assert len(messages) == len(malformed), "one alert per quarantined run"
    for x in landed:
        if not x.case.malformed:
            continue
        f = quarantined[x.crafted]
        assert f.attempts == 3 and f.field == x.case.field and x.case.problem in f.error
        text = next(t for t in messages if x.crafted in t)
        assert f"Hostile {x.case.name}" in text and x.case.field in text
    # Status shows them; later cycles neither retry nor alert again.
    status = collect(cfg, m.store, now[0])
    assert {q.run_id for q in status.quarantined} == malformed
    now[0] += timedelta(hours=1)
    again = m.cycle()
    assert again.ok and not again.failed
    assert len(_quarantine_messages(slack)) == len(malformed)

    # `runs retry`: the run is taken again at the next cycle; still broken, it fails afresh (no second alert).
    target = sorted(malformed)[0]
    assert m.store.retry_run(target) is not None
    assert target in m.cycle().failed
    assert [f.attempts for f in m.store.run_failures() if f.run_id == target] == [1]
    m.store.close()
    m.client.close()


def test_staleness_is_judged_from_the_runs_posthog_has_not_from_those_processed(
        posthog_factory: Any, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    landed = land(env.server, env.project_id, END)
    cfg = make_config(env, None, None, tmp_path / "s.sqlite",
                      alerting={"stale_after_hours": 30, "stale_learned": False},
                      schedule={"interval_seconds": 1, "run_retry_seconds": 3600})
    at: datetime = END + timedelta(hours=1)
    m = monitor_for(cfg, clock=lambda: at)
    r = m.cycle()
    # The jobs of malformed runs are behind: their last processed run is two days old, while PostHog has
    # runs of them from 55 minutes ago (one failing, one waiting behind it).
    behind = {f"{x.job_id}|trace": x for x in landed if x.case.malformed}
    last = m.store.last_runs()
    assert {k: last[k][1] for k in behind} == {k: x.good[0] for k, x in behind.items()}
    assert not [n for n in r.notices if any(a.kind == "stale_source" for a in n.alerts)], \
        "a monitor that is behind is not a stale job"
    # Control: judged from processed runs alone (the old way), exactly those jobs would be called stale.
    control = m.check_sources(at, discovered=[])
    # (Named by job id: PostHog's job list does not know these jobs, and no landed run is looked at.)
    assert {a.job_name for n in control for a in n.alerts} == {x.job_id for x in behind.values()}
    # Once PostHog itself has nothing new for longer than the bound, every hostile job is stale (the jobs
    # behind fire since the control above, the others now).
    fired = m.check_sources(at + timedelta(hours=31), discovered=m.landed)
    assert {a.job_name for n in fired for a in n.alerts} >= {f"Hostile {x.case.name}" for x in landed
                                                             if not x.case.malformed}
    assert {st.job_key for st in m.store.firing_alerts() if st.kind == "stale_source"} >= {
        f"{x.job_id}|trace" for x in landed}
    assert len(CASES) == len(landed) and all(a.kind != KIND for n in fired for a in n.alerts)
    m.store.close()
    m.client.close()


def test_a_send_that_hangs_is_abandoned_and_retried_and_the_rest_of_the_outbox_goes(
        slack: LocalSlack, tmp_path: Path) -> None:
    # A Slack endpoint that takes the connection and never answers (its own HTTP timeout is far longer).
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        hung = SlackNotifier(webhook_url=f"http://127.0.0.1:{silent.getsockname()[1]}/hook", timeout=60)
        d = _deliverer(store, {"hung": hung, "slack": _slack_notifier(slack, "webhook")}, timeout=0.5)
        _enqueue(store, _notification(tag="hang1"), ["hung", "slack"])
        before = telemetry.DELIVERIES_ABANDONED.labels(channel="hung")._value.get()
        started = time.monotonic()
        assert d.deliver_due(NOW) == 1, "the other channel's message went out"
        assert time.monotonic() - started < 5
        assert telemetry.DELIVERIES_ABANDONED.labels(channel="hung")._value.get() == before + 1
        (entry,) = store.outbox("pending")
        assert entry.channel == "hung" and entry.attempts == 1 and "abandoned" in (entry.last_error or "")
        assert len(slack.messages) == 1
    finally:
        store.close()
        silent.close()
