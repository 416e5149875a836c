"""No input to any command ends in a traceback: each bad value is refused with exit code 2 and one line that
names the command and says what would be accepted (issue 16). Driven through typer's CliRunner, which runs
the same click main (and its error formatting) as the console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.store.sqlite import SQLiteStore


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    def config(name: str, state: Path) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": "${KEY}"},
                                    "state": {"path": str(state)}}))
        path.chmod(0o600)
        return str(path)

    SQLiteStore(tmp_path / "state.sqlite").close()
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00posthog")
    (tmp_path / "broken.yaml").write_text("posthog: {project_id: [\n")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "run.json").write_text("{}")
    return {
        "cfg": config("config.yaml", tmp_path / "state.sqlite"),
        "no_state": config("no-state.yaml", tmp_path / "never-ran.sqlite"),
        "state_is_dir": config("dir-state.yaml", tmp_path / "a_dir"),
        "missing": str(tmp_path / "missing.yaml"), "binary": str(tmp_path / "binary.yaml"),
        "broken": str(tmp_path / "broken.yaml"), "dir": str(tmp_path / "a_dir"), "run": str(tmp_path / "run.json"),
    }


# (arguments, text the message must contain); {name} is replaced by the fixture's file of that name.
BAD: list[tuple[list[str], str]] = [
    (["no-such-command"], "No such command"),
    (["run", "-c", "{cfg}", "--log-level", "verbose"], "'debug', 'info', 'warning', 'error'"),
    (["once", "-c", "{cfg}", "--log-level", "loud"], "'debug', 'info', 'warning', 'error'"),
    (["replay", "-c", "{cfg}", "--since", "yesterday"], "ISO date or time"),
    (["replay", "-c", "{cfg}", "--days", "0"], "--days"),
    (["diff", "{missing}", "{missing}"], "missing.yaml"),
    (["diff", "{run}", "{run}", "--threshold", "2"], "--threshold"),
    (["check-config", "-c", "{missing}"], "cannot read"),
    (["check-config", "-c", "{dir}"], "cannot read"),
    (["check-config", "-c", "{binary}"], "not a text file"),
    (["check-config", "-c", "{broken}"], "broken.yaml"),
    (["history", "-c", "{cfg}", "--limit", "0"], "--limit"),
    (["history", "-c", "{no_state}"], "no state at"),
    (["outbox", "-c", "{cfg}", "--status", "bogus"], "'pending', 'sent', 'failed'"),
    (["outbox", "-c", "{state_is_dir}"], "cannot open the state file"),
    (["silence", "add", "-c", "{cfg}", "--kind", "split", "--until", "next tuesday"], "ISO date or time"),
    (["silence", "add", "-c", "{cfg}", "--kind", "split", "--for", "3 days"], "like 90m, 4h, 2d or 1w"),
    (["silence", "add", "-c", "{cfg}", "--kind", "split", "--for", "-1h"], "like 90m, 4h, 2d or 1w"),
    (["silence", "add", "-c", "{cfg}", "--kind", "split", "--for", "0h"], "positive"),
    (["silence", "add", "-c", "{cfg}", "--kind", "split", "--until", "2001-01-01"], "in the past"),
    (["silence", "add", "-c", "{cfg}", "--kind", "split", "--for", "1h", "--until", "2099-01-01"], "not both"),
    (["silence", "add", "-c", "{cfg}", "--kind", "splitt"], "share_shift"),
    (["silence", "add", "-c", "{cfg}", "--severity", "urgent"], "'critical', 'warning', 'info'"),
    (["silence", "add", "-c", "{cfg}", "--level", "span"], "'trace', 'generation'"),
    (["silence", "add", "-c", "{cfg}"], "say what to mute"),
    (["silence", "remove", "-c", "{cfg}", "one"], "valid integer"),
    (["silence", "remove", "-c", "{cfg}", "0"], "greater than or equal to 1"),
    (["silence", "list", "-c", "{missing}"], "cannot read"),
    (["status", "-c", "{no_state}"], "no state at"),
    (["status", "-c", "{binary}"], "not a text file"),
    (["ack", "-c", "{cfg}", "0123456789abcdef"], "no firing alert"),
    (["test-notify", "-c", "{missing}"], "cannot read"),
    (["local-posthog", "--port", "70000"], "--port"),
    (["local-posthog", "--release", "ancient"], "--release is current|old"),
    (["demo", "--step", "0"], "--step"),
    (["healthcheck", "-c", "{cfg}", "--timeout", "0"], "--timeout"),
]


@pytest.mark.parametrize(("args", "says"), BAD, ids=[" ".join(a[:3]) + f"#{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_refused_in_one_line_without_a_traceback(files: dict[str, str], args: list[str],
                                                                says: str) -> None:
    argv = [a.format(**files) for a in args]
    result = CliRunner().invoke(app, argv, env={"KEY": "phx_test"})
    out = result.stdout + result.stderr
    assert result.exit_code == 2, (argv, out)
    assert "Traceback" not in out
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert says in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    # A config's problems are listed one a line under the file's name; everything else is one line.
    assert len(lines) == 1 or (lines[0].startswith("invalid config") and all(ln.startswith("  ") for ln in lines[1:]))


def test_version_and_the_default_silence_of_24_hours(files: dict[str, str]) -> None:
    from monitor import telemetry

    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"cluster-monitor {telemetry.version()}"
    added = runner.invoke(app, ["silence", "add", "-c", files["cfg"], "--kind", "split"], env={"KEY": "phx_test"})
    assert added.exit_code == 0 and "(the default 24h" in added.stdout
    listed = runner.invoke(app, ["silence", "list", "-c", files["cfg"], "--json"], env={"KEY": "phx_test"})
    (silence,) = json.loads(listed.stdout)
    assert silence["source"] == "store" and silence["active"] and silence["until"] is not None


def test_an_unexpected_error_is_one_line_too(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is not bad input: exit 1, one line, and the traceback only on request."""
    import monitor.status

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(monitor.status, "collect", broken)
    result = CliRunner().invoke(app, ["status", "-c", files["cfg"]], env={"KEY": "phx_test"})
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        "cluster-monitor: unexpected error: RuntimeError: boom second line (CLUSTER_MONITOR_DEBUG=1 shows where)"]


def test_check_config_refuses_what_run_would_die_on_and_warns_of_what_would_do_nothing(tmp_path: Path) -> None:
    """A bad cron line used to pass check-config and end `run` in a ValueError (a restart loop in a
    container), a bad sender in a traceback at the first send; a silence that ended never applies."""
    base = {"posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": "phx_test"},
            "state": {"path": str(tmp_path / "s.sqlite")}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({**base, "schedule": {"cron": "*/10 * * *"},
                                "email": {"host": "smtp.example.com", "from": "alerts at example.com",
                                          "to": ["team@example.com"]}}, indent=1))
    path.chmod(0o600)
    cron, sender = (next(i + 1 for i, ln in enumerate(path.read_text().splitlines()) if key in ln)
                    for key in ('"cron"', '"from"'))
    for command in (["check-config"], ["run"], ["once"]):
        result = CliRunner().invoke(app, [*command, "-c", str(path)])
        assert result.exit_code == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert result.stderr.strip().splitlines()[1:] == [
            f"  {path}:{cron}: schedule.cron: '*/10 * * *' is not a crontab line (five fields: minute hour day month "
            'weekday, e.g. "*/10 * * * *"): Wrong number of fields; got 4, expected 5',
            f"  {path}:{sender}: email.from: 'alerts at example.com' is not an email address (expected "
            'name@example.com or "Name" <name@example.com>)']
    path.write_text(json.dumps({**base, "silences": [{"kinds": ["cost_spike"], "until": "2020-01-01T00:00:00Z"}]},
                               indent=1))
    until = next(i + 1 for i, ln in enumerate(path.read_text().splitlines()) if '"until"' in ln)
    result = CliRunner().invoke(app, ["check-config", "--offline", "-c", str(path)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == (f"warning: {path}:{until}: silences.0.until: 2020-01-01T00:00:00+00:00 is in the "
                                     "past: this silence never applies (remove it, or move `until` forward)")
