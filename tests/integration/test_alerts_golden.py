"""The drift scenario's alerts, exactly: fingerprints, kinds, severities, summaries and their order in each
message, for the default config and for one with rules, overrides, inhibitions and silences.

The expected text (tests/integration/golden/drift_alerts.txt) was written by `collect()` running on main's code
before the registry of kinds and the single rule engine (main at 4ad792b; first at fa8387b, regenerated
when main's own changes reordered resolved notices), so a refactoring of how alerts are made cannot change
what people receive or which alert states the store keeps. When a change means to alter alerts,
regenerate it (keeping only the lines `collect()` returns, not the log) with
`python -c "from tests.integration.test_alerts_golden import collect; print(collect(), end='')"`
and say why in the commit.
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

from monitor.app.wiring import build_monitor
from monitor.config import parse_config
from monitor.local.posthog.generator import generate
from monitor.local.posthog.server import LocalPostHog
from tests.conftest import API_KEY, END

GOLDEN = Path(__file__).parent / "golden" / "drift_alerts.txt"
# Its own project id, far from the fixtures' counter: fingerprints include the project.
PROJECT_ID = 9013

RULES = """
thresholds:
  defaults: {total_cost_usd: 0.5, avg_cost_usd: 0.002, p95_latency_s: 2.0, error_rate: 0.1}
  overrides:
    - title: "*billing*"
      thresholds: {error_rate: 0.5}
rules:
  - {name: cost-vs-week, metric: avg_cost, compare: baseline, above: 0.3, window: 5, min_history: 2}
  - {name: big-share, metric: share, above: 0.08, severity: info, labels: {team: x}}
  - {name: run-cost, metric: run_total_cost, compare: previous, above: 0.2, severity: critical}
  - {name: zz, metric: error_rate, compare: mad, above: 3, window: 5, min_history: 3, for: "1 of 2"}
  - {name: mix, metric: mix_shift, above: 0.05}
inhibit:
  - {when: [mix_shift], suppress: [share_shift]}
  - {when: [cost_spike], suppress: [cost-vs-week, cluster_avg_cost]}
silences:
  - {kinds: [split], comment: no splits}
"""


def collect() -> str:
    """Every notification of one pass over the drift scenario, one line per alert."""
    ds = generate("drift", seed=7, days=14, team_id=PROJECT_ID, end=END, scale=0.1)
    server = LocalPostHog(api_key=API_KEY)
    server.load(ds)
    server.start()
    out: list[str] = []
    try:
        for name, extra in (("default", ""), ("rules", RULES)):
            with tempfile.TemporaryDirectory() as tmp:
                text = (f"posthog: {{host: {server.url}, project_id: {PROJECT_ID}, api_key: {API_KEY}, "
                        f"lookback_days: 60}}\nalerting: {{catch_up_after_hours: 0}}\n"
                        f"state: {{path: {Path(tmp) / 'state.sqlite'}}}\n{extra}")
                m = build_monitor(parse_config(text, name, env={}), sleep=lambda s: None,
                                  clock=lambda: END + timedelta(hours=1))
                try:
                    result = m.cycle()
                finally:
                    m.client.close()
                    m.store.close()
            assert result.ok, result.failed
            out.append(f"== {name}: {len(result.processed)} runs, {len(result.notices)} notifications")
            for n in result.notices:
                out.append(f"-- {n.run_id}")
                out += [json.dumps([a.fingerprint, a.kind, a.rule, a.severity, a.status, a.cluster_title,
                                    a.lineage_id, a.previous_title, a.summary, a.metric, a.value, a.threshold,
                                    a.previous_value, a.unit, a.labels, [link.label for link in a.links]])
                        for a in n.alerts]
    finally:
        server.stop()
    return "\n".join(out) + "\n"


def test_drift_alerts_are_exactly_those_of_before_the_registry() -> None:
    got = collect()
    expected = GOLDEN.read_text()
    assert got.count("\n") > 100 and "rule:zz" in got and "cost_spike" in got and "Resolved:" in got
    assert got == expected
