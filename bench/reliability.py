"""Reliability: a fault matrix over PostHog, Slack, SMTP and bad data, and a SIGKILL crash test.

Fault matrix: each cell starts from a fresh project of the drift scenario on the local PostHog (real
HTTP, ClickHouse), breaks one thing, runs the monitor for a few cycles, heals it, and runs until the
backlog and the outbox are done. A cell passes when the monitor never raised, logged what happened in
a structured line, never moved its cursor past a run it had not processed, and in the end processed
every run and delivered every notification of a clean control pass exactly once (permanent errors:
kept in the outbox, then delivered once requeued).

Kill test: `cluster-monitor run` as a process, SIGKILLed at random moments (fixed seed) and restarted
until the backlog is done; then runs lost, alerts lost and duplicates against the control.

    ./dev bench reliability [--kills 100] [--seed 7] [--cells NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from monitor.config import Config, parse_config
from monitor.daemon import build_monitor
from monitor.localposthog.faults import Fault
from monitor.localposthog.generator import Dataset, generate, run_event_row
from monitor.localposthog.server import LocalPostHog
from monitor.localslack import LocalSlack
from monitor.localsmtp import LocalSMTP
from monitor.pipeline import Monitor
from monitor.posthog.client import RequestBudget

KEY = "phx_reliability_key"
END = datetime(2026, 11, 1, tzinfo=UTC)
SCENARIO: dict[str, Any] = {"scenario": "drift", "days": 6, "scale": 0.05, "seed": 11}
_teams = itertools.count(5000)


@dataclass
class World:
    """One cell's project: its own local PostHog team, Slack endpoint and mailbox."""

    server: LocalPostHog
    ds: Dataset
    slack: LocalSlack
    smtp: LocalSMTP
    state: Path
    now: list[datetime] = field(default_factory=lambda: [END + timedelta(hours=1)])
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def team(self) -> int:
        return self.ds.team_id

    def config(self) -> Config:
        doc: dict[str, Any] = {
            "posthog": {"host": self.server.url, "project_id": self.team, "api_key": KEY, "lookback_days": 60,
                        "timeout_seconds": 1.0, "max_retries": 1},
            "alerting": {"stale_after_hours": 0},
            "slack": {"webhook_url": self.slack.webhook_url},
            "email": {"host": "127.0.0.1", "port": self.smtp.port, "security": "none", "from": "m@x.test",
                      "to": ["t@x.test"], "timeout_seconds": 2},
            "state": {"path": str(self.state)},
            "delivery": {"max_backoff_seconds": 60},
        }
        for section, values in self.overrides.items():
            doc[section] = {**doc.get(section, {}), **values}
        return parse_config(json.dumps(doc), "reliability", env={})

    def monitor(self) -> Monitor:
        # Each world stands for a separate deployment with its own key: its own request budget.
        m = build_monitor(self.config(), clock=lambda: self.now[0], sleep=lambda s: None, budget=RequestBudget())
        assert m.deliverer is not None
        m.deliverer.min_interval = 0.0
        return m

    def run_event(self, index: int) -> tuple[dict[str, Any], Any]:
        r = self.ds.runs[index]
        row = next(e for e in self.ds.events if e[0] == r["event_uuid"])
        return json.loads(row[3]), r


def new_world(server: LocalPostHog, tmp: Path) -> World:
    team = next(_teams)
    ds = generate(SCENARIO["scenario"], days=SCENARIO["days"], scale=SCENARIO["scale"], seed=SCENARIO["seed"],
                  team_id=team, end=END)
    server.load(ds)
    return World(server=server, ds=ds, slack=LocalSlack.start(), smtp=LocalSMTP.start(), state=tmp / f"{team}.db")


def _headers(slack: LocalSlack) -> list[str]:
    return sorted(m["blocks"][0]["text"]["text"] for m in slack.messages)


@dataclass(frozen=True)
class Cell:
    name: str
    arm: Callable[[World], None]
    heal: Callable[[World], None] = lambda w: None
    # The structured log event that must say what happened while the fault held (None: nothing to say).
    expect_log: str | None = None
    # Runs the cell adds (beyond the scenario's) that must be processed; or a bad one that must not.
    extra_runs: int = 0
    poisoned: bool = False


def _ph(kind: str, name: str | None = None, **kw: Any) -> Callable[[World], None]:
    return lambda w: w.server.faults.add(Fault(kind=kind, name=name, count=None, **kw))  # type: ignore[arg-type]


def _ph_heal(w: World) -> None:
    w.server.faults.clear()


def _slack_fail(status: int, error: str, retry_after: float | None = None) -> Callable[[World], None]:
    return lambda w: w.slack.fail_next(10_000, status, error=error, retry_after=retry_after)


def _slack_heal(w: World) -> None:
    w.slack.heal()


def _smtp_down(w: World) -> None:
    w.smtp.stop()


def _smtp_up(w: World) -> None:
    w.smtp = LocalSMTP.start(port=w.smtp.port)


def _smtp_refuse(w: World) -> None:
    w.smtp.refuse_code = 451


def _smtp_accept(w: World) -> None:
    w.smtp.refuse_code = None


def _duplicate_event(w: World) -> None:
    props, r = w.run_event(len(w.ds.runs) // 2)
    w.server.engine.insert([run_event_row(props, team_id=w.team, emitted_at=r["emitted_at"] + timedelta(seconds=30))])


def _extra_run(w: World, clusters: Any) -> None:
    props, r = w.run_event(len(w.ds.runs) - 1)
    end = datetime.fromisoformat(props["$ai_window_end"]) + timedelta(hours=6)
    props.update({"$ai_window_end": end.isoformat(), "$ai_clusters": clusters,
                  "$ai_clustering_run_id": f"{w.team}_{r['level']}_{end:%Y%m%d_%H%M%S}_{r['job_id']}"})
    w.server.engine.insert([run_event_row(props, team_id=w.team, emitted_at=r["emitted_at"] + timedelta(hours=6))])


def _noise_only(w: World) -> None:
    props, _ = w.run_event(len(w.ds.runs) - 1)
    noise = [c for c in props["$ai_clusters"] if c["cluster_id"] == -1] or [
        {"cluster_id": -1, "size": 0, "title": "Outliers", "traces": {}}]
    _extra_run(w, noise)


def _poison(w: World) -> None:
    _extra_run(w, "this is not JSON")


def _late_run(w: World) -> None:
    """A run event that shows up after later ones were processed (ingestion delay)."""
    props, r = w.run_event(len(w.ds.runs) - 1)
    end = datetime.fromisoformat(props["$ai_window_end"]) - timedelta(minutes=30)
    props.update({"$ai_window_end": end.isoformat(), "$ai_clustering_job_id": "late-job",
                  "$ai_clustering_run_id": f"{w.team}_{r['level']}_{end:%Y%m%d_%H%M%S}_late-job"})
    w.server.engine.insert([run_event_row(props, team_id=w.team, emitted_at=r["emitted_at"] - timedelta(minutes=30))])


def _rename_and_delete_jobs(w: World) -> None:
    team = w.server.team(w.team)
    team.jobs = [dict(j, name=j["name"] + " (renamed)") for j in team.jobs[1:]]


CELLS = [
    Cell("posthog: latency past the timeout", _ph("latency", "get_run", seconds=1.6), _ph_heal, "run_failed"),
    Cell("posthog: 500", _ph("status", "get_run", status=500), _ph_heal, "run_failed"),
    Cell("posthog: 502", _ph("status", "cluster_metrics", status=502), _ph_heal, "run_failed"),
    Cell("posthog: 503 on discovery", _ph("status", "discover_runs", status=503), _ph_heal, "discovery_failed"),
    Cell("posthog: 429 with Retry-After", _ph("status", "get_run", status=429, retry_after=0.05), _ph_heal,
         "run_failed"),
    Cell("posthog: 429 without Retry-After", _ph("status", "cluster_metrics", status=429), _ph_heal, "run_failed"),
    Cell("posthog: dropped connections", _ph("drop", "get_run"), _ph_heal, "run_failed"),
    Cell("posthog: truncated JSON", _ph("truncate", "cluster_metrics"), _ph_heal, "run_failed"),
    Cell("posthog: malformed JSON", _ph("malformed", "get_run"), _ph_heal, "run_failed"),
    Cell("posthog: HogQL 400", _ph("status", "cluster_metrics", status=400), _ph_heal, "run_failed"),
    Cell("posthog: 401 (key revoked)", _ph("status", None, status=401), _ph_heal, "discovery_failed"),
    Cell("slack: 500", _slack_fail(500, "internal_error"), _slack_heal, "notification_retry"),
    Cell("slack: 429", _slack_fail(429, "ratelimited", retry_after=0), _slack_heal, "notification_retry"),
    Cell("slack: invalid_token (permanent)", _slack_fail(403, "invalid_token"), _slack_heal, "notification_failed"),
    Cell("slack: channel_not_found (permanent)", _slack_fail(404, "channel_not_found"), _slack_heal,
         "notification_failed"),
    Cell("smtp: refuses connections", _smtp_down, _smtp_up, "notification_retry"),
    Cell("smtp: 451 temporary refusal", _smtp_refuse, _smtp_accept, "notification_retry"),
    Cell("data: duplicated run event", _duplicate_event),
    Cell("data: noise-only run", _noise_only, extra_runs=1),
    Cell("data: unparseable $ai_clusters", _poison, expect_log="run_failed", poisoned=True),
    Cell("data: run arriving late, out of order", _late_run, extra_runs=1),
    Cell("jobs: renamed and deleted", _rename_and_delete_jobs),
]


@dataclass
class CellResult:
    name: str
    passed: bool
    problems: list[str]
    runs_lost: int
    alerts_lost: int
    duplicates: int
    kept_failed: int


def _cursor_ok(m: Monitor, w: World) -> bool:
    """The cursor never passes a run that is not processed (the ingestion grace aside)."""
    cursor = m.store.cursor()
    if cursor is None:
        return True
    done = m.store.processed_ids([r["run_id"] for r in w.ds.runs])
    pending = [r["emitted_at"] for r in w.ds.runs if r["run_id"] not in done]
    return not pending or cursor < min(pending)


def control_headers(server: LocalPostHog, tmp: Path) -> list[str]:
    w = new_world(server, tmp)
    try:
        m = w.monitor()
        assert m.cycle().ok
        m.store.close()
        return _headers(w.slack)
    finally:
        w.slack.stop()
        w.smtp.stop()


def run_cell(cell: Cell, server: LocalPostHog, tmp: Path, expected: list[str]) -> CellResult:
    w = new_world(server, tmp)
    problems: list[str] = []
    try:
        m = w.monitor()
        with capture_logs() as logs:
            cell.arm(w)
            if cell.name.startswith("data: run arriving late"):
                m.cycle()  # the later runs first; the late one lands after
            for _ in range(3):
                try:
                    m.cycle()
                except Exception as exc:  # the daemon would survive this, but a cell must not need it
                    problems.append(f"cycle raised {type(exc).__name__}: {exc}")
                if not _cursor_ok(m, w):
                    problems.append("cursor moved past an unprocessed run")
                w.now[0] += timedelta(minutes=5)
        if cell.expect_log and not any(e.get("event") == cell.expect_log for e in logs):
            problems.append(f"no {cell.expect_log!r} log line")
        if cell.poisoned:
            bad = [e for e in logs if e.get("event") == "run_failed"]
            if not any("$ai_clusters" in str(e.get("error")) and e.get("run_id") for e in bad):
                problems.append("the bad run's error does not name the run and the field")
        cell.heal(w)
        kept_failed = len(m.store.outbox("failed"))
        if kept_failed:
            m.store.requeue_failed(w.now[0])  # what `cluster-monitor outbox --retry-failed` does
        for _ in range(12):
            w.now[0] += timedelta(minutes=30)
            m.cycle()
            if not m.store.outbox("pending") and not m.store.outbox("failed"):
                break
        done = m.store.processed_ids([r["run_id"] for r in w.ds.runs])
        runs_lost = len(w.ds.runs) - len(done)
        all_runs = len(m.store.last_runs())  # job keys seen, to check extra runs landed
        if cell.extra_runs and not all_runs:
            problems.append("extra runs were not processed")
        got = _headers(w.slack)
        want = list(expected)
        missing = 0
        for h in want:
            if h in got:
                got.remove(h)
            else:
                missing += 1
        duplicates = sum(1 for h in got if h in expected)
        if cell.poisoned or cell.extra_runs:
            missing = 0  # the extra run changes what its job's later alerts say; counted by runs instead
            duplicates = 0
        if runs_lost:
            problems.append(f"{runs_lost} runs not processed")
        if missing:
            problems.append(f"{missing} notifications not delivered")
        if m.store.outbox("pending") or m.store.outbox("failed"):
            problems.append("outbox not drained")
        m.store.close()
        m.client.close()
        return CellResult(cell.name, not problems, problems, runs_lost, missing, duplicates, kept_failed)
    finally:
        w.slack.stop()
        with contextlib.suppress(Exception):  # the cell may have stopped it already
            w.smtp.stop()


# --- the kill test --------------------------------------------------------------------------------------

def kill_test(server: LocalPostHog, tmp: Path, expected: list[str], *, kills: int, seed: int,
              log: Callable[[str], None] = print) -> dict[str, int]:
    """SIGKILL `cluster-monitor run` at random moments until `kills` kills were made and the work is done."""
    rng = random.Random(seed)
    w = new_world(server, tmp)
    w.server.faults.add(Fault(kind="latency", seconds=0.05, count=None))  # spread the work over time
    cfg_path = tmp / f"kill-{w.team}.yaml"
    cfg = w.config().model_dump(mode="json", exclude_none=True)
    cfg["posthog"]["api_key"] = KEY
    cfg["slack"] = {"webhook_url": w.slack.webhook_url}
    cfg["email"]["password"] = None
    cfg["email"] = {k: v for k, v in cfg["email"].items() if v is not None}
    cfg["schedule"] = {"interval_seconds": 0.5}
    cfg["delivery"] = {"max_backoff_seconds": 1}
    cfg_path.write_text(json.dumps(cfg))
    env = dict(os.environ)
    # Runs land a few at a time, as they would in production, so kills keep finding work in hand.
    first = min(r["emitted_at"] for r in w.ds.runs) - timedelta(hours=1)
    last = max(r["emitted_at"] for r in w.ds.runs)
    step = (last - first) / max(1, kills // 2)
    server.clock.set(first)
    made = 0
    started = time.monotonic()
    try:
        while True:
            proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg_path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            now = server.clock.now()
            if now is not None:
                server.clock.set(min(last + timedelta(hours=1), now + step))
            if made >= kills:
                # Let the last one finish the work, then stop it cleanly.
                server.clock.set(None)
                ok = w.slack.wait_for(len(expected), timeout=120)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and len(_processed(w.state)) < len(w.ds.runs):
                    time.sleep(0.2)
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                if not ok:
                    log("the last daemon did not deliver everything in time")
                break
            time.sleep(rng.uniform(0.3, 2.5))  # python start-up is ~0.8 s: some kills land before any work
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            made += 1
            if made % 10 == 0:
                log(f"  {made} kills, {len(_processed(w.state))}/{len(w.ds.runs)} runs processed, "
                    f"{len(w.slack.messages)} Slack messages, {time.monotonic() - started:.0f} s")
        got = _headers(w.slack)
        runs_lost = len(w.ds.runs) - len(_processed(w.state))
        missing = 0
        rest = list(got)
        for h in expected:
            if h in rest:
                rest.remove(h)
            else:
                missing += 1
        server.clock.set(None)
        return {"kills": made, "runs": len(w.ds.runs), "runs_lost": runs_lost, "alerts_lost": missing,
                "duplicates": len(rest), "messages": len(got), "expected": len(expected),
                "seconds": round(time.monotonic() - started)}
    finally:
        w.slack.stop()
        w.smtp.stop()


def _processed(state: Path) -> set[str]:
    if not state.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
            return {r[0] for r in db.execute("SELECT run_id FROM runs")}
    except sqlite3.Error:
        return set()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cells", nargs="*", default=None, help="substrings of cell names to run (default: all)")
    args = ap.parse_args()
    print(f"machine: 2 cores, 24 GiB (see ../.library/env); Python {sys.version.split()[0]}; scenario {SCENARIO}")
    server = LocalPostHog(api_key=KEY)
    server.start()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        expected = control_headers(server, tmp)
        print(f"control: {len(expected)} notifications per pass\n")
        print(f"{'cell':<42} {'result':<6} {'runs lost':>9} {'alerts lost':>11} {'dupes':>6} {'kept':>5}  notes")
        passed = 0
        cells = [c for c in CELLS if not args.cells or any(s in c.name for s in args.cells)]
        for cell in cells:
            r = run_cell(cell, server, tmp, expected)
            passed += r.passed
            print(f"{r.name:<42} {'pass' if r.passed else 'FAIL':<6} {r.runs_lost:>9} {r.alerts_lost:>11} "
                  f"{r.duplicates:>6} {r.kept_failed:>5}  {'; '.join(r.problems)}", flush=True)
        print(f"\n{passed}/{len(cells)} cells passed")
        if args.kills:
            print(f"\nkill test: SIGKILL at random moments (seed {args.seed}), {args.kills} kills")
            k = kill_test(server, tmp, expected, kills=args.kills, seed=args.seed)
            print(f"kills survived {k['kills']}, runs {k['runs']}, runs lost {k['runs_lost']}, alerts lost "
                  f"{k['alerts_lost']}, duplicates {k['duplicates']} ({k['messages']} messages for "
                  f"{k['expected']} expected), {k['seconds']} s")
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
