"""Slack's interactive buttons on an alert, "Silence 24h" and "Acknowledge": what a button carries and
what a click asks for. Pure (data in, data out); the daemon's handler (monitor/app/slack_actions.py)
verifies the request's signature and acts on the store.

A button's `value` carries what the action needs without a store lookup: the project, the alert's
fingerprint, and what a silence of that alert matches (its rule or kind, job, level and cluster lineage:
the lineage, not the title, as a cluster's title is rewritten from run to run while its lineage stays; a
title glob only for an alert with no lineage), so a click on an old message still means the same alert.
Slack sends the value back unchanged, but it is parsed as untrusted input all the same: bounded, typed,
and only ever stored through bound parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.models.blocks import ButtonElement, PlainTextObject

from monitor import kinds
from monitor.alerts import Alert

SILENCE_ACTION = "cm_silence_24h"
ACK_ACTION = "cm_ack"
SILENCE_FOR = timedelta(hours=24)
# Slack's limit for a button's value; a title longer than TITLE_IN_VALUE is matched by its start (a glob).
MAX_VALUE = 2000
TITLE_IN_VALUE = 300
# Bounds for each field read back from a click: longer means it did not come from one of our buttons.
_LIMITS = {"f": 64, "k": 200, "j": 400, "l": 40, "g": 200, "t": 4 * TITLE_IN_VALUE, "u": 200}


class ActionError(ValueError):
    """A click payload that is not one of ours: the reason is for the log, never echoed to the sender."""


@dataclass(frozen=True)
class AlertRef:
    """The alert a button is on, as its value carries it."""

    project_id: int
    fingerprint: str
    rule: str  # what a silence's `kinds` matches: the rule's name, or the built-in kind
    job: str
    level: str
    lineage: str | None  # the cluster's lineage id; None: not about a tracked cluster
    title_glob: str | None  # without a lineage: the cluster title as a glob matching it literally


@dataclass(frozen=True)
class Click:
    """One button press, as Slack reports it in a block_actions payload."""

    action: str  # SILENCE_ACTION or ACK_ACTION
    ref: AlertRef
    user_id: str
    user_name: str
    team_id: str
    response_url: str | None


def glob_literal(text: str) -> str:
    """`text` as an fnmatch pattern that matches exactly it (`*`, `?` and `[` taken literally)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def title_glob(title: str | None) -> str | None:
    if title is None:
        return None
    if len(title) <= TITLE_IN_VALUE:
        return glob_literal(title)
    return glob_literal(title[:TITLE_IN_VALUE]) + "*"


def alert_ref(a: Alert, project_id: int) -> AlertRef:
    return AlertRef(project_id=project_id, fingerprint=a.fingerprint, rule=a.rule, job=a.job_name, level=a.level,
                    lineage=a.lineage_id or None,
                    title_glob=None if a.lineage_id else title_glob(a.cluster_title))


def encode_value(ref: AlertRef) -> str:
    doc = {"p": ref.project_id, "f": ref.fingerprint, "k": ref.rule, "j": ref.job, "l": ref.level}
    if ref.lineage is not None:
        doc["g"] = ref.lineage
    if ref.title_glob is not None:
        doc["t"] = ref.title_glob
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_VALUE:  # a job name near its bound and a title of many escaped characters
        raise ValueError(f"button value of {len(text)} characters is over Slack's {MAX_VALUE}")
    return text


def decode_value(text: Any) -> AlertRef:
    if not isinstance(text, str) or len(text) > MAX_VALUE:
        raise ActionError("button value missing or too long")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ActionError("button value is not JSON") from exc
    if not isinstance(doc, dict):
        raise ActionError("button value is not an object")
    pid = doc.get("p")
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise ActionError("button value has no project")
    return AlertRef(project_id=pid, fingerprint=_field(doc, "f"), rule=_field(doc, "k"), job=_field(doc, "j"),
                    level=_field(doc, "l"), lineage=None if doc.get("g") is None else _field(doc, "g"),
                    title_glob=None if doc.get("t") is None else _field(doc, "t"))


def _field(doc: dict[str, Any], key: str) -> str:
    v = doc.get(key)
    if not isinstance(v, str) or not v or len(v) > _LIMITS[key]:
        raise ActionError(f"button value field {key!r} missing, not text or too long")
    return v


def action_buttons(a: Alert, project_id: int) -> list[ButtonElement]:
    """The buttons of a firing alert: "Silence 24h" on every one, "Acknowledge" on those that stay firing
    (a level; a one-off event has nothing to acknowledge). None on a resolved notice."""
    if a.status != "firing":
        return []
    value = encode_value(alert_ref(a, project_id))
    out = [ButtonElement(text=PlainTextObject(text="Silence 24h"), action_id=SILENCE_ACTION, value=value)]
    if kinds.is_stateful(a.kind):
        out.append(ButtonElement(text=PlainTextObject(text="Acknowledge"), action_id=ACK_ACTION, value=value,
                                 style="primary"))
    return out


def parse_clicks(body: bytes) -> list[Click]:
    """The clicks of a block_actions request body (`payload=<JSON>`, form-encoded), ours only: other
    actions (the link buttons, which Slack also reports) are left out."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=4)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ActionError("body is not a form") from exc
    raw = form.get("payload")
    if not raw or len(raw) != 1:
        raise ActionError("no payload field")
    try:
        payload = json.loads(raw[0])
    except ValueError as exc:
        raise ActionError("payload is not JSON") from exc
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise ActionError("not a block_actions payload")
    user = payload.get("user")
    team = payload.get("team")
    actions = payload.get("actions")
    if not isinstance(user, dict) or not isinstance(actions, list):
        raise ActionError("payload lacks user or actions")
    user_id = _text(user.get("id"))
    if not user_id:
        raise ActionError("payload user has no id")
    user_name = _text(user.get("username")) or _text(user.get("name")) or user_id
    team_id = _text(team.get("id")) if isinstance(team, dict) else _text(user.get("team_id"))
    url = payload.get("response_url")
    clicks = []
    for act in actions:
        if not isinstance(act, dict) or act.get("action_id") not in (SILENCE_ACTION, ACK_ACTION):
            continue
        clicks.append(Click(action=str(act["action_id"]), ref=decode_value(act.get("value")), user_id=user_id,
                            user_name=user_name, team_id=team_id,
                            response_url=url if isinstance(url, str) and len(url) <= 2000 else None))
    return clicks


def _text(v: Any) -> str:
    return v if isinstance(v, str) and len(v) <= _LIMITS["u"] else ""


def silence_spec(c: Click, who: str, now: datetime) -> dict[str, Any]:
    """What `cluster-monitor silence add --kind K --job J --level L --lineage G --for 24h` would store for
    the clicked alert (`who`: the clicking user, made displayable by the caller)."""
    return {"kinds": [c.ref.rule], "severities": [], "job": glob_literal(c.ref.job), "level": c.ref.level,
            "lineage": c.ref.lineage, "title": c.ref.title_glob, "until": (now + SILENCE_FOR).isoformat(),
            "comment": f"Silence 24h from Slack by {who}"}
