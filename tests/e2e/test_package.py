"""The package as a user gets it: the sdist, the wheel built from that sdist, installed into a fresh
virtualenv and run from another folder, with no network (build without isolation, install --no-deps,
the dependencies seen through this environment's site-packages).

What it guards: templates shipped inside the package (while templates/ stays the top-level folder people
edit), a user's override folder falling back to them template by template, and no test-only code in the
wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What a build needs from a checkout; tests/ and bench/ are not among them.
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "monitor", "templates", "config")
ENV = {"POSTHOG_API_KEY": "phx_x", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
       "SMTP_PASSWORD": "x"}


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_from_the_sdist_installs_a_working_monitor(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    # Without --sdist/--wheel, build makes the sdist and then the wheel from that sdist.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], cwd=tmp_path)
    templates = sorted(p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.j2"))
    assert len(templates) >= 6

    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"templates/{t}" for t in templates} <= in_sdist
    assert {"setup.py", "MANIFEST.in", "config/example.yaml"} <= in_sdist

    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = zf.namelist()
        text = b"".join(zf.read(n) for n in in_wheel if n.endswith(".py"))
    assert {f"monitor/templates/{t}" for t in templates} <= set(in_wheel)
    assert "monitor/local/posthog/server.py" in in_wheel  # the demo's stand-ins ship (cluster-monitor demo)
    # Test-only code stays out: the PostgreSQL fixture, the crash entry point, the tests and benchmarks.
    assert not [n for n in in_wheel if n.startswith(("tests/", "bench/", "templates/"))], in_wheel
    assert not [n for n in in_wheel if "localpostgres" in n or "crashing_daemon" in n]
    assert b"CLUSTER_MONITOR_FAILPOINT" not in text and b"os.kill(" not in text

    # A fresh virtualenv that sees this one's dependencies (offline) but not the checkout's monitor: a
    # .pth line adds site-packages as a plain path, so the editable install's own .pth is not run.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "--quiet", wheel],
         cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLUSTER_MONITOR_TEMPLATES")} | ENV
    where = _run([py, "-c", "import monitor.notify.render as r; print(r.__file__); print(r.SHIPPED_TEMPLATES)"],
                 cwd=elsewhere, env=env).split()
    assert all(Path(w).is_relative_to(site) for w in where), where
    cli = env_dir / "bin" / "cluster-monitor"
    config = ROOT / "config" / "example.yaml"
    out = _run([cli, "check-config", "--offline", "--config", config], cwd=elsewhere, env=env)
    assert f"{config}: ok" in out
    sample = _run([cli, "test-notify", "--dry-run", "--config", config], cwd=elsewhere, env=env)
    assert "--- slack" in sample and "--- email:" in sample and "Sample cluster" in sample

    # A user's folder overrides one template; the others still come from the package.
    mine = tmp_path / "mine"
    (mine / "email").mkdir(parents=True)
    (mine / "email" / "subject.txt.j2").write_text("Overridden subject for {{ notification.run_id }}\n")
    overridden = _run([cli, "test-notify", "--dry-run", "--config", config], cwd=elsewhere,
                      env=env | {"CLUSTER_MONITOR_TEMPLATES": str(mine)})
    assert "--- email: Overridden subject for " in overridden
    assert overridden.split("--- email:")[0] == sample.split("--- email:")[0]  # Slack: the shipped templates
