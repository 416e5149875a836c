"""Config loading as a person editing the YAML experiences it: clear errors with file, line and key."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parents[2] / "config" / "example.yaml"
ENV = {"POSTHOG_API_KEY": "phx_test", "SLACK_WEBHOOK_URL": "https://hooks.example/x", "SMTP_PASSWORD": "pw"}


def test_example_config_is_valid() -> None:
    cfg = parse_config(EXAMPLE.read_text(), str(EXAMPLE), env=ENV)
    assert cfg.posthog.resolved_api_key() == "phx_test"
    assert cfg.email is not None and cfg.email.to == ["ai-team@example.com"]
    assert cfg.thresholds.overrides[0].title == "*refund*"


def test_unknown_key_and_bad_type_name_line_and_path() -> None:
    text = EXAMPLE.read_text().replace("error_rate: 0.10", "error_rat: 0.10").replace("port: 587", "port: abc")
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml", env=ENV)
    problems = exc.value.problems
    line_of = {ln.strip().split(":")[0]: i + 1 for i, ln in enumerate(text.splitlines())}
    assert f"cfg.yaml:{line_of['error_rat']}: thresholds.defaults.error_rat: unknown key" in problems[0]
    assert any(p.startswith("cfg.yaml:") and "email.port" in p for p in problems)


def test_missing_env_var_is_named() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("posthog:\n  project_id: 1\n  api_key: ${NOPE_KEY}\n", "c.yaml", env={})
    assert exc.value.problems == ["c.yaml:3: posthog.api_key: environment variable NOPE_KEY is not set"]


def test_env_default_and_numeric_expansion() -> None:
    cfg = parse_config("posthog:\n  project_id: ${PID}\n  api_key: ${K:-phx_default}\n", "c.yaml", env={"PID": "42"})
    assert cfg.posthog.project_id == 42
    assert cfg.posthog.resolved_api_key() == "phx_default"


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("posthog:\n  project_id: [1,\n", "c.yaml", env={})
    assert exc.value.problems[0].startswith("c.yaml:")
    assert "not valid YAML" in exc.value.problems[0]


def test_secret_is_not_in_repr_or_errors() -> None:
    cfg = parse_config("posthog:\n  project_id: 1\n  api_key: phx_supersecret\n", "c.yaml", env={})
    assert "phx_supersecret" not in repr(cfg)
    with pytest.raises(ConfigError) as exc:
        parse_config("posthog:\n  project_id: -1\n  api_key: phx_supersecret\n", "c.yaml", env={})
    assert "phx_supersecret" not in str(exc.value)


def test_api_key_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("phx_fromfile\n")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"posthog:\n  project_id: 1\n  api_key_file: {key}\n")
    os.chmod(cfg_path, 0o600)
    assert load_config(cfg_path).posthog.resolved_api_key() == "phx_fromfile"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "missing.yaml")
    assert "missing.yaml: cannot read" in exc.value.problems[0]


def test_state_is_a_sqlite_path_or_a_postgres_url_never_both() -> None:
    head = "posthog:\n  project_id: 1\n  api_key: k\n"
    assert str(parse_config(head, "c.yaml", env={}).state.path) == "state/monitor.sqlite"
    cfg = parse_config(head + "state:\n  url: postgresql://monitor:${PGPASSWORD}@db:5432/monitor\n", "c.yaml",
                       env={"PGPASSWORD": "pg-s3cret"})
    assert cfg.state.path is None and cfg.state.url is not None
    assert cfg.state.url.get_secret_value() == "postgresql://monitor:pg-s3cret@db:5432/monitor"
    assert "pg-s3cret" not in repr(cfg) and "pg-s3cret" not in cfg.state.describe()
    assert cfg.state.describe() == "postgresql://db:5432/monitor"
    with pytest.raises(ConfigError) as exc:
        parse_config(head + "state:\n  path: /s.sqlite\n  url: postgresql://db/monitor\n", "c.yaml", env={})
    assert exc.value.problems == ["c.yaml:4: state: set path (SQLite) or url (PostgreSQL), not both"]
    with pytest.raises(ConfigError) as exc:
        parse_config(head + "state:\n  url: mysql://u:hunter2@db/monitor\n", "c.yaml", env={})
    assert exc.value.problems[0].startswith("c.yaml:5: state.url: must be a PostgreSQL URL")
    assert "hunter2" not in str(exc.value)


def test_several_projects_share_rules_and_channels_and_keep_their_own_key_watch_and_state() -> None:
    text = """
posthog: {host: https://us.posthog.com, project_id: 1, api_key: k1}
projects:
  - posthog: {host: https://eu.posthog.com, project_id: 2, api_key: k2}
    watch: {levels: [generation]}
  - posthog: {host: https://us.posthog.com, project_id: 3, api_key: k1}
state: {path: state/m.sqlite}
slack: {webhook_url: https://hooks.slack.test/x}
"""
    cfg = parse_config(text, "p.yaml", env={})
    main, eu, us3 = cfg.per_project()
    assert (main.posthog.project_id, eu.posthog.project_id, us3.posthog.project_id) == (1, 2, 3)
    assert eu.posthog.resolved_api_key() == "k2" and eu.watch.levels == ["generation"]
    assert us3.watch == cfg.watch and us3.slack == cfg.slack
    assert [str(c.state.path) for c in (main, eu, us3)] == ["state/m.sqlite", "state/m-2.sqlite", "state/m-3.sqlite"]
    with pytest.raises(ConfigError, match=r"project 1 on https://us\.posthog\.com is listed twice"):
        parse_config(text.replace("project_id: 3", "project_id: 1"), "p.yaml", env={})


# --- mistakes people make that used to pass check-config and fail later (issue 16) -------------------


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml", env=ENV)
    return exc.value.problems


def _edit(old: str, new: str) -> tuple[str, int]:
    """The example config with one edit, and the line of the edit."""
    text = EXAMPLE.read_text()
    assert old in text
    at = text.index(old)
    return text[:at] + new + text[at + len(old):], text[:at].count("\n") + 1


@pytest.mark.parametrize("cron, why", [
    ("*/10 * * *", "Wrong number of fields; got 4, expected 5"),
    ("61 * * * *", "the last value (61) is higher than the maximum value (59)"),
    ("every tuesday", "Wrong number of fields"),
])
def test_a_bad_cron_expression_is_caught_at_its_line(cron: str, why: str) -> None:
    text, line = _edit('  # cron: "*/10 * * * *"', f'  cron: "{cron}"')
    [problem] = _problems(text)
    assert problem.startswith(f"cfg.yaml:{line}: schedule.cron: {cron!r} is not a crontab line (five fields: ")
    assert why in problem


@pytest.mark.parametrize("sender", ["not an address", "alerts@", "@example.com", "a@@example.com",
                                    "Ops <ops@example.com", "a@example.com, b@example.com"])
def test_an_invalid_sender_is_caught_at_its_line(sender: str) -> None:
    text, line = _edit('from: "cluster-monitor <alerts@example.com>"', f"from: {sender!r}")
    [problem] = _problems(text)
    assert problem.startswith(f"cfg.yaml:{line}: email.from: {sender!r} ")
    assert "not an email address" in problem or "give one per list item" in problem


@pytest.mark.parametrize("sender", ["alerts@example.com", '"Cluster Monitor" <alerts@example.com>',
                                    "Cluster Monitor <alerts@example.com>", "<alerts@localhost>"])
def test_sender_forms_the_mail_headers_accept_pass(sender: str) -> None:
    text, _ = _edit('from: "cluster-monitor <alerts@example.com>"', f"from: {sender!r}")
    cfg = parse_config(text, "cfg.yaml", env=ENV)
    assert cfg.email is not None and cfg.email.sender == sender


def test_an_invalid_recipient_is_caught_at_its_item_in_email_and_in_a_route() -> None:
    text, line = _edit("to: [ai-team@example.com]", "to: [ai-team@example.com, ops-team]")
    [problem] = _problems(text)
    assert problem == (f"cfg.yaml:{line}: email.to.1: 'ops-team' is not an email address (expected "
                       'name@example.com or "Name" <name@example.com>)')
    text, line = _edit("routes: []", "routes:\n  - name: billing\n    email: {to: [billing at example.com]}")
    [problem] = _problems(text)
    assert problem.startswith(f"cfg.yaml:{line + 2}: routes.0.email.to.0: 'billing at example.com' is not an")


def test_a_route_error_is_reported_at_the_route_not_line_1() -> None:
    routes = ("routes:\n  - name: ok\n    slack: {webhook_url: https://hooks.example/a}\n"
              "  - name: billing\n    slack: {channel: '#billing'}\n"
              "  - name: ok\n    slack: {webhook_url: https://hooks.example/b}\n")
    text, line = _edit("routes: []", routes)
    problems = _problems(text)
    assert problems == [
        f"cfg.yaml:{line + 4}: routes.1.slack.channel: route 'billing' posts to a channel, which needs "
        "slack.bot_token at the top level",
        f"cfg.yaml:{line + 5}: routes.2.name: two routes are named 'ok': give each its own name",
    ]
    text, line = _edit("routes: []", "routes:\n  - name: r\n    match: {severities: [urgent]}\n")
    [problem] = _problems(text)
    assert problem == (f"cfg.yaml:{line + 2}: routes.0.match.severities.0: must be one of 'critical', 'warning' "
                       "or 'info', not 'urgent'")


def test_a_route_without_a_destination_names_the_route() -> None:
    text, line = _edit("routes: []", "routes:\n  - name: lost\n    match: {jobs: [x]}\n")
    assert _problems(text) == [f"cfg.yaml:{line + 1}: routes.0: a route needs slack or email"]


@pytest.mark.parametrize("old, new, key, message", [
    ("interval_seconds: 300", "interval_seconds: -5", "schedule.interval_seconds", "must be greater than 0, not -5"),
    ("interval_seconds: 300", "interval_seconds: often", "schedule.interval_seconds",
     "expected a number, not 'often'"),
    ("misfire_grace_seconds: 60", "misfire_grace_seconds: 1.5", "schedule.misfire_grace_seconds",
     "expected a whole number, not 1.5"),
    ("levels: [trace, generation]", "levels: [trace, generations]", "watch.levels.1",
     "must be one of 'trace', 'generation' or 'evaluation', not 'generations'"),
    ("jobs: []", "jobs: 12", "watch.jobs", "expected a list (e.g. [a, b]), not 12"),
    ("threshold: 0.5", "threshold: 50", "matching.threshold", "must be at most 1, not 50"),
    ("error_rate: 0.10", "error_rate: lots", "thresholds.defaults.error_rate", "expected a number, not 'lots'"),
    ("stale_learned: true", "stale_learned: sometimes", "alerting.stale_learned",
     "expected true or false, not 'sometimes'"),
    ("port: 587", "port: 70000", "email.port", "must be less than 65536, not 70000"),
    ("security: starttls", "security: tls", "email.security",
     "must be one of 'starttls', 'ssl' or 'none', not 'tls'"),
    ("timezone: UTC", "timezone: Europe/Parls", "timezone", "unknown time zone 'Europe/Parls'"),
])
def test_wrong_types_and_ranges_read_as_plain_sentences(old: str, new: str, key: str, message: str) -> None:
    text, line = _edit(old, new)
    problems = _problems(text)
    assert problems == [f"cfg.yaml:{line}: {key}: {message}"]
    assert not any(leak in problems[0] for leak in ("Value error", "Input should", "valid integer", "[type="))


def test_an_empty_api_key_and_a_slack_webhook_that_is_no_url_are_caught() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(EXAMPLE.read_text(), "cfg.yaml", env={**ENV, "POSTHOG_API_KEY": ""})
    line = EXAMPLE.read_text().splitlines().index("  api_key: ${POSTHOG_API_KEY}") + 1
    assert exc.value.problems == [f"cfg.yaml:{line}: posthog.api_key: is empty (is its environment variable set "
                                  "to an empty value?)"]
    with pytest.raises(ConfigError) as exc:
        parse_config(EXAMPLE.read_text(), "cfg.yaml", env={**ENV, "SLACK_WEBHOOK_URL": "T0000/B0000/s3cret"})
    [problem] = exc.value.problems
    assert "slack.webhook_url: must be the webhook's URL" in problem and "s3cret" not in problem


def test_a_missing_section_key_says_it_is_required() -> None:
    [problem] = _problems("posthog:\n  api_key: k\n")
    assert problem == "cfg.yaml:1: posthog.project_id: is required but missing"  # the section it belongs in


def test_a_silence_until_in_the_past_is_a_warning_that_says_it_never_applies() -> None:
    text, line = _edit("silences: []", "silences:\n  - kinds: [cost_spike]\n    until: 2026-01-31T00:00:00Z\n"
                                       "  - kinds: [error_rate]\n    until: 2027-01-31T00:00:00Z\n")
    warnings: list[str] = []
    cfg = parse_config(text, "cfg.yaml", env=ENV, warnings=warnings, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert len(cfg.silences) == 2  # still valid: silences expire by design, the daemon must not refuse to start
    assert warnings == [f"cfg.yaml:{line + 2}: silences.0.until: 2026-01-31T00:00:00+00:00 is in the past: this "
                        "silence never applies (remove it, or move `until` forward)"]


def test_more_mistakes_people_make() -> None:
    text, line = _edit("silences: []", "silences:\n  - {kinds: [cost_spike], level: traces}\n")
    assert _problems(text) == [f"cfg.yaml:{line + 1}: silences.0.level: must be one of 'trace', 'generation' or "
                               "'evaluation', not 'traces'"]
    text, line = _edit("routes: []", "routes:\n  - {name: 'on call', slack: {webhook_url: https://hooks.example/a}}\n")
    assert _problems(text) == [f"cfg.yaml:{line + 1}: routes.0.name: may hold only letters, digits, '_', '.' and "
                               "'-', starting with a letter or digit, not 'on call'"]
    text, line = _edit("to: [ai-team@example.com]", "to: []")
    assert _problems(text) == [f"cfg.yaml:{line}: email.to: needs at least 1 item"]
    text, line = _edit("  api_key: ${POSTHOG_API_KEY}", "  api_key_file: /nonexistent/posthog_key")
    assert _problems(text) == [f"cfg.yaml:{line}: posthog.api_key_file: /nonexistent/posthog_key cannot be read "
                               "(missing, or no permission)"]
    [problem] = _problems("posthog: {project_id: 1, api_key: k}\nserver:\n  port: 80000\n")
    assert problem == "cfg.yaml:3: server.port: must be less than 65536, not 80000"
    [problem] = _problems("posthog: {project_id: 1, api_key: k}\nroutes:\n  - name: r\n"
                          "    email: {to: [c@example.com]}\n")
    assert problem == ("cfg.yaml:4: routes.0.email: route 'r' sends email, which needs the top-level `email` "
                       "section (server, sender)")


def test_implicit_tls_on_the_starttls_port_is_a_warning() -> None:
    text, line = _edit("security: starttls", "security: ssl")
    warnings: list[str] = []
    parse_config(text, "cfg.yaml", env=ENV, warnings=warnings)
    assert warnings == [f"cfg.yaml:{line}: email.security: ssl with port 587: ssl is usually served on port 465 "
                        "(use security: starttls for port 587)"]
    warnings.clear()
    parse_config(EXAMPLE.read_text(), "cfg.yaml", env=ENV, warnings=warnings)
    assert warnings == []
