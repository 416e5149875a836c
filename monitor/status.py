"""What an operator asks the monitor: what fires, what is muted or in hand, how fresh each job is, whether
notifications leave. Read from the state store only (SELECTs), so `cluster-monitor status` works beside a
running daemon, on SQLite and PostgreSQL, and the gauges published after each cycle say the same thing.

The JSON shapes here are what `--json` prints (status, history, outbox, silence list); README.md
documents them. Fields are only ever added, never renamed or removed.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from monitor import telemetry
from monitor.config import Config, Silence
from monitor.kinds import is_stateful
from monitor.rules.routing import fired_severity
from monitor.rules.staleness import SOURCE_ERRORS
from monitor.runs import decode_stored_run
from monitor.store.base import Acknowledgement, AlertState, ClusterSnapshot, OutboxEntry, RunFailure, Store

# Far enough ahead that "the run before it" is the newest one.
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class AckView(msgspec.Struct, frozen=True):
    by: str
    at: datetime
    comment: str


class FiringAlert(msgspec.Struct, frozen=True):
    fingerprint: str
    kind: str
    severity: str
    job: str
    level: str
    job_key: str
    cluster_title: str | None
    summary: str
    since: datetime
    last_fired_at: datetime
    notices_sent: int
    acknowledged: AckView | None


class SilenceView(msgspec.Struct, frozen=True):
    source: str  # "config" or "store" (added with `silence add`)
    id: int | None  # the number `silence remove` takes (store silences only)
    active: bool
    until: datetime | None  # None: until removed
    kinds: list[str]
    severities: list[str]
    job: str | None
    level: str | None
    title: str | None
    comment: str
    lineage: str | None = None


class JobView(msgspec.Struct, frozen=True):
    job: str
    level: str
    job_key: str
    last_run_id: str
    last_run_at: datetime  # when the run landed in PostHog
    age_seconds: float


class OutboxHealth(msgspec.Struct, frozen=True):
    pending: int
    failed: int
    sent: int
    oldest_pending_at: datetime | None
    oldest_pending_age_seconds: float | None


class FailedRunView(msgspec.Struct, frozen=True):
    """A run that failed (`runs`, `status`): still retried, or quarantined (`quarantined_at` set)."""

    run_id: str
    job: str
    level: str
    job_key: str
    landed_at: datetime
    field: str
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    next_attempt_at: datetime | None
    quarantined_at: datetime | None


def failed_run_view(f: RunFailure) -> FailedRunView:
    return FailedRunView(run_id=f.run_id, job=f.job_name, level=f.level, job_key=f.job_key, landed_at=f.emitted_at,
                         field=f.field, error=f.error, attempts=f.attempts, first_failed_at=f.first_failed_at,
                         last_failed_at=f.last_failed_at,
                         next_attempt_at=None if f.quarantined_at else f.next_attempt_at,
                         quarantined_at=f.quarantined_at)


def failed_run_line(f: FailedRunView) -> str:
    state = (f"quarantined {_t(f.quarantined_at)}" if f.quarantined_at
             else f"retry at {_t(f.next_attempt_at) if f.next_attempt_at else '?'}")
    return f"{f.run_id}  {f.job} ({f.level})  {state}, {f.attempts} attempts  field {f.field}: {f.error}"


class ProjectStatus(msgspec.Struct, frozen=True):
    project_id: int
    host: str
    state: str
    firing: list[FiringAlert]
    silences: list[SilenceView]
    jobs: list[JobView]
    # Runs set aside after failing schedule.run_attempts times (poison runs; `runs retry RUN_ID` after a fix).
    quarantined: list[FailedRunView]
    outbox: OutboxHealth


class Status(msgspec.Struct, frozen=True):
    version: str
    generated_at: datetime
    projects: list[ProjectStatus]


# --- reading -----------------------------------------------------------------------------------------
def firing_states(store: Store) -> list[AlertState]:
    """Alerts that fire now. Event alerts (a split, a new cluster) keep a 'firing' state only so a run
    redone after a crash does not send them twice; they are news, not conditions, and are left out."""
    return [st for st in store.firing_alerts() if is_stateful(st.kind)]


def current_ack(st: AlertState, acks: dict[str, Acknowledgement]) -> Acknowledgement | None:
    """An acknowledgement covers the episode it was given in, not a later one of the same alert."""
    ack = acks.get(st.fingerprint)
    return ack if ack is not None and ack.at >= st.first_fired_at else None


def silence_views(stored: Sequence[tuple[int, dict[str, Any]]], configured: Sequence[Silence],
                  now: datetime) -> list[SilenceView]:
    rows: list[tuple[str, int | None, Silence]] = []
    for sid, spec in stored:
        try:
            rows.append(("store", sid, Silence.model_validate(spec)))
        except ValueError:
            continue  # written by another version; the daemon logs it as silence_unreadable
    rows += [("config", None, s) for s in configured]
    return [SilenceView(source=src, id=sid, active=s.until is None or s.until > now, until=s.until,
                        kinds=list(s.kinds), severities=list(s.severities), job=s.job, level=s.level,
                        title=s.title, comment=s.comment, lineage=s.lineage) for src, sid, s in rows]


def outbox_health(store: Store, now: datetime) -> OutboxHealth:
    summary = store.outbox_summary()
    oldest = summary.get("pending", (0, None))[1]
    return OutboxHealth(
        pending=summary.get("pending", (0, None))[0], failed=summary.get("failed", (0, None))[0],
        sent=summary.get("sent", (0, None))[0], oldest_pending_at=oldest,
        oldest_pending_age_seconds=(now - oldest).total_seconds() if oldest else None)


def _job_names(store: Store, job_keys: Sequence[str]) -> dict[str, str]:
    """The job's name as its newest run carried it (the store keys jobs by PostHog id)."""
    out: dict[str, str] = {}
    for key in job_keys:
        job_id = key.split("|", 1)[0]
        name = job_id.removeprefix("name:")
        rec = store.previous_run(key, before=_END_OF_TIME)
        if rec is not None:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                name = decode_stored_run(rec[1]).job_name or name
        out[key] = name
    return out


def collect(cfg: Config, store: Store, now: datetime) -> ProjectStatus:
    """One project's status; `cfg` is the project's own config (Config.per_project)."""
    states = firing_states(store)
    last = store.last_runs()
    names = _job_names(store, sorted({st.job_key for st in states} | set(last)))
    acks = {a.fingerprint: a for a in store.acknowledgements()}
    firing = []
    for st in states:
        ack = current_ack(st, acks)
        job, _, level = st.job_key.partition("|")
        job = names.get(st.job_key, job)
        if st.kind == SOURCE_ERRORS:  # keyed "posthog|<project id>": the project, not a job
            job, level = "PostHog", "project"
        firing.append(FiringAlert(
            fingerprint=st.fingerprint, kind=st.kind, severity=fired_severity(st.kind, cfg.rules), job=job,
            level=level, job_key=st.job_key, cluster_title=_title(store, st.lineage_id),
            summary=st.summary, since=st.first_fired_at, last_fired_at=st.last_fired_at,
            notices_sent=store.notices_sent(st.fingerprint),
            acknowledged=AckView(by=ack.by, at=ack.at, comment=ack.comment) if ack else None))
    jobs = [JobView(job=names.get(key, key), level=level, job_key=key, last_run_id=run_id, last_run_at=at,
                    age_seconds=(now - at).total_seconds())
            for key, (level, run_id, at) in sorted(last.items())]
    return ProjectStatus(
        project_id=cfg.posthog.project_id, host=cfg.posthog.host, state=cfg.state.describe(), firing=firing,
        silences=silence_views(store.silences(), cfg.silences, now), jobs=jobs,
        quarantined=[failed_run_view(f) for f in store.run_failures(quarantined=True)],
        outbox=outbox_health(store, now))


def _title(store: Store, lineage_id: str | None) -> str | None:
    if not lineage_id:
        return None
    snaps = store.history(lineage_id, 1)
    return snaps[-1].title if snaps else None


# --- the gauges ----------------------------------------------------------------------------------------
_FIRING_BY_PROJECT: dict[int, Counter[tuple[str, str]]] = {}


def publish(cfg: Config, store: Store, now: datetime) -> None:
    """Set the state gauges from the store, after a cycle of the project (only the leader runs cycles).
    Alerts firing are summed over the projects of the process; jobs have ids unique across projects."""
    firing = Counter((st.kind, fired_severity(st.kind, cfg.rules)) for st in firing_states(store))
    _FIRING_BY_PROJECT[cfg.posthog.project_id] = firing
    total: Counter[tuple[str, str]] = Counter()
    for counts in _FIRING_BY_PROJECT.values():
        total.update(counts)
    for labels in list(telemetry.ALERTS_FIRING._metrics):  # label sets that stopped firing
        if labels not in total:
            telemetry.ALERTS_FIRING.labels(*labels).set(0)
    for (kind, severity), n in total.items():
        telemetry.ALERTS_FIRING.labels(kind=kind, severity=severity).set(n)
    for key, (level, _run_id, at) in store.last_runs().items():
        telemetry.JOB_LAST_RUN.labels(job=key.split("|", 1)[0], level=level).set(at.timestamp())
    health = outbox_health(store, now)
    telemetry.OUTBOX_FAILED.set(health.failed)
    telemetry.OUTBOX_OLDEST_PENDING.set(health.oldest_pending_at.timestamp() if health.oldest_pending_at else 0)


# --- text ----------------------------------------------------------------------------------------------
def age(seconds: float | None) -> str:
    """90061 -> '1d1h': the two largest units, enough to read a freshness at a glance."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    return "".join(f"{n}{u}" for n, u in parts[first:first + 2] if n) or "0s"


def _t(dt: datetime | None) -> str:
    return f"{dt.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if dt else "-"


def silence_line(s: SilenceView) -> str:
    label = f"#{s.id}" if s.id is not None else "config"
    what = ", ".join(f"{k}={v}" for k, v in (("kinds", ",".join(s.kinds)), ("severities", ",".join(s.severities)),
                                              ("job", s.job), ("level", s.level), ("title", s.title),
                                              ("lineage", s.lineage)) if v)
    until = f"until {_t(s.until)}" if s.until else "until removed"
    return f"{label:<7} {'active' if s.active else 'expired':<8} {what}  {until}  {s.comment}".rstrip()


def render(status: Status) -> str:
    lines: list[str] = []
    many = len(status.projects) > 1
    for p in status.projects:
        if many:
            lines.append(f"== project {p.project_id} on {p.host} ({p.state})")
        now = status.generated_at
        lines.append(f"Firing ({len(p.firing)})")
        for a in p.firing:
            ack = f"  [acknowledged by {a.acknowledged.by} {age((now - a.acknowledged.at).total_seconds())} ago]" \
                if a.acknowledged else ""
            lines.append(f"  {a.severity:<8} {a.kind:<16} {a.job} ({a.level})  since {_t(a.since)}, "
                         f"{a.notices_sent} notice{'s' if a.notices_sent != 1 else ''} sent{ack}")
            lines.append(f"           {a.summary}  [{a.fingerprint}]")
        acked = [a for a in p.firing if a.acknowledged]
        lines.append(f"Acknowledged ({len(acked)})")
        for a in acked:
            assert a.acknowledged is not None
            lines.append(f"  {a.fingerprint} {a.kind} {a.job}: by {a.acknowledged.by} at {_t(a.acknowledged.at)}"
                         + (f"  {a.acknowledged.comment}" if a.acknowledged.comment else ""))
        active = [s for s in p.silences if s.active]
        lines.append(f"Silenced ({len(active)} active, {len(p.silences) - len(active)} expired)")
        lines += [f"  {silence_line(s)}" for s in active]
        lines.append(f"Jobs ({len(p.jobs)})")
        for j in p.jobs:
            lines.append(f"  {j.job} ({j.level})  last run {j.last_run_id} landed {_t(j.last_run_at)}, "
                         f"{age(j.age_seconds)} ago")
        lines.append(f"Quarantined runs ({len(p.quarantined)})"
                     + (" (`runs retry RUN_ID` after a fix)" if p.quarantined else ""))
        lines += [f"  {failed_run_line(f)}" for f in p.quarantined]
        o = p.outbox
        lines.append(f"Outbox: {o.pending} pending" + (f" (oldest {age(o.oldest_pending_age_seconds)} old)"
                                                       if o.pending else "")
                     + f", {o.failed} failed" + (" (`outbox --status failed`, then `outbox --retry-failed`)"
                                                 if o.failed else "") + f", {o.sent} sent")
    return "\n".join(lines)


# --- JSON of the other commands ---------------------------------------------------------------------------
class OutboxView(msgspec.Struct, frozen=True):
    id: int
    status: str
    channel: str
    key: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


def outbox_view(e: OutboxEntry) -> OutboxView:
    return OutboxView(id=e.id, status=e.status, channel=e.channel, key=e.key, attempts=e.attempts,
                      created_at=e.created_at, next_attempt_at=e.next_attempt_at, sent_at=e.sent_at,
                      last_error=e.last_error)


class HistoryPoint(msgspec.Struct, frozen=True):
    run_id: str
    job_key: str
    level: str
    window_end: datetime
    cluster_id: int
    title: str
    size: int
    share: float
    metrics: dict[str, Any]


class LineageHistory(msgspec.Struct, frozen=True):
    lineage_id: str
    runs: list[HistoryPoint]


def lineage_history(lineage_id: str, snaps: Sequence[ClusterSnapshot]) -> LineageHistory:
    return LineageHistory(lineage_id=lineage_id, runs=[
        HistoryPoint(run_id=s.run_id, job_key=s.job_key, level=s.level, window_end=s.window_end,
                     cluster_id=s.cluster_id, title=s.title, size=s.size, share=s.share, metrics=dict(s.metrics))
        for s in snaps])


def to_json(value: Any) -> bytes:
    return msgspec.json.encode(value) + b"\n"
