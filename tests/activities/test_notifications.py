"""Emails: what each says about the order's parcels, and that each is sent once per event."""

import dataclasses
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select, update
from temporalio.testing import ActivityEnvironment

from activities.downloads import DownloadLinks
from activities.email_sender import EMAIL_POLICY, Delivery, deliver, outbox_row
from activities.email_templates import TEMPLATES, render
from activities.notifications import Mailer, NotificationActivities, OutboxNotifier
from models.activities import DIGITAL_DELIVERY_EVENT, EmailKind, OrderEmail, SupportInquiryInput
from models.orders import (
    DeliveryOption,
    InquiryView,
    OrderItem,
    OrderLine,
    OrderStatus,
    OrderView,
    RefundKind,
    RefundView,
    ReturnReason,
    ReturnResolution,
    ReturnStatus,
    ReturnView,
    TimelineEntry,
    order_totals,
)
from models.shipments import CarrierStatus, ShipmentLine, ShipmentView
from models.tables import SentEmail
from tests.activities.email_helpers import SendAtOnce

TTL = timedelta(days=30)
LINKS = DownloadLinks("https://shop.example", "test-secret", ttl=TTL)
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class CountingNotifier:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


def mailer() -> Mailer:
    return Mailer(sender="orders@shop.example", links=LINKS, support_mailbox="support@shop.example")


def parcel(
    shipment_id: str, sku: str, tracking: str, status: CarrierStatus | None = None
) -> ShipmentView:
    return ShipmentView(
        shipment_id=shipment_id,
        warehouse="WH-EAST",
        lines=[ShipmentLine(sku=sku, quantity=1)],
        status=status,
        carrier="simulated-carrier",
        tracking_number=tracking,
        shipped_at=NOW,
    )


def order_view(order_id: str = "o-1", *, shipments: list[ShipmentView] | None = None) -> OrderView:
    """Two paperbacks from two warehouses, and an e-book."""
    lines = [
        OrderLine(sku="BOOK-DUNE", name="Dune", quantity=1, unit_price=1899, digital=False),
        OrderLine(
            sku="BOOK-NEUROMANCER", name="Neuromancer", quantity=1, unit_price=1599, digital=False
        ),
        OrderLine(sku="EBOOK-DUNE", name="Dune (e-book)", quantity=1, unit_price=999, digital=True),
    ]
    return OrderView(
        order_id=order_id,
        customer_id="cus_ada",
        status=OrderStatus.CONFIRMED,
        items=[OrderItem(sku=line.sku, quantity=line.quantity) for line in lines],
        lines=lines,
        delivery=DeliveryOption.STANDARD,
        totals=order_totals(lines, DeliveryOption.STANDARD),
        shipments=shipments
        if shipments is not None
        else [
            parcel("SHP-1", "BOOK-DUNE", "OMTRACK1"),
            parcel("SHP-2", "BOOK-NEUROMANCER", "OMTRACK2"),
        ],
        placed_at=NOW,
        updated_at=NOW,
        return_window_ends_at=NOW + timedelta(days=30),
    )


def email(kind: EmailKind, reference: str | None = None) -> OrderEmail:
    return OrderEmail(
        idempotency_key=f"o-1:{kind.value}" + (f":{reference}" if reference else ""),
        kind=kind,
        to="ada@example.com",
        customer_name="Ada Lovelace",
        reference=reference,
    )


def retry_env(attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


def test_every_kind_of_email_has_words() -> None:
    assert set(TEMPLATES) == set(EmailKind)


def test_each_parcel_has_its_own_shipped_email() -> None:
    order = order_view()
    subject, body = render(EmailKind.SHIPPED, "Ada", order, [], reference="SHP-2")
    assert "SHP-2" in subject
    assert "simulated-carrier OMTRACK2" in body and "(2 of 2)" in body
    assert "Neuromancer" in body
    assert "OMTRACK1" not in body and "Dune" not in body  # the other parcel's


def test_the_delivered_email_lists_what_arrived() -> None:
    order = order_view(
        shipments=[
            parcel("SHP-1", "BOOK-DUNE", "OMTRACK1", CarrierStatus.DELIVERED),
            parcel("SHP-2", "BOOK-NEUROMANCER", "OMTRACK2", CarrierStatus.DELIVERED),
        ]
    )
    _, body = render(EmailKind.DELIVERED, "Ada", order, [])
    assert "Dune" in body and "Neuromancer" in body
    assert "OMTRACK1" in body and "OMTRACK2" in body
    assert "2026-02-04" in body  # the end of the return window


def test_the_partially_delivered_email_says_what_arrived_what_failed_and_the_refund() -> None:
    order = order_view(
        shipments=[
            parcel("SHP-1", "BOOK-DUNE", "OMTRACK1", CarrierStatus.DELIVERED),
            parcel("SHP-2", "BOOK-NEUROMANCER", "OMTRACK2", CarrierStatus.RETURN_TO_SENDER),
        ]
    )
    order.refunds = [
        RefundView(
            refund_id="REF-1",
            kind=RefundKind.DELIVERY_FAILED,
            amount=1599,
            reason="failure",
            at=NOW,
        )
    ]
    subject, body = render(EmailKind.PARTIALLY_DELIVERED, "Ada", order, [])
    assert "Part of order o-1" in subject
    arrived, failed = body.split("could not deliver")
    assert "Dune" in arrived and "Neuromancer" not in arrived
    assert "Neuromancer" in failed and "OMTRACK2" in failed
    assert "refunded $15.99" in failed


def test_the_exchange_email_names_the_replacements_parcel() -> None:
    order = order_view()
    order.returns = [
        ReturnView(
            return_id="RET-1",
            lines=[ShipmentLine(sku="BOOK-DUNE", quantity=1)],
            reason=ReturnReason.DAMAGED,
            resolution=ReturnResolution.EXCHANGE,
            status=ReturnStatus.EXCHANGE_SHIPPED,
            requested_at=NOW,
            tracking_number="OMRETURN1",
            exchange_shipment=parcel("SHP-X1", "BOOK-DUNE", "OMEXCH1"),
        )
    ]
    _, body = render(EmailKind.EXCHANGE_SHIPPED, "Ada", order, [], reference="RET-1")
    assert "simulated-carrier OMEXCH1" in body and "OMTRACK1" not in body


def test_the_digital_delivery_email_links_only_the_digital_lines() -> None:
    message = mailer().order_email(email(EmailKind.DIGITAL_DELIVERY), order_view())
    body = message.get_content()
    assert LINKS.url("o-1", "EBOOK-DUNE", issued_at=NOW) in body
    assert body.count("/downloads/") == 1  # no link for the paperbacks
    assert (message["X-Ordermill-Order"], message["X-Ordermill-Kind"]) == (
        "o-1",
        "digital_delivery",
    )


def test_the_message_id_is_the_same_for_every_attempt_at_one_email() -> None:
    compose = mailer().order_email
    first = compose(email(EmailKind.SHIPPED, "SHP-1"), order_view())
    again = compose(email(EmailKind.SHIPPED, "SHP-1"), order_view())
    other = compose(email(EmailKind.SHIPPED, "SHP-2"), order_view())
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]


def test_composing_and_reading_back_reuse_each_headers_class() -> None:
    # The standard registry builds a class per header made; ours builds each one once.
    first = mailer().order_email(email(EmailKind.CONFIRMATION), order_view("o-1"))
    second = mailer().order_email(email(EmailKind.CONFIRMATION), order_view("o-2"))
    assert type(first["Subject"]) is type(second["Subject"])
    read_back = Parser(_class=EmailMessage, policy=EMAIL_POLICY).parsestr(first.as_string())
    assert type(read_back["Subject"]) is type(first["Subject"])
    assert read_back["Subject"] == first["Subject"] and read_back.get_content() == (
        first.get_content()
    )


def test_a_support_inquiry_is_forwarded_once_however_often_retried(engine: Engine) -> None:
    notifier = CountingNotifier()
    notifications = NotificationActivities(
        mailer(), engine, SendAtOnce(engine, notifier.send), support_mailbox="support@shop.example"
    )
    request = SupportInquiryInput(
        idempotency_key="o-1:inquiry:INQ-1",
        customer_email="ada@example.com",
        inquiry=InquiryView(inquiry_id="INQ-1", message="Gift-wrap, please?", at=NOW),
        order=order_view().model_copy(
            update={"inquiries": [InquiryView(inquiry_id="INQ-0", message="Is it signed?", at=NOW)]}
        ),
    )

    first = retry_env(1).run(notifications.notify_support, request)
    again = retry_env(2).run(notifications.notify_support, request)

    assert (first.already_sent, again.already_sent) == (False, True)
    assert first.message_id == again.message_id
    assert len(notifier.sent) == 1
    message = notifier.sent[0]
    assert (message["To"], message["Reply-To"]) == ("support@shop.example", "ada@example.com")
    assert "Gift-wrap, please?" in message.get_content()
    assert "Is it signed?" not in message.get_content()  # each email carries only its question
    with Session(engine) as session:
        row = session.get(SentEmail, "o-1:inquiry:INQ-1")
        assert row is not None and row.sent_at is not None


def test_the_outbox_holds_one_file_when_a_send_is_retried_after_a_crash(
    engine: Engine, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    send = OutboxNotifier(outbox).send
    message = mailer().order_email(email(EmailKind.DIGITAL_DELIVERY), order_view())
    with Session(engine) as session:
        session.add(outbox_row(message))
        session.commit()
    key = str(message["X-Ordermill-Key"])

    assert deliver(engine, send, key) is Delivery.SENT
    # The worker died after writing the email but before marking it sent; its lease ran out.
    with Session(engine) as session:
        session.exec(update(SentEmail).values(sent_at=None, next_attempt_at=None))
        session.commit()
    assert deliver(engine, send, key) is Delivery.SENT
    assert deliver(engine, send, key) is Delivery.ALREADY_SENT

    files = sorted(outbox.iterdir())
    assert [f.name for f in files] == ["o-1_digital_delivery.eml"]  # no second copy, no .tmp
    parsed = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == "ada@example.com"
    assert parsed["Message-ID"] == message["Message-ID"]
    with Session(engine) as session:
        assert [row.kind for row in session.exec(select(SentEmail))] == ["digital_delivery"]


def test_download_links_are_signed_per_order_sku_and_expiry() -> None:
    url = LINKS.url("o-1", "EBOOK-DUNE", issued_at=NOW)
    assert url.startswith("https://shop.example/downloads/o-1/EBOOK-DUNE?sig=")
    assert LINKS.url("o-2", "EBOOK-DUNE", issued_at=NOW) != url
    assert LINKS.url("o-1", "EBOOK-DUNE", issued_at=NOW + timedelta(seconds=1)) != url
    other = DownloadLinks("https://shop.example", "other-secret", ttl=TTL)
    assert other.url("o-1", "EBOOK-DUNE", issued_at=NOW) != url


def link_query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_a_link_expires_its_ttl_after_it_was_issued_and_signs_the_expiry() -> None:
    query = link_query(LINKS.url("o-1", "EBOOK-DUNE", issued_at=NOW))
    expires = int(query["expires"])
    assert expires == int((NOW + TTL).timestamp())
    verifier = DownloadLinks("https://shop.example", "test-secret")  # the API's: no ttl
    assert verifier.verify("o-1", "EBOOK-DUNE", expires, query["sig"])
    assert not verifier.verify("o-1", "EBOOK-DUNE", expires + 1, query["sig"])
    # A naive time is UTC, never the host's local time.
    naive = LINKS.url("o-1", "EBOOK-DUNE", issued_at=NOW.replace(tzinfo=None))
    assert link_query(naive)["expires"] == query["expires"]


def test_only_links_given_a_positive_ttl_issue_links() -> None:
    with pytest.raises(ValueError, match="only verify"):
        DownloadLinks("https://shop.example", "test-secret").url("o-1", "EBOOK-DUNE", issued_at=NOW)
    for ttl in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="positive"):
            DownloadLinks("https://shop.example", "test-secret", ttl=ttl)


def delivered_order(*, later: timedelta = timedelta(0)) -> OrderView:
    """The order whose downloads were sent at NOW, and which changed again `later`."""
    order = order_view()
    order.timeline = [
        TimelineEntry(at=NOW, event=DIGITAL_DELIVERY_EVENT, status=OrderStatus.CONFIRMED),
    ]
    if later:
        order.timeline.append(
            TimelineEntry(at=NOW + later, event="hold_placed", status=OrderStatus.CONFIRMED)
        )
        order.updated_at = NOW + later
    return order


def test_every_attempt_at_the_delivery_email_carries_the_same_links() -> None:
    compose = mailer().order_email
    first = compose(email(EmailKind.DIGITAL_DELIVERY), delivered_order())
    again = compose(email(EmailKind.DIGITAL_DELIVERY), delivered_order())
    # Recorded again after a hold: the order changed since, the delivery did not.
    held = compose(email(EmailKind.DIGITAL_DELIVERY), delivered_order(later=timedelta(hours=5)))
    assert first.get_content() == again.get_content() == held.get_content()
    assert LINKS.url("o-1", "EBOOK-DUNE", issued_at=NOW) in first.get_content()
    assert first["Message-ID"] == held["Message-ID"]
