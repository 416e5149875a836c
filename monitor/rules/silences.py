"""Silences: alerts people asked not to hear about for a while. Pure: alerts, silences and a clock in.

As in Alertmanager, a silence mutes notifications, not evaluation: the alert's state is still kept, so a
level that is still firing when the silence ends is not announced as new, and `replay` shows what a
silence would have hidden.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from datetime import datetime

from monitor.alerts import Alert
from monitor.config import Silence


def _glob(pattern: str | None, value: str | None) -> bool:
    return pattern is None or fnmatch.fnmatchcase((value or "").lower(), pattern.lower())


def matching_silence(a: Alert, silences: Sequence[Silence], now: datetime) -> Silence | None:
    for s in silences:
        if s.until is not None and now >= s.until:
            continue
        if s.kinds and a.kind not in s.kinds and a.rule not in s.kinds:
            continue
        if s.severities and a.severity not in s.severities:
            continue
        if not (_glob(s.job, a.job_name) and _glob(s.title, a.cluster_title) and _glob(s.level, a.level)):
            continue
        if s.lineage is not None and a.lineage_id != s.lineage:
            continue
        return s
    return None


def split_silenced(alerts: Sequence[Alert], silences: Sequence[Silence],
                   now: datetime) -> tuple[list[Alert], list[tuple[Alert, Silence]]]:
    """(alerts to notify, silenced alerts with the silence that muted each)."""
    keep: list[Alert] = []
    muted: list[tuple[Alert, Silence]] = []
    for a in alerts:
        s = matching_silence(a, silences, now)
        if s is None:
            keep.append(a)
        else:
            muted.append((a, s))
    return keep, muted
