"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, parsed by the email package."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class _Handler:
    def __init__(self, box: LocalSMTP) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.box.refuse_code is not None:
            return f"{self.box.refuse_code} refused by the local test server"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.box.add(msg, list(envelope.rcpt_tos))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalSMTP:
    def __init__(self, port: int = 0, *, username: str | None = None, password: str | None = None) -> None:
        self.port = port or _free_port()
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.refuse_code: int | None = None
        self._cond = threading.Condition()
        kw: dict[str, Any] = {}
        if username is not None:
            def auth(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and data.login.decode() == username \
                    and data.password.decode() == password
                return AuthResult(success=ok, handled=False)

            kw = {"authenticator": auth, "auth_require_tls": False, "auth_required": True}
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kw)

    @classmethod
    def start(cls, port: int = 0, **kw: Any) -> LocalSMTP:
        box = cls(port, **kw)
        box._controller.start()
        return box

    def stop(self) -> None:
        self._controller.stop()

    def add(self, msg: EmailMessage, rcpts: list[str]) -> None:
        with self._cond:
            self.messages.append(msg)
            self.recipients.append(rcpts)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout=timeout)
