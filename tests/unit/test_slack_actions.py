"""The pure half of Slack's buttons (monitor/notify/actions.py): what a button carries, what a click's
silence matches, and the config that turns the buttons on. The signed HTTP round trip is in
tests/integration/test_slack_actions.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import msgspec
import pytest

from monitor import kinds
from monitor.alerts import Alert, Link, Notification
from monitor.config import ConfigError, Silence, parse_config
from monitor.notify.actions import (
    ACK_ACTION,
    SILENCE_ACTION,
    TITLE_IN_VALUE,
    ActionError,
    Click,
    alert_ref,
    decode_value,
    encode_value,
    parse_clicks,
    silence_spec,
)
from monitor.notify.render import render_slack
from monitor.rules.silences import matching_silence

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LEVEL = next(k.name for k in kinds.KINDS if k.stateful)
EVENT = next(k.name for k in kinds.KINDS if not k.stateful)


def _alert(**kw: object) -> Alert:
    base: dict[str, object] = dict(fingerprint="fp1", rule=LEVEL, kind=LEVEL, severity="critical", summary="s",
                                   run_id="r1", job_name="support [eu]*", level="trace",
                                   cluster_title="Refund requests", lineage_id="lin-1",
                                   links=(Link("Open run", "https://ph.example/run"),))
    return Alert(**{**base, **kw})  # type: ignore[arg-type]


def _click(a: Alert, action: str = SILENCE_ACTION) -> Click:
    return Click(action=action, ref=decode_value(encode_value(alert_ref(a, 7))), user_id="U1", user_name="ana",
                 team_id="T1", response_url=None)


def _silence(a: Alert) -> Silence:
    return Silence.model_validate(silence_spec(_click(a), "ana", NOW))


def test_a_clicks_silence_matches_its_alert_across_renames_for_24h_and_nothing_else() -> None:
    a = _alert()
    s = _silence(a)
    assert s.until == NOW + timedelta(hours=24) and s.kinds == [LEVEL] and s.lineage == "lin-1" and s.title is None
    renamed = msgspec.structs.replace(a, cluster_title="Refunds and chargebacks", run_id="r2")
    assert matching_silence(renamed, [s], NOW + timedelta(hours=23)) is s
    assert matching_silence(a, [s], NOW + timedelta(hours=24)) is None  # expired
    other_cluster = msgspec.structs.replace(a, lineage_id="lin-2", fingerprint="fp2")
    other_job = msgspec.structs.replace(a, job_name="support [eu]x")  # the job's `*` and `[` are literal
    other_kind = msgspec.structs.replace(a, kind=EVENT, rule=EVENT)
    other_level = msgspec.structs.replace(a, level="generation")
    for b in (other_cluster, other_job, other_kind, other_level):
        assert matching_silence(b, [s], NOW) is None, b


def test_without_a_lineage_the_title_is_matched_literally_and_a_long_one_by_its_start() -> None:
    a = _alert(lineage_id=None, cluster_title="Refunds *now* [beta]?")
    s = _silence(a)
    assert matching_silence(a, [s], NOW) is s
    assert matching_silence(msgspec.structs.replace(a, cluster_title="Refunds XnowX [beta]!"), [s], NOW) is None
    long = _alert(lineage_id=None, cluster_title="é" * (TITLE_IN_VALUE + 500))
    value = encode_value(alert_ref(long, 7))
    assert len(value) < 2000
    assert matching_silence(long, [_silence(long)], NOW) is not None


def test_button_values_round_trip_and_anything_else_is_refused() -> None:
    ref = alert_ref(_alert(), 7)
    assert decode_value(encode_value(ref)) == ref
    good = json.loads(encode_value(ref))
    for bad in (None, "not json", "[1]", json.dumps({**good, "p": True}), json.dumps({**good, "f": ""}),
                json.dumps({**good, "k": 5}), json.dumps({**good, "g": "x" * 201}), "x" * 2001):
        with pytest.raises(ActionError):
            decode_value(bad)


def test_firing_alerts_get_the_buttons_levels_also_acknowledge_and_resolved_notices_none() -> None:
    level, event = _alert(), _alert(fingerprint="fp2", kind=EVENT, rule=EVENT)
    resolved = _alert(fingerprint="fp3", status="resolved")
    n = Notification(key="k", project_id=7, run_id="r1", job_name="support", level="trace", window_start=NOW,
                     window_end=NOW, alerts=(level, event, resolved), run_url="")

    def buttons(actions: bool) -> list[list[tuple[str, str | None]]]:
        msg = render_slack(n, actions=actions)  # slack-sdk's models validate every block (SlackObjectFormationError)
        return [[(e["action_id"], e.get("value")) for e in b["elements"]] for b in msg.blocks if b["type"] == "actions"]

    on = buttons(True)
    assert [[a for a, _ in row] for row in on] == [
        ["link-2-0", SILENCE_ACTION, ACK_ACTION], ["link-4-0", SILENCE_ACTION], ["link-6-0"]]
    assert decode_value(on[0][1][1]).fingerprint == "fp1" and decode_value(on[1][1][1]).fingerprint == "fp2"
    assert [[a for a, _ in row] for row in buttons(False)] == [["link-2-0"], ["link-4-0"], ["link-6-0"]]


def test_the_value_carries_full_values_not_the_display_cut() -> None:
    job = "j" * 300  # shown cut to 100 characters; the silence must match the whole name
    n = Notification(key="k", project_id=7, run_id="r1", job_name=job, level="trace", window_start=NOW,
                     window_end=NOW, alerts=(_alert(job_name=job),), run_url="")
    (value,) = [e["value"] for b in render_slack(n, actions=True).blocks if b["type"] == "actions"
                for e in b["elements"] if e["action_id"] == SILENCE_ACTION]
    assert decode_value(value).job == job


def _body(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_parse_clicks_keeps_our_actions_and_refuses_other_shapes() -> None:
    value = encode_value(alert_ref(_alert(), 7))
    payload = {"type": "block_actions", "user": {"id": "U1", "username": "ana", "team_id": "T1"},
               "team": {"id": "T1"}, "response_url": "https://hooks.slack.com/actions/T1/1/x",
               "actions": [{"action_id": "link-2-0", "type": "button"},
                           {"action_id": ACK_ACTION, "type": "button", "value": value}]}
    (c,) = parse_clicks(_body(payload))
    assert (c.action, c.ref.fingerprint, c.user_name, c.team_id) == (ACK_ACTION, "fp1", "ana", "T1")
    for bad in (b"\xff\xfe", b"payload=%7B", _body({**payload, "type": "view_submission"}),
                _body({**payload, "user": "U1"}), _body({**payload, "user": {"username": "x"}}), b"a=1&b=2"):
        with pytest.raises(ActionError):
            parse_clicks(bad)


SLACK = "slack:\n  webhook_url: https://hooks.example/x\n"


def test_config_turns_buttons_on_only_with_a_signing_secret_from_the_environment_and_a_port() -> None:
    base = "posthog:\n  project_id: 1\n  api_key: phx_x\nserver:\n  port: 8080\n"
    cfg = parse_config(base + SLACK + "  actions: true\n  signing_secret: ${SLACK_SIGNING_SECRET}\n", "c.yaml",
                       env={"SLACK_SIGNING_SECRET": "s3cr3t-value"})
    assert cfg.slack is not None and cfg.slack.actions
    assert "s3cr3t-value" not in repr(cfg) and "s3cr3t-value" not in str(cfg.model_dump())
    with pytest.raises(ConfigError) as exc:
        parse_config(base + SLACK + "  actions: true\n  signing_secret: s3cr3t-value\n", "c.yaml", env={})
    assert exc.value.problems == ["c.yaml:9: slack.signing_secret: give it from the environment, like "
                                  "${SLACK_SIGNING_SECRET}, not written in the file"]
    with pytest.raises(ConfigError) as exc:
        parse_config(base + SLACK + "  actions: true\n", "c.yaml", env={})
    assert "needs signing_secret" in exc.value.problems[0] and exc.value.problems[0].startswith("c.yaml:6: slack")
    with pytest.raises(ConfigError) as exc:
        parse_config("posthog:\n  project_id: 1\n  api_key: phx_x\n" + SLACK
                     + "  actions: true\n  signing_secret: ${S}\n", "c.yaml", env={"S": "x"})
    assert "c.yaml:6: slack.actions: needs server.port" in exc.value.problems[0]  # at its own line


def test_silence_add_takes_a_lineage_as_a_click_does(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from monitor.cli import app

    path = tmp_path / "c.yaml"
    path.write_text(f"posthog:\n  project_id: 1\n  api_key: ${{K}}\nstate:\n  path: {tmp_path / 's.sqlite'}\n")
    runner = CliRunner()
    added = runner.invoke(app, ["silence", "add", "--config", str(path), "--lineage", "lin-1"], env={"K": "phx_x"})
    assert added.exit_code == 0, added.stderr
    listed = runner.invoke(app, ["silence", "list", "--config", str(path), "--json"], env={"K": "phx_x"})
    (s,) = json.loads(listed.stdout)
    assert (s["lineage"], s["kinds"], s["active"]) == ("lin-1", [], True)
    assert "lineage=lin-1" in runner.invoke(app, ["silence", "list", "--config", str(path)], env={"K": "phx_x"}).stdout
