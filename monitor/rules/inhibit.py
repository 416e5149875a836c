"""Inhibition: a broad alert of a run mutes its narrow echoes in the same run. Pure.

As Alertmanager's inhibit rules, but scoped to one run: "the traffic mix moved" and eight "share of
traffic grew" alerts say the same thing, and a person should read it once.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.alerts import Alert
from monitor.config import Inhibit


def _named(a: Alert, names: Sequence[str]) -> bool:
    return a.kind in names or a.rule in names


def split_inhibited(alerts: Sequence[Alert], firing: Sequence[Alert],
                    rules: Sequence[Inhibit]) -> tuple[list[Alert], list[tuple[Alert, str]]]:
    """(alerts kept, alerts inhibited with the alert kind or rule that inhibited each).

    `alerts` are those about to be notified; `firing` every alert the run raised, notified or not: a
    level still firing inhibits even when the lifecycle does not repeat it this time.
    """
    firing = [a for a in firing if a.status != "resolved"]
    muted: dict[int, str] = {}
    for r in rules:
        source = next((a for a in firing if _named(a, r.when)), None)
        if source is None:
            continue
        for i, a in enumerate(alerts):
            if a is not source and a.status != "resolved" and _named(a, r.suppress) and not _named(a, r.when):
                muted.setdefault(i, source.rule)
    keep = [a for i, a in enumerate(alerts) if i not in muted]
    return keep, [(alerts[i], why) for i, why in sorted(muted.items())]
