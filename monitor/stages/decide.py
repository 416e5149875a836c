"""Decide: which of the run's alerts are told now: the lifecycle (new, repeated, resolved), then inhibition
(a louder alert of the same run mutes quieter ones), then silences. Returns the decision with the reason
each muted alert was muted; logging it is the caller's."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from monitor import kinds
from monitor.alerts import Alert
from monitor.config import Inhibit, Silence
from monitor.rules.inhibit import split_inhibited
from monitor.rules.lifecycle import LifecycleResult, apply_lifecycle
from monitor.rules.silences import split_silenced
from monitor.store.base import AlertState

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def importance(a: Alert) -> tuple[int, int, float]:
    """The order alerts are told in: severity, then kind, then the larger value first."""
    return (_SEVERITY_ORDER.get(a.severity, 3), kinds.order(a.kind), -abs(a.value or 0.0))


@dataclass(frozen=True)
class Decision:
    lifecycle: LifecycleResult
    # The alerts to notify, in the lifecycle's order.
    notify: list[Alert]
    inhibited: list[tuple[Alert, str]] = field(default_factory=list)
    silenced: list[tuple[Alert, Silence]] = field(default_factory=list)


def with_job(a: Alert, job_name: str, level: str) -> Alert:
    """Resolved notices are built from stored state, which does not keep the job's name."""
    return msgspec.structs.replace(a, job_name=a.job_name or job_name, level=a.level or level)


def active_silences(configured: Iterable[Silence], stored: Iterable[tuple[int, dict[str, Any]]],
                    ) -> tuple[list[Silence], list[tuple[int, str]]]:
    """The config's silences and the stored ones (`silence add`); (silences, [(id, why unreadable)])."""
    silences = list(configured)
    unreadable: list[tuple[int, str]] = []
    for sid, spec in stored:
        try:
            silences.append(Silence.model_validate({**spec, "comment": spec.get("comment") or f"silence #{sid}"}))
        except ValueError as exc:  # written by an older version, say: skip it
            unreadable.append((sid, str(exc)))
    return silences, unreadable


def decide_run(alerts: list[Alert], states: Mapping[str, AlertState], *, run_id: str, job_key: str,
               job_name: str, level: str, now: datetime, repeat_interval: timedelta,
               present_lineages: Mapping[str, str], inhibit: Sequence[Inhibit],
               silences: Callable[[], Sequence[Silence]]) -> Decision:
    """`silences` is asked only when some alert is left to tell (reading them may cost a store query)."""
    lc = apply_lifecycle(alerts, states, run_id=run_id, job_key=job_key, now=now,
                         repeat_interval=repeat_interval, present_lineages=present_lineages)
    notify = [with_job(a, job_name, level) for a in lc.notify]
    keep, inhibited = split_inhibited(notify, alerts, inhibit)
    silenced: list[tuple[Alert, Silence]] = []
    if keep:
        keep, silenced = split_silenced(keep, silences(), now)
    return Decision(lifecycle=lc, notify=keep, inhibited=inhibited, silenced=silenced)


def decide_check(alerts: list[Alert], states: Mapping[str, AlertState], *, check_id: str, job_key: str,
                 now: datetime, repeat_interval: timedelta,
                 silences: Callable[[], Sequence[Silence]]) -> Decision:
    """The same for a check that belongs to no run (a stale job, PostHog down): no inhibition."""
    lc = apply_lifecycle(alerts, states, run_id=check_id, job_key=job_key, now=now, repeat_interval=repeat_interval)
    keep: list[Alert] = lc.notify
    silenced: list[tuple[Alert, Silence]] = []
    if keep:
        keep, silenced = split_silenced(keep, silences(), now)
    return Decision(lifecycle=lc, notify=keep, silenced=silenced)
