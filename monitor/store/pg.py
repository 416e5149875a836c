"""PostgreSQL sessions for the store and the leader lock: one way to connect, and passwords kept out of
every log line and error."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from monitor.store.base import StoreError


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparseable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))


def scrub(text: str, url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def connect(url: str, *, purpose: str, **params: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit session in UTC; `application_name` names the replica (host and pid) and the purpose,
    so `pg_stat_activity` tells which replica holds the leader lock."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10,
                               application_name=f"cluster-monitor {purpose} {socket.gethostname()}:{os.getpid()}",
                               **params)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {scrub(str(exc), url)}") from exc
    conn.execute("SET TIME ZONE 'UTC'")
    return conn
