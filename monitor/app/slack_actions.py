"""Clicks on the "Silence 24h" and "Acknowledge" buttons, posted by Slack to POST /slack/actions.

Slack's request-URL interactivity: Slack signs each request with the app's signing secret (X-Slack-
Signature, `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}`); slack-sdk's SignatureVerifier checks it, and
the timestamp to within 5 minutes, in constant time. A request seen already (same signature) is refused
too: a captured click cannot be replayed inside those 5 minutes, to this replica (its memory, before the
body is parsed) or to another one on the same store (the signature is recorded there once, before the
click acts).

A click writes the same store rows as the CLI (`silence add`, `ack`), through a store opened for the
click and closed after it, as the CLI does: any replica can take it (PostgreSQL is shared; SQLite has
one replica), and the leader's next run reads the silence. Slack wants an answer within 3 s: the answer
is a bare 200 once the row is written, and the confirmation people see ("Silenced for 24 h by ...") goes
to the click's response_url afterwards, in a thread of its own, as an ephemeral message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr, ValidationError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from monitor.config import Config, Silence
from monitor.kinds import unknown_kind
from monitor.notify.actions import ACK_ACTION, ActionError, Click, parse_clicks, silence_spec
from monitor.notify.render import display, mrkdwn
from monitor.status import firing_states
from monitor.store import Store, StoreError, open_store

log = structlog.get_logger()

MAX_BODY = 64_000  # a block_actions payload of one of our messages is a few kB
REPLAY_WINDOW = 5 * 60  # Slack's: a timestamp further from now than this is refused anyway
SLACK_RESPONSE_HOSTS = ("hooks.slack.com",)
# The store's one-time tokens of Slack requests (Store.first_use): the request's signature and the click's index.
REPLAY_NAMESPACE = "slack_request:"


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackActions:
    """The handler behind POST /slack/actions. `config` is read per click, so a reload applies at once;
    `wall_clock` checks Slack's timestamps and dates silences and acknowledgements (as the CLI's `silence
    add` and `ack` do); `respond` posts the confirmation (a thread calling slack-sdk by default)."""

    def __init__(self, config: Callable[[], Config], *, wall_clock: Callable[[], float] = time.time,
                 respond: Callable[[str, str], None] | None = None) -> None:
        self._config = config
        self._wall = wall_clock
        self._respond = respond or _respond_in_thread
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(HTTP status, body) for one request; never raises."""
        cfg = self._config()
        slack = cfg.slack
        if slack is None or not slack.actions or slack.signing_secret is None:
            return 404, b"not found\n"
        if len(body) > MAX_BODY:
            return 413, b"too large\n"
        signature = next((v for k, v in headers.items() if k.lower() == "x-slack-signature"), "")
        if not self._verified(body, headers, signature, slack.signing_secret.get_secret_value()):
            return 401, b"unauthorized\n"
        try:
            clicks = parse_clicks(body)
        except ActionError as exc:
            log.warning("slack_action_rejected", reason=str(exc))
            return 400, b"bad request\n"
        replayed = False
        for i, c in enumerate(clicks):
            text = self._act(cfg, c, f"{REPLAY_NAMESPACE}{signature}:{i}")
            if text is None:
                replayed = True
            elif c.response_url and _may_respond(c.response_url, slack.base_url, slack.webhook_url):
                self._respond(c.response_url, text)
        return (401, b"unauthorized\n") if replayed else (200, b"")

    def _verified(self, body: bytes, headers: Mapping[str, str], signature: str, secret: str) -> bool:
        timestamp = next((v for k, v in headers.items() if k.lower() == "x-slack-request-timestamp"), None)
        try:
            ok = SignatureVerifier(secret, _Clock(self._wall)).is_valid(body, timestamp, signature)
        except (ValueError, UnicodeDecodeError):  # a timestamp that is not a number, a body not UTF-8
            ok = False
        if not ok:
            log.warning("slack_action_rejected", reason="bad signature or stale timestamp")
            return False
        now = self._wall()
        with self._lock:
            self._seen = {s: t for s, t in self._seen.items() if now - t <= 2 * REPLAY_WINDOW}
            if signature in self._seen:
                log.warning("slack_action_rejected", reason="replayed request")
                return False
            self._seen[signature] = now
        return True

    def _act(self, cfg: Config, c: Click, token: str) -> str | None:
        """Write what the click asks; the sentence to show the clicking user, or None for a request another
        replica on the same store has taken already (`token`: its signature)."""
        who = display(c.user_name, 80)
        fields = {"action": c.action, "fingerprint": display(c.ref.fingerprint, 64), "user": who,
                  "user_id": display(c.user_id, 40), "team_id": display(c.team_id, 40)}
        pcfg = next((p for p in cfg.per_project() if p.posthog.project_id == c.ref.project_id), None)
        if pcfg is None:
            log.warning("slack_action_unknown_project", project_id=c.ref.project_id, **fields)
            return "This alert belongs to a project this monitor no longer watches."
        now = datetime.fromtimestamp(self._wall(), UTC)
        try:
            store = open_store(pcfg.state)
        except StoreError as exc:
            log.error("slack_action_failed", error=str(exc), **fields)
            return "The monitor could not reach its state store: nothing was changed. Try again."
        try:
            if not store.first_use(token, now, now - timedelta(seconds=2 * REPLAY_WINDOW)):
                log.warning("slack_action_rejected", reason="replayed request (taken by another replica)",
                            **fields)
                return None
            if c.action == ACK_ACTION:
                return self._acknowledge(store, c, who, now, fields)
            return self._silence(store, pcfg, c, who, now, fields)
        except Exception as exc:  # a store error must not lose the answer to Slack
            log.exception("slack_action_failed", error=type(exc).__name__, **fields)
            return "The monitor failed to record this: nothing was changed. Try again."
        finally:
            store.close()

    def _acknowledge(self, store: Store, c: Click, who: str, now: datetime, fields: dict[str, str]) -> str:
        if c.ref.fingerprint not in {st.fingerprint for st in firing_states(store)}:
            log.info("slack_action_not_firing", **fields)
            return "This alert is not firing any more: nothing to acknowledge."
        store.acknowledge(c.ref.fingerprint, who, now, f"from Slack (user {display(c.user_id, 40)})")
        log.info("slack_action_acknowledged", **fields)
        return f"Acknowledged by {mrkdwn(who)}: `cluster-monitor status` shows it until the alert resolves."

    def _silence(self, store: Store, cfg: Config, c: Click, who: str, now: datetime,
                 fields: dict[str, str]) -> str:
        why = unknown_kind(c.ref.rule, [r.name for r in cfg.rules])
        if why is not None:
            log.warning("slack_action_unknown_kind", **fields)
            return "This alert's rule is no longer configured: nothing to silence."
        try:
            silence = Silence.model_validate(silence_spec(c, who, now))
        except ValidationError:
            log.warning("slack_action_rejected", reason="silence does not validate", **fields)
            return "This alert cannot be silenced from Slack: use `cluster-monitor silence add`."
        sid = store.add_silence(silence.model_dump(mode="json"), now)
        assert silence.until is not None
        log.info("slack_action_silenced", silence_id=sid, until=silence.until.isoformat(), **fields)
        until = f"{silence.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return (f"Silenced for 24 h by {mrkdwn(who)} (silence #{sid}, until {until}): "
                "`cluster-monitor silence remove` ends it sooner.")


def _may_respond(url: str, base_url: str | None, webhook_url: SecretStr | None) -> bool:
    """Only Slack's own hooks (or the Slack-compatible endpoint the config names in `slack.base_url` or
    `slack.webhook_url`: the local stand-in) get the reply: a URL in a payload is never followed elsewhere."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname in SLACK_RESPONSE_HOSTS:
        return True
    for known in (base_url, webhook_url.get_secret_value() if webhook_url else None):
        if known and (parts.scheme, parts.netloc) == (urlsplit(known).scheme, urlsplit(known).netloc):
            return True
    return False


def _respond_in_thread(url: str, text: str) -> None:
    def post() -> None:
        try:
            resp = WebhookClient(url, timeout=10).send(text=text, response_type="ephemeral", replace_original=False)
            if resp.status_code != 200:
                log.warning("slack_action_reply_failed", status=resp.status_code)
        except OSError as exc:
            log.warning("slack_action_reply_failed", error=type(exc).__name__)

    threading.Thread(target=post, name="slack-action-reply", daemon=True).start()
