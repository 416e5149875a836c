"""Poison runs: a run that fails to parse or process is retried with backoff, and after
`schedule.run_attempts` failures it is quarantined with one alert naming the run, the job and the field,
so that the job's later runs go on (before, one bad run held its job back forever, silently).

Pure: the failure so far, the error and a clock in; the next failure record and the alert out. The
pipeline (monitor/pipeline.py) stores them in one transaction.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from monitor.alerts import Alert, Link, fingerprint
from monitor.kinds import RUN_QUARANTINED
from monitor.links import PostHogLinks
from monitor.metrics import MetricsParseError
from monitor.posthog.client import PostHogError
from monitor.runs import RunParseError
from monitor.stages.discover import DiscoveredRun
from monitor.store.base import RunFailure, StoreError

KIND = RUN_QUARANTINED.name
# The field named when no field of the run is to blame (a bug, a value the store refused, a hang).
NO_FIELD = "(processing)"
# Errors are kept and told this long at most: an exception's text can quote a whole payload.
ERROR_CHARS = 500
# The longest wait between two tries of a failing run, whatever the backoff says.
MAX_RETRY = timedelta(hours=6)


def is_transient(exc: BaseException) -> bool:
    """Failures that say nothing about the run's payload: PostHog erring or away (any PostHogError, a 400
    included: a query PostHog refuses, or an answer cut short, is PostHog's side, and the fault matrix of
    tests/support/reliability.py must heal without a run set aside) or the state store away. They are retried
    as before and never count towards quarantine: an outage must not set good runs aside."""
    if isinstance(exc, (PostHogError, StoreError, sqlite3.OperationalError)):
        return True
    # The DB-API's connection-level errors, of whichever driver (psycopg's OperationalError...).
    return any(c.__name__ in ("OperationalError", "InterfaceError") for c in type(exc).__mro__)


def failure_field(exc: BaseException) -> str:
    if isinstance(exc, RunParseError):
        return exc.field
    if isinstance(exc, MetricsParseError):
        return "(cluster metrics)"
    return NO_FIELD


def describe(exc: BaseException) -> str:
    """What went wrong, for the stored failure and the alert (which name the run and the field apart)."""
    return _cut(exc.problem if isinstance(exc, RunParseError) else f"{type(exc).__name__}: {exc}")


def message(exc: BaseException) -> str:
    """The whole message, for the log line (a RunParseError's names the run id and the field)."""
    return _cut(str(exc) if isinstance(exc, (RunParseError, PostHogError)) else f"{type(exc).__name__}: {exc}")


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "..."


def next_failure(prev: RunFailure | None, d: DiscoveredRun, *, field: str, error: str, now: datetime,
                 attempts_allowed: int, retry_seconds: float) -> RunFailure:
    """The run's failure record after one more failed try: quarantined once it reaches `attempts_allowed`,
    otherwise retried after `retry_seconds`, doubling with each try (capped at MAX_RETRY)."""
    attempts = (prev.attempts if prev else 0) + 1
    wait = min(timedelta(seconds=retry_seconds * 2 ** min(attempts - 1, 20)), MAX_RETRY)
    return RunFailure(
        run_id=d.run_id, job_key=d.job_key, job_name=d.job_name or d.job_id, level=d.level, emitted_at=d.emitted_at,
        field=field, error=error, attempts=attempts, first_failed_at=prev.first_failed_at if prev else now,
        last_failed_at=now, next_attempt_at=now + wait,
        quarantined_at=now if attempts >= attempts_allowed else None)


def waiting(f: RunFailure | None, now: datetime) -> bool:
    """Whether a failed run is still waiting for its next try."""
    return f is not None and f.quarantined_at is None and f.next_attempt_at > now


def quarantine_alert(f: RunFailure, *, project_id: int, links: PostHogLinks) -> Alert:
    """The one alert of a quarantined run; its fingerprint is the run's, so it is told once (a change)."""
    return Alert(
        fingerprint=fingerprint(project_id, f.run_id, KIND), rule=KIND, kind=KIND,
        severity=RUN_QUARANTINED.severity,
        summary=(f"Run {f.run_id} of job {f.job_name} failed {f.attempts} times and is set aside; later runs "
                 f"of the job go on. Field {f.field}: {f.error}. After a fix: `cluster-monitor runs retry` "
                 "with the run id"),
        run_id=f.run_id, job_name=f.job_name, level=f.level, metric=RUN_QUARANTINED.metric,
        value=float(f.attempts),
        links=(Link("Open run", links.run(f.run_id)), Link("Clustering runs", links.clusters())),
        labels={"job": f.job_name, "level": f.level, "field": f.field})
