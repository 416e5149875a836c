"""SIGTERM that lands while the main thread is inside a log line: the handler runs on the main thread between
two of its bytecodes, with structlog's lock on stderr (not reentrant) possibly held by the interrupted
`print`. A handler that logged waited for that lock forever and the daemon never stopped (seen once in CI's
e2e test: SIGTERM sent as soon as `daemon_started` was read)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import structlog._output

from monitor import logs
from monitor.daemon import Daemon


def test_the_stop_handler_takes_no_log_lock(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "posthog": {"host": "http://127.0.0.1:9", "project_id": 1, "api_key": "phx_test_key_0123456789"},
        "state": {"path": str(tmp_path / "state.sqlite")}}))
    logs.configure("info")
    d = Daemon(config)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        d.install_signals()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        lock = structlog._output._get_lock_for_file(sys.stderr)
        done = threading.Event()

        def interrupt() -> None:  # as the signal would, while a log line holds the lock
            handler(signal.SIGTERM, None)
            done.set()

        with lock:
            t = threading.Thread(target=interrupt, daemon=True)
            t.start()
            assert done.wait(10), "the stop handler waited for the log lock"
        assert d.stop_event.is_set() and d.stop_signal == "SIGTERM"
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        d.close()
