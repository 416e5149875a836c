"""The YAML config people edit by hand: loading, `${ENV}` expansion, validation with line numbers.

Every error names the file, the key path and the line, because the person reading it is editing that
file in a terminal at 3 a.m. Validation is pydantic; line numbers come from PyYAML's node marks.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor import kinds
from monitor.kinds import CLUSTER_METRICS, RUN_METRICS

log = structlog.get_logger()

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Secrets that may only come from the environment: a bare `${VAR}`, no default, nothing written beside it.
ENV_ONLY = frozenset({("slack", "signing_secret")})
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


class ConfigError(Exception):
    """A config the monitor refuses to run with; `problems` are 'file:line: key.path: message' lines."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"invalid config {path}:\n  " + "\n  ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostHogConfig(_Strict):
    host: str = "https://us.posthog.com"
    project_id: int = Field(gt=0)
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    # "ai-observability" on current PostHog, "llm-analytics" on older deployments.
    ui_path: str = "ai-observability"
    ui_host: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=10)
    # Discovery looks back this far for runs; bounds every discovery query in time as PostHog advises.
    lookback_days: int = Field(default=14, ge=1, le=90)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _key(self) -> PostHogConfig:
        if self.api_key is None and self.api_key_file is None:
            raise ValueError("set api_key (e.g. ${POSTHOG_API_KEY}) or api_key_file")
        return self

    def resolved_api_key(self) -> str:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        assert self.api_key_file is not None
        return self.api_key_file.read_text().strip()

    @property
    def links_host(self) -> str:
        return (self.ui_host or self.host).rstrip("/")


Level = Literal["trace", "generation", "evaluation"]


class WatchConfig(_Strict):
    # Job names or ids; empty means every enabled job.
    jobs: list[str] = Field(default_factory=list)
    levels: list[Level] = Field(default_factory=lambda: list[Level](["trace", "generation"]))


class ScheduleConfig(_Strict):
    interval_seconds: float = Field(default=300.0, gt=0)
    cron: str | None = None
    # A cycle that cannot start within this many seconds of its slot is skipped, not stacked.
    misfire_grace_seconds: int = Field(default=60, ge=1)
    # Adaptive polling (monitor/pacing.py): every interval_seconds within landing_window_minutes of the
    # time of day a job's runs usually land, every idle_interval_seconds (the longest delay) otherwise.
    # Off (None) by default: a run landing off its pattern is then seen up to idle_interval_seconds late.
    idle_interval_seconds: float | None = Field(default=None, gt=0)
    landing_window_minutes: float = Field(default=60.0, gt=0)
    # Watchdog (monitor/daemon.py): a cycle that has made no progress (no run finished, no send) for this
    # many seconds is abandoned and reported (log cycle_abandoned, cluster_monitor_cycles_abandoned_total,
    # the run in hand counted as a failure of that run), and the process stops with a non-zero exit for its
    # supervisor to restart it. /healthz already fails after state.leader_lease_seconds without progress;
    # this bound should be longer. Null: no bound.
    cycle_timeout_seconds: float | None = Field(default=900.0, gt=0)
    # Poison runs (monitor/stages/failures.py): a run that fails to parse or process this many times is
    # quarantined with one alert, and later runs of its job go on; between tries it waits
    # run_retry_seconds, doubling each time.
    run_attempts: int = Field(default=3, ge=1)
    run_retry_seconds: float = Field(default=60.0, ge=0)
    # SIGTERM/SIGINT: a cycle in flight gets this long to finish its run; then the process exits anyway
    # (non-zero, see README "Stopping"). Keep it below the supervisor's own stop timeout.
    shutdown_deadline_seconds: float = Field(default=30.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        # The daemon's own parser (daemon.Daemon._trigger), so what passes here also runs there.
        from apscheduler.triggers.cron import CronTrigger

        if v is None:
            return v
        try:
            CronTrigger.from_crontab(v, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a crontab line (five fields: minute hour day month weekday, "
                             f'e.g. "*/10 * * * *"): {exc}') from None
        return v

    @model_validator(mode="after")
    def _adaptive(self) -> ScheduleConfig:
        if self.idle_interval_seconds is not None:
            if self.cron:
                raise ValueError("idle_interval_seconds adapts interval_seconds; it does not apply with cron")
            if self.idle_interval_seconds < self.interval_seconds:
                raise ValueError("idle_interval_seconds must be at least interval_seconds")
        return self


class MatchingConfig(_Strict):
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class Thresholds(_Strict):
    """Limits one cluster is held to. Any left unset is not checked."""

    total_cost_usd: float | None = Field(default=None, ge=0)
    avg_cost_usd: float | None = Field(default=None, ge=0)
    # Relative rise of average cost per item against the matched cluster of the previous run (1.0 = +100%).
    avg_cost_increase: float | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    # Rise of the error rate in percentage points against the previous run.
    error_rate_increase_pp: float | None = Field(default=None, ge=0)
    p95_latency_s: float | None = Field(default=None, ge=0)
    share_shift_pp: float | None = Field(default=None, ge=0)
    # Evaluation level: pass rate (of evaluations with a verdict) below this; a fall by this many
    # percentage points since the previous run; a not-applicable rate at or above this; the judge's
    # average cost per evaluation rising by this fraction since the previous run (1.0 = doubled).
    pass_rate_min: float | None = Field(default=None, ge=0, le=1)
    pass_rate_drop_pp: float | None = Field(default=None, ge=0)
    na_rate_max: float | None = Field(default=None, ge=0, le=1)
    judge_cost_increase: float | None = Field(default=None, ge=0)
    new_cluster_min_share: float | None = Field(default=None, ge=0, le=1)
    disappeared_min_share: float | None = Field(default=None, ge=0, le=1)
    # Clusters with fewer items than this never page on rates and averages.
    min_items: int = Field(default=20, ge=0)
    # A rise of a rate between runs must also be this many standard errors above sampling noise
    # (two-proportion z-test), so a 60-item cluster going from 0 to 3 errors does not page.
    min_z: float = Field(default=3.0, ge=0)


class Override(_Strict):
    """Thresholds for clusters whose title matches `title` (a glob, case-insensitive) or a lineage id."""

    title: str | None = None
    lineage: str | None = None
    thresholds: Thresholds

    @model_validator(mode="after")
    def _one(self) -> Override:
        if not self.title and not self.lineage:
            raise ValueError("an override needs `title` (a glob) or `lineage`")
        return self


def _default_thresholds() -> Thresholds:
    return Thresholds(
        total_cost_usd=None,
        avg_cost_usd=None,
        avg_cost_increase=1.0,
        error_rate=0.10,
        error_rate_increase_pp=5.0,
        p95_latency_s=None,
        share_shift_pp=5.0,
        pass_rate_min=0.5,
        pass_rate_drop_pp=10.0,
        na_rate_max=0.5,
        judge_cost_increase=1.0,
        new_cluster_min_share=0.02,
        disappeared_min_share=0.02,
        min_items=20,
        min_z=3.0,
    )


class ThresholdsConfig(_Strict):
    defaults: Thresholds = Field(default_factory=_default_thresholds)
    overrides: list[Override] = Field(default_factory=list)
    # Run level: the traffic mix moved (Jensen-Shannon distance between the two runs' shares over matched
    # clusters, 0..1) by at least this much. Told once per run; it inhibits the run's share shifts.
    mix_shift: float | None = Field(default=0.15, ge=0, le=1)


class RuleScope(_Strict):
    """Which clusters a rule looks at; every field given must match. Globs are case-insensitive."""

    jobs: list[str] = Field(default_factory=list)
    levels: list[Level] = Field(default_factory=list)
    title: str | None = None
    lineage: str | None = None


def _for_spec(v: Any) -> Any:
    """`for: 3` (3 runs in a row), `for: "2 of 3"`, or `for: {runs: 2, of: 3}`."""
    if isinstance(v, int) and not isinstance(v, bool):
        return {"runs": v, "of": v}
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:of\s*(\d+))?\s*", v)
        if not m:
            raise ValueError('write "N of M", e.g. "2 of 3"')
        return {"runs": int(m.group(1)), "of": int(m.group(2) or m.group(1))}
    return v


class ForSpec(_Strict):
    runs: int = Field(ge=1, le=50)
    of: int = Field(ge=1, le=50)

    @model_validator(mode="after")
    def _order(self) -> ForSpec:
        if self.runs > self.of:
            raise ValueError(f"runs ({self.runs}) cannot be more than of ({self.of})")
        return self


class Rule(_Strict):
    """One line of the rule language: a metric, a comparison and bounds (see README, "Rules")."""

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")
    metric: str
    # The value compared: the metric itself, its relative change since the lineage's previous run
    # (0.5 = +50%), its relative distance from the median of the lineage's last `window` runs, or a
    # z-score / robust z-score (median and MAD) against those runs.
    compare: Literal["value", "previous", "baseline", "zscore", "mad"] = "value"
    above: float | None = None
    below: float | None = None
    window: int = Field(default=7, ge=2, le=100)
    # Baselines need this many earlier runs of the lineage; before that the rule stays quiet.
    min_history: int = Field(default=3, ge=1, le=100)
    # Clusters with fewer items never break a rule (rates and averages of a handful of items are noise).
    min_items: int = Field(default=20, ge=0)
    for_: ForSpec = Field(default_factory=lambda: ForSpec(runs=1, of=1), alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    scope: RuleScope = Field(default_factory=RuleScope)
    enabled: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("for_", mode="before")
    @classmethod
    def _for(cls, v: Any) -> Any:
        return _for_spec(v)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in CLUSTER_METRICS and v not in RUN_METRICS:
            known = ", ".join([*CLUSTER_METRICS, *RUN_METRICS])
            raise ValueError(f"unknown metric {v!r}; one of: {known}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.above is None and self.below is None:
            raise ValueError("give `above`, `below` or both")
        if self.above is not None and self.below is not None and self.compare == "value" and self.below > self.above:
            raise ValueError("below is above `above`: the rule would fire on every value (use two rules)")
        if self.is_run_rule and (self.scope.title or self.scope.lineage):
            raise ValueError(f"{self.metric} is a run metric: scope it by jobs and levels, not title or lineage")
        if self.compare in ("baseline", "zscore", "mad") and self.min_history > self.window:
            raise ValueError(f"min_history ({self.min_history}) cannot exceed window ({self.window})")
        return self

    @property
    def is_run_rule(self) -> bool:
        return self.metric in RUN_METRICS

    @property
    def stateful(self) -> bool:
        """Levels (against a value or a baseline) fire and resolve; a change since the previous run is an event."""
        return self.compare != "previous"


class Inhibit(_Strict):
    """While an alert named in `when` fires for a run, alerts named in `suppress` for the same run are not
    sent (names are alert kinds or rule names): the run-level "the mix moved" says what ten share shifts
    would. Suppressed alerts are still evaluated and logged."""

    when: list[str] = Field(min_length=1)
    suppress: list[str] = Field(min_length=1)


def _default_inhibit() -> list[Inhibit]:
    return [Inhibit(when=when, suppress=suppress) for when, suppress in kinds.default_inhibitions()]


def _webhook(v: SecretStr | None) -> SecretStr | None:
    if v is not None and not re.match(r"^https?://\S+$", v.get_secret_value().strip()):
        raise ValueError("must be the webhook's URL (https://hooks.slack.com/services/...)")
    return v


class SlackConfig(_Strict):
    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None
    channel: str | None = None
    # Only for a Slack-compatible endpoint other than slack.com (tests, the demo).
    base_url: str | None = None
    # "Silence 24h" and "Acknowledge" buttons on each firing alert, handled by the daemon's POST
    # /slack/actions (monitor/app/slack_actions.py). Only say true when the Slack app's interactivity
    # Request URL reaches this daemon's `server.port`: otherwise people click buttons that do nothing.
    actions: bool = False
    # The Slack app's signing secret, which proves a click came from Slack. From the environment only
    # (`${SLACK_SIGNING_SECRET}`): a literal in the file is refused, and it is never logged.
    signing_secret: SecretStr | None = None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        return _webhook(v)

    @model_validator(mode="after")
    def _one(self) -> SlackConfig:
        if self.webhook_url is None and self.bot_token is None:
            raise ValueError("set webhook_url or bot_token (with channel)")
        if self.bot_token is not None and not self.channel:
            raise ValueError("bot_token needs channel")
        if self.actions and (self.signing_secret is None or not self.signing_secret.get_secret_value().strip()):
            raise ValueError("actions: true needs signing_secret (the Slack app's, as ${SLACK_SIGNING_SECRET})")
        return self


def email_address(value: str) -> str:
    """One mail address as the mail headers will read it (`a@b`, `Name <a@b>`, `"Name" <a@b>`); a
    ValueError naming what is wrong otherwise, so a bad sender fails the config, not every send."""
    try:
        header = policy.default.header_factory("To", value)
        addresses, defects = header.addresses, header.defects  # type: ignore[attr-defined]
    except Exception:  # the header parser raises IndexError and friends on some malformed input
        addresses, defects = (), ["unparseable"]
    if len(addresses) > 1:
        raise ValueError(f"{value!r} holds {len(addresses)} addresses: give one per list item")
    if defects or not addresses or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"{value!r} is not an email address (expected name@example.com or "
                         '"Name" <name@example.com>)')
    return value


EmailAddress = Annotated[str, AfterValidator(email_address)]


class EmailConfig(_Strict):
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: EmailAddress = Field(alias="from")
    to: list[EmailAddress] = Field(min_length=1)
    timeout_seconds: float = Field(default=30.0, gt=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)



class RouteMatch(_Strict):
    """Which alerts a route takes; every field given must match. Globs are case-insensitive (`*`, `?`)."""

    severities: list[Literal["critical", "warning", "info"]] = Field(default_factory=list)
    # Alert kinds (cost_spike, error_rate, ...) or rule names, as globs.
    kinds: list[str] = Field(default_factory=list)
    # Label name -> glob; rules add their `labels`, every alert has `job` and `level`.
    labels: dict[str, str] = Field(default_factory=dict)
    jobs: list[str] = Field(default_factory=list)
    levels: list[Level] = Field(default_factory=list)


class RouteSlack(_Strict):
    """A route's Slack destination: its own incoming webhook, or a channel for the top-level bot token."""

    webhook_url: SecretStr | None = None
    channel: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        return _webhook(v)

    @model_validator(mode="after")
    def _one(self) -> RouteSlack:
        if (self.webhook_url is None) == (self.channel is None):
            raise ValueError("set one of webhook_url or channel (the channel uses slack.bot_token)")
        return self


class RouteEmail(_Strict):
    """A route's recipients; the server, sender and credentials are the top-level `email` section's."""

    to: list[EmailAddress] = Field(min_length=1)


class Route(_Strict):
    """Alerts that match go to this route's Slack and email instead of the default (top-level) ones."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    match: RouteMatch = Field(default_factory=RouteMatch)
    slack: RouteSlack | None = None
    email: RouteEmail | None = None
    # Also offer the alert to later routes (and the default), as Alertmanager's `continue`.
    continue_: bool = Field(default=False, alias="continue")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _somewhere(self) -> Route:
        if self.slack is None and self.email is None:
            raise ValueError("a route needs slack or email")
        return self


class AlertingConfig(_Strict):
    # A level alert that keeps firing is repeated after this long; changes are notified once.
    repeat_interval_hours: float = Field(default=72.0, gt=0)
    # A watched job with no new run for this long raises a stale-source alert (PostHog's jobs run
    # daily, so the default allows one late run). 0 turns the check off.
    stale_after_hours: float = Field(default=36.0, ge=0)
    # Learn each job's cadence from its last runs instead (1.5 x the median gap + 1 h, once 4 runs are
    # known); stale_after_hours holds until then, and 0 there still turns the check off.
    stale_learned: bool = True
    # PostHog answering errors (or not answering) for this long raises "PostHog unreachable"; it resolves
    # when a poll succeeds again. 0 turns it off.
    posthog_errors_after_minutes: float = Field(default=30.0, ge=0)
    # After downtime, runs that are already this old when processed have their alerts told in one
    # catch-up message per channel instead of one message per run. 0 tells every run on its own.
    catch_up_after_hours: float = Field(default=24.0, ge=0)


class Silence(_Strict):
    """Mute notifications of matching alerts until `until` (or until removed). Every given field must match;
    globs are case-insensitive (`*`, `?`)."""

    kinds: list[str] = Field(default_factory=list)
    severities: list[Literal["critical", "warning", "info"]] = Field(default_factory=list)
    job: str | None = None
    level: Level | None = None
    title: str | None = None
    # One cluster lineage, exactly (`history` shows the ids): the same cluster across its renames. What a
    # Slack "Silence 24h" click stores, as titles drift from run to run.
    lineage: str | None = None
    until: datetime | None = None
    comment: str = ""

    @field_validator("until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v


DEFAULT_STATE_PATH = Path("state/monitor.sqlite")


class StateConfig(_Strict):
    """Where the monitor remembers what it did: a SQLite file (`path`, one replica) or a PostgreSQL database
    (`url`, shared by replicas that elect one leader). One or the other; neither means the default file."""

    path: Path | None = None
    url: SecretStr | None = None
    # PostgreSQL schema holding the tables (default: the connection's search_path). Each extra project of
    # `projects:` gets its own, `project_<id>`, as it gets its own SQLite file beside `path`.
    pg_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Runs, resolved alerts and sent notifications older than this many days are pruned in the background
    # (monitor/store/retention.py); null keeps everything. 90 days keeps a quarter of history for
    # `history` and investigations, far more than the rules read (their `window` runs, default 7, plus
    # N-of-M, and 8 runs for the learned stale bound), and the newest runs of each job that the rules
    # need are kept whatever their age.
    retention_days: int | None = Field(default=90, ge=1)
    # A cycle that makes no progress (no run finished, no send, no leadership proof) for this long is
    # stuck: /healthz fails, and on PostgreSQL a standby ends the leader's lock session and takes over.
    # Longer than the slowest run (PostHog timeouts and retries included), as progress is told between runs.
    leader_lease_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _one(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        has_path, has_url = data.get("path") not in (None, ""), data.get("url") not in (None, "")
        if has_path and has_url:
            raise ValueError("set path (SQLite) or url (PostgreSQL), not both")
        if not has_path and not has_url:
            return {**data, "path": DEFAULT_STATE_PATH, "url": None}
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not re.match(r"^postgres(ql)?://", v.get_secret_value()):
            raise ValueError("must be a PostgreSQL URL: postgresql://user:${PGPASSWORD}@host:5432/database")
        return v

    def for_project(self, project_id: int) -> StateConfig:
        """The state of an extra project: a file beside the main one, or its own schema in the database,
        so cursors, alert states and outboxes of two projects never mix."""
        if self.url is not None:
            return self.model_copy(update={"pg_schema": f"project_{project_id}"})
        assert self.path is not None
        return self.model_copy(update={"path": self.path.with_name(f"{self.path.stem}-{project_id}{self.path.suffix}")})

    def same_place(self, other: StateConfig) -> bool:
        """The same state (file, or database and schema), whatever else changed: a reload that only
        changes retention keeps the store's leader lock."""
        return (self.path, self.url, self.pg_schema) == (other.path, other.url, other.pg_schema)

    def replicas(self) -> str:
        """Where the state is, how many replicas it serves and how long it remembers: for `check-config`."""
        keep = f"runs older than {self.retention_days} days pruned" if self.retention_days else "nothing pruned"
        if self.url is not None:
            return f"PostgreSQL {self.describe()}: shared by replicas, which elect one leader; {keep}"
        return (f"SQLite {self.describe()}: one replica (a second daemon on this file is refused at start; "
                f"share a PostgreSQL database, state.url, to run more); {keep}")

    def describe(self) -> str:
        """Where the state is, for logs: the file, or the URL without its password."""
        if self.url is not None:
            from urllib.parse import urlsplit

            try:
                parts = urlsplit(self.url.get_secret_value())
                where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
                return f"{where} (schema {self.pg_schema})" if self.pg_schema else where
            except ValueError:
                return "postgresql://(unparseable URL)"
        return str(self.path)


class DeliveryConfig(_Strict):
    # Undelivered notifications are retried with exponential backoff up to this delay between tries.
    max_backoff_seconds: float = Field(default=600.0, gt=0)
    # After this many tries a retryable failure is parked as failed (still listed by `outbox`).
    max_attempts: int = Field(default=50, ge=1)
    # A send still running after this many seconds is abandoned (logged, counted, retried later like a
    # failed send): one stuck message never holds the cycle and the rest of the outbox. Null: no bound.
    timeout_seconds: float | None = Field(default=120.0, gt=0)


class ServerConfig(_Strict):
    """The daemon's own HTTP port: /healthz, /readyz, /metrics. Off when port is null."""

    host: str = "127.0.0.1"
    # 0 takes any free port (tests).
    port: int | None = Field(default=None, ge=0, lt=65536)
    # /readyz turns unready when no cycle has succeeded for this long.
    ready_after_failure_seconds: float = Field(default=900.0, gt=0)
    # POST /hooks/posthog with `Authorization: Bearer <push_token>` starts a cycle at once: point a
    # PostHog webhook destination, filtered on $ai_trace_clusters / $ai_generation_clusters, at it.
    # Off when unset; polling stays the safety net either way.
    push_token: SecretStr | None = None


class ProjectConfig(_Strict):
    """One more PostHog project (or host) to watch, with its own key; everything else is shared."""

    posthog: PostHogConfig
    # Jobs and levels of this project; the top-level `watch` when left out.
    watch: WatchConfig | None = None


class Config(_Strict):
    posthog: PostHogConfig
    # More projects, each polled in turn in the same cycle, each with its own state; API keys shared by
    # several projects share one request budget.
    projects: list[ProjectConfig] = Field(default_factory=list)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    silences: list[Silence] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    inhibit: list[Inhibit] = Field(default_factory=_default_inhibit)
    routes: list[Route] = Field(default_factory=list)
    slack: SlackConfig | None = None
    email: EmailConfig | None = None
    state: StateConfig = Field(default_factory=StateConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    timezone: Annotated[str, Field(description="IANA zone for times shown in alerts")] = "UTC"

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, v: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in v:
            if r.name in seen:
                raise ValueError(f"two rules are named {r.name!r}: names identify alerts, make them unique")
            seen.add(r.name)
        return v

    def per_project(self) -> list[Config]:
        """One config per watched project, the top-level one first (its state unchanged), each with its own
        `posthog`, `watch` and state; rules, channels and the rest are shared."""
        main = self.model_copy(update={"projects": []})
        extra = [self.model_copy(update={"posthog": p.posthog, "watch": p.watch or self.watch, "projects": [],
                                         "state": self.state.for_project(p.posthog.project_id)})
                 for p in self.projects]
        return [main, *extra]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class _Loader(yaml.SafeLoader):
    pass


def _expand(value: str, where: str, problems: list[str], env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{where}: environment variable {name} is not set")
        return ""

    return _ENV.sub(sub, value)


def _build(
    node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int],
    where: str, problems: list[str], env: dict[str, str],
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = _Loader(k.value).construct_scalar(k) if isinstance(k, yaml.ScalarNode) else str(k.value)
            key_s = str(key)
            if key_s in out:
                problems.append(f"{where}:{k.start_mark.line + 1}: {'.'.join(map(str, (*path, key_s)))}: "
                                "duplicate key")
            out[key_s] = _build(v, (*path, key_s), lines, where, problems, env)
            lines[(*path, key_s)] = k.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*path, i), lines, where, problems, env) for i, v in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    loader = _Loader("")
    value = loader.construct_object(node)  # type: ignore[no-untyped-call]
    if isinstance(value, str):
        dotted = ".".join(map(str, path)) or "(top)"
        if path in ENV_ONLY and not _ENV_REF.fullmatch(value.strip()):
            problems.append(f"{where}:{node.start_mark.line + 1}: {dotted}: give it from the environment, "
                            "like ${SLACK_SIGNING_SECRET}, not written in the file")
            return ""
        expanded = _expand(value, f"{where}:{node.start_mark.line + 1}: {dotted}", problems, env)
        if expanded != value and node.style is None:
            # An unquoted ${VAR} holding a number should still validate as a number.
            return yaml.safe_load(expanded) if expanded.strip() else expanded
        return expanded
    return value


# Keys whose values are never echoed back in an error message.
_SECRET_KEYS = ("api_key", "webhook_url", "bot_token", "password", "push_token", "url", "secret")

_PATTERN_WORDS = {
    Route.model_fields["name"].metadata[-1].pattern:
        "letters, digits, '_', '.' and '-', starting with a letter or digit",
    Rule.model_fields["name"].metadata[-1].pattern:
        "letters, digits, spaces, '_', '.' and '-', starting with a letter or digit",
    StateConfig.model_fields["pg_schema"].metadata[-1].pattern:
        "lower-case letters, digits and '_' (up to 63), not starting with a digit",
}

_KIND_WORDS = {
    "int": "a whole number", "float": "a number", "bool": "true or false", "string": "text",
    "list": "a list (e.g. [a, b])", "dict": "a section of keys (a mapping)", "model": "a section of keys (a mapping)",
    "model_attributes": "a section of keys (a mapping)", "datetime": "a date and time such as 2026-12-31T18:00:00Z",
    "date": "a date such as 2026-12-31", "path": "a file path", "literal": "",
}


def plain_message(err: Mapping[str, Any]) -> str:
    """A pydantic error as a sentence for the person editing the file: what is expected, and what was
    given (unless the key holds a secret). Pydantic's own phrasing ("Value error, ...", "Input should
    be ...") reads as a stack trace to someone who never heard of pydantic."""
    kind, ctx = str(err["type"]), dict(err.get("ctx") or {})
    loc = [p for p in err.get("loc", ()) if isinstance(p, str)]
    value = err.get("input")
    secret = bool(loc) and any(k in loc[-1] for k in _SECRET_KEYS)
    given = "" if secret or isinstance(value, (dict, list)) or len(repr(value)) > 60 else f", not {value!r}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling against config/example.yaml)"
    if kind == "missing":
        return "is required but missing"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}{given}"
    bounds = {"greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
              "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le")}
    if kind in bounds:
        words, key = bounds[kind]
        bound = ctx.get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {words} {bound}{given}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"may hold only {_PATTERN_WORDS.get(pattern, f'text of the form {pattern}')}{given}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        what = "character" if isinstance(value, str) else "item"
        return f"needs {'at least' if kind == 'too_short' else 'at most'} {n} {what}{'' if n == 1 else 's'}"
    base = kind.split("_")[0] if not kind.startswith("model_attributes") else "model_attributes"
    if kind.startswith(("dict", "model")):
        base = "dict"
    expected = _KIND_WORDS.get(base)
    if expected:
        return f"expected {expected}{given}"
    # Anything else: pydantic's sentence, without its framing.
    return str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "expected")


def _line_for(loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def parse_config(text: str, source: str = "<config>", env: dict[str, str] | None = None, *,
                 warnings: list[str] | None = None, now: datetime | None = None) -> Config:
    """Parse and validate config text; raises ConfigError listing every problem with its line. Warnings
    (a config that works, with a part that does nothing) go to `warnings` when given, judged at `now`."""
    env = dict(os.environ) if env is None else env
    lines: dict[tuple[str | int, ...], int] = {}
    problems: list[str] = []
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            raise ConfigError(source, [f"{source}: empty file"])
        # Building can fail too: an unknown tag (`!!python/...`, `=`) or a bad ${VAR} value.
        data = _build(node, (), lines, source, problems, env)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(source, [f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if problems:
        raise ConfigError(source, problems)
    if not isinstance(data, dict):
        raise ConfigError(source, [f"{source}:1: the top level must be a mapping of sections"])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line_no = _line_for(loc, lines)
            dotted = ".".join(map(str, loc)) or "(top)"
            msg = plain_message(err)
            problems.append(f"{source}:{line_no if line_no else '?'}: {dotted}: {msg}")
        raise ConfigError(source, problems) from None
    for line_no, loc, msg in sorted((_line_for(loc, lines) or 0, loc, msg) for loc, msg in cross_checks(cfg)):
        problems.append(f"{source}:{line_no or '?'}: {'.'.join(map(str, loc))}: {msg}")
    if problems:
        raise ConfigError(source, problems)
    if warnings is not None:
        warnings.extend(f"{source}:{_line_for(loc, lines) or '?'}: {'.'.join(map(str, loc))}: {msg}"
                        for loc, msg in config_warnings(cfg, now or datetime.now(UTC)))
    return cfg


Problem = tuple[tuple[str | int, ...], str]


def cross_checks(cfg: Config) -> list[Problem]:
    """(key path, message) for mistakes that span sections. They are checked after pydantic rather than
    in a model validator of `Config`, whose errors carry no key path (and so would point at line 1)."""
    return [*_project_problems(cfg), *_route_problems(cfg), *_slack_problems(cfg), *unknown_kinds(cfg)]


def _slack_problems(cfg: Config) -> list[Problem]:
    if cfg.slack is not None and cfg.slack.actions and cfg.server.port is None:
        return [(("slack", "actions"), "needs server.port: Slack posts the clicks to the daemon's /slack/actions")]
    return []


def _project_problems(cfg: Config) -> list[Problem]:
    out: list[Problem] = []
    seen = {(cfg.posthog.host, cfg.posthog.project_id)}
    for i, p in enumerate(cfg.projects):
        key = (p.posthog.host, p.posthog.project_id)
        if key in seen:
            out.append((("projects", i, "posthog", "project_id"),
                        f"project {p.posthog.project_id} on {p.posthog.host} is listed twice"))
        seen.add(key)
    for loc, ph in [(("posthog",), cfg.posthog), *((("projects", i, "posthog"), p.posthog)
                                                   for i, p in enumerate(cfg.projects))]:
        if ph.api_key is not None and not ph.api_key.get_secret_value().strip():
            out.append(((*loc, "api_key"), "is empty (is its environment variable set to an empty value?)"))
        if ph.api_key is None and ph.api_key_file is not None and not os.access(ph.api_key_file, os.R_OK):
            out.append(((*loc, "api_key_file"), f"{ph.api_key_file} cannot be read (missing, or no permission)"))
    return out


def _route_problems(cfg: Config) -> list[Problem]:
    out: list[Problem] = []
    names: set[str] = set()
    for i, r in enumerate(cfg.routes):
        if r.name in names:
            out.append((("routes", i, "name"), f"two routes are named {r.name!r}: give each its own name"))
        names.add(r.name)
        if r.email is not None and cfg.email is None:
            out.append((("routes", i, "email"), f"route {r.name!r} sends email, which needs the top-level "
                                                "`email` section (server, sender)"))
        if r.slack is not None and r.slack.channel and (cfg.slack is None or cfg.slack.bot_token is None):
            out.append((("routes", i, "slack", "channel"), f"route {r.name!r} posts to a channel, which needs "
                                                           "slack.bot_token at the top level"))
    return out


def config_warnings(cfg: Config, now: datetime) -> list[Problem]:
    """Mistakes that do no harm but do nothing. A silence whose `until` has passed is a warning, not an
    error: silences expire by design, so a config valid yesterday must not stop the daemon (a restart
    loop in a container) today merely because time went by; the warning says it no longer applies."""
    out: list[Problem] = [(("silences", i, "until"), f"{s.until.isoformat()} is in the past: this silence never "
                                                     "applies (remove it, or move `until` forward)")
                          for i, s in enumerate(cfg.silences) if s.until is not None and s.until <= now]
    # Implicit TLS on the STARTTLS port (or the reverse) hangs or fails at the first send, not before.
    mail = cfg.email
    if mail is not None and (mail.security, mail.port) in (("ssl", 587), ("ssl", 25), ("starttls", 465)):
        usual = 465 if mail.security == "ssl" else 587
        out.append((("email", "security"), f"{mail.security} with port {mail.port}: {mail.security} is usually "
                                           f"served on port {usual} (use security: "
                                           f"{'starttls' if mail.security == 'ssl' else 'ssl'} for port {mail.port})"))
    return out


def unknown_kinds(cfg: Config) -> list[tuple[tuple[str | int, ...], str]]:
    """(key path, message) for every name in `silences:`, `inhibit:` and routes' `match.kinds` that names no
    alert kind and no rule of this config: such a name matches nothing, so a typo would quietly mute nothing
    (in `inhibit:`, replace the default inhibition with one that never applies; in a route, send its alerts
    to the default channels instead)."""
    rule_names = [r.name for r in cfg.rules]
    out: list[tuple[tuple[str | int, ...], str]] = []
    # (key path, names, whether the names are globs)
    named: list[tuple[tuple[str | int, ...], list[str], bool]] = [
        *((("silences", i, "kinds"), s.kinds, False) for i, s in enumerate(cfg.silences)),
        *((("inhibit", i, key), names, False) for i, r in enumerate(cfg.inhibit)
          for key, names in (("when", r.when), ("suppress", r.suppress))),
        *((("routes", i, "match", "kinds"), r.match.kinds, True) for i, r in enumerate(cfg.routes)),
    ]
    for path, names, glob in named:
        for j, name in enumerate(names):
            why = kinds.unknown_kind(name, rule_names, glob=glob)
            if why is not None:
                out.append(((*path, j), why))
    return out


def load_config(path: str | Path, env: dict[str, str] | None = None, *, warnings: list[str] | None = None,
                now: datetime | None = None) -> Config:
    """The config of a file. Its warnings go to `warnings` when given (check-config prints them), else to
    the log as `config_warning` (daemon start and reload)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), [f"{p}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), [f"{p}: not a text file (byte {exc.start} is not UTF-8)"]) from exc
    found: list[str] = []
    cfg = parse_config(text, str(p), env, warnings=found, now=now)
    if warnings is not None:
        warnings.extend(found)
    else:
        for w in found:
            log.warning("config_warning", problem=w)
    _warn_world_readable(p, cfg)
    return cfg


def _warn_world_readable(path: Path, cfg: Config) -> None:
    """Secrets written into a file others can read deserve a warning, not a refusal."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    literal_secret = "${" not in path.read_text() and (
        cfg.posthog.api_key is not None or cfg.slack is not None or cfg.email is not None
    )
    if literal_secret and mode & (stat.S_IROTH | stat.S_IWOTH):
        log.warning("config_world_readable", path=str(path), mode=oct(mode & 0o777))
