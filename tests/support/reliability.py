"""Reliability: a fault matrix over PostHog, Slack, SMTP and bad data, and a SIGKILL crash test.

Fault matrix: each cell starts from a fresh project of the drift scenario on the local PostHog (real
HTTP, ClickHouse), breaks one thing, runs the monitor for a few cycles, heals it, and runs until the
backlog and the outbox are done. A cell passes when the monitor never raised, logged what happened in
a structured line, never moved its cursor past a run it had not processed, and in the end processed
every run and delivered every notification of a clean control pass exactly once (permanent errors:
kept in the outbox, then delivered once requeued).

Kill test: `cluster-monitor run` as a process, SIGKILLed at random moments (fixed seed) and restarted
until the backlog is done; then runs lost, alerts lost and duplicates against the control. Every
`--failpoint-every`-th kill is made by the process itself at the test-only failpoint between a send and
its "sent" mark (tests/support/crashing_daemon.py, a Deliverer hook), the one moment where a crash may
repeat a message; kills at random moments that happen to land there are counted too (a channel holding
more messages than the state file marks sent). The bound: at most one duplicate per such kill.

The harness lives here, beside the tests that run its short form (tests/integration/test_faults.py,
tests/e2e/test_kill.py); `./dev bench reliability [--kills 100] [--seed 7] [--failpoint-every 10]
[--cells NAME ...]` (bench/reliability.py) runs all of it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor import telemetry
from monitor.app.wiring import build_monitor
from monitor.cli import app as cli_app
from monitor.config import Config, parse_config
from monitor.local.posthog.faults import Fault
from monitor.local.posthog.generator import Dataset, generate, legacy_run_properties, run_event_row
from monitor.local.posthog.server import LocalPostHog
from monitor.local.posthog.throttle import LEGACY_QUERY_LIMITS, KeyThrottle
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from monitor.pipeline import INGESTION_GRACE, Monitor
from monitor.posthog.client import RequestBudget
from tests.support import crashing_daemon
from tests.support.landing import land_runs, trace_ids

KEY = "phx_reliability_key"
END = datetime(2026, 11, 1, tzinfo=UTC)
SCENARIO: dict[str, Any] = {"scenario": "drift", "days": 6, "scale": 0.05, "seed": 11}
_teams = itertools.count(5000)


@dataclass
class World:
    """One cell's project: its own local PostHog team, Slack endpoint and mailbox."""

    server: LocalPostHog
    ds: Dataset
    slack: LocalSlack
    smtp: LocalSMTP
    state: Path
    now: list[datetime] = field(default_factory=lambda: [END + timedelta(hours=1)])
    overrides: dict[str, Any] = field(default_factory=dict)
    # Runs a cell adds beyond the scenario's: good ones must be processed; bad ones must not, and their
    # error must name the run and the field (run id -> (field, emitted_at)).
    extra_ok: dict[str, datetime] = field(default_factory=dict)
    extra_bad: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    # Mailboxes replaced by a restart of the SMTP server: what they received still counts.
    retired_smtp: list[LocalSMTP] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def team(self) -> int:
        return self.ds.team_id

    def config(self) -> Config:
        return parse_config(json.dumps(self.config_doc()), "reliability", env={})

    def config_file(self, path: Path) -> Path:
        path.write_text(json.dumps(self.config_doc()))
        path.chmod(0o600)
        return path

    def restart_smtp(self, **kw: Any) -> None:
        """A new SMTP server on the same port (kw: LocalSMTP's, e.g. username/password for AUTH)."""
        with contextlib.suppress(Exception):  # already stopped by the cell
            self.smtp.stop()
        self.retired_smtp.append(self.smtp)
        self.smtp = LocalSMTP.start(port=self.smtp.port, **kw)

    def mail_keys(self) -> Counter[str]:
        """How many times each notification arrived by email, over every mailbox this world had."""
        return Counter(str(msg["X-Cluster-Monitor-Key"]).strip() for box in [*self.retired_smtp, self.smtp]
                       for msg in box.messages)

    def config_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "posthog": {"host": self.server.url, "project_id": self.team, "api_key": KEY, "lookback_days": 60,
                        "timeout_seconds": 1.0, "max_retries": 1},
            "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
            "slack": {"webhook_url": self.slack.webhook_url},
            "email": {"host": "127.0.0.1", "port": self.smtp.port, "security": "none", "from": "m@x.test",
                      "to": ["t@x.test"], "timeout_seconds": 2},
            "state": {"path": str(self.state)},
            "delivery": {"max_backoff_seconds": 60},
        }
        for section, values in self.overrides.items():
            doc[section] = {**doc.get(section, {}), **values}
        return doc

    def monitor(self) -> Monitor:
        # Each world stands for a separate deployment with its own key: its own request budget, on the
        # world's clock (a throttled key's pause passes as the cells move time on, not in real time).
        slept = [0.0]

        def budget_sleep(s: float) -> None:
            slept[0] += s

        def budget_clock() -> float:
            return self.now[0].timestamp() + slept[0]

        budget = RequestBudget(clock=budget_clock, sleep=budget_sleep, wall=budget_clock)
        m = build_monitor(self.config(), clock=lambda: self.now[0], sleep=lambda s: None, budget=budget)
        assert m.deliverer is not None
        m.deliverer.min_interval = 0.0
        return m

    def run_event(self, index: int) -> tuple[dict[str, Any], Any]:
        r = self.ds.runs[index]
        row = next(e for e in self.ds.events if e[0] == r["event_uuid"])
        return json.loads(row[3]), r


def new_world(server: LocalPostHog, tmp: Path) -> World:
    team = next(_teams)
    # Trace and generation runs only, as the harness's worlds were measured (bench/RESULTS.md) and as their
    # config watches: the evaluation level has end-to-end tests of its own.
    ds = generate(SCENARIO["scenario"], days=SCENARIO["days"], scale=SCENARIO["scale"], seed=SCENARIO["seed"],
                  team_id=team, end=END, evaluations=False)
    server.load(ds)
    return World(server=server, ds=ds, slack=LocalSlack.start(), smtp=LocalSMTP.start(), state=tmp / f"{team}.db")


def _headers(slack: LocalSlack) -> list[str]:
    return sorted(m["blocks"][0]["text"]["text"] for m in slack.messages)


@dataclass(frozen=True)
class Cell:
    name: str
    arm: Callable[[World], None]
    heal: Callable[[World], None] = lambda w: None
    # The structured log event that must say what happened while the fault held (None: nothing to say).
    expect_log: str | None = None
    # The cell's extra runs belong to jobs of the scenario and change what their later alerts say:
    # compared by runs processed instead of by the control's notifications.
    alters_alerts: bool = False
    # Before the monitor is built (the config a fault needs, e.g. SMTP credentials or a bot token).
    setup: Callable[[World], None] | None = None
    # More checks while the fault holds (after its cycles, before healing): problems found.
    check: Callable[[World, Monitor, list[MutableMapping[str, Any]]], list[str]] | None = None
    # The fault lands after a first cycle (a late run must arrive after later ones were processed).
    after_first_cycle: bool = False
    # Long: the bench runs it, the CI matrix (tests/integration/test_faults.py) marks it slow.
    slow: bool = False


def _ph(kind: str, name: str | None = None, **kw: Any) -> Callable[[World], None]:
    return lambda w: w.server.faults.add(Fault(kind=kind, name=name, count=None, **kw))  # type: ignore[arg-type]


def _ph_heal(w: World) -> None:
    w.server.faults.clear()


def _slack_fail(status: int, error: str, retry_after: float | None = None) -> Callable[[World], None]:
    return lambda w: w.slack.fail_next(10_000, status, error=error, retry_after=retry_after)


def _slack_heal(w: World) -> None:
    w.slack.heal()


BOT_TOKEN = "xoxb-reliability-0001"


def _slack_bot(w: World) -> None:
    """Post with a bot token (chat.postMessage), where Slack says `invalid_auth` of a revoked token."""
    w.slack.token = BOT_TOKEN
    w.overrides["slack"] = {"bot_token": BOT_TOKEN, "channel": "#alerts", "base_url": w.slack.api_base_url}


def _slack_revoke(w: World) -> None:
    w.slack.token = "xoxb-the-new-token"


def _slack_restore(w: World) -> None:
    w.slack.token = BOT_TOKEN


def _smtp_down(w: World) -> None:
    w.smtp.stop()


def _smtp_up(w: World) -> None:
    w.restart_smtp()


def _smtp_refuse(w: World) -> None:
    w.smtp.refuse_code = 451


def _smtp_accept(w: World) -> None:
    w.smtp.refuse_code = None


SMTP_USER, SMTP_PASSWORD = "monitor@x.test", "mail-password-1"


def _smtp_auth(w: World) -> None:
    w.overrides["email"] = {"username": SMTP_USER, "password": SMTP_PASSWORD}
    w.restart_smtp(username=SMTP_USER, password=SMTP_PASSWORD)


def _smtp_password_changed(w: World) -> None:
    """The mail account's password changed under the monitor: the server answers 535 to its login."""
    w.notes["email_failed_before"] = _metric_failed("email")
    w.restart_smtp(username=SMTP_USER, password="mail-password-2")


def _smtp_password_fixed(w: World) -> None:
    w.restart_smtp(username=SMTP_USER, password=SMTP_PASSWORD)


def _metric_failed(channel: str) -> float:
    value = telemetry.REGISTRY.get_sample_value("cluster_monitor_notifications_total",
                                                {"channel": channel, "outcome": "failed"})
    return value or 0.0


def _check_smtp_auth(w: World, m: Monitor, logs: list[MutableMapping[str, Any]]) -> list[str]:
    problems = []
    failed = [e for e in m.store.outbox("failed") if e.channel == "email"]
    if not failed:
        problems.append("no email kept as failed in the outbox")
    lines = [e for e in logs if e.get("event") == "notification_failed" and e.get("channel") == "email"]
    if not lines or not all("535" in str(e.get("error")) and "authentication" in str(e.get("error")) for e in lines):
        problems.append("no notification_failed log line saying SMTP authentication failed (535)")
    counted = _metric_failed("email") - w.notes["email_failed_before"]
    if counted != len(failed):
        problems.append(f"metric counted {counted:g} failed emails, the outbox holds {len(failed)}")
    out = CliRunner().invoke(cli_app, ["outbox", "--config", str(w.config_file(w.state.with_suffix(".json"))),
                                       "--status", "failed"])
    shown = [ln for ln in out.output.splitlines() if " email " in ln and "authentication failed (535)" in ln]
    if out.exit_code != 0 or len(shown) != len(failed):
        problems.append(f"`cluster-monitor outbox --status failed` does not list them: {out.output[:300]!r}")
    return problems


def _duplicate_event(w: World) -> None:
    props, r = w.run_event(len(w.ds.runs) // 2)
    w.server.engine.insert([run_event_row(props, team_id=w.team, emitted_at=r["emitted_at"] + timedelta(seconds=30))])


def _extra_run(w: World, clusters: Any) -> str:
    props, r = w.run_event(len(w.ds.runs) - 1)
    end = datetime.fromisoformat(props["$ai_window_end"]) + timedelta(hours=6)
    props.update({"$ai_window_end": end.isoformat(), "$ai_clusters": clusters,
                  "$ai_clustering_run_id": f"{w.team}_{r['level']}_{end:%Y%m%d_%H%M%S}_{r['job_id']}"})
    emitted = r["emitted_at"] + timedelta(hours=6)
    w.server.engine.insert([run_event_row(props, team_id=w.team, emitted_at=emitted)])
    return str(props["$ai_clustering_run_id"])


def _noise_only(w: World) -> None:
    props, r = w.run_event(len(w.ds.runs) - 1)
    noise = [c for c in props["$ai_clusters"] if c["cluster_id"] == -1] or [
        {"cluster_id": -1, "size": 0, "title": "Outliers", "traces": {}}]
    w.extra_ok[_extra_run(w, noise)] = r["emitted_at"] + timedelta(hours=6)


def _old_run_event(w: World) -> None:
    """A run event as older PostHog releases wrote it: no level, no job, `$ai_total_traces_analyzed`,
    metrics null, the noise cluster last with its ranks the other way round."""
    props, r = w.run_event(len(w.ds.runs) - 1)
    end = datetime.fromisoformat(props["$ai_window_end"]) + timedelta(hours=6)
    props.update({"$ai_window_end": end.isoformat(),
                  "$ai_clustering_run_id": f"{w.team}_{r['level']}_{end:%Y%m%d_%H%M%S}_{r['job_id']}"})
    old = legacy_run_properties(props)
    emitted = r["emitted_at"] + timedelta(hours=6)
    w.server.engine.insert([run_event_row(old, team_id=w.team, emitted_at=emitted)])
    w.extra_ok[str(old["$ai_clustering_run_id"])] = emitted


def _poison(w: World) -> None:
    _, r = w.run_event(len(w.ds.runs) - 1)
    w.extra_bad[_extra_run(w, "this is not JSON")] = ("$ai_clusters", r["emitted_at"] + timedelta(hours=6))


def _late_run(w: World) -> None:
    """A run event that shows up after later ones were processed (ingestion delay)."""
    props, r = w.run_event(len(w.ds.runs) - 1)
    end = datetime.fromisoformat(props["$ai_window_end"]) - timedelta(minutes=30)
    props.update({"$ai_window_end": end.isoformat(), "$ai_clustering_job_id": "late-job",
                  "$ai_clustering_run_id": f"{w.team}_{r['level']}_{end:%Y%m%d_%H%M%S}_late-job"})
    emitted = r["emitted_at"] - timedelta(minutes=30)
    w.server.engine.insert([run_event_row(props, team_id=w.team, emitted_at=emitted)])
    w.extra_ok[str(props["$ai_clustering_run_id"])] = emitted


def _rename_and_delete_jobs(w: World) -> None:
    team = w.server.team(w.team)
    team.jobs = [dict(j, name=j["name"] + " (renamed)") for j in team.jobs[1:]]


def _job_pair(w: World, job: str, edit: Callable[[dict[str, Any]], None], *, second_ok: bool = True,
              bad_field: str = "") -> None:
    """Two runs of a new job landing mid-scenario: a clean one, then one `edit` changes. Later runs of
    other jobs follow them, so a cursor that jumped past a bad run would show."""
    trace_runs = [i for i, r in enumerate(w.ds.runs) if r["level"] == "trace"]
    for k, index in enumerate(trace_runs[len(trace_runs) // 2: len(trace_runs) // 2 + 2]):
        props, r = w.run_event(index)
        end = datetime.fromisoformat(props["$ai_window_end"]) + timedelta(minutes=7)
        run_id = f"{w.team}_{end:%Y%m%d_%H%M%S}_{job}"  # names no level: the event must say it
        props.update({"$ai_clustering_run_id": run_id, "$ai_clustering_job_id": job,
                      "$ai_clustering_job_name": f"fields {job}", "$ai_window_end": end.isoformat()})
        if k:
            edit(props)
        emitted = r["emitted_at"] + timedelta(minutes=7)
        w.server.engine.insert([_trace_row(props, w.team, emitted)])
        if k and not second_ok:
            w.extra_bad[run_id] = (bad_field, emitted)
        else:
            w.extra_ok[run_id] = emitted


def _trace_row(props: dict[str, Any], team: int, emitted: datetime) -> Any:
    """A `$ai_trace_clusters` event whatever the properties say (run_event_row reads the level from them)."""
    uid, _, distinct_id, text, stamp, team_id = run_event_row(props, team_id=team, emitted_at=emitted)
    return (uid, "$ai_trace_clusters", distinct_id, text, stamp, team_id)


def _drop_level(props: dict[str, Any]) -> None:
    props.pop("$ai_clustering_level", None)


def _sparse_clusters(props: dict[str, Any]) -> None:
    """A cluster without `traces`, one without `size`, one with neither."""
    regular = [c for c in props["$ai_clusters"] if c["cluster_id"] >= 0]
    for c, drop in zip(regular, (("traces",), ("size",), ("traces", "size")), strict=False):
        for key in drop:
            c.pop(key, None)


def _unknown_fields(props: dict[str, Any]) -> None:
    """Fields a newer PostHog might add, at every level of the payload."""
    props["$ai_clustering_future_field"] = {"nested": [1, 2, 3]}
    for c in props["$ai_clusters"]:
        c["labels"] = ["new", "unknown"]
        c["metrics"] = {**(c.get("metrics") or {}), "p99_latency": 12.5, "embedding_model": "x"}
        for item in c.get("traces", {}).values():
            item["embedding"] = [0.1, 0.2]


def _drop_window_start(props: dict[str, Any]) -> None:
    props.pop("$ai_window_start", None)


def _missing_and_unknown_fields(w: World) -> None:
    _job_pair(w, "no-level", _drop_level)
    _job_pair(w, "sparse-clusters", _sparse_clusters)
    _job_pair(w, "unknown-fields", _unknown_fields)
    _job_pair(w, "no-window-start", _drop_window_start, second_ok=False, bad_field="$ai_window_start")


def _legacy_budget_nearly_spent(w: World) -> None:
    """The team is on the legacy 120 queries/hour throttle and other users of the key spent 117 of them."""
    throttle = KeyThrottle(LEGACY_QUERY_LIMITS, clock=lambda: w.now[0].timestamp())
    for _ in range(117):
        throttle.check(KEY, "query")
    w.server.throttle = throttle
    w.notes["requests_before"] = len(w.server.requests)


def _legacy_heal(w: World) -> None:
    w.server.throttle = None


def _throttled_at_most_once_a_pause(w: World, m: Monitor, logs: list[MutableMapping[str, Any]]) -> list[str]:
    """An hourly 429 pauses the key: the cycles in that hour send nothing more, so at most one 429."""
    refused = [r for r in w.server.requests[w.notes.get("requests_before", 0):]
               if r.get("status") == 429 and f"/{w.team}/" in str(r.get("path"))]
    return [] if len(refused) <= 1 else [f"{len(refused)} requests refused 429: the budget was burned retrying"]


def _throttle_hourly(w: World) -> None:
    w.notes["requests_before"] = len(w.server.requests)
    w.server.faults.add(Fault(kind="throttle", name="cluster_metrics", seconds=2400, count=None))


def _posthog_timeout_default(w: World) -> None:
    """The matrix's 1 s PostHog timeout is for its latency cell; a 50k-item run gets the default."""
    w.overrides["posthog"] = {"timeout_seconds": 30.0}


def _big_runs(w: World) -> None:
    """Two consecutive 50,000-item runs of a new job (half their items shared), as bench/processing lands them."""
    for d, _ in land_runs(w.server, w.team, 50_000, trace_ids(w.ds), 0):
        w.extra_ok[d.run_id] = d.emitted_at


CELLS = [
    Cell("posthog: latency past the timeout", _ph("latency", "get_run", seconds=1.6), _ph_heal, "run_failed"),
    Cell("posthog: 500", _ph("status", "get_run", status=500), _ph_heal, "run_failed"),
    Cell("posthog: 502", _ph("status", "cluster_metrics", status=502), _ph_heal, "run_failed"),
    Cell("posthog: 503 on discovery", _ph("status", "discover_runs", status=503), _ph_heal, "discovery_failed"),
    Cell("posthog: 429 with Retry-After", _ph("status", "get_run", status=429, retry_after=0.05), _ph_heal,
         "run_failed"),
    Cell("posthog: 429 without Retry-After", _ph("status", "cluster_metrics", status=429), _ph_heal, "run_failed"),
    Cell("posthog: 429 throttled_error, minute budget (wait in the text, no Retry-After)",
         _ph("throttle", "cluster_metrics", seconds=30), _ph_heal, "run_failed"),
    Cell("posthog: 429 throttled_error, hourly budget (waited out, nothing sent meanwhile)", _throttle_hourly,
         _ph_heal, "run_failed", check=_throttled_at_most_once_a_pause),
    Cell("posthog: legacy 120/hour throttle, budget nearly spent by others", _legacy_budget_nearly_spent,
         _legacy_heal, "run_failed", check=_throttled_at_most_once_a_pause),
    Cell("posthog: 504 query timeout", _ph("timeout", "cluster_metrics"), _ph_heal, "run_failed"),
    Cell("posthog: 512 query estimated too long", _ph("too_long", "cluster_metrics"), _ph_heal, "run_failed"),
    Cell("posthog: 202 async answers, polled", _ph("async", "get_run", polls=2), _ph_heal),
    Cell("posthog: dropped connections", _ph("drop", "get_run"), _ph_heal, "run_failed"),
    Cell("posthog: truncated JSON", _ph("truncate", "cluster_metrics"), _ph_heal, "run_failed"),
    Cell("posthog: malformed JSON", _ph("malformed", "get_run"), _ph_heal, "run_failed"),
    Cell("posthog: HogQL 400", _ph("status", "cluster_metrics", status=400), _ph_heal, "run_failed"),
    Cell("posthog: 401 (key revoked)", _ph("status", None, status=401), _ph_heal, "discovery_failed"),
    Cell("slack: 500", _slack_fail(500, "internal_error"), _slack_heal, "notification_retry"),
    Cell("slack: 429", _slack_fail(429, "ratelimited", retry_after=0), _slack_heal, "notification_retry"),
    Cell("slack: invalid_token (permanent)", _slack_fail(403, "invalid_token"), _slack_heal, "notification_failed"),
    Cell("slack: invalid_auth, bot token revoked (permanent)", _slack_revoke, _slack_restore, "notification_failed",
         setup=_slack_bot),
    Cell("slack: channel_not_found (permanent)", _slack_fail(404, "channel_not_found"), _slack_heal,
         "notification_failed"),
    Cell("smtp: refuses connections", _smtp_down, _smtp_up, "notification_retry"),
    Cell("smtp: 451 temporary refusal", _smtp_refuse, _smtp_accept, "notification_retry"),
    Cell("smtp: 535 auth refused (permanent)", _smtp_password_changed, _smtp_password_fixed, "notification_failed",
         setup=_smtp_auth, check=_check_smtp_auth),
    Cell("data: duplicated run event", _duplicate_event),
    Cell("data: noise-only run", _noise_only, alters_alerts=True),
    Cell("data: old run event (no level or job, traces_analyzed, metrics null)", _old_run_event,
         alters_alerts=True),
    Cell("data: unparseable $ai_clusters", _poison, expect_log="run_failed"),
    Cell("data: missing and unknown fields", _missing_and_unknown_fields, expect_log="run_failed"),
    Cell("data: run arriving late, out of order", _late_run, after_first_cycle=True),
    Cell("data: two 50,000-item runs", _big_runs, setup=_posthog_timeout_default, slow=True),
    Cell("jobs: renamed and deleted", _rename_and_delete_jobs),
]


@dataclass
class CellResult:
    name: str
    passed: bool
    problems: list[str]
    runs_lost: int
    alerts_lost: int
    duplicates: int
    kept_failed: int


def _cursor_ok(m: Monitor, w: World) -> bool:
    """The cursor never passes a run that is not processed: the scenario's and bad runs stay after it,
    until a bad run is quarantined (then its job goes on, by design: monitor/stages/failures.py); a late run
    may land up to the ingestion grace behind it, which discovery still looks back over."""
    cursor = m.store.cursor()
    if cursor is None:
        return True
    done = m.store.processed_ids([r["run_id"] for r in w.ds.runs] + list(w.extra_ok) + list(w.extra_bad))
    done |= {f.run_id for f in m.store.run_failures(quarantined=True)}
    strict = [r["emitted_at"] for r in w.ds.runs if r["run_id"] not in done]
    strict += [at for rid, (_, at) in w.extra_bad.items() if rid not in done]
    graced = [at for rid, at in w.extra_ok.items() if rid not in done]
    return (not strict or cursor < min(strict)) and (not graced or cursor - INGESTION_GRACE < min(graced))


def control_headers(server: LocalPostHog, tmp: Path) -> list[str]:
    w = new_world(server, tmp)
    try:
        m = w.monitor()
        assert m.cycle().ok
        m.store.close()
        return _headers(w.slack)
    finally:
        w.slack.stop()
        w.smtp.stop()


def _email_problems(m: Monitor, w: World) -> tuple[int, int]:
    """Emails lost (an outbox entry marked sent that no mailbox received) and duplicates (received twice)."""
    got = w.mail_keys()
    sent = [e.key for e in m.store.outbox("sent") if e.channel == "email"]
    return sum(1 for k in sent if got[k] == 0), sum(n - 1 for n in got.values() if n > 1)


def run_cell(cell: Cell, server: LocalPostHog, tmp: Path, expected: list[str]) -> CellResult:
    w = new_world(server, tmp)
    problems: list[str] = []
    try:
        if cell.setup is not None:
            cell.setup(w)
        m = w.monitor()
        with capture_logs() as logs:
            if cell.after_first_cycle:
                m.cycle()  # the later runs first; the late one lands after
                w.now[0] += timedelta(minutes=5)
            cell.arm(w)
            for _ in range(3):
                try:
                    m.cycle()
                except Exception as exc:  # the daemon would survive this, but a cell must not need it
                    problems.append(f"cycle raised {type(exc).__name__}: {exc}")
                if not _cursor_ok(m, w):
                    problems.append("cursor moved past an unprocessed run")
                w.now[0] += timedelta(minutes=5)
            if cell.check is not None:
                problems += cell.check(w, m, logs)
        if cell.expect_log and not any(e.get("event") == cell.expect_log for e in logs):
            problems.append(f"no {cell.expect_log!r} log line")
        for run_id, (fld, _) in w.extra_bad.items():
            bad = [e for e in logs if e.get("event") == "run_failed" and e.get("run_id") == run_id]
            if not any(run_id in str(e.get("error")) and fld in str(e.get("error")) for e in bad):
                problems.append(f"the bad run's error does not name the run and {fld}")
        cell.heal(w)
        kept_failed = len(m.store.outbox("failed"))
        if kept_failed:
            m.store.requeue_failed(w.now[0])  # what `cluster-monitor outbox --retry-failed` does
        all_runs = [r["run_id"] for r in w.ds.runs]
        for _ in range(12):
            w.now[0] += timedelta(minutes=30)
            m.cycle()
            # Done when the outbox is drained and the backlog processed (a throttled key may need an hour).
            if not m.store.outbox("pending") and not m.store.outbox("failed") \
                    and len(m.store.processed_ids(all_runs)) == len(all_runs):
                break
        done = m.store.processed_ids([r["run_id"] for r in w.ds.runs])
        runs_lost = len(w.ds.runs) - len(done)
        extra_done = m.store.processed_ids(list(w.extra_ok) + list(w.extra_bad))
        runs_lost += sum(1 for rid in w.extra_ok if rid not in extra_done)
        if any(rid in extra_done for rid in w.extra_bad):
            problems.append("a bad run was recorded as processed")
        quarantined = {f.run_id for f in m.store.run_failures(quarantined=True)}
        if set(w.extra_bad) - quarantined:
            problems.append("a bad run was not quarantined")
        got = _headers(w.slack)
        want = list(expected)
        missing = 0
        for h in want:
            if h in got:
                got.remove(h)
            else:
                missing += 1
        duplicates = sum(1 for h in got if h in expected)
        if cell.alters_alerts:
            missing = 0  # the extra run changes what its job's later alerts say; counted by runs instead
            duplicates = 0
        mail_lost, mail_dupes = _email_problems(m, w)
        missing += mail_lost
        duplicates += mail_dupes
        if runs_lost:
            problems.append(f"{runs_lost} runs not processed")
        if missing:
            problems.append(f"{missing} notifications not delivered")
        if duplicates:
            problems.append(f"{duplicates} notifications delivered twice")
        if m.store.outbox("pending") or m.store.outbox("failed"):
            problems.append("outbox not drained")
        m.store.close()
        m.client.close()
        return CellResult(cell.name, not problems, problems, runs_lost, missing, duplicates, kept_failed)
    finally:
        w.slack.stop()
        with contextlib.suppress(Exception):  # the cell may have stopped it already
            w.smtp.stop()

# --- the kill test --------------------------------------------------------------------------------------

# How long a process armed at the failpoint may take to reach it (start-up, a few runs, the first send).
FAILPOINT_WAIT = 15.0


def kill_test(server: LocalPostHog, tmp: Path, expected: list[str], *, kills: int, seed: int,
              failpoint_every: int = 10, log: Callable[[str], None] = print) -> dict[str, int]:
    """SIGKILL `cluster-monitor run` until `kills` kills were made, then let a last one finish the work.

    Most kills come at random moments; every `failpoint_every`-th process is started with the test-only
    failpoint armed and kills itself between a send and its "sent" mark (if it finds nothing to send in
    time, it is killed anyway and the next process is armed instead). After each kill, a channel that
    received more messages than the state file marks sent tells that the kill landed between the two.
    """
    rng = random.Random(seed)
    w = new_world(server, tmp)
    w.server.faults.add(Fault(kind="latency", seconds=0.05, count=None))  # spread the work over time
    w.overrides["schedule"] = {"interval_seconds": 0.5}
    w.overrides["delivery"] = {"max_backoff_seconds": 1}
    cfg_path = w.config_file(tmp / f"kill-{w.team}.json")
    # Runs land a few at a time, as they would in production, so kills keep finding work in hand.
    first = min(r["emitted_at"] for r in w.ds.runs) - timedelta(hours=1)
    last = max(r["emitted_at"] for r in w.ds.runs)
    step = (last - first) / max(1, kills // 2)
    server.clock.set(first)
    made = failpoint_kills = between = 0
    gap = 0
    owed = False  # a failpoint slot passed without the failpoint being reached: arm the next process
    started = time.monotonic()
    try:
        while True:
            now = server.clock.now()
            if now is not None:
                server.clock.set(min(last + timedelta(hours=1), now + step))
            arm = made < kills and failpoint_every > 0 and ((made + 1) % failpoint_every == 0 or owed)
            if arm and not _work_in_hand(w, server.clock.now()):
                arm, owed = False, True  # nothing it could send: the failpoint waits for a process that can
            entry = ([str(crashing_daemon.__file__), "--kill-after-sends", str(rng.choice((1, 2)))] if arm
                     else ["-m", "monitor.cli", "run"])
            proc = subprocess.Popen([sys.executable, *entry, "--config", str(cfg_path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if made >= kills:
                # Let the last one finish the work, then stop it cleanly.
                server.clock.set(None)
                ok = w.slack.wait_for(len(expected), timeout=120)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and _work_in_hand(w, None):
                    time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                if not ok:
                    log("the last daemon did not deliver everything in time")
                break
            fired = False
            if arm:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    fired = proc.wait(FAILPOINT_WAIT) == -signal.SIGKILL
                owed = not fired
            else:
                time.sleep(rng.uniform(0.3, 2.5))  # python start-up is ~0.8 s: some kills land before any work
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            made += 1
            failpoint_kills += fired
            new_gap = _unrecorded_sends(w)
            if fired and new_gap != gap + 1:
                log(f"  kill {made}: the failpoint fired but {new_gap - gap} sends went unrecorded")
            between += new_gap - gap
            gap = new_gap
            if made % 10 == 0:
                log(f"  {made} kills ({failpoint_kills} at the failpoint, {between} between send and record), "
                    f"{len(_processed(w.state))}/{len(w.ds.runs)} runs processed, "
                    f"{len(w.slack.messages)} Slack messages, {time.monotonic() - started:.0f} s")
        got = _headers(w.slack)
        runs_lost = len(w.ds.runs) - len(_processed(w.state))
        missing = 0
        rest = list(got)
        for h in expected:
            if h in rest:
                rest.remove(h)
            else:
                missing += 1
        mail = w.mail_keys()
        rows = _outbox_rows(w.state)
        mail_lost = sum(1 for key, ch, _ in rows if ch == "email" and mail[key] == 0)
        mail_dupes = sum(n - 1 for n in mail.values() if n > 1)
        server.clock.set(None)
        return {"kills": made, "failpoint_kills": failpoint_kills, "between_kills": between,
                "runs": len(w.ds.runs), "runs_lost": runs_lost, "alerts_lost": missing + mail_lost,
                "duplicates": len(rest) + mail_dupes, "messages": len(got), "emails": sum(mail.values()),
                "expected": len(expected), "seconds": round(time.monotonic() - started)}
    finally:
        w.slack.stop()
        w.smtp.stop()


def _work_in_hand(w: World, clock: datetime | None) -> bool:
    """Runs that have landed (by the local PostHog's clock) and are not processed, or an outbox not empty."""
    processed = _processed(w.state)
    landed = [r for r in w.ds.runs if clock is None or r["emitted_at"] <= clock]
    return any(r["run_id"] not in processed for r in landed) or any(
        status != "sent" for _, _, status in _outbox_rows(w.state))


def _unrecorded_sends(w: World) -> int:
    """Messages the channels received beyond those the state file marks sent: one per kill that landed
    between a send and its record (a message is resent once after such a kill; the gap stays)."""
    sent = Counter(ch for _, ch, status in _outbox_rows(w.state) if status == "sent")
    return (len(w.slack.messages) - sent["slack"]) + (sum(w.mail_keys().values()) - sent["email"])


def _outbox_rows(state: Path) -> list[tuple[str, str, str]]:
    if not state.exists():
        return []
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
            return [(str(k), str(c), str(s)) for k, c, s in db.execute("SELECT key, channel, status FROM outbox")]
    except sqlite3.Error:
        return []


def _processed(state: Path) -> set[str]:
    if not state.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
            return {r[0] for r in db.execute("SELECT run_id FROM runs")}
    except sqlite3.Error:
        return set()
