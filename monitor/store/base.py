"""What the monitor remembers, as plain records, and the one interface every store implements.

The store is what makes a restart safe: a run is marked processed in the same transaction that records
its lineages, its alert states and its outbox entries, and notifications leave only from the outbox
after that commit. A crash before the commit redoes the run and sends nothing twice; a crash between a
send and its "sent" mark can repeat that one message, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class ClusterSnapshot:
    """One cluster of one processed run: what `history` and baseline rules read back."""

    run_id: str
    job_key: str
    level: str
    window_end: datetime
    cluster_id: int
    lineage_id: str
    title: str
    size: int
    share: float
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertState:
    fingerprint: str
    status: str  # firing | resolved
    kind: str
    first_fired_at: datetime
    last_fired_at: datetime
    last_notified_at: datetime | None
    last_run_id: str
    job_key: str
    lineage_id: str | None
    summary: str
    # How many consecutive runs of its job the condition held (for N-of-M and repeat logic).
    streak: int = 1


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    key: str
    channel: str
    payload: bytes
    status: str  # pending | sent | failed
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class Acknowledgement:
    """Someone took a firing alert in hand (Slack's "Acknowledge" button, or `cluster-monitor ack`). It
    covers the episode it was given in: `status` shows it while `at` is after the alert's first_fired_at."""

    fingerprint: str
    by: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class ProcessedRun:
    """Everything one processed run changes, committed at once."""

    run_id: str
    job_key: str
    level: str
    window_end: datetime
    emitted_at: datetime
    event_uuid: str
    payload: bytes  # the parsed run, encoded: the next run of the job diffs against it without a fetch
    snapshots: Sequence[ClusterSnapshot]
    alert_states: Sequence[AlertState]
    outbox: Sequence[tuple[str, str, bytes]]  # (notification key, channel, payload)
    processed_at: datetime
    # The run's metrics for run-level rules (their history: kv `run_metrics:{run_id}`); None writes none.
    run_metrics: Mapping[str, float] | None = None
    # Cluster id -> the cluster's mean embedding as float32 bytes (monitor.matching.embeddings.encode).
    cluster_vectors: Mapping[int, bytes] | None = None


@dataclass(frozen=True)
class RunFailure:
    """A run that failed to parse or process (monitor/stages/failures.py): retried after `next_attempt_at`
    until it succeeds or has failed schedule.run_attempts times; then `quarantined_at` is set and the job's
    later runs go on without it."""

    run_id: str
    job_key: str
    job_name: str
    level: str
    emitted_at: datetime
    field: str  # the run's field at fault ("(processing)" when no field is to blame)
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    next_attempt_at: datetime
    quarantined_at: datetime | None = None


@dataclass(frozen=True)
class PruneResult:
    """What one pass of retention removed."""

    runs: int = 0
    clusters: int = 0
    alert_states: int = 0
    notifications: int = 0
    # Rows of cluster_monitor_sends (PostgreSQL leadership) whose notification was pruned.
    send_claims: int = 0


class Store(Protocol):
    def close(self) -> None: ...

    def is_processed(self, run_id: str) -> bool: ...

    def processed_ids(self, run_ids: Sequence[str]) -> set[str]: ...

    def previous_run(self, job_key: str, before: datetime) -> tuple[str, bytes] | None: ...

    def lineages(self, run_id: str) -> dict[int, str]: ...

    def cluster_vectors(self, run_id: str) -> dict[int, bytes]: ...

    def run_snapshots(self, run_id: str) -> list[ClusterSnapshot]: ...

    def history(self, lineage_id: str, limit: int = 50) -> list[ClusterSnapshot]: ...

    def find_lineages(self, title_contains: str, limit: int = 20) -> list[str]: ...

    def lineage_history(self, job_key: str, before: datetime, runs: int) -> list[ClusterSnapshot]: ...

    def alert_states(self, job_key: str) -> dict[str, AlertState]: ...

    def commit_run(self, run: ProcessedRun) -> None: ...

    def commit_alerts(self, states: Sequence[AlertState], outbox: Sequence[tuple[str, str, bytes]],
                      now: datetime) -> None: ...

    def record_run_failure(self, failure: RunFailure, states: Sequence[AlertState] = (),
                           outbox: Sequence[tuple[str, str, bytes]] = (), *, now: datetime) -> None:
        """Upsert a run's failure, with the quarantine alert's state and notifications, at once."""
        ...

    def run_failures(self, *, quarantined: bool | None = None) -> list[RunFailure]:
        """Failed runs, oldest first: all, only quarantined (True) or only those still being retried (False)."""
        ...

    def retry_run(self, run_id: str) -> RunFailure | None:
        """Forget a run's failures (after a fix) so discovery takes it again; the one forgotten, or None."""
        ...

    def last_runs(self) -> dict[str, tuple[str, str, datetime]]:
        """job_key -> (level, run id, emitted_at) of its newest processed run."""
        ...

    def cursor(self) -> datetime | None: ...

    def set_cursor(self, ts: datetime) -> None: ...

    def due_outbox(self, now: datetime, limit: int = 100) -> list[OutboxEntry]: ...

    def outbox(self, status: str | None = None) -> list[OutboxEntry]: ...

    def mark_sent(self, entry_id: int, now: datetime, thread_ts: str | None = None) -> None: ...

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: datetime) -> None: ...

    def mark_failed(self, entry_id: int, error: str) -> None: ...

    def requeue_failed(self, now: datetime) -> int: ...

    def thread_for(self, channel: str, fingerprints: Sequence[str]) -> str | None: ...

    def add_silence(self, spec: dict[str, Any], now: datetime) -> int: ...

    def silences(self) -> list[tuple[int, dict[str, Any]]]: ...

    def remove_silence(self, silence_id: int) -> bool: ...

    def acknowledge(self, fingerprint: str, by: str, now: datetime, comment: str = "") -> None:
        """Record (or replace) the acknowledgement of an alert."""
        ...

    def acknowledgements(self) -> list[Acknowledgement]: ...

    # --- what `status` and the state gauges read (SELECTs only) ------------------------------------
    def firing_alerts(self) -> list[AlertState]:
        """Every alert state whose status is firing, of every job."""
        ...

    def outbox_summary(self) -> dict[str, tuple[int, datetime | None]]:
        """Outbox status -> (how many entries, when the oldest was queued)."""
        ...

    def notices_sent(self, fingerprint: str) -> int:
        """How many notifications carrying the alert were delivered (one per message, not per channel)."""
        ...

    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...

    def first_use(self, key: str, now: datetime, forget_before: datetime) -> bool:
        """Record a one-time token (`namespace:value`, e.g. a Slack request's signature) and say whether this
        is its first use by any replica on this store; tokens of its namespace recorded before
        `forget_before` are forgotten in the same transaction."""
        ...

    def prune(self, before: datetime, keep_runs: int, *, batch: int = ...) -> PruneResult:
        """Retention: forget runs, resolved alerts and sent notifications older than `before`, never the
        newest `keep_runs` runs of a job; in small transactions, beside a running cycle."""
        ...

    def schema_version(self) -> int: ...


class StoreError(Exception):
    """The state store cannot be reached or opened; the message names it (never with its password)."""


class Leadership(Protocol):
    """Which replica acts. Only the leader runs cycles and delivers; the others wait, ready to take over."""

    @property
    def held(self) -> bool: ...

    def acquire(self) -> bool:
        """Become or stay the leader if possible; True while this replica is the leader."""
        ...

    def verify(self) -> bool:
        """Fencing, asked before acting: True only while leadership is still certain."""
        ...

    def claim(self, outbox_id: int) -> bool:
        """The fence immediately before sending outbox entry `outbox_id`: True (and the send recorded
        under this leadership) only while leadership is still certain."""
        ...

    def prune_sends(self) -> int:
        """Retention of the send claims: forget those of outbox entries that are gone (pruned with the
        sent notifications); how many were forgotten."""
        ...

    def release(self) -> None: ...


class AlwaysLeader:
    """A SQLite store is one file of one process: its replica is always the leader."""

    held = True

    def acquire(self) -> bool:
        return True

    def verify(self) -> bool:
        return True

    def claim(self, outbox_id: int) -> bool:
        return True

    def prune_sends(self) -> int:
        return 0  # claims are recorded on PostgreSQL only

    def release(self) -> None:
        return None
