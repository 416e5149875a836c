"""Templates: a broken one is named by file and line; a user's folder overrides the shipped ones by name and falls
back to them template by template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts import Alert, Notification
from monitor.app.wiring import load_templates
from monitor.notify import render

NOW = datetime(2026, 11, 1, 4, tzinfo=UTC)


def _notification() -> Notification:
    alert = Alert(fingerprint="fp", rule="cost_spike", kind="cost_spike", severity="warning", summary="Cost up",
                  run_id="r1", job_name="job", level="trace", cluster_id=3, cluster_title="Refund requests",
                  metric="avg_cost", value=0.0012, threshold=0.0008, previous_value=0.0004, unit="usd")
    return Notification(key="run:r1", project_id=2, run_id="r1", job_name="job", level="trace",
                        window_start=NOW - timedelta(days=7), window_end=NOW, alerts=(alert,),
                        run_url="https://us.posthog.com/project/2/run/r1", created_at=NOW)


def test_check_templates_names_the_broken_file_and_line(tmp_path: Path) -> None:
    assert render.check_templates() == []  # the packaged templates are fine
    (tmp_path / "slack").mkdir()
    (tmp_path / "email").mkdir()
    broken = tmp_path / "slack" / "header.txt.j2"
    broken.write_text("{{ icon }}\n{% if n_firing %}\n{{ n_firing }\n{% endif %}\n")
    undefined = tmp_path / "email" / "subject.txt.j2"
    undefined.write_text("[cluster-monitor]\n{{ notification.run_id }} {{ no_such_value }}\n")
    # A user's template directory overrides the packaged templates by name.
    problems = render.check_templates(load_templates({"CLUSTER_MONITOR_TEMPLATES": str(tmp_path)}))
    assert len(problems) == 2, problems
    syntax, runtime = problems
    assert syntax.startswith("slack templates: TemplateSyntaxError")
    assert f"{broken}, line 3" in syntax and "unexpected '}'" in syntax
    assert runtime.startswith("email templates: UndefinedError")
    assert f"{undefined}, line 2" in runtime and "no_such_value" in runtime


def test_user_templates_fall_back_to_the_shipped_ones_template_by_template(tmp_path: Path) -> None:
    n = _notification()
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "header.txt.j2").write_text("Overridden for {{ n_firing }} firing\n")
    mine = load_templates({"CLUSTER_MONITOR_TEMPLATES": str(tmp_path)})
    shipped = render.render_slack(n)
    ours = render.render_slack(n, templates=mine)
    assert ours.blocks[0]["text"]["text"] == "Overridden for 1 firing"
    assert shipped.blocks[0]["text"]["text"] != ours.blocks[0]["text"]["text"]
    assert ours.blocks[1:] == shipped.blocks[1:]  # the alert and context templates: the shipped ones
    assert render.render_email(n, templates=mine) == render.render_email(n)  # nothing of email overridden
    assert load_templates({}).loader is not None and render.check_templates(load_templates({})) == []
