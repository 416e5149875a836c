"""`cluster-monitor demo`: the whole product on loopback, with no account and no configuration.

A local PostHog-compatible server holds 14 days of generated LLM traffic whose daily clustering runs
drift (cost spike, error surge, new cluster, split...). Its virtual clock starts after the first few
runs and releases one more day of runs every `step` seconds; the real daemon (same code as `run`) polls
it every second, and delivers through slack-sdk to a local Slack-compatible endpoint and over SMTP to a
local mail server. Each delivered alert is printed, and saved under .demo/ to look at.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.daemon import Daemon
from monitor.local.posthog.run import start_local_posthog
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP

API_KEY = "phx_demo_local_key"
BASELINE_DAYS = 3


def _config(path: Path, posthog_url: str, slack: LocalSlack, smtp: LocalSMTP, state: Path) -> None:
    path.write_text(f"""# Written by `cluster-monitor demo`: the monitor watching the local PostHog-compatible server.
posthog:
  host: {posthog_url}
  project_id: 1
  api_key: {API_KEY}
  lookback_days: 30
schedule:
  interval_seconds: 1
watch:
  # The demo's PostHog also clusters its evaluations (LLM judges' verdicts): their pass rates are watched too.
  levels: [trace, generation, evaluation]
slack:
  webhook_url: {slack.webhook_url}
email:
  host: 127.0.0.1
  port: {smtp.port}
  security: none
  from: "cluster-monitor demo <monitor@demo.local>"
  to: [ai-team@demo.local]
delivery:
  max_backoff_seconds: 5
alerting:
  # A demo day lasts a few seconds: every run is told on its own, not folded into a catch-up.
  catch_up_after_hours: 0
state:
  path: {state}
""")


def _lines_of(message: dict[str, Any]) -> list[str]:
    """The headline and each alert's text from a Block Kit message, for the terminal."""
    out: list[str] = []
    for b in message.get("blocks") or []:
        if b.get("type") == "header":
            out.append(str(b.get("text", {}).get("text", "")))
        elif b.get("type") == "section" and b.get("text"):
            text = str(b["text"].get("text", ""))
            out.extend("    " + ln for ln in text.splitlines() if ln.strip())
    return out or [str(message.get("text", ""))]


def run_demo(*, seconds: float = 75.0, step: float = 3.0, workdir: Path = Path(".demo")) -> int:
    started = time.monotonic()
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "slack").mkdir(parents=True)
    (workdir / "mail").mkdir(parents=True)
    print("cluster-monitor demo: generating 14 days of LLM traffic and clustering runs...", flush=True)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    server, ds = start_local_posthog(scenario="drift", days=14, project_id=1, api_key=API_KEY, end=end,
                                     query_log=workdir / "posthog-queries.jsonl")
    emitted = sorted(r["emitted_at"] for r in ds.runs)
    first_day = min(emitted)
    server.clock.set(first_day + timedelta(days=BASELINE_DAYS - 1, hours=1))
    slack = LocalSlack.start()
    smtp = LocalSMTP.start()
    cfg_path = workdir / "config.yaml"
    _config(cfg_path, server.url, slack, smtp, workdir / "state.sqlite")
    print(f"  local PostHog   {server.url}  ({len(ds.events):,} events, {len(ds.runs)} runs of "
          f"{len(ds.jobs)} jobs; ground truth: {server.url}/_admin/truth)")
    print(f"  local Slack     {slack.url}  (messages saved in {workdir}/slack/)")
    print(f"  local SMTP      127.0.0.1:{smtp.port}  (mail saved in {workdir}/mail/)")
    print(f"  config          {cfg_path}   state {workdir}/state.sqlite")
    print(f"  releasing one day of runs every {step:g} s, starting after {BASELINE_DAYS} baseline days\n",
          flush=True)

    # The monitor lives on the local PostHog's virtual clock, as it would live on real time.
    daemon = Daemon(cfg_path, clock=lambda: server.clock.now() or datetime.now(UTC))
    daemon_thread = threading.Thread(target=daemon.serve, kwargs={"shutdown_deadline": 10.0}, daemon=True)
    daemon_thread.start()
    stop = threading.Event()

    def advance() -> None:
        last = max(emitted) + timedelta(hours=1)
        while not stop.wait(step):
            now = server.clock.now()
            if now is None or now >= last:
                print(f"[{time.monotonic() - started:5.1f}s] all 14 days of runs released", flush=True)
                return
            server.clock.set(now + timedelta(days=1))
            print(f"[{time.monotonic() - started:5.1f}s] PostHog clock -> {now + timedelta(days=1):%Y-%m-%d %H:%M} "
                  "UTC: the day's clustering runs land", flush=True)

    threading.Thread(target=advance, daemon=True).start()
    shown_slack = shown_mail = 0
    deadline = started + seconds if seconds > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            slack.wait_for(shown_slack + 1, timeout=0.5)
            for msg in slack.messages[shown_slack:]:
                shown_slack += 1
                (workdir / "slack" / f"{shown_slack:03d}.json").write_text(_json(msg))
                print(f"[{time.monotonic() - started:5.1f}s] Slack message #{shown_slack} "
                      f"-> {workdir}/slack/{shown_slack:03d}.json")
                for line in _lines_of(msg):
                    # Slack shows &amp; as &: so does the terminal.
                    print("    " + _slack_unescape(line))
            for mail in smtp.messages[shown_mail:]:
                shown_mail += 1
                (workdir / "mail" / f"{shown_mail:03d}.eml").write_bytes(bytes(mail))
                print(f"[{time.monotonic() - started:5.1f}s] Email #{shown_mail}: {mail['Subject']} "
                      f"-> {workdir}/mail/{shown_mail:03d}.eml", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        daemon.stop_event.set()
        daemon_thread.join(timeout=15)
        slack.stop()
        smtp.stop()
        server.stop()
    print(f"\ndemo done: {shown_slack} Slack messages and {shown_mail} emails delivered in "
          f"{time.monotonic() - started:.0f} s. Look at {workdir}/slack, {workdir}/mail, and try:\n"
          f"  .venv/bin/cluster-monitor history --config {cfg_path} --title ''\n"
          f"  .venv/bin/cluster-monitor outbox --config {cfg_path}")
    return 0 if shown_slack else 1


def _slack_unescape(text: str) -> str:
    """Slack escapes only &, < and > in mrkdwn: undo exactly those (html.unescape would also turn a link's
    `&timestamp=` into `×tamp=`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _json(doc: Any) -> str:
    import json

    return json.dumps(doc, indent=2, ensure_ascii=False)
