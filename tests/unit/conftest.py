"""The unit tier's rule, enforced: a test here starts no server and no subprocess and opens no connection.

`./dev test-fast` runs this folder alone and promises to stay fast; a test that needs the local PostHog,
Slack, SMTP, PostgreSQL or a child process belongs in tests/integration or tests/e2e, and fails here
with the name of what it reached for.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest


class NotAUnitTest(AssertionError):
    pass


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NotAUnitTest(f"a unit test used {what}: move it to tests/integration or tests/e2e")

    return refuse


@pytest.fixture(autouse=True)
def _no_server_no_subprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("bind", "listen", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refuse(f"socket.{name}"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("a subprocess"))
    yield
