"""Alert lifecycle: which of a run's alerts reach people, and what the store remembers. Pure.

A stateful alert (a level that holds) is notified when it starts firing, again only after
`repeat_interval` while it keeps firing, and once more when it resolves. An event alert (a change) is
notified once: its fingerprint already carries the run, so reprocessing a run after a crash finds the
state and sends nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.alerts import Alert
from monitor.kinds import is_stateful, rule_name
from monitor.store.base import AlertState


@dataclass(frozen=True)
class LifecycleResult:
    notify: list[Alert]
    states: list[AlertState]


def apply_lifecycle(
    alerts: Iterable[Alert],
    states: Mapping[str, AlertState],
    *,
    run_id: str,
    job_key: str,
    now: datetime,
    repeat_interval: timedelta,
    present_lineages: Mapping[str, str] | None = None,
) -> LifecycleResult:
    """`present_lineages` maps lineage id -> current title, for the text of resolved notices."""
    notify: list[Alert] = []
    out: dict[str, AlertState] = {}
    seen: set[str] = set()
    for a in alerts:
        if a.fingerprint in seen:
            continue
        seen.add(a.fingerprint)
        st = states.get(a.fingerprint)
        stateful = is_stateful(a.kind)
        if st is not None and st.last_run_id == run_id:
            # This run was already decided (a retry after a crash): keep the decision, send nothing new.
            continue
        if st is None or st.status != "firing" or not stateful:
            if st is not None and not stateful:
                continue
            notify.append(a)
            out[a.fingerprint] = AlertState(
                fingerprint=a.fingerprint, status="firing", kind=a.kind, first_fired_at=now,
                last_fired_at=now, last_notified_at=now, last_run_id=run_id, job_key=job_key,
                lineage_id=a.lineage_id, summary=_label(a), streak=1)
            continue
        due = st.last_notified_at is None or now - st.last_notified_at >= repeat_interval
        if due:
            notify.append(a)
        out[a.fingerprint] = replace(st, last_fired_at=now, last_run_id=run_id, streak=st.streak + 1,
                                     last_notified_at=now if due else st.last_notified_at)
    for fp, st in states.items():
        if fp in seen or st.status != "firing" or not is_stateful(st.kind) or st.last_run_id == run_id:
            continue
        title = (present_lineages or {}).get(st.lineage_id or "", None)
        notify.append(Alert(
            fingerprint=fp, rule=rule_name(st.kind), kind=st.kind, severity="info", status="resolved",
            summary=f"Resolved: {st.summary}", run_id=run_id, job_name="", level="",
            cluster_title=title, lineage_id=st.lineage_id))
        out[fp] = replace(st, status="resolved", last_run_id=run_id, last_notified_at=now, streak=0)
    return LifecycleResult(notify=notify, states=list(out.values()))


def _label(a: Alert) -> str:
    return f"{a.cluster_title}: {a.summary}" if a.cluster_title else a.summary
