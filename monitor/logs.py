"""Structured logs: JSON lines when not on a terminal (containers, journald), readable on a terminal.

Every event is one name plus key-value fields. Secrets never reach a log: the config keeps them as
pydantic SecretStr, and the redaction processor below masks anything that still looks like a key.

`level` and `timestamp` belong to the log line (its severity, its time). The monitor's own code says
`level=run.level` for the clustering level (trace or generation), which structlog's add_log_level would
overwrite: a processor moves such fields to `clustering_level` (and `event_timestamp`) first, so no field
a caller passes is ever lost.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET = re.compile(r"(phx_[A-Za-z0-9_]{6,}|xox[abposr]-[A-Za-z0-9-]{6,}|hooks\.slack\.com/services/[^\s\"']+)")
# The password of a PostgreSQL URL (state.url) in whatever text carries one, a driver's error say.
_DB_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]+@")


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in list(event.items()):
        if isinstance(v, str) and _SECRET.search(v):
            v = event[k] = _SECRET.sub("[redacted]", v)
        if isinstance(v, str) and "postgres" in v:
            event[k] = _DB_PASSWORD.sub(r"\1[redacted]@", v)
    return event


# Keys the processors below write, and where a caller's field of the same name goes instead.
RESERVED_FIELDS = {"level": "clustering_level", "timestamp": "event_timestamp"}


def _keep_caller_fields(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, moved in RESERVED_FIELDS.items():
        if key in event:
            event[moved] = event.pop(key)
    return event


def configure(level: str = "info", *, json: bool | None = None) -> None:
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _keep_caller_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # sys.stderr as it is when a line is written, not when logging was set up: a command run in-process
        # (the CLI's tests, an embedding program) may swap it, and a closed one would fail every later line.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
