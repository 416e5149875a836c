"""Slack delivery through slack-sdk: incoming webhooks, or a bot token with chat.postMessage.

slack-sdk's retry handlers are not on by default; they are passed explicitly here, so a 429 waits for
its Retry-After and a 5xx or dropped connection gets one more try before the outbox takes over.
Errors are sorted into permanent (bad token, unknown channel, invalid blocks: a person must act) and
retryable (rate limits, Slack's own outages). Tokens and webhook URLs are secrets: never logged.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from monitor.alerts import Notification
from monitor.config import SlackConfig
from monitor.notify.outbox import SendResult
from monitor.notify.render import Templates, render_slack

log = structlog.get_logger()

PERMANENT_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission",
    "missing_scope", "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long",
    "no_text", "invalid_arguments", "invalid_token", "no_service", "no_active_hooks", "action_prohibited",
    "posting_to_general_channel_denied", "invalid_payload",
})


def _handlers() -> list[Any]:
    return [RateLimitErrorRetryHandler(max_retry_count=2), ServerErrorRetryHandler(max_retry_count=1),
            ConnectionErrorRetryHandler(max_retry_count=1)]


class SlackNotifier:
    name = "slack"

    def __init__(self, *, webhook_url: str | None = None, bot_token: str | None = None, channel: str | None = None,
                 base_url: str | None = None, timezone: str = "UTC", timeout: int = 15,
                 templates: Templates | None = None, actions: bool = False) -> None:
        if not webhook_url and not bot_token:
            raise ValueError("a Slack webhook URL or bot token is needed")
        self.tz = ZoneInfo(timezone)
        self.templates = templates  # None: the shipped templates
        self.channel = channel
        self.actions = actions  # the "Silence 24h" / "Acknowledge" buttons (slack.actions)
        # The User-Agent names the replica (host:pid, as its PostgreSQL sessions do): who sent a message.
        agent = f"cluster-monitor/{socket.gethostname()}:{os.getpid()}"
        self._webhook = WebhookClient(webhook_url, timeout=timeout, retry_handlers=_handlers(),
                                      user_agent_suffix=agent) if webhook_url and not bot_token else None
        self._web = WebClient(token=bot_token, base_url=base_url or WebClient.BASE_URL, timeout=timeout,
                              retry_handlers=_handlers(), user_agent_suffix=agent) if bot_token else None

    @classmethod
    def from_config(cls, cfg: SlackConfig, *, timezone: str = "UTC",
                    templates: Templates | None = None) -> SlackNotifier:
        return cls(webhook_url=cfg.webhook_url.get_secret_value() if cfg.webhook_url else None,
                   bot_token=cfg.bot_token.get_secret_value() if cfg.bot_token else None,
                   channel=cfg.channel, base_url=cfg.base_url, timezone=timezone, templates=templates,
                   actions=cfg.actions)

    def send(self, notification: Notification, *, thread_ts: str | None = None) -> SendResult:
        msg = render_slack(notification, tz=self.tz, templates=self.templates, actions=self.actions)
        if self._web is not None:
            try:
                resp = self._web.chat_postMessage(channel=self.channel or "", text=msg.text, blocks=msg.blocks,
                                                  thread_ts=thread_ts, unfurl_links=False)
            except SlackApiError as exc:
                error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
                status = exc.response.status_code
                permanent = error in PERMANENT_ERRORS or (400 <= status < 500 and status != 429
                                                          and error not in ("ratelimited",))
                return SendResult(ok=False, permanent=permanent, error=f"slack: {error}")
            except OSError as exc:  # connection refused, DNS, TLS: Slack (or the network) is away
                return SendResult(ok=False, error=f"slack: {type(exc).__name__}: {exc}")
            return SendResult(ok=True, ts=str(resp.get("ts") or "") or None)
        assert self._webhook is not None
        try:
            wr = self._webhook.send(text=msg.text, blocks=msg.blocks, unfurl_links=False)
        except OSError as exc:
            return SendResult(ok=False, error=f"slack webhook: {type(exc).__name__}: {exc}")
        if wr.status_code == 200:
            return SendResult(ok=True)
        body = (wr.body or "").strip()[:200]
        permanent = body in PERMANENT_ERRORS or (400 <= wr.status_code < 500 and wr.status_code != 429)
        return SendResult(ok=False, permanent=permanent, error=f"slack webhook: HTTP {wr.status_code}: {body}")
