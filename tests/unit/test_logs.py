"""Log lines go to the stderr of the moment: a command run in-process (CliRunner, a program embedding the CLI)
swaps sys.stderr and closes its copy when it returns, and every later line failed with "I/O operation on a
closed file" (a whole later command ended in "unexpected error")."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from monitor import logs


def test_lines_follow_sys_stderr_after_logging_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure("info", json=True)
    structlog.get_logger().info("first_line", n=1)
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    structlog.get_logger().info("second_line", n=2)
    line = json.loads(second.getvalue())
    assert line["event"] == "second_line" and line["n"] == 2
    monkeypatch.undo()
    logs.configure("info")
