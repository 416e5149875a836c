"""The container and service files, checked with what runs here (there is no Docker engine): the
Dockerfiles against hadolint-style rules, the manifests parsed, and every config they carry validated by
the monitor's own loader."""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from monitor import telemetry
from monitor.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
ENV = {"POSTHOG_API_KEY": "phx_x", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
       "SMTP_PASSWORD": "x", "SLACK_BOT_TOKEN": "xoxb-x",
       "STATE_DATABASE_URL": "postgresql://monitor:x@postgres:5432/cluster_monitor"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfiles_follow_the_usual_lint_rules() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in ("Dockerfile", "Dockerfile.local"):
        ins = _instructions(ROOT / "deploy" / name)
        ops = [op for op, _ in ins]
        for op, arg in ins:
            if op == "FROM":
                image = arg.split()[0]
                assert ":" in image and not image.endswith(":latest"), f"{name}: pin the base image ({image})"
            if op == "ADD":
                raise AssertionError(f"{name}: use COPY, not ADD")
            if op == "RUN" and "pip install" in arg:
                assert "--no-cache-dir" in arg, f"{name}: pip install without --no-cache-dir"
            if op == "RUN" and "apt-get install" in arg:
                assert "--no-install-recommends" in arg and "rm -rf /var/lib/apt/lists" in arg
            if op == "COPY" and "--from" not in arg:
                for src in arg.split()[:-1]:
                    assert (ROOT / src).exists(), f"{name}: COPY of a missing path {src}"
        users = [arg for op, arg in ins if op == "USER"]
        assert users and users[-1] not in ("root", "0"), f"{name}: the image must not run as root"
        entry = next(arg for op, arg in ins if op == "ENTRYPOINT")
        assert entry.strip('[]"') in scripts, f"{name}: ENTRYPOINT is not a console script"
        if name == "Dockerfile":
            assert "HEALTHCHECK" in ops and "VOLUME" in ops
            _check_healthcheck(ins)
            # The Kubernetes replicas keep their state in PostgreSQL: the image needs the driver.
            assert any(op == "RUN" and "pip install" in arg and "[postgres]" in arg for op, arg in ins)
            assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")


def _check_healthcheck(ins: list[tuple[str, str]]) -> None:
    """The image's health check asks the console script, which reads the port from the config the daemon
    runs with (no second copy of the port to drift), and the example configs serve on the EXPOSEd port."""
    check = json.loads(next(arg for op, arg in ins if op == "HEALTHCHECK").split(" CMD ", 1)[1])
    assert check[:2] == ["cluster-monitor", "healthcheck"] and "--config" not in check
    assert not any(re.search(r"\b\d{4,5}\b", part) for part in check), "the health check hard-codes a port"
    env = " ".join(arg for op, arg in ins if op == "ENV")
    config_path = re.search(r"CLUSTER_MONITOR_CONFIG=(\S+)", env)
    assert config_path, "the daemon and the health check must share CLUSTER_MONITOR_CONFIG"
    cmd = json.loads(next(arg for op, arg in ins if op == "CMD"))
    assert cmd == ["run"] or cmd[cmd.index("--config") + 1] == config_path.group(1)
    assert config_path.group(1).startswith("/config/")  # the config volume
    exposed = {int(arg.split("/")[0]) for op, arg in ins if op == "EXPOSE"}
    for example in ("config/example.yaml", "deploy/compose-config.yaml"):
        cfg = parse_config((ROOT / example).read_text(), example, env=ENV)
        assert cfg.server.port in exposed, f"{example}: server.port {cfg.server.port} is not EXPOSEd ({exposed})"


def _exposed_metric_names() -> set[str]:
    """Every series name /metrics can show: a counter's _total and _created, a histogram's parts."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "info": ("_info",)}
    return {f.name + sfx for f in telemetry.REGISTRY.collect() for sfx in suffixes.get(f.type, ("",))}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_parse_and_agree_with_each_other() -> None:
    docs = {d["kind"]: d for p in sorted((ROOT / "deploy/k8s").glob("*.yaml")) for d in _docs(p)}
    assert set(docs) == {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service", "PrometheusRule"}
    for d in docs.values():
        assert d["apiVersion"] and d["metadata"]["name"].startswith("cluster-monitor")
    config_text = docs["ConfigMap"]["data"]["config.yaml"]
    cfg = parse_config(config_text, "configmap", env=ENV)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not container["image"].endswith(":latest")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    port = container["ports"][0]["containerPort"]
    assert cfg.server.port == port and cfg.server.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Two replicas share one PostgreSQL (leader election); its URL, password included, comes from the Secret.
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 2 and cfg.state.path is None and cfg.state.url is not None
    assert cfg.state.url.get_secret_value() == ENV["STATE_DATABASE_URL"]
    assert re.search(r"url: \$\{STATE_DATABASE_URL\}", config_text)
    secret_env = {**ENV, **docs["Secret"]["stringData"]}
    assert parse_config(config_text, "configmap", env=secret_env).state.url is not None
    # A standby is ready (/readyz 200), so a rolling update that never drops below the replicas works.
    assert spec["strategy"]["type"] == "RollingUpdate" and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    # No state volume: nothing is written but /tmp.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/config", "/tmp"}
    # Every ${VAR} the config needs comes from the Secret.
    needed = set(re.findall(r"\$\{([A-Z_]+)", config_text))
    assert needed <= set(docs["Secret"]["stringData"])
    # SIGTERM then the grace period: longer than the daemon's own shutdown deadline (30 s).
    assert pod["terminationGracePeriodSeconds"] > 30
    # The Service reaches the pods' named port, which is the config's server.port.
    svc = docs["Service"]["spec"]
    assert svc["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (svc_port,) = svc["ports"]
    assert svc_port["targetPort"] in (container["ports"][0]["name"], port) and svc_port["port"] == port


def test_prometheus_rule_alerts_on_the_monitors_own_metrics() -> None:
    (rule_doc,) = _docs(ROOT / "deploy/k8s/prometheusrule.yaml")
    assert rule_doc["apiVersion"] == "monitoring.coreos.com/v1" and rule_doc["kind"] == "PrometheusRule"
    rules = [r for g in rule_doc["spec"]["groups"] for r in g["rules"]]
    exposed = _exposed_metric_names()
    used: set[str] = set()
    for r in rules:
        assert r["alert"].startswith("ClusterMonitor") and r["labels"]["severity"] in ("critical", "warning")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        expr = r["expr"]
        assert expr.count("(") == expr.count(")"), f"{r['alert']}: unbalanced parentheses"
        names = set(re.findall(r"\bcluster_monitor_[a-z_]+", expr))
        assert names, f"{r['alert']}: the rule reads none of the monitor's metrics"
        assert names <= exposed, f"{r['alert']}: {names - exposed} not defined in monitor/telemetry.py"
        used |= names
    # The health the issue asks for: cycles, failed notifications, backlog, stale jobs, no leader.
    assert {"cluster_monitor_last_success_timestamp_seconds", "cluster_monitor_notifications_total",
            "cluster_monitor_outbox_oldest_pending_timestamp_seconds",
            "cluster_monitor_job_last_run_timestamp_seconds", "cluster_monitor_is_leader"} <= used
    assert any(r["expr"].strip() == "sum(cluster_monitor_is_leader) == 0" for r in rules)


def test_metric_names_follow_prometheus_conventions() -> None:
    for family in telemetry.REGISTRY.collect():
        assert family.name.startswith("cluster_monitor_")
        if family.type == "gauge" and "timestamp" in family.name:
            assert family.name.endswith("_timestamp_seconds"), family.name
    build = [s for f in telemetry.REGISTRY.collect() if f.name == "cluster_monitor_build_info" for s in f.samples]
    assert len(build) == 1 and build[0].value == 1 and build[0].labels["version"] == telemetry.version()
    text = (ROOT / "README.md").read_text()
    known = _exposed_metric_names() | {f.name for f in telemetry.REGISTRY.collect()}  # a histogram by its name
    # PostgreSQL tables of the monitor share the prefix (cluster_monitor_sends): they are not metrics.
    known |= {t for p in (ROOT / "monitor/store").glob("*.py")
              for t in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", p.read_text())}
    for name in set(re.findall(r"\bcluster_monitor_[a-z_]+", text)):
        assert name in known, f"README.md names {name}, which /metrics does not serve"


def test_compose_files_and_their_config() -> None:
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    for svc in compose["services"].values():
        if "build" in svc:
            assert (ROOT / "deploy" / svc["build"]["context"] / svc["build"]["dockerfile"]).exists()
    cfg = parse_config((ROOT / "deploy/compose-config.yaml").read_text(), "compose-config", env=ENV)
    assert cfg.posthog.host.startswith("http://local-posthog:")
    assert f"{cfg.server.port}:{cfg.server.port}" in compose["services"]["monitor"]["ports"]


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy/systemd/cluster-monitor.service")
    svc = unit["Service"]
    assert "cluster-monitor run --config" in svc["ExecStart"]
    assert svc["Restart"] == "on-failure" and "HUP" in svc["ExecReload"]
    assert svc["User"] != "root" and svc["NoNewPrivileges"] == "true"
    assert int(svc["TimeoutStopSec"]) > 30
    # The daemon pings the watchdog (every 10 s at most) while its cycle progresses: a stuck one is restarted.
    assert svc["Type"] == "notify" and int(svc["WatchdogSec"]) > 10


def test_the_example_config_is_valid() -> None:
    cfg = parse_config((ROOT / "config/example.yaml").read_text(), "example.yaml", env=ENV)
    assert cfg.posthog.project_id
