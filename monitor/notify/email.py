"""Email delivery over SMTP: multipart/alternative (plain text + HTML, charts drawn in the HTML), STARTTLS or
implicit TLS.

SMTP answers are sorted like Slack's: 5xx and failed authentication are permanent (a person must fix
the address or the password), 4xx and connection problems are retried from the outbox.
"""

from __future__ import annotations

import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from zoneinfo import ZoneInfo

from monitor.alerts import Notification
from monitor.config import EmailConfig
from monitor.notify.outbox import SendResult
from monitor.notify.render import Templates, header_safe, render_email


def build_message(n: Notification, *, sender: str, recipients: list[str], tz: ZoneInfo,
                  templates: Templates | None = None) -> EmailMessage:
    parts = render_email(n, tz=tz, templates=templates)
    msg = EmailMessage()
    msg["Subject"] = parts.subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="cluster-monitor")
    msg["X-Cluster-Monitor-Key"] = header_safe(n.key[:800])[:200]  # run ids are data: CR/LF would raise
    msg.set_content(parts.text)
    msg.add_alternative(parts.html, subtype="html")
    return msg


class EmailNotifier:
    name = "email"

    def __init__(self, *, host: str, port: int, security: str, sender: str, recipients: list[str],
                 username: str | None = None, password: str | None = None, timeout: float = 30.0,
                 timezone: str = "UTC", templates: Templates | None = None) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.sender = sender
        self.recipients = recipients
        self.username = username
        self._password = password
        self.timeout = timeout
        self.tz = ZoneInfo(timezone)
        self.templates = templates  # None: the shipped templates
        Address(addr_spec=sender.split("<")[-1].rstrip(">").strip())  # fail early on a malformed sender

    @classmethod
    def from_config(cls, cfg: EmailConfig, *, timezone: str = "UTC",
                    templates: Templates | None = None) -> EmailNotifier:
        return cls(host=cfg.host, port=cfg.port, security=cfg.security, sender=cfg.sender, recipients=list(cfg.to),
                   username=cfg.username, password=cfg.password.get_secret_value() if cfg.password else None,
                   timeout=cfg.timeout_seconds, timezone=timezone, templates=templates)

    def send(self, notification: Notification, *, thread_ts: str | None = None) -> SendResult:
        msg = build_message(notification, sender=self.sender, recipients=self.recipients, tz=self.tz,
                            templates=self.templates)
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            return SendResult(ok=False, permanent=True, error=f"smtp: authentication failed ({exc.smtp_code})")
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            return SendResult(ok=False, permanent=all(c >= 500 for c in codes),
                              error=f"smtp: recipients refused {sorted(exc.recipients)}")
        except smtplib.SMTPResponseException as exc:
            return SendResult(ok=False, permanent=exc.smtp_code >= 500,
                              error=f"smtp: {exc.smtp_code} {_text(exc.smtp_error)[:200]}")
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(ok=False, error=f"smtp: {type(exc).__name__}: {exc}")
        if refused:
            return SendResult(ok=False, permanent=True, error=f"smtp: some recipients refused {sorted(refused)}")
        return SendResult(ok=True)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
