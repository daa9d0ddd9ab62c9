"""Customer emails through a `Notifier`: SMTP when configured, else .eml files in an outbox.

Each email has an idempotency key (order + event); it is recorded once sent, so a retried
activity never sends it twice, and its Message-ID is derived from the key so a mail server
that sees it twice can tell.
"""

import hashlib
import os
import smtplib
import tempfile
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio import activity

from activities.downloads import DownloadLinks
from activities.email_templates import render, render_support_inquiry
from database import read_only
from models.activities import EmailKind, EmailReceipt, SendEmailInput, SupportInquiryInput
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
        timeout: float = 20,
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


class NotificationActivities:
    def __init__(
        self,
        notifier: Notifier,
        engine: Engine,
        *,
        sender: str,
        links: DownloadLinks,
        support_mailbox: str,
    ) -> None:
        self._notifier = notifier
        self._engine = engine
        self._sender = sender
        self._links = links
        self._support_mailbox = support_mailbox

    @activity.defn(name="send_email")
    def send_email(self, request: SendEmailInput) -> EmailReceipt:
        order = request.order
        links = (
            [self._links.url(order.order_id, line.sku) for line in order.lines if line.digital]
            if request.kind is EmailKind.DIGITAL_DELIVERY
            else []
        )
        subject, body = render(
            request.kind, request.customer_name, order, links, reference=request.reference
        )
        return self._send_once(
            key=request.idempotency_key,
            order_id=order.order_id,
            kind=request.kind.value,
            to=request.to,
            subject=subject,
            body=body,
        )

    @activity.defn(name="notify_support")
    def notify_support(self, request: SupportInquiryInput) -> EmailReceipt:
        """Forward a customer's question to the support mailbox, with the order attached."""
        subject, body = render_support_inquiry(request.inquiry, request.order)
        return self._send_once(
            key=request.idempotency_key,
            order_id=request.order.order_id,
            kind="support_inquiry",
            to=self._support_mailbox,
            subject=subject,
            body=body,
            reply_to=request.customer_email,
        )

    def _send_once(
        self,
        *,
        key: str,
        order_id: str,
        kind: str,
        to: str,
        subject: str,
        body: str,
        reply_to: str | None = None,
    ) -> EmailReceipt:
        message_id = _message_id(key)
        with Session(read_only(self._engine)) as session:
            if session.get(SentEmail, key) is not None:
                return EmailReceipt(message_id=message_id, already_sent=True)

        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        if reply_to:
            message["Reply-To"] = reply_to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = message_id
        message["X-Ordermill-Order"] = order_id
        message["X-Ordermill-Kind"] = kind
        message["X-Ordermill-Key"] = key
        message.set_content(body)
        self._notifier.send(message)

        with Session(self._engine) as session:
            session.add(
                SentEmail(
                    idempotency_key=key,
                    order_id=order_id,
                    kind=kind,
                    recipient=to,
                    message_id=message_id,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # a concurrent attempt recorded it first
                session.rollback()
        return EmailReceipt(message_id=message_id, already_sent=False)


def _message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@ordermill>"
