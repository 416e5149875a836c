"""Wiring: from a validated config to the objects a cycle runs with (client, store, notifiers, monitor).

The one place that turns configuration into live dependencies; the daemon, the CLI, replay and the
tests build their monitors here, so a dependency added to the cycle is wired once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monitor.config import Config, SlackConfig
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Deliverer, Notifier
from monitor.notify.render import Templates, template_env
from monitor.notify.slack import SlackNotifier
from monitor.pipeline import Monitor
from monitor.posthog.client import PostHogClient, RequestBudget
from monitor.store import Leadership, open_leadership, open_store

# One budget per API key for the whole process, whatever the number of projects that share it.
_BUDGETS: dict[str, RequestBudget] = {}


def budget_for(key: str) -> RequestBudget:
    return _BUDGETS.setdefault(key, RequestBudget())


TEMPLATES_ENV = "CLUSTER_MONITOR_TEMPLATES"


def load_templates(environ: Mapping[str, str] = os.environ) -> Templates:
    """The templates notifications render with: a user's folder (CLUSTER_MONITOR_TEMPLATES) in front of
    the shipped ones. Read here, by the wiring, and passed down: rendering itself reads no environment."""
    user = environ.get(TEMPLATES_ENV)
    return template_env(Path(user) if user else None)


def build_notifiers(cfg: Config, templates: Templates | None = None) -> dict[str, Notifier]:
    """`templates`: None reads CLUSTER_MONITOR_TEMPLATES once for all of this config's channels."""
    templates = templates if templates is not None else load_templates()
    notifiers: dict[str, Notifier] = {}
    if cfg.slack is not None:
        notifiers["slack"] = SlackNotifier.from_config(cfg.slack, timezone=cfg.timezone, templates=templates)
    if cfg.email is not None:
        notifiers["email"] = EmailNotifier.from_config(cfg.email, timezone=cfg.timezone, templates=templates)
    # Each route's own destinations, as channels "slack@<route>" and "email@<route>".
    for r in cfg.routes:
        if r.slack is not None and cfg.slack is not None and r.slack.channel:
            notifiers[f"slack@{r.name}"] = SlackNotifier.from_config(
                cfg.slack.model_copy(update={"channel": r.slack.channel, "webhook_url": None}), timezone=cfg.timezone,
                templates=templates)
        elif r.slack is not None and r.slack.webhook_url is not None:
            notifiers[f"slack@{r.name}"] = SlackNotifier.from_config(
                SlackConfig(webhook_url=r.slack.webhook_url, base_url=cfg.slack.base_url if cfg.slack else None),
                timezone=cfg.timezone, templates=templates)
        if r.email is not None and cfg.email is not None:
            notifiers[f"email@{r.name}"] = EmailNotifier.from_config(
                cfg.email.model_copy(update={"to": list(r.email.to)}), timezone=cfg.timezone, templates=templates)
    return notifiers


def build_client(cfg: Config, *, sleep: Callable[[float], None] = time.sleep,
                 budget: RequestBudget | None = None, max_retries: int | None = None,
                 timeout: float | None = None) -> PostHogClient:
    """The project's PostHog client, drawing on the process's budget for its key unless given one.
    `max_retries`, `timeout`: the config's unless given (a one-off check need not wait out an outage)."""
    key = cfg.posthog.resolved_api_key()
    return PostHogClient(cfg.posthog.host, cfg.posthog.project_id, key,
                         timeout=cfg.posthog.timeout_seconds if timeout is None else timeout,
                         max_retries=cfg.posthog.max_retries if max_retries is None else max_retries,
                         budget=budget or budget_for(key), sleep=sleep)


def build_monitor(cfg: Config, *, clock: Callable[[], datetime] | None = None,
                  sleep: Callable[[float], None] = time.sleep, budget: RequestBudget | None = None,
                  fence: Callable[[], bool] = lambda: True, claim: Callable[[int], bool] | None = None,
                  after_send: Callable[[], None] | None = None) -> Monitor:
    """`budget`: the request budget to draw from; by default the one this process shares per API key.
    `fence`: asked before delivering; `claim`: asked right before each send (see Deliverer); False when
    this replica lost the leader lock.
    `after_send`: the Deliverer's hook between a send and its "sent" mark (the crash test's; None here)."""
    client = build_client(cfg, sleep=sleep, budget=budget)
    store = open_store(cfg.state)
    deliverer = Deliverer(store, build_notifiers(cfg), max_backoff=cfg.delivery.max_backoff_seconds,
                          max_attempts=cfg.delivery.max_attempts, sleep=sleep, fence=fence, claim=claim,
                          after_send=after_send, timeout=cfg.delivery.timeout_seconds)
    return Monitor(cfg, client, store, deliverer, clock=clock or (lambda: datetime.now(UTC)))


@dataclass
class Project:
    """One watched PostHog project: its config, its leader lock and its monitor (own client and state)."""

    cfg: Config
    leader: Leadership
    monitor: Monitor
    standby_logged: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.cfg.posthog.host, self.cfg.posthog.project_id

    def close(self) -> None:
        self.monitor.client.close()
        self.monitor.store.close()


# Given a project's leader lock, the fence and the claim its Deliverer asks (see build_monitor).
Fences = Callable[[Leadership], tuple[Callable[[], bool], Callable[[int], bool]]]


def open_project(cfg: Config, leader: Leadership | None = None, *, clock: Callable[[], datetime] | None = None,
                 fences: Fences | None = None, after_send: Callable[[], None] | None = None) -> Project:
    """A project with its leader lock (a new one unless `leader` is handed over) and a monitor fenced by
    it: by `fences` (the daemon's, which also count as progress), or by the lock's verify and claim."""
    lead = leader or open_leadership(cfg.state, cfg.posthog.project_id)
    fence, claim = fences(lead) if fences is not None else (lead.verify, lead.claim)
    return Project(cfg=cfg, leader=lead,
                   monitor=build_monitor(cfg, clock=clock, fence=fence, claim=claim, after_send=after_send))
