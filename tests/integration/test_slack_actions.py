"""Slack's "Silence 24h" and "Acknowledge" buttons, clicked on the local Slack as a person would: the
block_actions payload Slack posts to the app's Request URL, signed with the signing secret, reaching the
daemon's POST /slack/actions over loopback; the results read back with the CLI (`silence list`, `status`)
and in the messages that follow."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from typer.testing import CliRunner

from monitor.alerts import Alert, Notification
from monitor.app.http import Health, HealthServer, start_http_server
from monitor.app.slack_actions import SlackActions
from monitor.cli import app
from monitor.config import Config, ServerConfig, parse_config
from monitor.daemon import Daemon
from monitor.local.slack import LocalSlack, SignedRequest, slack_signature
from monitor.notify.actions import ACK_ACTION, SILENCE_ACTION, decode_value
from monitor.notify.slack import SlackNotifier
from monitor.store import open_store
from monitor.store.base import AlertState
from tests.conftest import API_KEY, END, PostHogEnv, write_daemon_config

SECRET = "8f14e45fceea167a5a36dedd4bea2543"  # a test's signing secret, given through the environment


def _buttons(message: dict[str, Any], action_id: str) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks") or [] if b.get("type") == "actions"
            for e in b.get("elements") or [] if e.get("action_id") == action_id]


def _fingerprints(message: dict[str, Any]) -> set[str]:
    return {decode_value(e["value"]).fingerprint for e in _buttons(message, SILENCE_ACTION)}


def _with_actions(path: Path, **extra: Any) -> Path:
    doc = json.loads(path.read_text())
    doc["slack"].update(actions=True, signing_secret="${SLACK_SIGNING_SECRET}", **extra)
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("state", ["sqlite", "postgres"])
def test_a_signed_click_silences_the_alert_and_an_acknowledge_shows_in_status(
        state: str, posthog_factory: Any, slack: LocalSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    """On PostgreSQL the clicks go to a standby replica: any replica takes them, the leader acts on them."""
    env: PostHogEnv = posthog_factory("drift", scale=0.05, days=14)
    monkeypatch.setenv("TEST_POSTHOG_KEY", API_KEY)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    first = min(r["emitted_at"] for r in env.dataset.runs)
    # Mid-drift, when error-rate levels fire in three jobs; reminders after an hour, so each of them is
    # told again at the next day's run unless something mutes it.
    env.server.clock.set(first + timedelta(days=9, hours=1))
    config = _with_actions(write_daemon_config(
        tmp_path / "config.yaml", env, slack, tmp_path / "state.sqlite", server={"host": "127.0.0.1", "port": 0},
        alerting={"stale_after_hours": 0, "catch_up_after_hours": 0, "repeat_interval_hours": 1}))
    if state == "postgres":
        doc = json.loads(config.read_text())
        config.write_text(json.dumps({**doc, "state": {"url": request.getfixturevalue("postgres_url")}}))
    d = Daemon(config, clock=lambda: env.server.clock.now() or END)
    d.start_health_server()
    assert d._health_server is not None
    # The replica Slack's clicks reach: the leader itself on SQLite, a standby on PostgreSQL.
    taker = Daemon(config, clock=lambda: env.server.clock.now() or END) if state == "postgres" else d
    if taker is not d:
        taker.start_health_server()
    assert taker._health_server is not None
    request_url = f"http://127.0.0.1:{taker._health_server.server_address[1]}/slack/actions"
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(app, [*args, "--config", str(config)],
                               env={"TEST_POSTHOG_KEY": API_KEY, "SLACK_SIGNING_SECRET": SECRET})
        assert result.exit_code == 0, result.stderr
        return result.stdout

    try:
        assert (r := d.run_cycle()) is not None and r.ok
        if taker is not d:
            assert (r := taker.run_cycle()) is not None and r.standby
        assert not slack.block_errors
        firing = [m for m in slack.messages if _buttons(m, ACK_ACTION)]
        assert len(firing) >= 2, "the drift scenario fires error-rate levels in several jobs"
        silenced_msg, acked_msg = firing[0], firing[1]
        (silenced_fp,) = _fingerprints(silenced_msg)
        (acked_fp,) = _fingerprints(acked_msg)
        ref = decode_value(_buttons(silenced_msg, SILENCE_ACTION)[0]["value"])
        assert ref.lineage, "an alert about a cluster carries its lineage"

        clicked = datetime.now(UTC)
        click = slack.click(silenced_msg, SILENCE_ACTION, request_url=request_url, signing_secret=SECRET)
        assert click.status == 200
        ack = slack.click(acked_msg, ACK_ACTION, request_url=request_url, signing_secret=SECRET,
                          user={"id": "U0BOB", "username": "bob", "team_id": "T0LOCAL"})
        assert ack.status == 200
        # The confirmations reach each click's response_url, seen only by the person who clicked.
        assert slack.wait_for_responses(2)
        texts = sorted(r["text"] for r in slack.responses)
        assert texts[0].startswith("Acknowledged by bob") and texts[1].startswith("Silenced for 24 h by ana")
        assert all(r["response_type"] == "ephemeral" and r["replace_original"] is False for r in slack.responses)

        # `silence list` shows the silence the click added; `status` the silence and the acknowledgement.
        (silence,) = json.loads(cli("silence", "list", "--json"))
        assert (silence["source"], silence["active"], silence["kinds"], silence["lineage"], silence["level"]) == (
            "store", True, [ref.rule], ref.lineage, ref.level)
        assert silence["comment"] == "Silence 24h from Slack by ana"
        # Dated by the wall clock, as `silence add` dates its silences.
        assert clicked + timedelta(hours=24) <= datetime.fromisoformat(silence["until"]) <= datetime.now(
            UTC) + timedelta(hours=24)
        status = json.loads(cli("status", "--json"))["projects"][0]
        assert [s["id"] for s in status["silences"]] == [silence["id"]]
        acked = {a["fingerprint"]: a["acknowledged"] for a in status["firing"]}
        assert acked[acked_fp]["by"] == "bob" and acked[silenced_fp] is None
        assert "Acknowledged (1)" in cli("status") and "Silenced (1 active" in cli("status")

        # The next day's runs: the silenced alert, still firing, is not told again; the others are.
        told = len(slack.messages)
        day = env.server.clock.now()
        assert day is not None
        env.server.clock.set(day + timedelta(days=1))
        assert (r := d.run_cycle()) is not None and r.ok
        later = slack.messages[told:]
        reminded = set().union(*(_fingerprints(m) for m in later))
        assert acked_fp in reminded, "a reminder of the acknowledged (not silenced) alert is the control"
        assert silenced_fp not in reminded
        assert silenced_fp in {a["fingerprint"] for a in json.loads(cli("status", "--json"))["projects"][0]["firing"]}
    finally:
        for replica in {id(d): d, id(taker): taker}.values():
            assert replica._health_server is not None
            replica._health_server.shutdown()
            replica.close()


@pytest.fixture(params=["sqlite", "postgres"])
def actions_server(request: pytest.FixtureRequest, slack: LocalSlack,
                   tmp_path: Path) -> Iterator[tuple[Config, HealthServer, str]]:
    """A config with slack.actions, a store with one firing alert (SQLite, or PostgreSQL as replicas share
    it), the message about it delivered to the local Slack through slack-sdk, and the daemon's HTTP port
    with the actions handler: no PostHog needed."""
    state = ({"path": str(tmp_path / "s.sqlite")} if request.param == "sqlite"
             else {"url": request.getfixturevalue("postgres_url")})
    doc = {"posthog": {"project_id": 77, "api_key": "phx_x"}, "state": state,
           "slack": {"webhook_url": slack.webhook_url, "actions": True, "signing_secret": "${SLACK_SIGNING_SECRET}"},
           "server": {"host": "127.0.0.1", "port": 0}}
    cfg = parse_config(json.dumps(doc), "c.yaml", env={"SLACK_SIGNING_SECRET": SECRET})
    now = datetime.now(UTC)
    store = open_store(cfg.state)
    try:
        store.commit_alerts([AlertState(
            fingerprint="0123456789abcdef", status="firing", kind="error_rate", first_fired_at=now - timedelta(hours=1),
            last_fired_at=now, last_notified_at=now, last_run_id="r1", job_key="job|trace", lineage_id="lin-1",
            summary="s")], [], now)
    finally:
        store.close()
    alert = Alert(fingerprint="0123456789abcdef", rule="error_rate", kind="error_rate", severity="critical",
                  summary="Error rate 30%", run_id="r1", job_name="support", level="trace",
                  cluster_title="Refunds *now*", lineage_id="lin-1")
    n = Notification(key="run:r1", project_id=77, run_id="r1", job_name="support", level="trace",
                     window_start=now, window_end=now, alerts=(alert,), run_url="")
    assert SlackNotifier.from_config(cfg.slack).send(n).ok  # type: ignore[arg-type]
    health = Health(started_at=time.time())
    server = start_http_server(ServerConfig(host="127.0.0.1", port=0), health, lambda: None,
                               slack_actions=SlackActions(lambda: cfg).handle)
    assert server is not None
    yield cfg, server, f"http://127.0.0.1:{server.server_address[1]}/slack/actions"
    server.shutdown()


def _state(cfg: Config) -> tuple[list[Any], list[Any]]:
    store = open_store(cfg.state)
    try:
        return store.silences(), store.acknowledgements()
    finally:
        store.close()


def test_bad_signature_stale_timestamp_tampered_body_and_replay_are_refused_and_change_nothing(
        actions_server: tuple[Config, HealthServer, str], slack: LocalSlack) -> None:
    cfg, _server, url = actions_server
    (message,) = slack.messages
    assert slack.click(message, SILENCE_ACTION, request_url=url, signing_secret="not-the-secret").status == 401
    assert slack.click(message, SILENCE_ACTION, request_url=url, signing_secret=SECRET,
                       at=time.time() - 6 * 60).status == 401
    assert slack.click(message, SILENCE_ACTION, request_url=url, signing_secret=SECRET,
                       at=time.time() + 6 * 60).status == 401
    good = slack.click(message, ACK_ACTION, request_url=url, signing_secret=SECRET)
    assert good.status == 200
    # The same body and signature again (a replay inside the 5 minutes), and the body changed under a
    # valid signature (silence instead of acknowledge): both refused.
    assert slack.post(good).status == 401
    forged = good.body.replace(ACK_ACTION.encode(), SILENCE_ACTION.encode())
    assert slack.post(SignedRequest(good.url, forged, good.headers)).status == 401
    no_signature = {k: v for k, v in good.headers.items() if k != "X-Slack-Signature"}
    assert slack.post(SignedRequest(good.url, forged, no_signature)).status == 401
    junk_ts = {**good.headers, "X-Slack-Request-Timestamp": "soon"}
    assert slack.post(SignedRequest(good.url, forged, junk_ts)).status == 401
    silences, acks = _state(cfg)
    assert silences == [] and [a.by for a in acks] == ["ana"]  # only the one good click did anything
    # A signed body that is not a block_actions form: 400, nothing written.
    ts = str(int(time.time()))
    body = b"payload=%7B%22type%22%3A%22view_submission%22%7D"
    bad = SignedRequest(url, body, {"Content-Type": "application/x-www-form-urlencoded",
                                    "X-Slack-Request-Timestamp": ts,
                                    "X-Slack-Signature": slack_signature(SECRET, ts, body)})
    assert slack.post(bad).status == 400
    assert _state(cfg)[0] == []


def test_a_click_replayed_to_another_replica_on_the_same_store_is_refused(
        actions_server: tuple[Config, HealthServer, str], slack: LocalSlack) -> None:
    cfg, _server, url = actions_server
    # A second replica: its own HTTP port and its own handler (and so its own memory of signatures), on the
    # same store, as two replicas behind one load balancer are.
    other = start_http_server(ServerConfig(host="127.0.0.1", port=0), Health(started_at=time.time()),
                              lambda: None, slack_actions=SlackActions(lambda: cfg).handle)
    assert other is not None
    try:
        (message,) = slack.messages
        good = slack.click(message, SILENCE_ACTION, request_url=url, signing_secret=SECRET)
        assert good.status == 200
        other_url = f"http://127.0.0.1:{other.server_address[1]}/slack/actions"
        with structlog.testing.capture_logs() as logs:
            assert slack.post(SignedRequest(other_url, good.body, good.headers)).status == 401
        assert any(e["event"] == "slack_action_rejected" and "another replica" in e["reason"] for e in logs)
        assert slack.wait_for_responses(1)
        assert len(slack.responses) == 1  # only the click that acted is answered
        silences, _acks = _state(cfg)
        assert len(silences) == 1
        # A fresh click (its own timestamp and signature) on the other replica acts.
        ack = slack.click(message, ACK_ACTION, request_url=other_url, signing_secret=SECRET)
        assert ack.status == 200 and [a.by for a in _state(cfg)[1]] == ["ana"]
    finally:
        other.shutdown()


def test_untrusted_text_in_a_click_reaches_the_store_bound_and_logs_and_slack_inert(
        actions_server: tuple[Config, HealthServer, str], slack: LocalSlack) -> None:
    cfg, _server, url = actions_server
    (message,) = slack.messages
    # A value no button of ours carries (SQL in the lineage) and a user name with a line break, a
    # terminal escape, a mention and SQL: signed, as if Slack had sent them.
    evil_lineage = "lin-1' OR '1'='1'); DROP TABLE silences;--"
    for e in _buttons(message, SILENCE_ACTION):
        e["value"] = json.dumps({**json.loads(e["value"]), "g": evil_lineage})
    user = {"id": "U0EVIL", "username": "eve\nlevel=critical \x1b[31m<!channel> ');DROP TABLE acknowledgements;--"}
    with structlog.testing.capture_logs() as logs:
        assert slack.click(message, SILENCE_ACTION, request_url=url, signing_secret=SECRET, user=user).status == 200
        assert slack.click(slack.messages[0], ACK_ACTION, request_url=url, signing_secret=SECRET,
                           user=user).status == 200
        assert slack.wait_for_responses(2)
    silences, acks = _state(cfg)
    ((_sid, spec),) = silences
    assert spec["lineage"] == evil_lineage  # stored as data, through a bound parameter
    assert spec["job"] == "support" and spec["title"] is None
    (ack,) = acks
    assert "\n" not in ack.by and "\x1b" not in ack.by and ack.by.startswith("eve level=critical")
    events = [e for e in logs if e["event"].startswith("slack_action_")]
    assert {e["event"] for e in events} == {"slack_action_silenced", "slack_action_acknowledged"}
    for event in events:
        assert all("\n" not in str(v) and "\x1b" not in str(v) for v in event.values())
        assert SECRET not in json.dumps(event, default=str)
    # What goes back to Slack is mrkdwn with the data neutralised: no mention can form.
    assert all("<!channel>" not in r["text"] and "&lt;!channel&gt;" in r["text"] for r in slack.responses)


def test_without_slack_actions_the_message_has_link_buttons_only_and_the_route_is_off(
        slack: LocalSlack, tmp_path: Path) -> None:
    doc = {"posthog": {"project_id": 78, "api_key": "phx_x"}, "state": {"path": str(tmp_path / "s.sqlite")},
           "slack": {"webhook_url": slack.webhook_url}}
    cfg = parse_config(json.dumps(doc), "c.yaml", env={})
    now = datetime.now(UTC)
    alert = Alert(fingerprint="f1", rule="error_rate", kind="error_rate", severity="critical", summary="s",
                  run_id="r1", job_name="support", level="trace")
    n = Notification(key="k", project_id=78, run_id="r1", job_name="support", level="trace", window_start=now,
                     window_end=now, alerts=(msgspec.structs.replace(alert, links=()),), run_url="")
    assert cfg.slack is not None and SlackNotifier.from_config(cfg.slack).send(n).ok
    assert not _buttons(slack.messages[0], SILENCE_ACTION) and not _buttons(slack.messages[0], ACK_ACTION)
    handler = SlackActions(lambda: cfg)
    assert handler.handle(b"payload=x", {})[0] == 404


def test_clicks_that_cannot_act_say_why_to_the_clicker_and_change_nothing(
        actions_server: tuple[Config, HealthServer, str], slack: LocalSlack) -> None:
    cfg, _server, url = actions_server
    (message,) = slack.messages
    original = json.loads(_buttons(message, ACK_ACTION)[0]["value"])
    cases: list[tuple[str, dict[str, Any], str]] = [
        (ACK_ACTION, {"f": "ffffffffffffffff"}, "not firing any more"),
        (SILENCE_ACTION, {"p": 999}, "no longer watches"),
        (SILENCE_ACTION, {"k": "no-such-rule"}, "no longer configured")]
    for i, (action, change, said) in enumerate(cases):
        for e in _buttons(message, action):
            e["value"] = json.dumps({**original, **change})
        assert slack.click(message, action, request_url=url, signing_secret=SECRET).status == 200
        assert slack.wait_for_responses(i + 1)
        assert said in slack.responses[i]["text"]
    assert _state(cfg) == ([], [])
