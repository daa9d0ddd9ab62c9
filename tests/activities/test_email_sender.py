"""The email outbox and the worker's sender (activities.email_sender), on a real database.

At least once, with the same Message-ID; never two senders at once; an outage delays an email
and never loses it; a permanent refusal is kept, not retried for ever.
"""

import smtplib
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import Engine
from sqlmodel import Session

from activities.email_sender import Delivery, EmailSender, deliver, due_keys, outbox_row
from models.tables import SentEmail
from tests.conftest import eventually


def composed(key: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "orders@shop.example"
    message["To"] = "ada@example.com"
    message["Subject"] = "Your order ó-1 is confirmed"  # a non-ASCII header survives the row
    message["Message-ID"] = f"<{key.replace(':', '.')}@ordermill>"
    message["X-Ordermill-Order"] = "o-1"
    message["X-Ordermill-Kind"] = "confirmation"
    message["X-Ordermill-Key"] = key
    message.set_content("Thank you, Ada. Ünïcode and a long line " + "x" * 200)
    return message


def record(engine: Engine, key: str) -> EmailMessage:
    message = composed(key)
    with Session(engine) as session:
        session.add(outbox_row(message))
        session.commit()
    return message


def row(engine: Engine, key: str) -> SentEmail:
    with Session(engine) as session:
        found = session.get(SentEmail, key)
        assert found is not None
        return found


class Mailbox:
    """A mail server: down for its first `down` attempts, slow when asked."""

    def __init__(self, *, down: int = 0, delay: float = 0.0) -> None:
        self.received: list[EmailMessage] = []
        self.attempts = 0
        self._down, self._delay = down, delay
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            self.attempts += 1
            if self.attempts <= self._down:
                raise ConnectionRefusedError("mail server down")
        time.sleep(self._delay)
        with self._lock:
            self.received.append(message)


def test_the_stored_email_goes_out_as_it_was_composed(engine: Engine) -> None:
    original = record(engine, "o-1:confirmation")
    mailbox = Mailbox()
    assert deliver(engine, mailbox.send, "o-1:confirmation") is Delivery.SENT
    (sent,) = mailbox.received
    assert sent["Message-ID"] == original["Message-ID"]
    assert sent["Subject"] == original["Subject"]
    assert sent.get_content() == original.get_content()
    assert row(engine, "o-1:confirmation").sent_at is not None
    assert deliver(engine, mailbox.send, "o-1:confirmation") is Delivery.ALREADY_SENT
    assert len(mailbox.received) == 1


def test_two_senders_at_once_send_one_email_once(engine: Engine) -> None:
    record(engine, "o-1:confirmation")
    mailbox = Mailbox(delay=0.2)
    outcomes: list[Delivery] = []

    def attempt() -> None:
        outcomes.append(deliver(engine, mailbox.send, "o-1:confirmation"))

    senders = [threading.Thread(target=attempt) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert sorted(outcomes) == sorted([Delivery.SENT] + [Delivery.BUSY] * 3)
    assert len(mailbox.received) == 1


def test_a_failed_attempt_backs_off_then_is_due_again(engine: Engine) -> None:
    record(engine, "o-1:confirmation")
    mailbox = Mailbox(down=1)
    assert deliver(engine, mailbox.send, "o-1:confirmation") is Delivery.FAILED
    failed = row(engine, "o-1:confirmation")
    assert failed.sent_at is None and failed.attempts == 1
    assert failed.next_attempt_at is not None
    assert failed.next_attempt_at.replace(tzinfo=UTC) > datetime.now(UTC)
    assert due_keys(engine) == []
    assert deliver(engine, mailbox.send, "o-1:confirmation") is Delivery.BUSY  # not yet


def test_a_permanent_refusal_is_kept_and_never_sent_again(engine: Engine) -> None:
    record(engine, "o-1:confirmation")

    def refuse(message: EmailMessage) -> None:
        raise smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"no such user")})

    def refuse_data(message: EmailMessage) -> None:
        raise smtplib.SMTPDataError(554, b"rejected as spam")

    assert deliver(engine, refuse_data, "o-1:confirmation") is Delivery.REFUSED
    refused = row(engine, "o-1:confirmation")
    assert refused.refused is not None and "554" in refused.refused
    assert due_keys(engine) == []
    record(engine, "o-2:confirmation")
    # Every recipient refused is not a response code of its own: tried again later.
    assert deliver(engine, refuse, "o-2:confirmation") is Delivery.FAILED


async def test_the_sender_sends_what_it_is_handed_and_what_a_crashed_worker_left(
    engine: Engine,
) -> None:
    record(engine, "o-1:left-by-a-crash")  # recorded, never handed to any sender
    mailbox = Mailbox()
    sender = EmailSender(engine, mailbox.send, sweep_every=0.05)
    sender.start()
    try:
        record(engine, "o-1:confirmation")
        sender.notify("o-1:confirmation")

        async def keys() -> set[str]:
            return {str(m["X-Ordermill-Key"]) for m in mailbox.received}

        await eventually(keys, lambda k: k == {"o-1:left-by-a-crash", "o-1:confirmation"})
    finally:
        sender.close()
    assert len(mailbox.received) == 2


async def test_an_email_waits_out_a_mail_server_outage(engine: Engine) -> None:
    record(engine, "o-1:confirmation")
    mailbox = Mailbox(down=1)
    sender = EmailSender(engine, mailbox.send, sweep_every=0.05)
    sender.notify("o-1:confirmation")
    try:

        async def received() -> int:
            return len(mailbox.received)

        # Down at the first attempt, sent at the next, after a backoff of 2 s.
        await eventually(received, lambda n: n == 1, within=15)
    finally:
        sender.close()
    assert mailbox.attempts == 2
    assert row(engine, "o-1:confirmation").attempts == 2
