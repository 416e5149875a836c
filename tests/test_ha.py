"""High availability on PostgreSQL: replicas sharing one database elect one leader with an advisory lock;
a standby takes over within one cycle when the leader dies, and nothing is skipped or sent twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from structlog.testing import capture_logs

from monitor.daemon import Daemon
from monitor.local.posthog.faults import Fault
from monitor.local.slack import LocalSlack
from monitor.store.leader import lock_key
from tests.conftest import API_KEY, PostHogEnv, make_config, monitor_for
from tests.test_daemon import _metric

DB_PASSWORD = "pg-Pa55word-never-logged"


def _with_password(url: str) -> str:
    """The test server trusts loopback, so any password connects: it is here to be kept out of logs."""
    return url.replace("postgresql://monitor@", "postgresql://monitor:${TEST_PG_PASSWORD}@", 1)


def _write_config(path: Path, env: PostHogEnv, slack: LocalSlack, url: str, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": "${TEST_POSTHOG_KEY}",
                    "lookback_days": 60, "max_retries": 1},
        "schedule": {"interval_seconds": 1},
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"url": _with_password(url)},
        "delivery": {"max_backoff_seconds": 1},
        **extra,
    }
    path.write_text(json.dumps(doc))
    return path


ENV = {"TEST_POSTHOG_KEY": API_KEY, "TEST_PG_PASSWORD": DB_PASSWORD}


def _lock_holders(url: str, project_id: int) -> list[str]:
    """application_name of the sessions holding the project's leader lock ("... host:pid")."""
    key = lock_key(project_id)
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchall()
    return [str(r[0]) for r in rows]


def test_one_leader_a_ready_standby_and_fencing_when_the_leader_loses_its_lock(
        posthog_factory: Any, slack: LocalSlack, postgres_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    config = _write_config(tmp_path / "config.yaml", env, slack, postgres_url,
                           server={"host": "127.0.0.1", "port": 0})
    a, b = Daemon(config), Daemon(config)
    for d in (a, b):
        d.start_health_server()
        d.monitor.deliverer.min_interval = 0.0  # type: ignore[union-attr]
    base = {d: f"http://127.0.0.1:{d._health_server.server_address[1]}" for d in (a, b)}  # type: ignore[union-attr]
    try:
        first = a.run_cycle()
        assert first is not None and first.ok and not first.standby and first.processed
        assert httpx.get(base[a] + "/readyz").text == "ready\n"
        assert _metric(httpx.get(base[a] + "/metrics").text, "cluster_monitor_is_leader") == 1

        with capture_logs() as logs:
            for _ in range(3):
                standby = b.run_cycle()
                assert standby is not None and standby.ok and standby.standby and not standby.processed
        assert [e["event"] for e in logs].count("leader_standby") == 1, "logged once, not every cycle"
        ready = httpx.get(base[b] + "/readyz")
        assert ready.status_code == 200 and ready.text == "ready standby\n"
        assert _metric(httpx.get(base[b] + "/metrics").text, "cluster_monitor_is_leader") == 0
        [holder] = _lock_holders(postgres_url, env.project_id)
        assert holder.endswith(f":{os.getpid()}") and "leader-lock" in holder
        assert DB_PASSWORD not in json.dumps(logs, default=str)

        # A pending notification, then the leader's lock session is cut (a network cut, a DBA's
        # pg_terminate_backend): before sending anything the leader finds out and steps down.
        a.monitor.store.commit_alerts([], [("fenced", "slack", b"not even a notification")], datetime.now(UTC))
        sent_before = len(slack.messages)
        key = lock_key(env.project_id)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            killed = db.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND granted AND classid = %s AND objid = %s",
                                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
        assert killed == (1,)
        with capture_logs() as logs:
            assert a.monitor.deliverer.deliver_due(datetime.now(UTC)) == 0  # type: ignore[union-attr]
        assert "leader_lost" in [e["event"] for e in logs] and "delivery_fenced" in [e["event"] for e in logs]
        [entry] = [e for e in a.monitor.store.outbox() if e.key == "fenced"]
        assert entry.status == "pending" and entry.attempts == 0, "a fenced leader touched the outbox"
        assert len(slack.messages) == sent_before

        # The standby takes the free lock at its next cycle; the old leader is a standby from then on.
        took_over = b.run_cycle()
        assert took_over is not None and took_over.ok and not took_over.standby
        assert httpx.get(base[b] + "/readyz").text == "ready\n"
        demoted = a.run_cycle()
        assert demoted is not None and demoted.standby
        assert httpx.get(base[a] + "/readyz").text == "ready standby\n"
    finally:
        for d in (a, b):
            d._health_server.shutdown()  # type: ignore[union-attr]
            d.monitor.client.close()
            d.monitor.store.close()
            d.leader.release()


# --- two replicas as processes, the leader SIGKILLed --------------------------------------------------

_TRIGGERS = """
CREATE FUNCTION ha_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ha', TG_TABLE_NAME || ' ' || current_setting('application_name'));
    RETURN NEW;
END $$;
CREATE TRIGGER runs_ha AFTER INSERT ON runs FOR EACH ROW EXECUTE FUNCTION ha_notify();
CREATE TRIGGER outbox_ha AFTER UPDATE ON outbox FOR EACH ROW
    WHEN (NEW.status = 'sent' AND OLD.status <> 'sent') EXECUTE FUNCTION ha_notify();
"""


class Replicas:
    """`cluster-monitor run` processes on one config, each logging to its own file."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> int:
        log = self.logs / f"replica-{len(self.procs)}.log"
        p = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config)],
                             stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ, **ENV})
        self.procs[p.pid] = p
        return p.pid

    def log(self, pid: int) -> str:
        i = list(self.procs).index(pid)
        return (self.logs / f"replica-{i}.log").read_text()

    def all_logs(self) -> str:
        return "\n".join(f"--- {pid}\n{self.log(pid)[-2500:]}" for pid in self.procs)

    def kill(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


@contextmanager
def _replicas(config: Path, logs: Path) -> Iterator[Replicas]:
    r = Replicas(config, logs)
    try:
        yield r
    finally:
        r.kill()


def _acquired_at(log: str) -> float:
    """Unix time of the replica's last `leader_acquired` log line."""
    line = [ln for ln in log.splitlines() if '"event": "leader_acquired"' in ln][-1]
    return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()


def _events(db: psycopg.Connection[Any], timeout: float) -> Iterator[tuple[str, int]]:
    """(table, replica pid) of each run committed and each notification marked sent, as they commit,
    until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for n in db.notifies(timeout=left):
            table, _, app = n.payload.partition(" ")
            yield table, int(app.rsplit(":", 1)[1])


def test_sigkill_of_the_leader_hands_over_within_a_cycle_and_nothing_is_skipped_or_sent_twice(
        posthog_factory: Any, slack: LocalSlack, postgres_url: str, tmp_path: Path) -> None:
    # Control: the same scenario in its own project, one uninterrupted pass on a single SQLite replica.
    control_env = posthog_factory("drift", scale=0.1, days=8)
    control_slack = LocalSlack.start()
    try:
        control = monitor_for(make_config(control_env, control_slack, None, tmp_path / "control.sqlite",
                                          alerting={"stale_after_hours": 0}))
        assert control.cycle().ok
        headers = sorted(m["blocks"][0]["text"]["text"] for m in control_slack.messages)
        control.store.close()
    finally:
        control_slack.stop()
    assert len(headers) >= 4

    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    all_runs = {r["run_id"] for r in env.dataset.runs}
    # Each run fetch takes a little while, so the first kill lands mid-backlog.
    env.server.faults.add(Fault(kind="latency", seconds=0.1, name="get_run", count=None))
    config = _write_config(tmp_path / "config.yaml", env, slack, postgres_url)
    listen = psycopg.connect(postgres_url, autocommit=True)
    with _replicas(config, tmp_path) as replicas, listen:
        first, second = replicas.start(), replicas.start()
        # The replicas create the schema; the test then hooks commits to learn who did what, and when.
        assert env.server.wait_for_requests(1, timeout=60, name="cluster-monitor:discover_runs"), \
            replicas.all_logs()
        listen.execute(_TRIGGERS)
        listen.execute("LISTEN ha")
        runs_by: Counter[int] = Counter()
        for table, pid in _events(listen, timeout=60):
            runs_by[pid] += table == "runs"
            if runs_by[pid] >= 3:
                leader = pid
                break
        else:
            raise AssertionError("no replica processed 3 runs\n" + replicas.all_logs())
        # Kill -9 the leader mid-backlog (no chance to release anything), and start a replacement replica
        # as Kubernetes would.
        killed_at = time.time()
        os.kill(leader, signal.SIGKILL)
        replicas.procs[leader].wait(10)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            done_at_kill = {r[0] for r in db.execute("SELECT run_id FROM runs")}
        assert 0 < len(done_at_kill) < len(all_runs), "the kill should land mid-backlog"
        standby = second if leader == first else first
        assert '"event": "leader_standby"' in replicas.log(standby)
        replacement = replicas.start()

        # The standby takes over and works through the rest; once it has delivered two notifications,
        # it is killed too (between two paced sends), and the replacement finishes the outbox.
        sent = 0
        second_leader = None
        for table, pid in _events(listen, timeout=60):
            if pid == leader:
                continue  # committed before the kill, read after it
            second_leader = second_leader or pid
            sent += table == "outbox"
            if sent == 2:
                break
        else:
            raise AssertionError("no hand-over\n" + replicas.all_logs())
        assert second_leader in (standby, replacement)
        takeover = _acquired_at(replicas.log(second_leader)) - killed_at
        # The standby polls the lock every cycle (1 s here): it takes over within one cycle, give or take
        # a loaded machine's scheduling.
        assert 0 < takeover < 3, f"takeover took {takeover:.2f} s"
        print(f"takeover {takeover:.2f} s after SIGKILL (cycle interval 1 s); {len(done_at_kill)} of "
              f"{len(all_runs)} runs done at the kill")
        os.kill(second_leader, signal.SIGKILL)
        replicas.procs[second_leader].wait(10)
        last = next(pid for pid in (standby, replacement) if pid != second_leader)
        for table, _pid in _events(listen, timeout=60):
            sent += table == "outbox"
            if sent == len(headers):
                break
        else:
            raise AssertionError(f"{sent} of {len(headers)} notifications sent\n" + replicas.all_logs())
        with psycopg.connect(postgres_url, autocommit=True) as db:
            done = {r[0] for r in db.execute("SELECT run_id FROM runs")}
            pending = db.execute("SELECT count(*) FROM outbox WHERE status <> 'sent'").fetchone()
        assert '"event": "leader_acquired"' in replicas.log(last)
        replicas.procs[last].send_signal(signal.SIGTERM)
        assert replicas.procs[last].wait(60) == 0, replicas.log(last)[-3000:]
        logs = "".join(replicas.log(p) for p in replicas.procs)

    assert done == all_runs, "a run was skipped"
    assert pending == (0,)
    got = sorted(m["blocks"][0]["text"]["text"] for m in slack.messages)
    blocks = Counter(json.dumps(m["blocks"], sort_keys=True) for m in slack.messages)
    duplicates = sum(n - 1 for n in blocks.values())
    # Both kills land where no send is in flight (mid-run, and in the pause after a "sent" mark), so
    # no message may repeat; a kill between a send and its mark could repeat that one message.
    assert duplicates == 0, f"{duplicates} notification(s) sent twice"
    assert got == headers, "the replicas' notifications differ from a single uninterrupted replica's"
    assert DB_PASSWORD not in logs


def test_cli_commands_open_the_postgres_store_and_once_respects_the_leader(
        posthog_factory: Any, slack: LocalSlack, postgres_url: str, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    config = _write_config(tmp_path / "config.yaml", env, slack, postgres_url)

    def cli(*args: str, cfg: Path = config) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor.cli", *args, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **ENV})

    added = cli("silence", "add", "--kind", "new_cluster", "--for", "2h")
    assert added.returncode == 0 and added.stdout.startswith("silence #1 added"), added.stderr
    assert "#1" in cli("silence", "list").stdout
    # A daemon replica leads (here: the test holds the project's lock): `once` does nothing.
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(env.project_id),))
        standby = cli("once")
        assert standby.returncode == 0 and "another replica holds the leader lock" in standby.stderr
        assert not env.requests(name="cluster-monitor:discover_runs")
    assert cli("once").returncode == 0
    assert env.requests(name="cluster-monitor:discover_runs")

    # PostgreSQL unreachable: a clear error naming the database, without its password.
    with psycopg.connect(postgres_url, autocommit=True) as db:
        port = db.info.port
    down = _write_config(tmp_path / "down.yaml", env, slack, postgres_url.replace(f":{port}/", ":1/"))
    failed = cli("outbox", cfg=down)
    assert failed.returncode == 2
    assert "cannot connect to PostgreSQL at postgresql://monitor:***@127.0.0.1:1/" in failed.stderr
    assert DB_PASSWORD not in failed.stderr + failed.stdout
