"""Sending the emails the order's records wrote: a transactional outbox, drained by the worker.

`record_order` writes an email (composed, with its Message-ID) in the same transaction as the
change that triggers it, and hands its key to the worker's `EmailSender`, which sends it after
the commit. The order never waits for the mail server: an SMTP outage delays its emails, not
the order. A sender claims a row for a lease before it sends, so two workers (or a sweep and
the first try) do not send one email at once; a crash after the send and before the mark
sends it again once the lease has passed, under the same Message-ID, so mail clients fold the
repeat. At least once, never twice on purpose.
"""

import contextlib
import logging
import queue
import smtplib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import Parser
from enum import StrEnum
from typing import ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Engine, Table, or_, select, update
from temporalio.common import MetricMeter

from activities import cpu
from models.tables import SentEmail, utcnow

log = logging.getLogger("ordermill.email")

# Every email is claimed and marked: in SQLAlchemy Core, which skips the ORM's bookkeeping for
# rows no session holds.
OUTBOX: Table = SentEmail.__table__  # type: ignore[attr-defined]

Send = Callable[[EmailMessage], None]


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, building each header's class once.

    The standard one builds a new class with `type()` for every header it makes, on every
    email composed, read back or sent, and the headers' classes never change.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


# How every email is composed and read back: the standard policy, with the registry above.
EMAIL_POLICY = policy.default.clone(header_factory=_HeaderClasses())
P = ParamSpec("P")
R = TypeVar("R")

# How long a sender may take before another may try the same email again (EMAIL_SEND_LEASE):
# past any send the SMTP timeouts allow.
LEASE = timedelta(seconds=30)
# Between failed attempts: doubling from 2 s, at most a minute, so emails flow again within
# a minute of the mail server's return.
FIRST_BACKOFF, MAX_BACKOFF = timedelta(seconds=2), timedelta(minutes=1)


class Delivery(StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"
    BUSY = "busy"  # another sender holds it, or its backoff has not passed
    FAILED = "failed"  # this attempt failed; due again after its backoff
    REFUSED = "refused"  # the mail server refused it for good


def outbox_row(message: EmailMessage) -> SentEmail:
    """The outbox row of a composed email, due at once."""
    return SentEmail(
        idempotency_key=str(message["X-Ordermill-Key"]),
        order_id=str(message["X-Ordermill-Order"]),
        kind=str(message["X-Ordermill-Kind"]),
        recipient=str(message["To"]),
        message_id=str(message["Message-ID"]),
        message=message.as_string(),
    )


def backoff(attempts: int) -> timedelta:
    return min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(OUTBOX.c.next_attempt_at.is_(None), OUTBOX.c.next_attempt_at <= now)


def _unsent() -> list[ColumnElement[bool]]:
    return [
        OUTBOX.c.sent_at.is_(None),
        OUTBOX.c.refused.is_(None),
        OUTBOX.c.message.is_not(None),
    ]


def deliver(engine: Engine, send: Send, key: str, *, lease: timedelta = LEASE) -> Delivery:
    """One attempt at the email `key`: claim it, send it, mark it sent."""
    now = utcnow()
    with engine.begin() as conn:  # the claim, committed before the send
        claimed = conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.idempotency_key == key, *_unsent(), _due(now))
            .values(attempts=OUTBOX.c.attempts + 1, next_attempt_at=now + lease)
        ).rowcount
        row = conn.execute(
            select(OUTBOX.c.sent_at, OUTBOX.c.order_id, OUTBOX.c.message, OUTBOX.c.attempts).where(
                OUTBOX.c.idempotency_key == key
            )
        ).first()
        if row is None:
            raise LookupError(f"email {key} is sent only once it is recorded")
    sent, order_id = row.sent_at is not None, row.order_id
    text, attempts = row.message or "", row.attempts
    if not claimed:
        return Delivery.ALREADY_SENT if sent else Delivery.BUSY
    message = Parser(_class=EmailMessage, policy=EMAIL_POLICY).parsestr(text)
    try:
        send(message)
    except smtplib.SMTPResponseException as err:
        if 500 <= err.smtp_code < 600:  # a permanent answer: sending again cannot help
            _finish(engine, key, refused=f"{err.smtp_code} {err.smtp_error!r}"[:300])
            log.error("email %s to order %s refused for good: %s", key, order_id, err)
            return Delivery.REFUSED
        _retry_later(engine, key, attempts, err)
        return Delivery.FAILED
    except (OSError, smtplib.SMTPException) as err:  # the server is away, or hung up
        _retry_later(engine, key, attempts, err)
        return Delivery.FAILED
    _finish(engine, key)
    return Delivery.SENT


def _finish(engine: Engine, key: str, *, refused: str | None = None) -> None:
    values = {"refused": refused} if refused else {"sent_at": utcnow()}
    with engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.idempotency_key == key).values(**values))


def _retry_later(engine: Engine, key: str, attempts: int, err: Exception) -> None:
    wait = backoff(attempts)
    log.warning("email %s not sent (attempt %d: %s); trying again in %s", key, attempts, err, wait)
    with engine.begin() as conn:
        conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.idempotency_key == key, OUTBOX.c.sent_at.is_(None))
            .values(next_attempt_at=utcnow() + wait)
        )


def due_keys(engine: Engine, limit: int = 50) -> list[str]:
    """Emails whose time has come: never tried, failed and past their backoff, or whose
    sender's lease ran out (it crashed)."""
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(OUTBOX.c.idempotency_key)
                .where(*_unsent(), _due(utcnow()))
                .order_by(OUTBOX.c.recorded_at)
                .limit(limit)
            )
        )


@dataclass
class EmailSender:
    """The worker's sender: what `record_order` hands it at once, and every few seconds
    whatever is due (a failed attempt's retry, another worker's crash). A few emails go out at
    once, so one slow mail server session does not hold up the others."""

    engine: Engine
    send: Send
    sweep_every: float = 2.0
    lease: timedelta = LEASE
    at_once: int = 4
    meter: MetricMeter = MetricMeter.noop  # the worker's, for each delivery's CPU

    def __post_init__(self) -> None:
        self._keys: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.at_once, thread_name_prefix="email")
        self._in_hand: set[str] = set()  # each email once in the pool at a time

    def start(self) -> None:
        """Start sending (the first sweep at once: what a crashed worker left); idempotent."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="email-sender", daemon=True)
                self._thread.start()

    def notify(self, key: str) -> None:
        """Send `key` soon; a sender not started yet starts now."""
        self.start()
        self._keys.put(key)

    def close(self, timeout: float = 10) -> None:
        """Stop after the emails in hand; what is left is sent by the next sender to start."""
        self._stop.set()
        self._keys.put("")  # wakes the sender
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        swept = time.monotonic() - self.sweep_every
        while not self._stop.is_set():
            keys: list[str] = []
            with contextlib.suppress(queue.Empty):
                keys.append(self._keys.get(timeout=self.sweep_every))
            if time.monotonic() - swept >= self.sweep_every:  # even while busy
                keys += _quietly(due_keys, self.engine) or []
                swept = time.monotonic()
            for key in keys:
                if key and not self._stop.is_set():
                    self._hand_over(key)

    def _hand_over(self, key: str) -> None:
        with self._lock:
            if key in self._in_hand:
                return
            self._in_hand.add(key)
        self._pool.submit(self._deliver, key)

    def _deliver(self, key: str) -> None:
        started = time.thread_time()
        try:
            _quietly(deliver, self.engine, self.send, key, lease=self.lease)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self._in_hand.discard(key)
            cpu.email_delivered(self.meter, spent)


def _quietly(step: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """A step that fails (the database away) is logged and left to the next sweep."""
    try:
        return step(*args, **kwargs)
    except Exception:
        log.exception("the email sender's %s failed; it tries again", step.__name__)
        return None
