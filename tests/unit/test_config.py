"""Config loading as a person editing the YAML experiences it: clear errors with file, line and key."""

from __future__ import annotations

import os
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
    assert exc.value.problems == ["c.yaml:4: state: Value error, set path (SQLite) or url (PostgreSQL), not both"]
    with pytest.raises(ConfigError) as exc:
        parse_config(head + "state:\n  url: mysql://u:hunter2@db/monitor\n", "c.yaml", env={})
    assert exc.value.problems[0].startswith("c.yaml:5: state.url: Value error, must be a PostgreSQL URL")
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
