"""Routing: which people hear about which alert. Pure.

As Alertmanager's routing tree, flattened: routes are tried in file order, the first that matches takes
the alert (unless it says `continue`), and what no route takes goes to the default route, the top-level
`slack` and `email`. Resolved notices follow the route their alert fired on: their severity and labels
are restored from the kind (built-ins have a fixed severity, in monitor/kinds.py) or from the rule's config.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import msgspec

from monitor.alerts import Alert
from monitor.config import Route, Rule
from monitor.kinds import KIND, rule_name

DEFAULT_ROUTE = ""


def _glob(pattern: str, value: str | None) -> bool:
    return fnmatch.fnmatchcase((value or "").lower(), pattern.lower())


def matches(route: Route, a: Alert) -> bool:
    m = route.match
    if m.severities and a.severity not in m.severities:
        return False
    if m.kinds and not any(_glob(k, a.kind) or _glob(k, a.rule) for k in m.kinds):
        return False
    if m.jobs and not any(_glob(j, a.job_name) for j in m.jobs):
        return False
    if m.levels and a.level not in m.levels:
        return False
    return all(_glob(pattern, a.labels.get(name)) for name, pattern in m.labels.items())


def _rule_of(kind: str, rules: Sequence[Rule]) -> Rule | None:
    name = rule_name(kind)
    return next((r for r in rules if r.name == name), None) if name != kind else None


def fired_severity(kind: str, rules: Sequence[Rule], default: str = "warning") -> str:
    """The severity an alert of this kind fires with: its rule's, or the built-in one."""
    rule = _rule_of(kind, rules)
    builtin = KIND.get(kind)
    return rule.severity if rule is not None else builtin.severity if builtin is not None else default


def as_fired(a: Alert, rules: Sequence[Rule]) -> Alert:
    """A resolved notice with the severity and labels its alert fired with, so it is routed the same way."""
    if a.status != "resolved":
        return a
    rule = _rule_of(a.kind, rules)
    severity = fired_severity(a.kind, rules, a.severity)
    labels = {"job": a.job_name, "level": a.level, **({"rule": rule.name, **rule.labels} if rule else {}),
              **a.labels}
    return msgspec.structs.replace(a, severity=severity, labels=labels)


def route_alerts(alerts: Sequence[Alert], routes: Sequence[Route],
                 rules: Sequence[Rule] = ()) -> dict[str, list[Alert]]:
    """Route name (DEFAULT_ROUTE for the top-level channels) -> its alerts, as given and in order."""
    out: dict[str, list[Alert]] = {}
    for a in alerts:
        fired = as_fired(a, rules)
        taken = False
        for r in routes:
            if matches(r, fired):
                out.setdefault(r.name, []).append(a)
                if not r.continue_:
                    taken = True
                    break
        if not taken:
            out.setdefault(DEFAULT_ROUTE, []).append(a)
    return out
