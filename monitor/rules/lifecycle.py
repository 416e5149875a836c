"""Alert lifecycle: which of a run's alerts reach people, and what the store remembers. Pure.

A stateful alert (a level that holds) is notified when it starts firing, again only after
`repeat_interval` while it keeps firing, and once more when it resolves. An event alert (a change) is
notified once: its fingerprint already carries the run, so reprocessing a run after a crash finds the
state and sends nothing new.

Each notified alert says where it is in its life (`firing_since`, `notice`, `resolved_at`), so a reminder
reads "still firing since 23 Nov, 3rd notice" and a resolved notice says how long it lasted. The notice
number is counted from the state (first fired, last notified), which keeps no counter: reminders come
every `repeat_interval` rounded up to the job's schedule, so the gap since the last notice is the
spacing of all of them, and the count is exact for a job on a steady schedule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from msgspec.structs import replace as replace_struct

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
            notify.append(replace_struct(a, firing_since=now) if stateful else a)
            out[a.fingerprint] = AlertState(
                fingerprint=a.fingerprint, status="firing", kind=a.kind, first_fired_at=now,
                last_fired_at=now, last_notified_at=now, last_run_id=run_id, job_key=job_key,
                lineage_id=a.lineage_id, summary=_label(a), streak=1)
            continue
        due = st.last_notified_at is None or now - st.last_notified_at >= repeat_interval
        if due:
            notify.append(replace_struct(a, firing_since=st.first_fired_at, notice=_notice(st, now)))
        out[a.fingerprint] = replace(st, last_fired_at=now, last_run_id=run_id, streak=st.streak + 1,
                                     last_notified_at=now if due else st.last_notified_at)
    for fp, st in states.items():
        if fp in seen or st.status != "firing" or not is_stateful(st.kind) or st.last_run_id == run_id:
            continue
        title = (present_lineages or {}).get(st.lineage_id or "", None)
        notify.append(Alert(
            fingerprint=fp, rule=rule_name(st.kind), kind=st.kind, severity="info", status="resolved",
            summary=f"Resolved: {st.summary}", run_id=run_id, job_name="", level="",
            cluster_title=title, lineage_id=st.lineage_id, firing_since=st.first_fired_at, resolved_at=now))
        out[fp] = replace(st, status="resolved", last_run_id=run_id, last_notified_at=now, streak=0)
    return LifecycleResult(notify=notify, states=list(out.values()))


def _notice(st: AlertState, now: datetime) -> int:
    """Which notice a reminder due `now` is: the first at first_fired_at, then one every gap."""
    last = st.last_notified_at or st.first_fired_at
    gap = (now - last).total_seconds()
    if gap <= 0:
        return 2
    return 2 + max(0, round((last - st.first_fired_at).total_seconds() / gap))


def _label(a: Alert) -> str:
    return f"{a.cluster_title}: {a.summary}" if a.cluster_title else a.summary
