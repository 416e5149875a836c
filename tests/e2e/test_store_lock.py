"""A SQLite state serves one replica: a second daemon on the same file is refused at start (two real
processes), the lock goes with its holder however it ends, and CLI commands still work beside it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from monitor.config import StateConfig
from monitor.store import StoreError, open_leadership, open_store

API_KEY = "phx_test_key_0123456789"


def _config(tmp_path: Path, state: Path) -> Path:
    doc: dict[str, Any] = {
        # Nothing listens on the discard port: the daemon stays up and reports PostHog unreachable.
        "posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": API_KEY, "max_retries": 0},
        "schedule": {"interval_seconds": 3600},
        "state": {"path": str(state)},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(doc))
    return path


class _Daemon:
    """`cluster-monitor run` in its own process; its log lines are read as they come, nothing waits by time."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.put(line.decode(errors="replace"))
        self.lines.put(None)

    def wait_for(self, text: str) -> None:
        while (line := self.lines.get(timeout=60)) is not None:
            if text in line:
                return
        raise AssertionError(f"the daemon ended (exit {self.proc.wait()}) before logging {text!r}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def test_a_second_daemon_on_the_same_sqlite_file_is_refused_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    config = _config(tmp_path, state)
    first = _Daemon(config)
    try:
        first.wait_for("daemon_started")
        second = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"state file {state} is in use by another cluster-monitor (pid {first.proc.pid}" in second.stderr
        assert "SQLite state serves one replica" in second.stderr and "state.url" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.proc.poll() is None, "the first daemon goes on"
        # A CLI command beside the running daemon still reads and writes the state.
        silence = subprocess.run([sys.executable, "-m", "monitor.cli", "silence", "add", "--config", str(config),
                                  "--kind", "share_shift", "--for", "1h"], capture_output=True, text=True, timeout=60)
        assert silence.returncode == 0, silence.stderr
    finally:
        first.stop(signal.SIGKILL)
    # Killed outright, it leaves no stale lock: the next daemon starts.
    third = _Daemon(config)
    try:
        third.wait_for("daemon_started")
    finally:
        assert third.stop() == 0


def test_the_lock_is_released_with_the_leadership_and_names_its_holder(tmp_path: Path) -> None:
    state = StateConfig.model_validate({"path": tmp_path / "s.sqlite"})
    held = open_leadership(state, 1)
    assert held.held and held.verify()
    with pytest.raises(StoreError, match=rf"pid {os.getpid()}"):
        open_leadership(state, 1)
    # The store itself takes no lock: CLI commands open it beside the daemon.
    open_store(state).close()
    held.release()
    assert not held.held
    again = open_leadership(state, 1)
    again.release()
    # Each extra project has its own file, hence its own lock.
    extra = open_leadership(state.for_project(2), 2)
    extra.release()
