"""The container and service files, checked with what runs here (there is no Docker engine): the
Dockerfiles against hadolint-style rules, the manifests parsed, and every config they carry validated by
the monitor's own loader."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

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
            # The Kubernetes replicas keep their state in PostgreSQL: the image needs the driver.
            assert any(op == "RUN" and "pip install" in arg and "[postgres]" in arg for op, arg in ins)
            assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_parse_and_agree_with_each_other() -> None:
    docs = {d["kind"]: d for p in sorted((ROOT / "deploy/k8s").glob("*.yaml")) for d in _docs(p)}
    assert set(docs) == {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget"}
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
