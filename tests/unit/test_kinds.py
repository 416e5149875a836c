"""The registry of alert kinds is the one place a kind is spelled out, and the config checks names against it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monitor import kinds
from monitor.alerts import SEVERITIES, Alert
from monitor.config import ConfigError, parse_config
from monitor.matching.model import RunDiff
from monitor.notify.render import kind_label
from monitor.rules.routing import as_fired

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "monitor"
TEMPLATES = ROOT / "templates"
# The local PostHog, Slack, SMTP and PostgreSQL stand-ins are not the monitor: the traffic generator keeps
# its own, deliberately independent, expectation of which alerts a scenario raises (its ground truth).
STAND_INS = ("local",)
# Some kinds share their name with the metric they read (error_rate, p95_latency, mix_shift) or with the
# diff's category they report (disappeared). These modules name the metric or the category, never the
# kind: metrics.py reads the query's column of that name, reports.py prints metrics and the diff,
# notify/chart.py charts metrics by name.
NAMESAKE_READERS = {"monitor/metrics.py", "monitor/reports.py", "monitor/notify/chart.py"}


def _namesake(name: str) -> bool:
    return name in kinds.METRIC or name in RunDiff.__struct_fields__


def _production_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if not p.relative_to(PACKAGE).parts[0].startswith(STAND_INS)]


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_a_kind_is_named_in_the_registry_and_at_most_its_template() -> None:
    modules = _production_modules()
    assert len(modules) > 30 and PACKAGE / "kinds.py" in modules
    constants = {p.relative_to(ROOT).as_posix(): _string_constants(p) for p in modules}
    templates = {p.relative_to(ROOT).as_posix(): p.read_text() for p in TEMPLATES.rglob("*.j2")}
    found = {}
    for k in kinds.KINDS:
        allowed = {"monitor/kinds.py"} | (NAMESAKE_READERS if _namesake(k.name) else set())
        where = {path for path, strings in constants.items() if k.name in strings}
        in_templates = {path for path, text in templates.items() if f'"{k.name}"' in text or f"'{k.name}'" in text}
        found[k.name] = (where, in_templates)
        assert "monitor/kinds.py" in where, k.name
        assert where <= allowed, f"{k.name!r} is spelled out outside the registry: {sorted(where - allowed)}"
        assert len(in_templates) <= 1, f"{k.name!r} is named by several templates: {sorted(in_templates)}"
    # The scan sees what it should: a kind named in, say, routing would show up here.
    assert all(where for where, _ in found.values())


def test_the_scan_catches_a_kind_spelled_out_elsewhere(tmp_path: Path) -> None:
    module = tmp_path / "routing.py"
    module.write_text('SEVERITY = {"cost_spike": "critical"}\n')
    assert kinds.COST_SPIKE.name in _string_constants(module)


def test_the_registry_is_consistent() -> None:
    names = [k.name for k in kinds.KINDS]
    assert len(names) == len(set(names))
    for k in kinds.KINDS:
        assert k.severity in SEVERITIES and k.label and k.scope in (*kinds.SCOPES, "source")
        # Source kinds are raised by monitor/rules/staleness.py; every other kind has a check.
        assert (k.check is None) == (k.scope == "source"), k.name
        assert set(k.inhibits) | set(k.yields_to) <= set(names), k.name
        assert k.unit in ("usd", "ratio", "s", "h", "min", "")
        if k.scope != "source" and k.metric is not None:
            assert k.metric in kinds.METRIC, k.name
        # A kind must not share a name with a rule's alert kind prefix.
        assert ":" not in k.name
    assert not any(kinds.rule_name(n) != n for n in names)


def test_stateful_label_order_and_severity_come_from_the_registry() -> None:
    for k in kinds.KINDS:
        assert kinds.is_stateful(k.name) is k.stateful
        assert kind_label(k.name) == k.label
        assert kinds.order(k.name) == k.order
        resolved = Alert(fingerprint="f", rule=k.name, kind=k.name, severity="info", summary="", run_id="r",
                         job_name="j", level="trace", status="resolved")
        assert as_fired(resolved, []).severity == k.severity
    assert kinds.is_stateful("rule:x") and not kinds.is_stateful("rule_change:x")
    assert kind_label("rule_change:cost-vs-week") == "Rule cost-vs-week" and kinds.order("rule:x") == 99


BASE = """posthog:
  project_id: 1
  api_key: k
rules:
  - name: cost-vs-week
    metric: avg_cost
    compare: baseline
    above: 0.5
"""


def test_default_inhibitions_come_from_the_registry() -> None:
    cfg = parse_config(BASE, "c.yaml", env={})
    assert [(i.when, i.suppress) for i in cfg.inhibit] == kinds.default_inhibitions()
    assert cfg.inhibit and all(set(i.when) | set(i.suppress) <= set(kinds.KIND) for i in cfg.inhibit)


def test_unknown_kinds_in_silences_and_inhibit_are_config_errors_with_line_and_key() -> None:
    text = BASE + """inhibit:
  - when: [mix_shift]
    suppress: [share_shfit]
  - when: [cost-vs-wek]
    suppress: [cluster_avg_cost]
silences:
  - kinds: [new_cluster, splitt]
    comment: typo
"""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "c.yaml", env={})
    problems = exc.value.problems
    lines = text.splitlines()
    line_of = {word: i + 1 for i, ln in enumerate(lines) for word in ("share_shfit", "cost-vs-wek", "splitt")
               if word in ln}
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"c.yaml:{line_of['share_shfit']}: inhibit.0.suppress.0: 'share_shfit' is not an "
                                  "alert kind (did you mean 'share_shift'?)")
    assert problems[1].startswith(f"c.yaml:{line_of['cost-vs-wek']}: inhibit.1.when.0: 'cost-vs-wek'")
    assert "did you mean 'cost-vs-week'?" in problems[1] and "a rule of this config: cost-vs-week" in problems[1]
    assert problems[2].startswith(f"c.yaml:{line_of['splitt']}: silences.0.kinds.1: 'splitt' is not an alert kind")
    # Written for people: the kinds they can use are listed, and pydantic's wording does not leak.
    assert all("cost_spike" in p and "Value error" not in p for p in problems)


def test_rule_names_and_rule_kinds_are_accepted_in_silences_and_inhibit() -> None:
    text = BASE + """inhibit:
  - when: [cost_spike]
    suppress: [cost-vs-week, "rule:cost-vs-week", cluster_avg_cost]
silences:
  - kinds: [cost-vs-week, stale_source, source_errors]
"""
    cfg = parse_config(text, "c.yaml", env={})
    assert cfg.inhibit[0].suppress == ["cost-vs-week", "rule:cost-vs-week", "cluster_avg_cost"]
    assert cfg.silences[0].kinds == ["cost-vs-week", "stale_source", "source_errors"]
    # A rule name is only known when the config has that rule.
    with pytest.raises(ConfigError, match=r"silences\.0\.kinds\.0: 'cost-vs-week' is not an alert kind"):
        parse_config(text.replace("- name: cost-vs-week", "- name: other"), "c.yaml", env={})


def test_silence_add_refuses_an_unknown_kind_and_takes_a_rule_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from monitor.cli import app

    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"state:\n  path: {tmp_path / 'state.sqlite'}\n")
    runner = CliRunner()
    bad = runner.invoke(app, ["silence", "add", "--config", str(cfg), "--kind", "new_clustr", "--for", "2h"])
    assert bad.exit_code == 2
    assert "'--kind': 'new_clustr' is not an alert kind (did you mean 'new_cluster'?)" in " ".join(bad.output.split())
    for kind in ("new_cluster", "cost-vs-week"):
        ok = runner.invoke(app, ["silence", "add", "--config", str(cfg), "--kind", kind, "--for", "2h"])
        assert ok.exit_code == 0 and "added" in ok.output, ok.output
    listed = runner.invoke(app, ["silence", "list", "--config", str(cfg)])
    assert "new_cluster" in listed.output and "cost-vs-week" in listed.output and "new_clustr" not in listed.output


def test_route_kinds_are_globs_checked_against_the_kinds_and_rules() -> None:
    text = BASE + """routes:
  - name: money
    match: {kinds: ["COST_*", cost-vs-week, "rule*:cost-*"]}
    slack: {webhook_url: "https://hooks.slack.test/T/B/money"}
  - name: typo
    match: {kinds: [eror_rate, "nothing_*"]}
    slack: {webhook_url: "https://hooks.slack.test/T/B/typo"}
"""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "c.yaml", env={})
    problems = exc.value.problems
    assert len(problems) == 2, problems
    assert "routes.1.match.kinds.0: 'eror_rate' is not an alert kind (did you mean 'error_rate'?)" in problems[0]
    assert "routes.1.match.kinds.1: 'nothing_*' is not an alert kind" in problems[1]
    fixed = parse_config(text.replace("eror_rate, ", "").replace('"nothing_*"', '"error_*"'), "c.yaml", env={})
    assert fixed.routes[0].match.kinds == ["COST_*", "cost-vs-week", "rule*:cost-*"]
