"""Delivery from the outbox: at least once, paced, with backoff, and permanent failures parked.

A notification is written to the outbox in the same transaction that marks its run processed; this
module is the only thing that sends, and it marks each entry sent right after the channel accepted it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import msgspec
import structlog

from monitor import telemetry
from monitor.alerts import Notification
from monitor.notify.catchup import HELD_PREFIX
from monitor.store.base import OutboxEntry, Store

log = structlog.get_logger()

@dataclass(frozen=True)
class SendResult:
    ok: bool
    permanent: bool = False
    error: str | None = None
    ts: str | None = None  # Slack message timestamp (bot tokens), for threads


class Notifier(Protocol):
    """A channel: Slack or email. `send` never raises for delivery problems; it reports them."""

    name: str

    def send(self, notification: Notification, *, thread_ts: str | None = None) -> SendResult: ...


class Deliverer:
    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        *,
        max_backoff: float = 600.0,
        max_attempts: int = 50,
        min_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        fence: Callable[[], bool] = lambda: True,
        claim: Callable[[int], bool] | None = None,
        record_for: float = 30.0,
        after_send: Callable[[], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        """`fence`: asked before a batch; False means this replica is no longer the leader (PostgreSQL
        lock lost), so it must not send what another replica now owns. `claim(entry id)`: the fence
        asked immediately before each send, after pacing, so nothing that waits comes between the
        proof of leadership and the send (default: `fence`). `record_for`: how long a send the channel
        accepted is retried being marked sent when the store is away (a database restart), since an
        unrecorded send is sent again.
        `after_send`: called after a channel accepted a message and before it is marked sent, the one
        moment where a crash repeats a message; the crash test (tests/support/crashing_daemon.py) kills
        the process there. None in production.
        `timeout`: a send still running after this many seconds is abandoned (delivery.timeout_seconds):
        reported, and retried later like a failed send, so one stuck message never holds the cycle. The
        stuck send goes on in its (daemon) thread; should it still get through, that message is sent twice."""
        self.store = store
        self.fence = fence
        self.claim = claim or (lambda _id: fence())
        self.record_for = record_for
        self.notifiers = dict(notifiers)
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.min_interval = min_interval
        self._sleep = sleep
        self._monotonic = monotonic
        self._last_send: dict[str, float] = {}
        self._after_send = after_send
        self.timeout = timeout

    @property
    def channels(self) -> list[str]:
        return list(self.notifiers)

    def _pace(self, channel: str) -> None:
        """About one message a second per channel, as Slack asks of apps."""
        last = self._last_send.get(channel)
        if last is not None:
            wait = self.min_interval - (self._monotonic() - last)
            if wait > 0:
                self._sleep(wait)
        self._last_send[channel] = self._monotonic()

    def _thread_for(self, channel: str, notification: Notification) -> str | None:
        """Resolved notices reply in the thread of the message that announced the alert, where the channel
        gives message ids (Slack with a bot token); anything else starts a new message."""
        if not notification.alerts or any(a.status != "resolved" for a in notification.alerts):
            return None
        return self.store.thread_for(channel, [a.fingerprint for a in notification.alerts])

    def deliver_due(self, now: datetime) -> int:
        delivered = 0
        if not self.fence():
            log.warning("delivery_fenced", reason="not the leader")
            return 0
        for entry in self.store.due_outbox(now):
            sent = self._deliver(entry, now)
            if sent is None:
                log.warning("delivery_fenced", reason="leadership lost mid-batch", key=entry.key)
                return delivered
            delivered += sent
        telemetry.OUTBOX_PENDING.set(len(self.store.outbox("pending")))
        return delivered

    def _deliver(self, entry: OutboxEntry, now: datetime) -> bool | None:
        """True when sent; None when this replica is no longer the leader (nothing sent)."""
        if entry.channel.startswith(HELD_PREFIX):
            return False  # waiting to be folded into a catch-up summary (pipeline), not sent on its own
        notifier = self.notifiers.get(entry.channel)
        if notifier is None:
            # The channel was removed from the config: keep the entry, visible in `outbox`, for later.
            self.store.mark_retry(entry.id, f"channel {entry.channel!r} is not configured",
                                  now + timedelta(seconds=self.max_backoff))
            return False
        try:
            notification = msgspec.json.decode(entry.payload, type=Notification)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.store.mark_failed(entry.id, f"undecodable outbox payload: {exc}")
            return False
        self._pace(entry.channel)
        thread = self._thread_for(entry.channel, notification)
        # Last, after every wait: prove leadership (and record the send under it) right before sending.
        if not self.claim(entry.id):
            return None
        try:
            result = self._send(notifier, entry, notification, thread)
        except Exception as exc:  # a bug in rendering must not lose the message: park it for retry
            log.exception("notify_crashed", channel=entry.channel, key=entry.key)
            result = SendResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        if result.ok:
            if self._after_send is not None:
                self._after_send()
            self._record_sent(entry, now, result.ts)
            telemetry.NOTIFICATIONS.labels(channel=entry.channel, outcome="sent").inc()
            log.info("notification_sent", channel=entry.channel, key=entry.key, run_id=notification.run_id,
                     alerts=len(notification.alerts), attempts=entry.attempts + 1)
            return True
        error = result.error or "unknown error"
        if result.permanent or entry.attempts + 1 >= self.max_attempts:
            self.store.mark_failed(entry.id, error)
            telemetry.NOTIFICATIONS.labels(channel=entry.channel, outcome="failed").inc()
            log.error("notification_failed", channel=entry.channel, key=entry.key, error=error,
                      permanent=result.permanent, attempts=entry.attempts + 1)
            return False
        delay = min(self.max_backoff, 2.0 ** min(entry.attempts, 20))
        self.store.mark_retry(entry.id, error, now + timedelta(seconds=delay))
        telemetry.NOTIFICATIONS.labels(channel=entry.channel, outcome="retry").inc()
        log.warning("notification_retry", channel=entry.channel, key=entry.key, error=error,
                    attempts=entry.attempts + 1, retry_in_s=delay)
        return False

    def _send(self, notifier: Notifier, entry: OutboxEntry, notification: Notification,
              thread: str | None) -> SendResult:
        """The channel's send, within `timeout` (see __init__)."""
        if self.timeout is None:
            return notifier.send(notification, thread_ts=thread)
        box: list[SendResult | Exception] = []

        def send() -> None:
            try:
                box.append(notifier.send(notification, thread_ts=thread))
            except Exception as exc:  # handed to the caller, which parks the entry for retry
                box.append(exc)

        worker = threading.Thread(target=send, name=f"send-{entry.id}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not box:
            telemetry.DELIVERIES_ABANDONED.labels(channel=entry.channel).inc()
            log.error("delivery_abandoned", channel=entry.channel, key=entry.key, seconds=self.timeout,
                      attempts=entry.attempts + 1)
            return SendResult(ok=False, error=f"the send took longer than {self.timeout:g} s and was abandoned")
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]

    def _record_sent(self, entry: OutboxEntry, now: datetime, thread_ts: str | None) -> None:
        """Mark a send that went out, retrying for `record_for` seconds while the store is unreachable: the
        message cannot be taken back, and an entry left pending is sent again by whoever leads next.
        Recorded even if leadership was lost meanwhile: it states a fact, and spares a duplicate."""
        deadline = self._monotonic() + self.record_for
        delay = 0.1
        while True:
            try:
                self.store.mark_sent(entry.id, now, thread_ts=thread_ts)
                return
            except Exception as exc:  # the store's driver errors (a restart drops its session): retry
                if self._monotonic() + delay > deadline:
                    raise
                log.warning("mark_sent_retry", key=entry.key, error=f"{type(exc).__name__}: {exc}",
                            retry_in_s=delay)
                self._sleep(delay)
                delay = min(delay * 2, 2.0)

