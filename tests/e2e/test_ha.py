"""High availability on PostgreSQL: replicas sharing one database elect one leader with an advisory lock;
a standby takes over within one cycle when the leader dies, and nothing is skipped or sent twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
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
from tests.integration.test_daemon import _metric
from tests.support.postgres import PostgresServer

DB_PASSWORD = "pg-Pa55word-never-logged"


def _with_password(url: str) -> str:
    """The test server trusts loopback, so any password connects: it is here to be kept out of logs."""
    return url.replace("postgresql://monitor@", "postgresql://monitor:${TEST_PG_PASSWORD}@", 1)


def _write_config(path: Path, env: PostHogEnv, slack: LocalSlack, url: str, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "posthog": {"host": env.url, "project_id": env.project_id, "api_key": "${TEST_POSTHOG_KEY}",
                    "lookback_days": 60, "max_retries": 1},
        "schedule": {"interval_seconds": 1},
        # Every level the local PostHog writes, as tests/conftest.make_config (the control) watches.
        "watch": {"levels": ["trace", "generation", "evaluation"]},
        "alerting": {"stale_after_hours": 0, "catch_up_after_hours": 0},
        "slack": {"webhook_url": slack.webhook_url},
        "state": {"url": _with_password(url)},
        "delivery": {"max_backoff_seconds": 1},
        **extra,
    }
    path.write_text(json.dumps(doc))
    return path


ENV = {"TEST_POSTHOG_KEY": API_KEY, "TEST_PG_PASSWORD": DB_PASSWORD}


@pytest.fixture
def config_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment the configs' ${...} name, for daemons run in the test's own process."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


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
        config_env: pytest.MonkeyPatch) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
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


# --- fencing at the moment of sending, leases, live readiness (issue 18) -----------------------------------

def _until(cond: Any, timeout: float, what: str, logs: Any = None) -> Any:
    """Poll a condition until it holds (its value), failing with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{logs()}" if logs is not None else ""))


def _holder_pid(url: str, project_id: int) -> int | None:
    """The pid (in its application_name) of the replica holding the leader lock now, None when nobody does
    or PostgreSQL cannot be asked (then nobody can prove to lead)."""
    try:
        holders = _lock_holders(url, project_id)
    except psycopg.Error:
        return None
    return int(holders[0].rsplit(":", 1)[1]) if holders else None


def _sender_pid(message: dict[str, Any]) -> int:
    return int(str(message["sender"]).rsplit(":", 1)[1])


def _lease_config(tmp_path: Path, env: PostHogEnv, slack: LocalSlack, url: str, lease: float, **extra: Any) -> Path:
    path = _write_config(tmp_path / "config.yaml", env, slack, url, **extra)
    doc = json.loads(path.read_text())
    doc["state"]["leader_lease_seconds"] = lease
    path.write_text(json.dumps(doc))
    return path


def _check_fenced(slack: LocalSlack, url: str) -> tuple[int, int]:
    """Every message reached Slack from the replica holding the lock at that instant, and every outbox entry
    was sent; returns (messages, duplicates)."""
    for m in slack.messages:
        assert m.get("observed") == _sender_pid(m), \
            f"replica {m['sender']} sent while {m.get('observed')} held the lock: {m['blocks'][0]}"
    with psycopg.connect(url, autocommit=True) as db:
        statuses: dict[str, int] = dict(db.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    assert set(statuses) <= {"sent"}, statuses
    blocks = Counter(json.dumps(m["blocks"], sort_keys=True) for m in slack.messages)
    assert len(blocks) == statuses.get("sent", 0), "a notification is missing from Slack"
    return len(slack.messages), sum(n - 1 for n in blocks.values())


def test_a_long_first_cycle_is_ready_and_leading_and_a_stuck_cycle_fails_healthz(
        posthog_factory: Any, slack: LocalSlack, postgres_url: str, tmp_path: Path,
        config_env: pytest.MonkeyPatch) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    config = _lease_config(tmp_path, env, slack, postgres_url, lease=2.0, server={"host": "127.0.0.1", "port": 0})
    # Every run takes a while to fetch: a first cycle over a backlog.
    env.server.faults.add(Fault(kind="latency", seconds=0.25, name="get_run", count=None))
    # systemd's notify socket: the daemon pings the watchdog only while it is alive.
    watchdog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    watchdog.bind(str(tmp_path / "notify.sock"))
    watchdog.setblocking(False)
    config_env.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))

    def pinged() -> bool:
        try:
            return watchdog.recv(100) == b"WATCHDOG=1"
        except BlockingIOError:
            return False

    d = Daemon(config)
    d.start_health_server()
    d.monitor.deliverer.min_interval = 0.0  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{d._health_server.server_address[1]}"  # type: ignore[union-attr]
    assert httpx.get(base + "/readyz").status_code == 503, "not ready before it knows its role"
    results: list[Any] = []
    cycle = threading.Thread(target=lambda: results.append(d.run_cycle()))
    try:
        cycle.start()
        # Leading from the moment the lock is taken, not from the end of the cycle; progress in /metrics.
        _until(lambda: httpx.get(base + "/readyz").text == "ready\n", 10, "a leading first cycle to be ready")
        assert _metric(httpx.get(base + "/metrics").text, "cluster_monitor_is_leader") == 1
        _until(lambda: _metric(httpx.get(base + "/metrics").text, "cluster_monitor_cycle_runs_left") > 0, 30,
               "the backlog to show in /metrics")
        assert httpx.get(base + "/readyz").text == "ready\n" and not results, "the first cycle is still running"
        assert httpx.get(base + "/healthz").status_code == 200
        d.heartbeat()
        assert pinged()
        # One run fetch now hangs for 6 s: no progress for more than the 2 s lease, the cycle is stuck.
        env.server.faults.add(Fault(kind="latency", seconds=6, name="get_run", count=1))
        _until(lambda: httpx.get(base + "/healthz").status_code == 503, 10, "/healthz to fail on a stuck cycle")
        assert httpx.get(base + "/readyz").status_code == 503
        d.heartbeat()
        assert not pinged(), "a stuck daemon pinged systemd's watchdog"
        cycle.join(60)
        assert results and results[0] is not None and results[0].ok and not results[0].standby
        assert httpx.get(base + "/healthz").text == "ok\n"
        assert _metric(httpx.get(base + "/metrics").text, "cluster_monitor_cycle_runs_left") == 0
        # Leadership lost between cycles: the gauge and /readyz say so at once, before any cycle runs.
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name LIKE 'cluster-monitor leader-lock %%'")
        d.heartbeat()
        assert httpx.get(base + "/readyz").text == "ready standby\n"
        assert _metric(httpx.get(base + "/metrics").text, "cluster_monitor_is_leader") == 0
    finally:
        cycle.join(60)
        d._health_server.shutdown()  # type: ignore[union-attr]
        d.close()
        watchdog.close()


def test_a_paused_leader_whose_lock_session_was_ended_sends_nothing_after_it_resumes(
        posthog_factory: Any, slack: LocalSlack, postgres_url: str, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    # A long lease: here the session is ended from outside (as PostgreSQL does when keepalives fail).
    config = _lease_config(tmp_path, env, slack, postgres_url, lease=60)
    slack.observe = lambda: _holder_pid(postgres_url, env.project_id)
    with _replicas(config, tmp_path) as replicas:
        first, second = replicas.start(), replicas.start()
        # Production pacing (one message a second per channel): the leader is paused between two sends.
        msg = _until(lambda: slack.messages[:1], 120, "a first message", replicas.all_logs)[0]
        leader = _sender_pid(msg)
        other = second if leader == first else first
        os.kill(leader, signal.SIGSTOP)
        try:
            paused_at = len(slack.messages)
            with psycopg.connect(postgres_url, autocommit=True) as db:
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                           (f"cluster-monitor leader-lock {msg['sender']}",))
            _until(lambda: _holder_pid(postgres_url, env.project_id) == other, 30, "the standby to take over",
                   replicas.all_logs)
            _until(lambda: any(_sender_pid(m) == other for m in slack.messages), 30, "the new leader to send",
                   replicas.all_logs)
        finally:
            os.kill(leader, signal.SIGCONT)
        _until(lambda: '"event": "leader_lost"' in replicas.log(leader), 30, "the old leader to step down",
               replicas.all_logs)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            _until(lambda: db.execute("SELECT count(*) FROM outbox WHERE status <> 'sent'").fetchone() == (0,)
                   and '"event": "cycle_done"' in replicas.log(other), 60, "the outbox to drain", replicas.all_logs)
        after = [m for m in slack.messages[paused_at:] if _sender_pid(m) == leader]
        messages, duplicates = _check_fenced(slack, postgres_url)
    assert after == [], "the paused leader sent after it resumed"
    # The stated bound: at most one repeated message per change of leader (a send in flight at the change).
    assert duplicates <= 1, f"{duplicates} duplicates"
    print(f"paused leader: {messages} messages, {duplicates} duplicates, 0 sent without the lock")


def test_a_postgres_restart_during_a_send_repeats_nothing_and_nobody_sends_without_the_lock(
        posthog_factory: Any, slack: LocalSlack, postgres_server: PostgresServer, postgres_url: str,
        tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("drift", scale=0.1, days=8)
    config = _lease_config(tmp_path, env, slack, postgres_url, lease=60)
    slack.observe = lambda: _holder_pid(postgres_url, env.project_id)
    slack.gate = threading.Event()  # the first message waits at Slack, its send in flight
    with _replicas(config, tmp_path) as replicas:
        replicas.start(), replicas.start()
        msg = _until(lambda: slack.messages[:1], 120, "a first message", replicas.all_logs)[0]
        postgres_server.restart()
        slack.gate.set()  # the send completes after every session was cut
        leader = _sender_pid(msg)
        _until(lambda: '"event": "leader_lost"' in replicas.log(leader)
               or '"event": "leader_check_failed"' in replicas.log(leader), 60, "the leader to notice",
               replicas.all_logs)

        def drained() -> bool:
            try:
                with psycopg.connect(postgres_url, autocommit=True) as db:
                    return db.execute("SELECT count(*) FROM outbox WHERE status <> 'sent'").fetchone() == (0,)
            except psycopg.Error:
                return False

        _until(drained, 120, "the outbox to drain after the restart", replicas.all_logs)
        messages, duplicates = _check_fenced(slack, postgres_url)
        logs = "".join(replicas.log(p) for p in replicas.procs)
    assert duplicates == 0, f"{duplicates} duplicates"
    assert '"event": "mark_sent_retry"' in logs, "the send in flight was not recorded after the restart"
    print(f"restart during a send: {messages} messages, {duplicates} duplicates, 0 sent without the lock")


def test_a_hung_leader_is_deposed_and_replaced_within_its_lease(
        posthog_factory: Any, slack: LocalSlack, postgres_url: str, tmp_path: Path) -> None:
    env: PostHogEnv = posthog_factory("steady", scale=0.05, days=2)
    lease = 2.0
    config = _lease_config(tmp_path, env, slack, postgres_url, lease=lease)
    slack.observe = lambda: _holder_pid(postgres_url, env.project_id)
    with _replicas(config, tmp_path) as replicas:
        first, second = replicas.start(), replicas.start()
        leader = _until(lambda: _holder_pid(postgres_url, env.project_id), 60, "a leader", replicas.all_logs)
        other = second if leader == first else first
        _until(lambda: '"event": "leader_standby"' in replicas.log(other), 60, "a standby", replicas.all_logs)
        # Hung: the process stops, its TCP session (and the lock) stays alive.
        os.kill(leader, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            _until(lambda: _holder_pid(postgres_url, env.project_id) == other, 30, "the standby to depose it",
                   replicas.all_logs)
            took = time.monotonic() - stopped_at
        finally:
            os.kill(leader, signal.SIGCONT)
        assert '"event": "leader_deposed"' in replicas.log(other)
        _until(lambda: '"event": "leader_lost"' in replicas.log(leader), 30, "the old leader to step down",
               replicas.all_logs)
        _check_fenced(slack, postgres_url)
    # The bound: the lease, then the standby's next try (the cycle interval, 1 s), give or take a loaded machine.
    assert lease < took < lease + 1 + 2, f"took {took:.2f} s"
    print(f"hung leader replaced {took:.2f} s after it stopped (lease {lease:g} s, interval 1 s)")
