"""NotificationActivities: each email is sent once per order event, however often retried."""

import dataclasses
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, delete, select
from temporalio.testing import ActivityEnvironment

from activities.downloads import DownloadLinks
from activities.notifications import NotificationActivities, OutboxNotifier
from models.activities import EmailKind, SendEmailInput
from models.orders import (
    DeliveryOption,
    OrderItem,
    OrderLine,
    OrderStatus,
    OrderView,
    order_totals,
)
from models.tables import SentEmail

LINKS = DownloadLinks("https://shop.example", "test-secret")


class CountingNotifier:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


def order_view(order_id: str) -> OrderView:
    lines = [
        OrderLine(sku="BOOK-DUNE", name="Dune", quantity=1, unit_price=1899, digital=False),
        OrderLine(sku="EBOOK-DUNE", name="Dune (e-book)", quantity=1, unit_price=999, digital=True),
    ]
    now = datetime.now(UTC)
    return OrderView(
        order_id=order_id,
        customer_id="cus_ada",
        status=OrderStatus.CONFIRMED,
        items=[OrderItem(sku=line.sku, quantity=line.quantity) for line in lines],
        lines=lines,
        delivery=DeliveryOption.STANDARD,
        totals=order_totals(lines, DeliveryOption.STANDARD),
        placed_at=now,
        updated_at=now,
    )


def email(order_id: str, kind: EmailKind) -> SendEmailInput:
    return SendEmailInput(
        idempotency_key=f"{order_id}:{kind.value}",
        kind=kind,
        to="ada@example.com",
        customer_name="Ada Lovelace",
        order=order_view(order_id),
    )


def retry_env(attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


def test_a_retried_send_is_recorded_once_and_not_sent_again(engine: Engine) -> None:
    notifier = CountingNotifier()
    notifications = NotificationActivities(
        notifier,
        engine,
        sender="orders@shop.example",
        links=LINKS,
        support_mailbox="support@shop.example",
    )

    first = retry_env(1).run(notifications.send_email, email("o-1", EmailKind.CONFIRMATION))
    again = retry_env(2).run(notifications.send_email, email("o-1", EmailKind.CONFIRMATION))
    other = retry_env(1).run(notifications.send_email, email("o-1", EmailKind.SHIPPED))

    assert (first.already_sent, again.already_sent, other.already_sent) == (False, True, False)
    assert again.message_id == first.message_id != other.message_id
    assert [str(m["X-Ordermill-Kind"]) for m in notifier.sent] == ["confirmation", "shipped"]
    with Session(engine) as session:
        rows = session.exec(select(SentEmail).where(SentEmail.order_id == "o-1")).all()
    assert sorted((row.kind, row.recipient) for row in rows) == [
        ("confirmation", "ada@example.com"),
        ("shipped", "ada@example.com"),
    ]


def test_the_outbox_holds_one_file_when_a_send_is_retried_after_a_crash(
    engine: Engine, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    notifications = NotificationActivities(
        OutboxNotifier(outbox),
        engine,
        sender="orders@shop.example",
        links=LINKS,
        support_mailbox="support@shop.example",
    )
    request = email("o-1", EmailKind.DIGITAL_DELIVERY)

    retry_env(1).run(notifications.send_email, request)
    # The worker died after writing the email but before recording it: the retry writes again.
    with Session(engine) as session:
        session.exec(delete(SentEmail))
        session.commit()
    retry_env(2).run(notifications.send_email, request)
    retry_env(3).run(notifications.send_email, request)

    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == ["o-1_digital_delivery.eml"]  # no second copy, no .tmp
    message = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert isinstance(message, EmailMessage)
    assert message["To"] == "ada@example.com"
    assert message["X-Ordermill-Order"] == "o-1"
    body = message.get_content()
    assert LINKS.url("o-1", "EBOOK-DUNE") in body
    assert body.count("/downloads/") == 1  # no link for the paperback


def test_download_links_are_signed_per_order_and_sku() -> None:
    url = LINKS.url("o-1", "EBOOK-DUNE")
    assert url.startswith("https://shop.example/downloads/o-1/EBOOK-DUNE?sig=")
    assert LINKS.url("o-2", "EBOOK-DUNE") != url
    assert DownloadLinks("https://shop.example", "other-secret").url("o-1", "EBOOK-DUNE") != url
