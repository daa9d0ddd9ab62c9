"""Orders end to end: the real dev server, the real worker and database, a real SMTP server.

What the customer receives (emails, via SMTP) and what the shop's database says afterwards
(read model, ledger, stock) are checked, not only the workflow's result.
"""

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlmodel import Session, select

from models.orders import (
    OrderItem,
    OrderStatus,
    OrderTimeouts,
    OrderView,
    PaymentMethod,
    PlaceOrderInput,
)
from models.shipments import CarrierEvent, CarrierStatus
from models.tables import (
    OrderEvent,
    OrderRecord,
    PaymentTransaction,
    SentEmail,
    Shipment,
    StockReservation,
)
from models.wire import QUERY_STATUS, SIGNAL_CARRIER_EVENT
from temporal_client import start_order
from tests.conftest import E2EStack, eventually, new_id

pytestmark = pytest.mark.e2e


async def emails_for(stack: E2EStack, order_id: str, count: int) -> list[EmailMessage]:
    """The order's emails once `count` have arrived: the sender delivers each shortly after
    the workflow records it, so an order's end can come before its last email."""

    async def sent() -> list[EmailMessage]:
        return stack.smtp.for_order(order_id)

    return await eventually(sent, lambda emails: len(emails) >= count)


def place(order_id: str, token: str, **items: int) -> PlaceOrderInput:
    return PlaceOrderInput(
        order_id=order_id,
        customer_id="cus_ada",
        items=[OrderItem(sku=sku.replace("_", "-"), quantity=n) for sku, n in items.items()],
        payment=PaymentMethod(token=token),
        placed_at=datetime.now(UTC),
        timeouts=OrderTimeouts(return_window=timedelta(seconds=1)),
    )


def read_model(stack: E2EStack, order_id: str) -> tuple[OrderRecord, list[str]]:
    with Session(stack.engine) as session:
        record = session.get(OrderRecord, order_id)
        assert record is not None, f"no read-model row for {order_id}"
        events = session.exec(
            select(OrderEvent.event).where(OrderEvent.order_id == order_id).order_by(OrderEvent.seq)  # type: ignore[arg-type]
        ).all()
        return record, list(events)


def ledger(stack: E2EStack, order_id: str) -> list[tuple[str, str]]:
    with Session(stack.engine) as session:
        rows = session.exec(
            select(PaymentTransaction).where(PaymentTransaction.order_id == order_id)
        ).all()
        return sorted((row.kind, row.status) for row in rows)


def holds(stack: E2EStack, order_id: str) -> list[tuple[str, str]]:
    with Session(stack.engine) as session:
        rows = session.exec(
            select(StockReservation).where(StockReservation.order_id == order_id)
        ).all()
        return sorted((row.sku, row.status) for row in rows)


async def test_a_happy_order_is_emailed_at_every_step_and_recorded(e2e_stack: E2EStack) -> None:
    order_id = new_id("e2e-happy")
    handle = await start_order(
        e2e_stack.client, place(order_id, "tok_visa", BOOK_DUNE=1, EBOOK_DUNE=1)
    )

    async def status() -> OrderView:
        return await handle.query(QUERY_STATUS, result_type=OrderView)

    shipped = await eventually(status, lambda view: view.status is OrderStatus.SHIPPED)
    (parcel,) = shipped.shipments
    tracking = parcel.tracking_number
    assert tracking is not None
    await handle.signal(
        SIGNAL_CARRIER_EVENT,
        CarrierEvent(
            event_id=f"{tracking}-1",
            tracking_number=tracking,
            status=CarrierStatus.DELIVERED,
            occurred_at=datetime.now(UTC),
        ),
    )
    final = await handle.result()

    total = 1899 + 999 + 499
    assert final.status is OrderStatus.COMPLETED
    assert final.payment.captured == total

    kinds = ["confirmation", "digital_delivery", "shipped", "delivered"]
    emails = await emails_for(e2e_stack, order_id, len(kinds))
    assert [str(m["X-Ordermill-Kind"]) for m in emails] == kinds
    assert {str(m["To"]) for m in emails} == {"ada@example.com"}
    assert tracking in emails[2].get_content()
    assert f"/downloads/{order_id}/EBOOK-DUNE?sig=" in emails[1].get_content()

    record, events = read_model(e2e_stack, order_id)
    assert (record.status, record.total, record.captured, record.tracking_numbers) == (
        "completed",
        total,
        total,
        [tracking],
    )
    assert events == [entry.event for entry in final.timeline]
    assert OrderView.model_validate_json(record.view_json).status is OrderStatus.COMPLETED
    assert ledger(e2e_stack, order_id) == [("authorize", "approved"), ("capture", "approved")]
    assert holds(e2e_stack, order_id) == [("BOOK-DUNE", "committed")]
    with Session(e2e_stack.engine) as session:
        shipment = session.get(Shipment, tracking)
        assert shipment is not None and shipment.status == "delivered"
        sent = session.exec(select(SentEmail).where(SentEmail.order_id == order_id)).all()
        assert len(sent) == 4


async def test_a_declined_order_releases_its_stock_and_tells_the_customer(
    e2e_stack: E2EStack,
) -> None:
    order_id = new_id("e2e-declined")
    handle = await start_order(
        e2e_stack.client, place(order_id, "tok_chargeDeclined", BOOK_NEUROMANCER=2)
    )
    final = await handle.result()

    assert final.status is OrderStatus.PAYMENT_DECLINED
    assert final.reason is not None and final.reason.code == "card_declined"
    emails = await emails_for(e2e_stack, order_id, 2)
    assert [str(m["X-Ordermill-Kind"]) for m in emails] == ["confirmation", "payment_declined"]
    assert {str(m["To"]) for m in emails} == {"ada@example.com"}
    assert "declined" in emails[1].get_content()

    record, events = read_model(e2e_stack, order_id)
    assert (record.status, record.reason_code, record.captured) == (
        "payment_declined",
        "card_declined",
        0,
    )
    assert "stock_released" in events
    assert ledger(e2e_stack, order_id) == [("authorize", "declined")]
    assert holds(e2e_stack, order_id) == [("BOOK-NEUROMANCER", "released")]
