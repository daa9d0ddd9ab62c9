"""Customer emails through a `Notifier`: SMTP when configured, else .eml files in an outbox.

Each email has an idempotency key (order + event) and a `SentEmail` row: recorded first (for
order emails, in the same transaction as the change that triggers them), then the email is
sent, then the row is marked sent. A crash between send and mark sends it again on the retry:
at least once, under a Message-ID derived from the key, so a mail server that sees it twice can
tell; never again once marked.
"""

import hashlib
import os
import smtplib
import tempfile
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio import activity

from activities.downloads import DownloadLinks
from activities.email_sender import EMAIL_POLICY, EmailSender, outbox_row
from activities.email_templates import render, render_support_inquiry
from activities.tracking_links import TrackingLinks
from models.activities import (
    DIGITAL_DELIVERY_EVENT,
    EmailKind,
    EmailReceipt,
    OrderEmail,
    SupportInquiryInput,
)
from models.orders import OrderView
from models.tables import SentEmail


class Notifier(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmtpNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10,
    ) -> None:
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(message)


class OutboxNotifier:
    """Writes each email to `<outbox>/<key>.eml`; a second write of the same key is a no-op."""

    def __init__(self, outbox: Path) -> None:
        self._outbox = outbox

    def send(self, message: EmailMessage) -> None:
        self._outbox.mkdir(parents=True, exist_ok=True)
        name = message["X-Ordermill-Key"].replace(":", "_").replace("/", "_") + ".eml"
        final = self._outbox / name
        with tempfile.NamedTemporaryFile(dir=self._outbox, suffix=".tmp", delete=False) as tmp:
            tmp.write(message.as_bytes())
        try:
            os.link(tmp.name, final)  # atomic, and fails if the email was already written
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp.name)


class Mailer:
    """Composes ordermill's emails (words from `email_templates`); activities.email_sender
    sends them once they are recorded."""

    def __init__(
        self,
        *,
        sender: str,
        links: DownloadLinks,
        support_mailbox: str,
        tracking: TrackingLinks | None = None,
    ) -> None:
        self._sender = sender
        self._links = links
        self.support_mailbox = support_mailbox
        self._tracking = tracking

    def order_email(self, email: OrderEmail, order: OrderView) -> EmailMessage:
        """The customer's email about `order` as this snapshot of it stands."""
        links = []
        if email.kind is EmailKind.DIGITAL_DELIVERY:
            issued_at = downloads_sent_at(order)
            links = [
                self._links.url(order.order_id, line.sku, issued_at=issued_at)
                for line in order.lines
                if line.digital
            ]
        tracking = self._tracking.url(order.order_id, order.placed_at) if self._tracking else None
        subject, body = render(
            email.kind,
            email.customer_name,
            order,
            links,
            reference=email.reference,
            tracking=tracking,
        )
        return self.compose(
            key=email.idempotency_key,
            order_id=order.order_id,
            kind=email.kind.value,
            to=email.to or self.support_mailbox,
            subject=subject,
            body=body,
        )

    def compose(
        self,
        *,
        key: str,
        order_id: str,
        kind: str,
        to: str,
        subject: str,
        body: str,
        reply_to: str | None = None,
    ) -> EmailMessage:
        message = EmailMessage(policy=EMAIL_POLICY)
        message["From"] = self._sender
        message["To"] = to
        if reply_to:
            message["Reply-To"] = reply_to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = message_id(key)
        message["X-Ordermill-Order"] = order_id
        message["X-Ordermill-Kind"] = kind
        message["X-Ordermill-Key"] = key
        message.set_content(body)
        return message


def downloads_sent_at(order: OrderView) -> datetime:
    """When the order's download links were issued: where their expiry counts from.

    The moment the workflow noted the delivery, which every attempt at this email carries the
    same, so a re-sent email has the same links. Not the wall clock at send time, nor
    `updated_at`, which moves on when a held record is retried after the hold's own changes.
    """
    for entry in reversed(order.timeline):
        if entry.event == DIGITAL_DELIVERY_EVENT:
            return entry.at
    return order.updated_at


class NotificationActivities:
    """Emails that are not an order change: a customer's question, to the support mailbox.

    (An order change's email is recorded by its `record_order`, in the change's transaction.)
    Recorded here, then sent by the worker's EmailSender like every other email.
    """

    def __init__(
        self, mailer: Mailer, engine: Engine, sender: EmailSender, *, support_mailbox: str
    ) -> None:
        self._mailer = mailer
        self._engine = engine
        self._sender = sender
        self._support_mailbox = support_mailbox

    @activity.defn(name="notify_support")
    def notify_support(self, request: SupportInquiryInput) -> EmailReceipt:
        """Forward a customer's question to the support mailbox, with the order attached."""
        subject, body = render_support_inquiry(request.inquiry, request.order)
        message = self._mailer.compose(
            key=request.idempotency_key,
            order_id=request.order.order_id,
            kind="support_inquiry",
            to=self._support_mailbox,
            subject=subject,
            body=body,
            reply_to=request.customer_email,
        )
        with Session(self._engine) as session:
            row = session.get(SentEmail, request.idempotency_key)
            already_sent = row is not None and row.sent_at is not None
            if row is None:
                session.add(outbox_row(message))
                try:
                    session.commit()
                except IntegrityError:  # a concurrent attempt recorded it first
                    session.rollback()
        if not already_sent:
            self._sender.notify(request.idempotency_key)
        return EmailReceipt(message_id=str(message["Message-ID"]), already_sent=already_sent)


def message_id(key: str) -> str:
    """The same for every attempt at one email."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@ordermill>"
